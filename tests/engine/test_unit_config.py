"""StoreConfig validation and loading from FastDFS-style .conf text."""

from __future__ import annotations

import os

import pytest

from trunkstore.conffile import parse_bool, parse_conf_text, parse_float, parse_int, parse_size, read_conf, single
from trunkstore.config import STORE_CONF_KEYS, StoreConfig
from trunkstore.errors import ConfigError, InvalidArgument

MIB = 1 << 20


def test_defaults_are_valid_and_fastdfs_like() -> None:
    config = StoreConfig()
    assert config.group_name == "group1"
    assert config.subdir_count_per_path == 256
    assert config.slot_min_size == 256
    assert config.slot_max_size == 16 * MIB
    assert config.trunk_file_size == 64 * MIB
    assert config.file_distribute_rotate_count == 100
    assert config.source == 0x7F000001
    assert config.format_record() == {
        "group_name": "group1",
        "store_path_count": 1,
        "subdir_count_per_path": 256,
        "trunk_file_size": 64 * MIB,
    }


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, InvalidArgument)


BAD_VALUES = [
    ("storage_id", 0),
    ("storage_id", -1),
    ("storage_id", 1 << 32),
    ("store_path_count", 0),
    ("store_path_count", 257),
    ("subdir_count_per_path", 0),
    ("subdir_count_per_path", 257),
    ("file_distribute_path_mode", 2),
    ("file_distribute_path_mode", -1),
    ("file_distribute_rotate_count", 0),
    ("store_path_mode", 1),
    ("store_path_mode", 3),
    ("trunk_file_size", 4 * MIB - 1),
    ("trunk_file_size", 1 << 32),
    ("slot_min_size", 24),
    ("slot_min_size", 64 * 1024 + 1),
    ("slot_max_size", 255),
    ("slot_max_size", 32 * MIB + 1),
    ("trunk_alloc_alignment_size", -1),
    ("trunk_alloc_alignment_size", 64 * 1024 + 1),
    ("sync_mode", "sometimes"),
    ("sync_mode", "ALWAYS"),
    ("sync_interval", 0),
    ("sync_interval", -1.0),
    ("snapshot_every", 0),
    ("trunk_id_start", 0),
    ("trunk_id_start", 1 << 31),
    ("trunk_id_step", 0),
    ("trunk_id_step", 1 << 16),
    ("reserved_storage_space", "lots"),
    ("reserved_storage_space", "100%"),
    ("reserved_storage_space", "-1%"),
    ("reserved_storage_space", "x%"),
    ("reserved_storage_space", "nan%"),
    ("reserved_storage_space", "1.5G"),
    ("reserved_storage_space", ""),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_value_raises_config_error(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        StoreConfig(**{key: value})
    assert isinstance(info.value, ValueError)


def test_store_paths_must_match_count() -> None:
    with pytest.raises(ConfigError):
        StoreConfig(store_path_count=2, store_paths=("/a",))
    with pytest.raises(ConfigError):
        StoreConfig(store_paths=("/a", "/b"))
    assert StoreConfig(store_path_count=2, store_paths=("/a", "/b")).store_path_dirs("/root") == ["/a", "/b"]


def test_slot_max_size_bound_follows_trunk_file_size() -> None:
    assert StoreConfig(trunk_file_size=4 * MIB, slot_max_size=2 * MIB).slot_max_size == 2 * MIB
    with pytest.raises(ConfigError):
        StoreConfig(trunk_file_size=4 * MIB)  # default slot_max_size 16MB > 4MB / 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("storage_id", 1),
        ("storage_id", (1 << 32) - 1),
        ("store_path_count", 256),
        ("subdir_count_per_path", 1),
        ("file_distribute_path_mode", 1),
        ("store_path_mode", 2),
        ("slot_min_size", 25),
        ("trunk_alloc_alignment_size", 64 * 1024),
        ("trunk_file_size", (1 << 32) - 1),
        ("sync_mode", "none"),
        ("sync_mode", "interval"),
        ("reserved_storage_space", "0%"),
        ("reserved_storage_space", "99.5%"),
        ("reserved_storage_space", "2G"),
        ("reserved_storage_space", "0"),
    ],
)
def test_boundary_values_accepted(key: str, value: object) -> None:
    assert getattr(StoreConfig(**{key: value}), key) == value


