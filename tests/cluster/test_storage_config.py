"""StorageConfig from FastDFS storage.conf files, and the command line's handling of bad ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from procs import write_conf

from cluster.errors import ConfigError
from cluster.protocol import Address
from cluster.storage import StorageConfig, main
from trunkstore.conffile import parse_conf_text

REPO = Path(__file__).resolve().parents[2]

FASTDFS_SAMPLE = """
disabled = false
group_name = group1
bind_addr =
client_bind = true
port = 23000
connect_timeout = 5s
network_timeout = 60s
heart_beat_interval = 30s
stat_report_interval = 60s
base_path = {base}
max_connections = 1024
buff_size = 256KB
accept_threads = 1
work_threads = 4
disk_rw_separated = true
disk_reader_threads = 1
disk_writer_threads = 1
sync_wait_msec = 50
sync_interval = 0
sync_start_time = 00:00
sync_end_time = 23:59
write_mark_file_freq = 500
disk_recovery_threads = 3
store_path_count = 1
store_path0 = {base}
subdir_count_per_path = 256
tracker_server = 192.168.209.121:22122
tracker_server = 192.168.209.122:22122
log_level = info
run_by_group =
run_by_user =
allow_hosts = *
file_distribute_path_mode = 0
file_distribute_rotate_count = 100
fsync_after_written_bytes = 0
sync_log_buff_interval = 1
sync_binlog_buff_interval = 1
sync_stat_file_interval = 300
thread_stack_size = 512KB
upload_priority = 10
if_alias_prefix =
check_file_duplicate = 0
file_signature_method = hash
key_namespace = FastDFS
keep_alive = 0
use_access_log = false
rotate_access_log = false
access_log_rotate_time = 00:00
compress_old_access_log = false
compress_access_log_days_before = 7
rotate_error_log = false
error_log_rotate_time = 00:00
compress_old_error_log = false
compress_error_log_days_before = 7
rotate_access_log_size = 0
rotate_error_log_size = 0
log_file_keep_days = 0
file_sync_skip_invalid_record = false
use_connection_pool = true
connection_pool_max_idle_time = 3600
compress_binlog = true
compress_binlog_time = 01:30
check_store_path_mark = true
http.domain_name =
http.server_port = 8888
"""


def load(text: str, **overrides: object) -> tuple[StorageConfig, list[str]]:
    return StorageConfig.from_values(parse_conf_text(text), source="test.conf", **overrides)


def test_defaults_are_fastdfs_and_durable(tmp_path: Path) -> None:
    config, warnings = load(f"base_path = {tmp_path}")
    assert warnings == []
    assert (config.port, config.network_timeout, config.heart_beat_interval) == (23000, 30.0, 30.0)
    assert (config.stat_report_interval, config.max_connections, config.tracker_servers) == (60.0, 256, ())
    assert config.store.sync_mode == "always"
    assert config.store.store_paths == (str(tmp_path),)  # store_path0 defaults to base_path
    assert config.group_name == "group1" and config.listen_host == "0.0.0.0"


def test_a_stock_fastdfs_storage_conf_loads_without_warnings(tmp_path: Path) -> None:
    config, warnings = load(FASTDFS_SAMPLE.format(base=tmp_path))
    assert warnings == []
    assert config.tracker_servers == (Address("192.168.209.121", 22122), Address("192.168.209.122", 22122))
    assert (config.connect_timeout, config.network_timeout, config.max_connections) == (5.0, 60.0, 1024)
    assert config.store.sync_interval == 1.0  # FastDFS's sync_interval (ms, to peers) is not the engine's


def test_trunkstore_keys(tmp_path: Path) -> None:
    text = f"""base_path = {tmp_path}
sync_mode = interval
store_sync_interval = 0.25
dedup = true
max_pkg_size = 1MB
max_upload_size = 2GB
heart_beat_interval = 500ms
tracker_server = tracker.example
trunk_file_size = 8MB
"""
    config, warnings = load(text)
    assert warnings == []
    assert config.store.sync_mode == "interval" and config.store.sync_interval == 0.25 and config.store.dedup
    assert (config.max_pkg_size, config.max_upload_size) == (1 << 20, 2 << 30)
    assert config.heart_beat_interval == 0.5
    assert config.tracker_servers == (Address("tracker.example", 22122),)
    assert config.store.slot_max_size == 4 << 20  # the default gives way to a small trunk_file_size


def test_unknown_keys_are_warned_about(tmp_path: Path) -> None:
    _, warnings = load(f"base_path = {tmp_path}\nport_number = 1\nheart_beat_intervall = 3")
    assert len(warnings) == 2 and "port_number" in warnings[0] and "heart_beat_intervall" in warnings[1]


@pytest.mark.parametrize(
    "line",
    [
        "port = abc",
        "port = 70000",
        "max_connections = 0",
        "network_timeout = 0",
        "heart_beat_interval = -1",
        "sync_mode = sometimes",
        "tracker_server = host:port",
        "tracker_server = ::1:22122",
        "tracker_server = [::1",
        "tracker_server = []:22122",
        "tracker_server = [::1]x",
        "subdir_count_per_path = 1000",
        "max_pkg_size = 10",
        "disabled = maybe",
        "group_name = group with spaces",
    ],
)
def test_bad_values_are_refused(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError, match=r"test\.conf"):
        load(f"base_path = {tmp_path}\n{line}")


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("[::1]:22123", Address("::1", 22123)),
        ("[fe80::1]", Address("fe80::1", 22122)),
        ("10.0.0.1", Address("10.0.0.1", 22122)),
        (" tracker.example:22000 ", Address("tracker.example", 22000)),
    ],
    ids=["ipv6-port", "ipv6-default-port", "ipv4-default-port", "name-port"],
)
def test_tracker_addresses(tmp_path: Path, text: str, address: Address) -> None:
    config, _ = load(f"base_path = {tmp_path}\ntracker_server = {text}")
    assert config.tracker_servers == (address,)


def test_base_path_is_required() -> None:
    with pytest.raises(ConfigError, match="base_path"):
        load("port = 23000")


def test_command_line_overrides(tmp_path: Path) -> None:
    config, _ = StorageConfig.load(write_conf(tmp_path / "s.conf", {"base_path": tmp_path}), port=0, bind_addr="::1")
    assert (config.port, config.bind_addr) == (0, "::1")


def run_storage(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.storage", "--conf", str(conf), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"max_connections": "none"}, "max_connections"), ({"disabled": "true"}, "disabled"), ({}, "base_path")],
    ids=["bad-value", "disabled", "no-base-path"],
)
def test_bad_conf_exits_2_with_one_line(tmp_path: Path, settings: dict[str, str], message: str) -> None:
    base = {} if message == "base_path" else {"base_path": tmp_path}
    result = run_storage(write_conf(tmp_path / "storage.conf", {**base, **settings}))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_missing_conf_file_exits_2(tmp_path: Path) -> None:
    assert main(["--conf", str(tmp_path / "absent.conf")]) == 2
