"""The ``trunkstore`` command: the bundled cluster's life cycle, the file commands, the monitor, usage errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUERY_STORE_WITHOUT_GROUP_ONE
from procs import WireClient, wait_for

from cluster.cli import bundle, monitor
from cluster.errors import ConfigError
from cluster.protocol import GroupStat, StorageStat, StorageStats, StorageStatus

ROOT = Path(__file__).resolve().parents[2]
FREE_PORTS = ("--tracker-port", "0", "--storage-port", "0")


def trunkstore(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        cwd=ROOT,
        capture_output=True,
        input=stdin,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_writable(address: str) -> None:
    def writable() -> bool:
        with WireClient(address) as wire:
            return wire.call(QUERY_STORE_WITHOUT_GROUP_ONE)[0] == 0

    wait_for(writable, timeout=30, message="the storage to be offered for uploads")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A detached bundled cluster shared by the file-command tests; its directory."""
    directory = tmp_path_factory.mktemp("cli-bundle")
    started = trunkstore("cluster", "up", "--dir", str(directory), "--detach", *FREE_PORTS, "--sync-mode", "none")
    assert started.returncode == 0, started.stderr
    loaded = bundle.Bundle.load(directory)
    assert loaded is not None
    wait_writable(loaded.trackers[0].address)
    try:
        yield directory
    finally:
        trunkstore("cluster", "down", "--dir", str(directory))


# ---- the bundled cluster ------------------------------------------------------------------------------
def test_foreground_cluster_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "cluster", "up", "--dir", str(tmp_path), *FREE_PORTS,
         "--trackers", "2", "--groups", "2", "--sync-mode", "none"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("press Ctrl-C"):
                break
        assert any(line.startswith("cluster ready: 2 tracker(s), 2 storage(s)") for line in lines), lines
        loaded = bundle.Bundle.load(tmp_path)
        assert loaded is not None and len(loaded.servers) == 4
        assert {s.group for s in loaded.storages} == {"group1", "group2"}
        assert all(pid_alive(s.pid) for s in loaded.servers)
        os.kill(proc.pid, signal.SIGINT)
        rest, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leftover = bundle.Bundle.load(tmp_path)
        if leftover is not None:
            bundle.stop(leftover)  # whatever happened above, no server outlives the test
    assert proc.returncode == 0, errors
    assert "stopped 4 server(s)" in rest
    assert not loaded.running()


def test_ctrl_c_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "cluster", "up", "--dir", str(tmp_path), *FREE_PORTS,
         "--trackers", "2", "--sync-mode", "none"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Interrupt once the first server's directory exists: start-up is under way.
        wait_for(lambda: (tmp_path / "tracker0" / "server.log").exists(), timeout=30, message="start-up")
        os.kill(proc.pid, signal.SIGINT)
        out, errors = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leftover = bundle.Bundle.load(tmp_path)
        if leftover is not None:
            bundle.stop(leftover)
    assert proc.returncode == 130, errors
    assert "interrupted during start-up" in out
    started = bundle.Bundle.load(tmp_path)
    assert started is not None and not started.running()
    assert not any(pid_alive(s.pid) and bundle.process_matches(s) for s in started.servers)


def test_detached_cluster_status_refuses_a_second_start_and_goes_down(tmp_path: Path) -> None:
    started = trunkstore("cluster", "up", "--dir", str(tmp_path), "--detach", *FREE_PORTS, "--sync-mode", "none")
    assert started.returncode == 0, started.stderr
    assert "cluster ready" in text(started)
    try:
        status = trunkstore("cluster", "status", "--dir", str(tmp_path))
        assert status.returncode == 0
        assert text(status).count("running") == 2
        again = trunkstore("cluster", "up", "--dir", str(tmp_path), "--detach", *FREE_PORTS)
        assert again.returncode == 1
        assert b"already running" in again.stderr
    finally:
        down = trunkstore("cluster", "down", "--dir", str(tmp_path))
    assert down.returncode == 0 and "stopped 2 server(s)" in text(down)
    assert text(trunkstore("cluster", "down", "--dir", str(tmp_path))).strip() == "nothing was running"
    status = trunkstore("cluster", "status", "--dir", str(tmp_path))
    assert status.returncode == 1 and text(status).count("stopped") == 2


