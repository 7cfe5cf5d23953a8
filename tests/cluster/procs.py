"""Real server processes for the cluster tests: a tracker or a storage on 127.0.0.1, port 0.

Each server is started as ``python -m cluster.tracker|cluster.storage --conf FILE --port 0`` with a
conf file written from FastDFS ``key = value`` settings, and is ready once it prints its
``<role> ready on HOST:PORT`` line.  Its stderr goes to ``<base_path>/server.log``, which a failing
test prints.  Processes are stopped by their PID: SIGTERM, then SIGKILL if they do not exit.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

_READY = re.compile(r"^(tracker|storage) ready on (\S+):(\d+)\s*$")

#: Settings that keep tests quick: frequent beats, a short offline detection.
TRACKER_DEFAULTS: dict[str, Any] = {
    "bind_addr": "127.0.0.1",
    "check_active_interval": 3,
}
STORAGE_DEFAULTS: dict[str, Any] = {
    "group_name": "group1",
    "bind_addr": "127.0.0.1",
    "heart_beat_interval": 0.2,
    "stat_report_interval": 0.5,
    "sync_mode": "none",
    "trunk_file_size": "4MB",
    "reserved_storage_space": "0%",
}


def write_conf(path: Path, settings: Mapping[str, Any]) -> Path:
    """Write FastDFS-style ``key = value`` lines; a list or tuple value repeats its key."""
    lines = []
    for key, value in settings.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, bool):
                item = "true" if item else "false"
            lines.append(f"{key} = {item}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class ServerProcess:
    """One running server process; a context manager that stops it on exit."""

    def __init__(
        self, role: str, base_path: Path, conf_path: Path, args: Iterable[str] = (), *, fixed_port: bool = False
    ) -> None:
        self.role = role
        self.base_path = base_path
        self.conf_path = conf_path
        self.log_path = base_path / "server.log"
        self.host = ""
        self.port = 0
        self._args = list(args)
        self._stdout_lines: list[str] = []
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        port_args = [] if fixed_port else ["--port", "0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"cluster.{role}", "--conf", str(conf_path), *port_args, *self._args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    # ---- life cycle ---------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._stdout_lines.append(line)
            match = _READY.match(line)
            if match and match.group(1) == self.role and not self._ready.is_set():
                self.host, self.port = match.group(2), int(match.group(3))
                self._ready.set()
        self._ready.set()  # EOF: wake the waiter, which then sees the exit

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> ServerProcess:
        if not self._ready.wait(timeout) or not self.port:
            self.kill()
            raise RuntimeError(f"{self.role} did not become ready:\n{self.log_text()}")
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def stdout_text(self) -> str:
        return "".join(self._stdout_lines)

    def log_text(self) -> str:
        if not self._log.closed:  # closed once the process is stopped; the file is still there
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._finish()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL at once (a crash)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._finish()

    def _finish(self) -> None:
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if exc_type is not None:
            print(f"---- {self.role} log ({self.log_path}) ----\n{self.log_text()}")


def _base_dir(tmp_path: Path, role: str) -> Path:
    for index in range(1000):
        candidate = tmp_path / f"{role}{index}"
        if not candidate.exists():
            candidate.mkdir(parents=True)
            return candidate
    raise RuntimeError("too many servers in one test")


def start_tracker(
    tmp_path: Path, *, wait: bool = True, base_path: Path | None = None, args: Iterable[str] = (), **conf: Any
) -> ServerProcess:
    """Start a tracker with ``conf`` (FastDFS tracker.conf keys) over quick test defaults.

    It listens on a free port unless ``port`` is among ``conf`` (to restart one where its storages
    look for it); pass the ``base_path`` of a stopped tracker to restart it on its saved state.
    """
    base = base_path if base_path is not None else _base_dir(tmp_path, "tracker")
    settings = {**TRACKER_DEFAULTS, "base_path": str(base), **conf}
    conf_path = write_conf(base / "tracker.conf", settings)
    server = ServerProcess("tracker", base, conf_path, args, fixed_port="port" in conf)
    return server.wait_ready() if wait else server


def start_storage(
    tmp_path: Path,
    trackers: Iterable[ServerProcess | str] = (),
    *,
    wait: bool = True,
    base_path: Path | None = None,
    args: Iterable[str] = (),
    **conf: Any,
) -> ServerProcess:
    """Start a storage reporting to ``trackers`` with ``conf`` (storage.conf keys) over quick defaults.

    Pass the ``base_path`` of a stopped storage to restart it on the same files.
    """
    base = base_path if base_path is not None else _base_dir(tmp_path, "storage")
    addresses = [t.address if isinstance(t, ServerProcess) else t for t in trackers]
    settings: dict[str, Any] = {**STORAGE_DEFAULTS, "base_path": str(base), **conf}
    if addresses:
        settings["tracker_server"] = addresses
    conf_path = write_conf(base / "storage.conf", settings)
    server = ServerProcess("storage", base, conf_path, args, fixed_port="port" in conf)
    return server.wait_ready() if wait else server


def wait_for(condition: Any, timeout: float = 15.0, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class WireClient:
    """A raw blocking connection speaking frames: for tests that need exact bytes on the wire."""

    def __init__(self, address: str | tuple[str, int], timeout: float = 10.0) -> None:
        if isinstance(address, str):
            host, _, port = address.rpartition(":")
            address = (host, int(port))
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, count: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < count:
            chunk = self.sock.recv(min(count - len(chunks), 1 << 20))
            if not chunk:
                raise ConnectionError(f"closed after {len(chunks)} of {count} bytes")
            chunks += chunk
        return bytes(chunks)

    def reply(self) -> tuple[int, bytes]:
        """Read one reply: ``(status, body)``."""
        pkg_len, cmd, status = struct.unpack("!qBB", self.recv_exact(10))
        assert cmd == 100, f"reply cmd {cmd}"
        return status, self.recv_exact(pkg_len)

    def call(self, cmd: int, body: bytes = b"", status: int = 0) -> tuple[int, bytes]:
        """Send one request frame and read its reply."""
        self.send(struct.pack("!qBB", len(body), cmd, status) + body)
        return self.reply()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the peer closes the connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
