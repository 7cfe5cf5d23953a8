"""A throwaway local cluster for ``--spawn``: one tracker and one storage (or several, replicating
each other in one group) on 127.0.0.1.

Each server is ``python -m cluster.tracker|cluster.storage --conf FILE --port 0`` with a conf file
written into a temporary directory; it is ready when it prints ``<role> ready on HOST:PORT``.  The
storage is usable once the tracker offers it for uploads.  Both are stopped by their PID (SIGTERM,
then SIGKILL if they hang), and the directory is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from cluster.client import Client
from cluster.protocol import QueryStoreOneRequest, StorageStatus, StoreTargetReply

from .wire import ReplyError, Wire

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
_READY = re.compile(r"^(tracker|storage) ready on (\S+):(\d+)\s*$")
SYNC_MODES = ("none", "interval", "always")


def write_conf(path: Path, settings: Mapping[str, object]) -> Path:
    """FastDFS-style ``key = value`` lines."""
    path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()), encoding="utf-8")
    return path


class Server:
    """One server process started from a conf file; ``address`` is known once it is ready."""

    def __init__(self, role: str, conf: Path, log: Path) -> None:
        self.role = role
        self.log_path = log
        self.host = ""
        self.port = 0
        with open(log, "ab") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"cluster.{role}", "--conf", str(conf), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Read stdout until the ready line; fail if the process exits or the deadline passes."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        pending = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            pending += chunk
            for line in pending.decode("utf-8", "replace").splitlines():
                match = _READY.match(line)
                if match and match.group(1) == self.role:
                    self.host, self.port = match.group(2), int(match.group(3))
                    return
        raise RuntimeError(f"{self.role} did not become ready; its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM, wait, SIGKILL if it does not exit; the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


class LocalCluster:
    """A tracker and ``storages`` storages of one group in a temporary directory; a context manager.

    With several storages each gets a numeric storage ID and trunk containers of its own, as
    ``trunkstore cluster up`` gives them; :attr:`storages` lists their addresses.
    """

    def __init__(
        self,
        sync_mode: str = "none",
        group: str = "group1",
        storage_conf: Mapping[str, str] | None = None,
        base: str | None = None,
        storages: int = 1,
    ) -> None:
        if sync_mode not in SYNC_MODES:
            raise ValueError(f"sync mode must be one of {', '.join(SYNC_MODES)}, not {sync_mode!r}")
        self.sync_mode = sync_mode
        self.group = group
        self.storage_conf = dict(storage_conf or {})
        self.base = base
        self.root: Path | None = None
        self.servers: list[Server] = []
        self.tracker_address = ""
        self.storage_count = storages
        #: ``HOST:PORT`` of each storage, in start order.
        self.storages: list[str] = []

    def start(self) -> str:
        """Start both servers; the tracker's ``HOST:PORT`` once the storage is offered for uploads."""
        self.root = Path(tempfile.mkdtemp(prefix="trunkstore-load-", dir=self.base))
        tracker_dir = self.root / "tracker"
        tracker_dir.mkdir()
        tracker_conf = write_conf(tracker_dir / "tracker.conf", {"base_path": tracker_dir, "bind_addr": "127.0.0.1"})
        tracker = self._start("tracker", tracker_conf, tracker_dir)
        self.tracker_address = tracker.address
        for number in range(self.storage_count):
            storage_dir = self.root / ("storage" if self.storage_count == 1 else f"storage{number}")
            storage_dir.mkdir()
            storage_settings: dict[str, object] = {
                "group_name": self.group,
                "base_path": storage_dir,
                "bind_addr": "127.0.0.1",
                "tracker_server": tracker.address,
                "sync_mode": self.sync_mode,
                **self.storage_conf,
            }
            if self.storage_count > 1:
                storage_settings.update(
                    storage_id=100001 + number,
                    trunk_id_start=number + 1,
                    trunk_id_step=self.storage_count,
                    heart_beat_interval=1,
                )
            conf = write_conf(storage_dir / "storage.conf", storage_settings)
            storage = self._start("storage", conf, storage_dir)
            self.storages.append(storage.address)
            if self.storage_count == 1:
                self._wait_offered(tracker, storage)
        if self.storage_count > 1:
            self._wait_all_active()
        return tracker.address

    def _wait_all_active(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with Client([self.tracker_address]) as client:
            while time.monotonic() < deadline:
                found = client.list_storages(self.group)
                if len(found) == self.storage_count and all(s.status is StorageStatus.ACTIVE for s in found):
                    return
                time.sleep(0.1)
        raise RuntimeError(f"the {self.storage_count} storages did not all become ACTIVE")

    def _start(self, role: str, conf: Path, directory: Path) -> Server:
        server = Server(role, conf, directory / "server.log")
        self.servers.append(server)
        server.wait_ready()
        return server

    def _wait_offered(self, tracker: Server, storage: Server, timeout: float = READY_TIMEOUT) -> None:
        """Poll the tracker's upload query until it names the storage."""
        frame = QueryStoreOneRequest(self.group).encode()
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                wire = Wire((tracker.host, tracker.port), 5.0)
                try:
                    reply = StoreTargetReply.decode(wire.call(frame, "query-store").tobytes())
                finally:
                    wire.close()
                if reply.port == storage.port:
                    return
                last = f"offered {reply.ip}:{reply.port}"
            except (ReplyError, OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"the tracker never offered the storage ({last}); storage log:\n{storage.log_tail()}")

    def pids(self) -> tuple[tuple[str, int], ...]:
        """(role, PID) of each running server."""
        return tuple((server.role, server.proc.pid) for server in self.servers)

    def stop(self) -> list[int]:
        """Stop the storage, then the tracker; their exit codes.  The directory is removed."""
        codes = [server.stop() for server in reversed(self.servers)]
        self.servers = []
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        return codes

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