def test_restart_in_the_same_directory_keeps_ports_and_files(tmp_path: Path) -> None:
    first = trunkstore("cluster", "up", "--dir", str(tmp_path), "--detach", *FREE_PORTS, "--sync-mode", "none")
    assert first.returncode == 0, first.stderr
    loaded = bundle.Bundle.load(tmp_path)
    assert loaded is not None
    ports = [s.port for s in loaded.servers]
    try:
        wait_writable(loaded.trackers[0].address)
        file_id = text(trunkstore("upload", "-", "--dir", str(tmp_path), stdin=b"kept across restarts")).strip()
    finally:
        trunkstore("cluster", "down", "--dir", str(tmp_path))
    second = trunkstore("cluster", "up", "--dir", str(tmp_path), "--detach", *FREE_PORTS, "--sync-mode", "none")
    assert second.returncode == 0, second.stderr
    try:
        reloaded = bundle.Bundle.load(tmp_path)
        assert reloaded is not None and [s.port for s in reloaded.servers] == ports
        wait_for(
            lambda: trunkstore("download", file_id, "-", "--dir", str(tmp_path)).stdout == b"kept across restarts",
            timeout=30,
            message="the file to be readable after the restart",
        )
    finally:
        trunkstore("cluster", "down", "--dir", str(tmp_path))


