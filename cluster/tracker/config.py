"""The tracker's configuration: :class:`TrackerConfig`, loaded from a FastDFS ``tracker.conf``.

Key names are FastDFS's where FastDFS has the setting; ``stat_layout`` and ``max_pkg_size`` are
trunkstore's own.  Keys FastDFS defines that have no meaning here (threads, logging, trunk
settings, HTTP ...) are accepted quietly; any other unknown key is reported as a warning.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.conf import ConfKey, as_int, as_seconds, as_size, as_str, load_settings, read_conf_file
from cluster.errors import ConfigError
from cluster.protocol import StatLayout

MB = 1 << 20


class StoreLookup(enum.IntEnum):
    """``store_lookup``: how an upload without a group picks its group."""

    ROUND_ROBIN = 0
    SPECIFIED_GROUP = 1
    MOST_FREE = 2


class StoreServer(enum.IntEnum):
    """``store_server``: which storage of the group takes an upload."""

    ROUND_ROBIN = 0
    FIRST_BY_IP = 1
    BY_PRIORITY = 2


class StorePath(enum.IntEnum):
    """``store_path``: which store path of the storage (the reply's store_path_index)."""

    ROUND_ROBIN = 0
    MOST_FREE = 2


class DownloadServer(enum.IntEnum):
    """``download_server``: which storage a download goes to."""

    ROUND_ROBIN = 0
    SOURCE_FIRST = 1


@dataclass(frozen=True, slots=True)
class ReservedSpace:
    """``reserved_storage_space``: an absolute size in MB, or a fraction of each storage's total.

    ``text`` is the setting as written, handed to storages in the parameter reply.
    """

    mb: int = 0
    ratio: float | None = None
    text: str = "0"

    @classmethod
    def parse(cls, text: str, key: str = "reserved_storage_space") -> ReservedSpace:
        stripped = text.strip()
        if stripped.endswith("%"):
            try:
                percent = float(stripped[:-1])
            except ValueError:
                raise ConfigError(f"{key}: {text!r} is not a percentage") from None
            if not 0 <= percent < 100:
                raise ConfigError(f"{key}: {text!r} must be 0% .. 100%")
            return cls(0, percent / 100.0, stripped)
        return cls(as_size(stripped, key) // MB, None, stripped)

    def has_room(self, total_mb: int, free_mb: int, path_count: int = 1) -> bool:
        """FastDFS's test: free above the reserve (in MB split evenly over ``path_count`` paths),
        or free/total above the ratio.  Nothing reported yet (``total_mb`` 0) has no room."""
        if self.ratio is None:
            return free_mb > self.mb / path_count
        if total_mb <= 0:
            return False
        return free_mb / total_mb > self.ratio

    def reserved_mb(self, total_mb: int) -> int:
        return self.mb if self.ratio is None else int(total_mb * self.ratio)


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Everything a tracker is told; the defaults are FastDFS's ``tracker.conf`` defaults."""

    #: Directory of the saved state (``data/tracker_state.json``); created if missing.  Required.
    base_path: str
    #: Address to listen on; empty means every interface.
    bind_addr: str = ""
    port: int = 22122
    #: Seconds: kept for FastDFS compatibility (a tracker does not connect out).
    connect_timeout: float = 10.0
    #: Seconds a connection may stall mid-request (or say nothing at all) before it is closed.
    network_timeout: float = 30.0
    max_connections: int = 256
    store_lookup: StoreLookup = StoreLookup.MOST_FREE
    #: The group of ``store_lookup = 1``.
    store_group: str = ""
    store_server: StoreServer = StoreServer.ROUND_ROBIN
    store_path: StorePath = StorePath.ROUND_ROBIN
    download_server: DownloadServer = DownloadServer.ROUND_ROBIN
    reserved_storage_space: ReservedSpace = field(default_factory=lambda: ReservedSpace(0, 0.2, "20%"))
    #: Seconds without a beat after which an ACTIVE storage is OFFLINE (fractions allowed).
    check_active_interval: float = 120.0
    #: Seconds within which a new file may not yet have reached every storage of its group.
    storage_sync_file_max_delay: float = 86400.0
    #: Layout of the LIST_* replies: FastDFS >= 6.15 (its fdfs_monitor) or <= 6.10 (the PyPI clients).
    stat_layout: StatLayout = StatLayout.V6_15
    #: Largest request body accepted; a longer announced one closes the connection unread.
    max_pkg_size: int = 64 * 1024

    def __post_init__(self) -> None:
        if not self.base_path:
            raise ConfigError("base_path is required")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port: {self.port} out of range 0 .. 65535")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections: {self.max_connections} must be at least 1")
        for name in ("connect_timeout", "network_timeout", "check_active_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: {getattr(self, name)} must be positive")
        if self.storage_sync_file_max_delay < 0:
            raise ConfigError("storage_sync_file_max_delay must not be negative")
        if self.store_lookup is StoreLookup.SPECIFIED_GROUP and not self.store_group:
            raise ConfigError("store_lookup = 1 needs store_group")
        if self.store_group:
            _check_group_name(self.store_group, "store_group")
        if not 1024 <= self.max_pkg_size <= 1 << 30:
            raise ConfigError(f"max_pkg_size: {self.max_pkg_size} must be 1K .. 1G")

    @property
    def listen_host(self) -> str:
        return self.bind_addr or "0.0.0.0"

    @property
    def state_path(self) -> Path:
        return Path(self.base_path) / "data" / "tracker_state.json"

    def storage_parameters(self) -> tuple[tuple[str, str], ...]:
        """The ``key=value`` pairs of the PARAMETER_REQ reply: the settings storages take from us."""
        return (
            ("use_storage_id", "false"),
            ("id_type_in_filename", "ip"),
            ("storage_ip_changed_auto_adjust", "false"),
            ("storage_sync_file_max_delay", _number(self.storage_sync_file_max_delay)),
            ("check_active_interval", _number(self.check_active_interval)),
            ("store_path", str(int(self.store_path))),
            ("reserved_storage_space", self.reserved_storage_space.text),
        )


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _check_group_name(name: str, key: str) -> str:
    if not (1 <= len(name) <= 16 and name.isascii() and all(c.isalnum() or c in "_-" for c in name)):
        raise ConfigError(f"{key}: {name!r} is not a group name (1 to 16 of [A-Za-z0-9_-])")
    return name


def _choice(enum_type: type[enum.IntEnum]) -> Any:
    def convert(text: str, key: str) -> enum.IntEnum:
        value = as_int(text, key)
        try:
            return enum_type(value)
        except ValueError:
            allowed = ", ".join(f"{int(m)} ({m.name.lower()})" for m in enum_type)
            raise ConfigError(f"{key}: {text!r} is not one of {allowed}") from None

    return convert


def _layout(text: str, key: str) -> StatLayout:
    try:
        return StatLayout(text.strip())
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not 6.15 or 6.10") from None


def _port(text: str, key: str) -> int:
    port = as_int(text, key)
    if not 0 <= port < 65536:
        raise ConfigError(f"{key}: {text!r} is not a port (0 .. 65535)")
    return port


def _positive_seconds(text: str, key: str) -> float:
    value = as_seconds(text, key)
    if value <= 0:
        raise ConfigError(f"{key}: {text!r} must be positive")
    return value


def _store_group(text: str, key: str) -> str:
    return _check_group_name(text.strip(), key) if text.strip() else ""


SCHEMA: dict[str, ConfKey] = {
    "base_path": ConfKey("base_path", as_str),
    "bind_addr": ConfKey("bind_addr", lambda text, key: text.strip()),
    "port": ConfKey("port", _port),
    "connect_timeout": ConfKey("connect_timeout", _positive_seconds),
    "network_timeout": ConfKey("network_timeout", _positive_seconds),
    "max_connections": ConfKey("max_connections", as_int),
    "store_lookup": ConfKey("store_lookup", _choice(StoreLookup)),
    "store_group": ConfKey("store_group", _store_group),
    "store_server": ConfKey("store_server", _choice(StoreServer)),
    "store_path": ConfKey("store_path", _choice(StorePath)),
    "download_server": ConfKey("download_server", _choice(DownloadServer)),
    "reserved_storage_space": ConfKey("reserved_storage_space", ReservedSpace.parse),
    "check_active_interval": ConfKey("check_active_interval", _positive_seconds),
    "storage_sync_file_max_delay": ConfKey("storage_sync_file_max_delay", as_seconds),
    "stat_layout": ConfKey("stat_layout", _layout),
    "max_pkg_size": ConfKey("max_pkg_size", as_size),
}

#: FastDFS tracker.conf keys that mean nothing to this tracker: accepted without a warning.
IGNORED = frozenset(
    {
        "disabled", "work_threads", "accept_threads", "log_level", "run_by_group", "run_by_user",
        "allow_hosts", "sync_log_buff_interval", "thread_stack_size", "use_trunk_file", "slot_min_size",
        "slot_max_size", "trunk_alloc_alignment_size", "trunk_free_space_merge", "delete_unused_trunk_files",
        "trunk_file_size", "trunk_create_file_advance", "trunk_create_file_time_base",
        "trunk_create_file_interval", "trunk_create_file_space_threshold", "trunk_init_check_occupying",
        "trunk_init_reload_from_binlog", "trunk_compress_binlog_min_interval",
        "trunk_compress_binlog_interval", "trunk_compress_binlog_time_base", "trunk_binlog_max_backups",
        "use_storage_id", "storage_ids_filename", "id_type_in_filename", "store_slave_file_use_link",
        "rotate_error_log", "error_log_rotate_time", "compress_old_error_log", "compress_error_log_days_before",
        "rotate_error_log_size", "error_log_file_rotate_size", "log_file_keep_days", "use_connection_pool",
        "connection_pool_max_idle_time", "min_buff_size", "max_buff_size", "storage_ip_changed_auto_adjust",
        "response_ip_addr_size", "http.server_port", "http.check_alive_interval", "http.check_alive_type",
        "http.check_alive_uri", "http.disabled", "http.anti_steal.check_token",
        "http.anti_steal.token_ttl", "http.anti_steal.secret_key", "http.anti_steal.token_check_fail",
        "http.mime_types_filename", "http.default_content_type", "http.need_find_content_type",
        "server_id", "reserved_storage_space_for_trunk", "storage_sync_file_max_time",
    }
)  # fmt: skip


def load_tracker_config(path: str | os.PathLike[str], **overrides: Any) -> tuple[TrackerConfig, list[str]]:
    """The configuration in the file at ``path``, with ``overrides`` (field names) applied on top,
    and a warning per unknown key.  Any bad value is a :class:`ConfigError` naming key and value."""
    source = os.fspath(path)
    values = read_conf_file(source)
    settings, warnings = load_settings(values, SCHEMA, ignored=IGNORED, source=source)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if not settings.get("base_path"):
        raise ConfigError(f"{source}: base_path is required")
    try:
        config = TrackerConfig(**settings)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config, warnings


__all__ = [
    "DownloadServer",
    "ReservedSpace",
    "StoreLookup",
    "StorePath",
    "StoreServer",
    "TrackerConfig",
    "load_tracker_config",
]