@pytest.mark.parametrize(("key", "value"), [("group_name", "group/1"), ("group_name", ""), ("storage_ip", "1.2.3")])
def test_bad_identity_raises_config_error(key: str, value: str) -> None:
    with pytest.raises(ConfigError):
        StoreConfig(**{key: value})


@pytest.mark.parametrize(("key", "value"), [("group_name", "group/1"), ("group_name", "g" * 17), ("storage_ip", "x")])
def test_bad_identity_raises_value_error(key: str, value: str) -> None:
    with pytest.raises(ValueError):
        StoreConfig(**{key: value})


def test_reserved_bytes() -> None:
    assert StoreConfig(reserved_storage_space="10%").reserved_bytes(1000) == 100
    assert StoreConfig(reserved_storage_space=" 25 % ").reserved_bytes(1000) == 250
    assert StoreConfig(reserved_storage_space="2G").reserved_bytes(1000) == 2 << 30
    assert StoreConfig(reserved_storage_space="256K").reserved_bytes(1 << 40) == 256 << 10


def test_storage_id_becomes_source() -> None:
    assert StoreConfig(storage_id=100001).source == 100001
    assert StoreConfig(storage_ip="10.0.0.7").source == 0x0A000007


def test_config_is_frozen_and_replace_validates() -> None:
    config = StoreConfig()
    with pytest.raises(AttributeError):
        config.group_name = "x"  # type: ignore[misc]
    assert config.replace(group_name="group2").group_name == "group2"
    with pytest.raises(ConfigError):
        config.replace(subdir_count_per_path=0)


def test_store_path_dirs_default(tmp_path: object) -> None:
    root = str(tmp_path)
    dirs = StoreConfig(store_path_count=3).store_path_dirs(root)
    assert dirs == [os.path.join(root, name) for name in ("M00", "M01", "M02")]


# ---- .conf text ------------------------------------------------------------------------------------------
STORAGE_CONF = """
# storage.conf in FastDFS's style
disabled = false
group_name = group2
port = 23000
base_path = /var/fdfs

store_path_count = 3
store_path0 = /data/disk0
store_path1 = /data/disk1
store_path2=/data/disk2

subdir_count_per_path = 16
file_distribute_path_mode = 1
file_distribute_rotate_count = 50
tracker_server = 10.0.0.1:22122
tracker_server = 10.0.0.2:22122
use_trunk_file = true
slot_min_size = 512
slot_max_size = 1MB
trunk_file_size = 64MB
trunk_alloc_alignment_size = 256
reserved_storage_space = 20%
sync_interval = 0.25
sync_mode = interval
dedup = yes
verify_crc_on_read = off
snapshot_every = 1000
"""


def test_load_fastdfs_style_conf_text() -> None:
    values = parse_conf_text(STORAGE_CONF)
    assert values["tracker_server"] == ["10.0.0.1:22122", "10.0.0.2:22122"]
    config = StoreConfig.from_values(values)
    assert config.group_name == "group2"
    assert config.store_path_count == 3
    assert config.store_paths == ("/data/disk0", "/data/disk1", "/data/disk2")
    assert config.subdir_count_per_path == 16
    assert config.file_distribute_path_mode == 1
    assert config.file_distribute_rotate_count == 50
    assert config.use_trunk_file is True
    assert config.slot_min_size == 512
    assert config.slot_max_size == MIB
    assert config.trunk_file_size == 64 * MIB
    assert config.trunk_alloc_alignment_size == 256
    assert config.reserved_storage_space == "20%"
    assert config.sync_interval == 0.25
    assert config.sync_mode == "interval"
    assert config.dedup is True
    assert config.verify_crc_on_read is False
    assert config.snapshot_every == 1000


