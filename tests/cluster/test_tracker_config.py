"""Loading TrackerConfig from tracker.conf files: defaults, FastDFS keys, warnings, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.protocol import StatLayout
from cluster.tracker.config import (
    DownloadServer,
    ReservedSpace,
    StoreLookup,
    StorePath,
    StoreServer,
    TrackerConfig,
    load_tracker_config,
)


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tracker.conf"
    path.write_text(f"base_path = {tmp_path}/base\n" + text)
    return path


def test_defaults_are_fastdfs_defaults(tmp_path: Path) -> None:
    config, warnings = load_tracker_config(_conf(tmp_path, ""))
    assert warnings == []
    assert config.port == 22122 and config.network_timeout == 30 and config.max_connections == 256
    assert config.store_lookup is StoreLookup.MOST_FREE and config.store_server is StoreServer.ROUND_ROBIN
    assert config.store_path is StorePath.ROUND_ROBIN and config.download_server is DownloadServer.ROUND_ROBIN
    assert config.reserved_storage_space == ReservedSpace(0, 0.2, "20%")
    assert config.check_active_interval == 120 and config.storage_sync_file_max_delay == 86400
    assert config.stat_layout is StatLayout.V6_15 and config.max_pkg_size == 64 * 1024


def test_a_full_fastdfs_style_file(tmp_path: Path) -> None:
    text = """
# a FastDFS tracker.conf
disabled = false
bind_addr = 127.0.0.1
port = 22200
connect_timeout = 5
network_timeout = 60
max_connections = 1024
accept_threads = 1
work_threads = 4
store_lookup = 1
store_group = group2
store_server = 2
store_path = 2
download_server = 1
reserved_storage_space = 2G
log_level = info
run_by_group =
use_trunk_file = false
trunk_file_size = 64MB
use_storage_id = false
http.server_port = 8080
check_active_interval = 0.5
storage_sync_file_max_delay = 1h
stat_layout = 6.10
max_pkg_size = 128K
"""
    config, warnings = load_tracker_config(_conf(tmp_path, text))
    assert warnings == []
    assert (config.bind_addr, config.port, config.max_connections) == ("127.0.0.1", 22200, 1024)
    assert config.store_lookup is StoreLookup.SPECIFIED_GROUP and config.store_group == "group2"
    assert config.store_server is StoreServer.BY_PRIORITY and config.store_path is StorePath.MOST_FREE
    assert config.download_server is DownloadServer.SOURCE_FIRST
    assert config.reserved_storage_space.mb == 2048 and config.reserved_storage_space.ratio is None
    assert config.check_active_interval == 0.5 and config.storage_sync_file_max_delay == 3600
    assert config.stat_layout is StatLayout.V6_10 and config.max_pkg_size == 128 * 1024


def test_unknown_keys_are_warned_about(tmp_path: Path) -> None:
    _, warnings = load_tracker_config(_conf(tmp_path, "stor_lookup = 1\n"))
    assert len(warnings) == 1 and "stor_lookup" in warnings[0]


def test_overrides_win(tmp_path: Path) -> None:
    config, _ = load_tracker_config(_conf(tmp_path, "port = 22200\n"), port=0, bind_addr=None)
    assert config.port == 0


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("port = 70000", "port"),
        ("port = x", "port"),
        ("store_lookup = 3", "store_lookup"),
        ("store_server = -1", "store_server"),
        ("store_path = 1", "store_path"),
        ("download_server = 2", "download_server"),
        ("reserved_storage_space = 120%", "reserved_storage_space"),
        ("reserved_storage_space = lots", "reserved_storage_space"),
        ("check_active_interval = 0", "check_active_interval"),
        ("network_timeout = soon", "network_timeout"),
        ("stat_layout = 6.12", "stat_layout"),
        ("max_pkg_size = 12", "max_pkg_size"),
        ("max_connections = 0", "max_connections"),
        ("store_group = bad/name", "store_group"),
        ("store_lookup = 1", "store_group"),
    ],
    ids=lambda v: v.replace(" ", "") if isinstance(v, str) else str(v),
)
def test_bad_values_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_tracker_config(_conf(tmp_path, line + "\n"))


def test_base_path_is_required(tmp_path: Path) -> None:
    path = tmp_path / "tracker.conf"
    path.write_text("port = 1\n")
    with pytest.raises(ConfigError, match="base_path"):
        load_tracker_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tracker_config(tmp_path / "missing.conf")


def test_reserved_space_rules() -> None:
    ratio = ReservedSpace.parse("10%")
    assert ratio.has_room(1000, 101) and not ratio.has_room(1000, 100) and not ratio.has_room(0, 0)
    absolute = ReservedSpace.parse("100M")
    assert absolute.mb == 100 and absolute.has_room(0, 101) and not absolute.has_room(0, 100)
    assert absolute.has_room(0, 51, path_count=2) and not absolute.has_room(0, 50, path_count=2)
    assert ratio.reserved_mb(2000) == 200 and absolute.reserved_mb(2000) == 100


def test_parameters_for_storages(tmp_path: Path) -> None:
    config = TrackerConfig(base_path=str(tmp_path), check_active_interval=0.5, storage_sync_file_max_delay=600)
    params = dict(config.storage_parameters())
    assert params["check_active_interval"] == "0.5" and params["storage_sync_file_max_delay"] == "600"
    assert params["reserved_storage_space"] == "20%" and params["use_storage_id"] == "false"
    assert params["store_path"] == "0"