def test_down_never_signals_a_pid_that_runs_something_else(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = bundle.ServerRecord("tracker", "tracker0", sleeper.pid, "127.0.0.1", 1, str(tmp_path / "t.conf"), "")
        bundle.Bundle(tmp_path, [record]).save()
        assert bundle.down(tmp_path) == []
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storages", "1", "--groups", "2"], "--storages"),
        (["--storages", "257"], "--storages"),
        (["--trackers", "0"], "--trackers"),
        (["--tracker-port", "80"], "--tracker-port"),
    ],
    ids=["fewer-storages-than-groups", "too-many-storages", "no-tracker", "privileged-port"],
)
def test_bad_cluster_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = trunkstore("cluster", "up", "--dir", str(tmp_path), "--detach", *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert not (tmp_path / bundle.STATE_FILE).exists()


def test_spec_validation() -> None:
    with pytest.raises(ConfigError):
        bundle.BundleSpec(Path("x"), sync_mode="sometimes")
    with pytest.raises(ConfigError):
        bundle.BundleSpec(Path("x"), stat_layout="5.0")


# ---- file commands -----------------------------------------------------------------------------------
def test_upload_info_meta_download_delete(running: Path, tmp_path: Path) -> None:
    source = tmp_path / "photo.jpeg"
    data = os.urandom(100_000)
    source.write_bytes(data)
    where = ("--dir", str(running))
    uploaded = trunkstore("upload", str(source), "--meta", "width=160", "--meta", "height=80", *where)
    assert uploaded.returncode == 0, uploaded.stderr
    file_id = text(uploaded).strip()
    assert file_id.startswith("group1/M00/") and file_id.endswith(".jpeg")

    info = text(trunkstore("info", file_id, *where))
    assert "file size: 100000" in info and "type: trunk" in info and "source ip address: 127.0.0.1" in info

    assert text(trunkstore("meta", file_id, *where)).splitlines() == ["height=80", "width=160"]
    assert trunkstore("meta", file_id, "width=200", "--merge", *where).returncode == 0
    assert text(trunkstore("meta", file_id, *where)).splitlines() == ["height=80", "width=200"]

    assert trunkstore("download", file_id, "-", *where).stdout == data
    dest = tmp_path / "copy.jpeg"
    downloaded = trunkstore("download", file_id, str(dest), "--offset", "10", "--length", "100", *where)
    assert downloaded.returncode == 0 and dest.read_bytes() == data[10:110]

    deleted = trunkstore("delete", file_id, *where)
    assert deleted.returncode == 0 and "deleted" in text(deleted)
    gone = trunkstore("info", file_id, *where)
    assert gone.returncode == 1 and b"ENOENT" in gone.stderr
    assert trunkstore("delete", file_id, *where).returncode == 1


def test_appender_upload_and_append(running: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(b"one\n")
    second.write_bytes(os.urandom(2 << 20))
    file_id = text(trunkstore("upload", str(first), "--appender", "--dir", str(running))).strip()
    assert "type: appender" in text(trunkstore("info", file_id, "--dir", str(running)))
    assert trunkstore("append", file_id, str(second), "--dir", str(running)).returncode == 0
    assert trunkstore("download", file_id, "-", "--dir", str(running)).stdout == b"one\n" + second.read_bytes()


def test_trackers_from_option_and_environment(running: Path) -> None:
    loaded = bundle.Bundle.load(running)
    assert loaded is not None
    tracker = loaded.trackers[0].address
    by_option = trunkstore("upload", "-", "--ext", "txt", "--tracker", tracker, "--dir", "/nonexistent", stdin=b"x")
    assert by_option.returncode == 0 and text(by_option).strip().endswith(".txt")
    by_env = trunkstore("upload", "-", "--dir", "/nonexistent", stdin=b"y", env={"TRUNKSTORE_TRACKER": tracker})
    assert by_env.returncode == 0
    nowhere = trunkstore("upload", "-", "--tracker", "127.0.0.1:1", "--dir", "/nonexistent", stdin=b"z")
    assert nowhere.returncode == 1 and nowhere.stderr.startswith(b"trunkstore: ")


def test_monitor_shows_groups_and_storages(running: Path) -> None:
    result = trunkstore("monitor", "--dir", str(running))
    assert result.returncode == 0, result.stderr
    out = text(result)
    assert "group count: 1" in out and "group name = group1" in out
    assert "ip_addr = 127.0.0.1  ACTIVE" in out and "total_upload_count = " in out
    missing = trunkstore("monitor", "--group", "nosuch", "--dir", str(running))
    assert missing.returncode == 1


def test_usage_errors_exit_2(running: Path) -> None:
    assert trunkstore().returncode == 2
    bad_meta = trunkstore("meta", "group1/M00/00/00/x.txt", "novalue", "--dir", str(running))
    assert bad_meta.returncode == 2 and b"KEY=VALUE" in bad_meta.stderr
    assert trunkstore("tracker", "--conf", "/nonexistent/tracker.conf").returncode == 2
    assert trunkstore("storage", "--conf", "/nonexistent/storage.conf").returncode == 2


# ---- the monitor's rendering -------------------------------------------------------------------------
def test_monitor_render_lists_every_storage_counter() -> None:
    group = GroupStat("group1", total_mb=1000, free_mb=400, storage_count=1, storage_port=23000, active_count=1)
    storage = StorageStat(
        StorageStatus.ACTIVE, "127.0.0.1", "127.0.0.1", storage_port=23000,
        stats=StorageStats(total_upload_count=7, success_upload_count=6, last_heart_beat_time=0),
    )  # fmt: skip
    out = monitor.render("127.0.0.1:22122", [group], {"group1": [storage]})
    assert out.startswith("tracker server is 127.0.0.1:22122\n")
    assert "disk total space = 1,000 MB" in out and "active server count = 1" in out
    assert "\t\ttotal_upload_count = 7\n" in out and "\t\tsuccess_upload_count = 6\n" in out
    assert "\t\tlast_heart_beat_time = 1970-01-01 00:00:00" in out