def test_load_conf_file_with_overrides(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "storage.conf")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(STORAGE_CONF)
    config = StoreConfig.from_conf(path, group_name="group9", dedup=False)
    assert config.group_name == "group9" and config.dedup is False
    assert config.store_paths == ("/data/disk0", "/data/disk1", "/data/disk2")
    assert read_conf(path) == parse_conf_text(STORAGE_CONF)


def test_missing_conf_file_raises(tmp_path: object) -> None:
    with pytest.raises(ConfigError):
        read_conf(os.path.join(str(tmp_path), "missing.conf"))


def test_later_value_overrides_earlier() -> None:
    config = StoreConfig.from_values(parse_conf_text("trunk_file_size = 8MB\nslot_max_size=1M\ntrunk_file_size = 32MB"))
    assert config.trunk_file_size == 32 * MIB


def test_empty_conf_gives_defaults() -> None:
    assert StoreConfig.from_values(parse_conf_text("# nothing\n\n")) == StoreConfig()


@pytest.mark.parametrize(
    "text",
    [
        "store_path_count = 2\nstore_path0 = /a",
        "store_path_count = 2\nstore_path1 = /b",
        "store_path_count = 2\nstore_path0 = /a\nstore_path1 =",
    ],
)
def test_incomplete_store_paths_raise(text: str) -> None:
    with pytest.raises(ConfigError):
        StoreConfig.from_values(parse_conf_text(text))


def test_single_store_path0() -> None:
    config = StoreConfig.from_values(parse_conf_text("store_path0 = /srv/fdfs"))
    assert config.store_paths == ("/srv/fdfs",)


@pytest.mark.parametrize(
    "text",
    [
        "trunk_file_size = 64XB",
        "trunk_file_size = 1.5G",
        "trunk_file_size = -4MB",
        "slot_min_size = lots",
        "store_path_count = two",
        "use_trunk_file = maybe",
        "sync_interval = soon",
        "subdir_count_per_path = 1000",
        "sync_mode = sometimes",
        "trunk_file_size = 1MB",
    ],
)
def test_bad_conf_values_raise_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        StoreConfig.from_values(parse_conf_text(text))


@pytest.mark.parametrize("line", ["just words", "= value", "  =  "])
def test_bad_conf_lines_raise(line: str) -> None:
    with pytest.raises(ConfigError, match=":2:"):
        parse_conf_text(f"a = 1\n{line}\n", "storage.conf")


def test_conf_text_details() -> None:
    values = parse_conf_text("  # comment\nkey=a=b\n  spaced   =   value with spaces  \nempty =\n")
    assert values == {"key": ["a=b"], "spaced": ["value with spaces"], "empty": [""]}
    assert single(values, "key") == "a=b"
    assert single(values, "missing") is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("4096", 4096),
        ("256K", 256 << 10),
        ("256KB", 256 << 10),
        ("64MB", 64 << 20),
        ("64mb", 64 << 20),
        ("64 MB", 64 << 20),
        ("1G", 1 << 30),
        ("2T", 2 << 40),
        (" 7B ", 7),
        ("0", 0),
    ],
)
def test_parse_size(text: str, want: int) -> None:
    assert parse_size(text) == want


@pytest.mark.parametrize("text", ["", "MB", "1.5M", "64XB", "-1", "1 2", "10%", "0x10"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_parse_bool_int_float() -> None:
    for text in ("true", "YES", "on", "1", " True "):
        assert parse_bool(text) is True
    for text in ("false", "no", "OFF", "0"):
        assert parse_bool(text) is False
    for bad in ("", "2", "y"):
        with pytest.raises(ConfigError):
            parse_bool(bad)
    assert parse_int(" 42 ") == 42
    assert parse_float("0.5") == 0.5
    with pytest.raises(ConfigError):
        parse_int("4.2")
    with pytest.raises(ConfigError):
        parse_float("half")


def test_store_conf_keys() -> None:
    assert {"group_name", "trunk_file_size", "store_path0", "store_path255"} <= STORE_CONF_KEYS
    assert "tracker_server" not in STORE_CONF_KEYS
