"""The bundled cluster: trackers and storages on 127.0.0.1, each server its own process, in one directory.

Layout of the cluster directory::

    DIR/cluster.json            what is running: role, pid, address, conf and log of each server
    DIR/tracker<i>/tracker.conf, server.log, state
    DIR/storage<i>/storage.conf, server.log, store paths

``up`` writes the conf files (FastDFS key names, so they double as examples), starts the trackers,
then the storages pointed at all of them, and waits for each server's ``... ready on HOST:PORT``
line.  In the foreground it stops everything on Ctrl-C or SIGTERM; with ``detach`` it returns once
the cluster is ready and ``down`` stops it later, by the PIDs recorded in ``cluster.json`` (each PID
is checked against the recorded command line first, so a recycled PID is never signalled).
Starting again in the same directory keeps the files and the ports of the previous run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cluster.errors import ClusterError, ConfigError

STATE_FILE = "cluster.json"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
_READY = re.compile(r"^(tracker|storage) ready on (\S+):(\d+)\s*$")


class ClusterRunning(ClusterError):
    """A cluster recorded in the directory is still running."""


#: Storages a bundle may have; also the stride of each group member's trunk container IDs.
MAX_STORAGES = 256
#: The first storage's numeric ID (FastDFS's storage_ids.conf numbering).
FIRST_STORAGE_ID = 100001


@dataclass(frozen=True, slots=True)
class BundleSpec:
    """What ``cluster up`` starts."""

    directory: Path
    trackers: int = 1
    storages: int = 1
    groups: int = 1
    #: Port of the first tracker, the others follow it; 0 picks free ports.
    tracker_port: int = 22122
    #: Port of the first storage, the others follow it; 0 picks free ports.
    storage_port: int = 23000
    #: The storages' sync_mode: ``always`` acknowledges uploads only once on disk.
    sync_mode: str = "always"
    #: LIST_* stat layout the trackers send: ``6.15`` (FastDFS's own tools) or ``6.10`` (the PyPI clients).
    stat_layout: str = "6.15"
    heart_beat_interval: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.trackers <= 16:
            raise ConfigError("--trackers must be 1 .. 16")
        if not 1 <= self.groups <= 64:
            raise ConfigError("--groups must be 1 .. 64")
        if not self.groups <= self.storages <= MAX_STORAGES:
            raise ConfigError(
                f"--storages must be at least --groups (every group needs a storage) and at most {MAX_STORAGES}"
            )
        for name, port, count in (
            ("--tracker-port", self.tracker_port, self.trackers),
            ("--storage-port", self.storage_port, self.storages),
        ):
            if port and not 1024 <= port <= 65535 - count:
                raise ConfigError(f"{name} must be 0 (free ports) or 1024 .. {65535 - count}")
        if self.sync_mode not in ("always", "interval", "none"):
            raise ConfigError("--sync-mode must be always, interval or none")
        if self.stat_layout not in ("6.15", "6.10"):
            raise ConfigError("--stat-layout must be 6.15 or 6.10")


@dataclass(slots=True)
class ServerRecord:
    """One server of a running bundle, as recorded in ``cluster.json``."""

    role: str
    name: str
    pid: int
    host: str
    port: int
    conf: str
    log: str
    group: str = ""
    argv: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(slots=True)
class Bundle:
    """A started cluster."""

    directory: Path
    servers: list[ServerRecord]

    @property
    def trackers(self) -> list[ServerRecord]:
        return [s for s in self.servers if s.role == "tracker"]

    @property
    def storages(self) -> list[ServerRecord]:
        return [s for s in self.servers if s.role == "storage"]

    def save(self) -> None:
        data = {"servers": [asdict(s) for s in self.servers]}
        path = self.directory / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: Path) -> Bundle | None:
        path = directory / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            servers = [ServerRecord(**entry) for entry in data["servers"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{path} is unreadable: {exc}") from None
        return cls(directory, servers)

    def running(self) -> list[ServerRecord]:
        return [s for s in self.servers if process_matches(s)]


def process_matches(record: ServerRecord) -> bool:
    """True if ``record.pid`` is alive and still runs the recorded server (not a recycled PID)."""
    try:
        raw = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = raw.rstrip(b"\0").split(b"\0")
    return record.conf.encode() in args and f"cluster.{record.role}".encode() in args


def _conf_text(settings: dict[str, object]) -> str:
    lines = ["# Written by `trunkstore cluster up`; FastDFS key names."]
    for key, value in settings.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key} = {item}")
    return "\n".join(lines) + "\n"


def _previous_ports(directory: Path) -> dict[str, int]:
    try:
        previous = Bundle.load(directory)
    except ConfigError:
        return {}
    return {s.name: s.port for s in previous.servers} if previous else {}


def _ports(first: int, count: int, previous: dict[str, int], role: str) -> list[int]:
    if first:
        return [first + i for i in range(count)]
    return [previous.get(f"{role}{i}", 0) for i in range(count)]


def up(spec: BundleSpec, *, detach: bool) -> Bundle:
    """Start the cluster described by ``spec``; returns once every server is ready."""
    directory = spec.directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    existing = Bundle.load(directory)
    if existing is not None and existing.running():
        pids = ", ".join(str(s.pid) for s in existing.running())
        raise ClusterRunning(f"a cluster is already running in {directory} (pids {pids}); stop it with `down`")
    previous = _previous_ports(directory)
    bundle = Bundle(directory, [])
    try:
        for index, port in enumerate(_ports(spec.tracker_port, spec.trackers, previous, "tracker")):
            base = directory / f"tracker{index}"
            settings: dict[str, object] = {
                "bind_addr": "127.0.0.1",
                "port": port,
                "base_path": str(base),
                "stat_layout": spec.stat_layout,
                "check_active_interval": max(10, int(spec.heart_beat_interval * 5)),
            }
            bundle.servers.append(_start(base, "tracker", f"tracker{index}", settings, detach=detach))
        tracker_addresses = [t.address for t in bundle.servers]
        for index, port in enumerate(_ports(spec.storage_port, spec.storages, previous, "storage")):
            base = directory / f"storage{index}"
            group = f"group{index % spec.groups + 1}"
            member = index // spec.groups
            settings = {
                "group_name": group,
                # Numeric IDs in the file names say which storage of the group wrote a file, even with
                # every storage on 127.0.0.1; and each member creates its own trunk containers.
                "storage_id": FIRST_STORAGE_ID + index,
                "trunk_id_start": member + 1,
                "trunk_id_step": MAX_STORAGES,
                "bind_addr": "127.0.0.1",
                "port": port,
                "base_path": str(base),
                "tracker_server": tracker_addresses,
                "heart_beat_interval": spec.heart_beat_interval,
                "stat_report_interval": spec.heart_beat_interval * 2,
                "sync_mode": spec.sync_mode,
            }
            record = _start(base, "storage", f"storage{index}", settings, detach=detach)
            record.group = group
            bundle.servers.append(record)
        bundle.save()
    except BaseException:
        stop(bundle)
        raise
    return bundle


def _start(base: Path, role: str, name: str, settings: dict[str, object], *, detach: bool) -> ServerRecord:
    base.mkdir(parents=True, exist_ok=True)
    conf = base / f"{role}.conf"
    conf.write_text(_conf_text(settings), encoding="utf-8")
    log = base / "server.log"
    argv = [sys.executable, "-m", f"cluster.{role}", "--conf", str(conf)]
    with open(log, "ab") as log_handle, open(base / "stdout.txt", "wb") as out_handle:
        # Detached servers get a session of their own so that the terminal's Ctrl-C does not reach them.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_handle,
            stderr=log_handle,
            start_new_session=detach,
        )
    record = ServerRecord(role, name, proc.pid, "", 0, str(conf), str(log), argv=argv)
    host, port = _wait_ready(proc, base / "stdout.txt", log, role)
    record.host, record.port = host, port
    return record


def _wait_ready(proc: subprocess.Popen[bytes], stdout_path: Path, log: Path, role: str) -> tuple[str, int]:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            text = stdout_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            match = _READY.match(line)
            if match and match.group(1) == role:
                return match.group(2), int(match.group(3))
        if proc.poll() is not None:
            raise ClusterError(f"the {role} exited with code {proc.returncode}:\n{_tail(log)}")
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise ClusterError(f"the {role} was not ready within {READY_TIMEOUT:.0f} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(bundle: Bundle, timeout: float = STOP_TIMEOUT) -> list[ServerRecord]:
    """Stop every running server of ``bundle``: storages first, then trackers.  Returns those stopped."""
    order = bundle.storages[::-1] + bundle.trackers[::-1]
    running = [s for s in order if process_matches(s)]
    for record in running:
        _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for record in running:
        while process_matches(record) and time.monotonic() < deadline:
            _reap(record.pid)
            time.sleep(0.05)
        if process_matches(record):
            _signal(record.pid, signal.SIGKILL)
        _reap(record.pid)
    return running


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _reap(pid: int) -> None:
    """Collect the exit status of our own child (a zombie would still look alive)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down(directory: Path) -> list[ServerRecord]:
    """Stop the cluster recorded in ``directory``."""
    bundle = Bundle.load(directory.resolve())
    if bundle is None:
        raise ClusterError(f"no cluster was started in {directory} ({STATE_FILE} is missing)")
    return stop(bundle)


class StopRequest:
    """Turns Ctrl-C and SIGTERM into a flag, from the moment it is created until :meth:`restore`."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {signum: signal.signal(signum, self._request) for signum in (signal.SIGINT, signal.SIGTERM)}

    def _request(self, signum: int, frame: object) -> None:
        self.requested = True

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def wait_until_stopped(bundle: Bundle, stop_request: StopRequest) -> list[ServerRecord]:
    """Block until a stop is requested or a server dies; returns the servers that died on their own."""
    while not stop_request.requested:
        died = []
        for record in bundle.servers:
            _reap(record.pid)
            if not process_matches(record):
                died.append(record)
        # A terminal's Ctrl-C reaches the servers of a foreground cluster too: those deaths are expected.
        if died and not stop_request.requested:
            return died
        time.sleep(0.2)
    return []


def describe(bundle: Bundle) -> Sequence[str]:
    """Human-readable lines: each server's role, address, pid and log."""
    lines = []
    for record in bundle.servers:
        where = f" ({record.group})" if record.group else ""
        lines.append(f"  {record.name:<10} {record.address:<21} pid {record.pid:<8} {record.log}{where}")
    return lines
