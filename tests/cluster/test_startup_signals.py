"""SIGTERM and SIGINT at any moment of a server's start-up: a quiet, clean exit (code 0, no traceback).

The moment is taken relative to the first thing the server does, installing its SIGTERM handler
(seen in ``/proc/PID/status``), and then a little later: while its modules load, while its store
opens, while it binds its port, or once it is ready.  A storage stopped that way leaves a store that
passes every check.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from procs import STOP_TIMEOUT, ServerProcess, start_storage, start_tracker, wait_for
from storage_wire import assert_store_clean

#: Seconds after the SIGTERM handler is installed: while modules load, the store opens, the port is bound.
DELAYS = (0.0, 0.03, 0.1, 0.3)


def handles_sigterm(pid: int) -> bool:
    """True once the process catches SIGTERM (Python leaves it at the default action)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def running_command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def start(role: str, tmp_path: Path) -> ServerProcess:
    if role == "tracker":
        return start_tracker(tmp_path, wait=False)
    return start_storage(tmp_path, ["127.0.0.1:9"], wait=False)


def stop_with(server: ServerProcess, signum: int) -> str:
    """Send ``signum``, wait for the exit, check it was clean, return the server's log."""
    server.proc.send_signal(signum)
    try:
        server.proc.wait(STOP_TIMEOUT)
    finally:
        code = server.stop()  # SIGKILL if it did not exit: the assertion below then fails
    log = server.log_text()
    assert code == 0, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    return log


@pytest.mark.parametrize("delay", DELAYS, ids=lambda d: f"{d}s")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("role", ["tracker", "storage"])
def test_stop_signal_during_start_up_exits_cleanly(tmp_path: Path, role: str, signum: int, delay: float) -> None:
    server = start(role, tmp_path)
    wait_for(lambda: handles_sigterm(server.pid) or not server.alive(), message="the signal handlers")
    time.sleep(delay)
    stop_with(server, signum)
    if role == "storage":
        assert_store_clean(server.base_path)


@pytest.mark.parametrize("role", ["tracker", "storage"])
def test_sigterm_right_after_the_process_starts(tmp_path: Path, role: str) -> None:
    """Before Python runs anything, SIGTERM's default action ends the process: silently."""
    server = start(role, tmp_path)
    # Once the child runs Python (before, it is still a copy of this process, with its handlers).
    wait_for(lambda: f"cluster.{role}" in running_command(server.pid), message="the exec")
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(STOP_TIMEOUT)
    code = server.stop()
    log = server.log_text()
    assert code in (0, -signal.SIGTERM), log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("role", ["tracker", "storage"])
def test_a_server_stopped_while_starting_starts_again(tmp_path: Path, role: str) -> None:
    server = start(role, tmp_path)
    wait_for(lambda: handles_sigterm(server.pid) or not server.alive(), message="the signal handlers")
    stop_with(server, signal.SIGINT)
    base = server.base_path
    if role == "tracker":
        again = start_tracker(tmp_path, base_path=base)
    else:
        again = start_storage(tmp_path, ["127.0.0.1:9"], base_path=base)
    with again:
        assert again.port
    assert again.proc.returncode == 0


def test_a_signal_noted_before_the_server_took_over_is_a_stop_request() -> None:
    # What ``python -m cluster.tracker`` / ``cluster.storage`` hand over: the signals their own handlers
    # noted while the modules loaded.  The list is read after StopSignals' handlers are in place.
    from cluster.runtime import StopSignals

    noted: list[int] = []
    with StopSignals(noted) as signals:
        assert not signals.requested
    noted.append(signal.SIGTERM)
    with StopSignals(noted) as signals:
        assert signals.requested
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handlers are back

