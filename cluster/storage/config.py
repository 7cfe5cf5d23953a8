"""The storage server's configuration: one frozen object loaded from a FastDFS ``storage.conf``.

The server's own keys are FastDFS's (``port``, ``tracker_server``, ``heart_beat_interval`` ...);
the engine's keys (``store_path*``, ``trunk_file_size``, ``sync_mode``, ``dedup`` ...) are parsed by
:meth:`trunkstore.StoreConfig.from_values` into :attr:`StorageConfig.store`.  FastDFS keys that have
no meaning here (thread counts, log rotation, the HTTP module ...) are accepted quietly; any other
unknown key is reported as a warning, and a bad value is a :class:`~cluster.errors.ConfigError`.

FastDFS's ``sync_interval`` is the pause, in milliseconds, between files replicated to peers; the
engine's background-sync period (``sync_mode = interval``) is therefore spelled
``store_sync_interval`` here (seconds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.conf import (
    ConfKey,
    as_bool,
    as_float,
    as_int,
    as_seconds,
    as_size,
    as_str,
    load_settings,
    parse_address,
    read_conf_file,
)
from cluster.errors import ConfigError
from cluster.protocol import Address
from trunkstore import StoreConfig
from trunkstore.config import STORE_CONF_KEYS
from trunkstore.errors import TrunkstoreError

DEFAULT_PORT = 23000
DEFAULT_TRACKER_PORT = 22122
KIB = 1 << 10
GIB = 1 << 30


def _tracker(text: str, key: str) -> Address:
    return parse_address(text, DEFAULT_TRACKER_PORT, key)


#: storage.conf key -> StorageConfig field.
SCHEMA: dict[str, ConfKey] = {
    "disabled": ConfKey("disabled", as_bool),
    "bind_addr": ConfKey("bind_addr", as_str),
    "port": ConfKey("port", as_int),
    "connect_timeout": ConfKey("connect_timeout", as_seconds),
    "network_timeout": ConfKey("network_timeout", as_seconds),
    "heart_beat_interval": ConfKey("heart_beat_interval", as_seconds),
    "stat_report_interval": ConfKey("stat_report_interval", as_seconds),
    "base_path": ConfKey("base_path", as_str),
    "max_connections": ConfKey("max_connections", as_int),
    "tracker_server": ConfKey("tracker_servers", _tracker, repeated=True),
    "upload_priority": ConfKey("upload_priority", as_int),
    "max_pkg_size": ConfKey("max_pkg_size", as_size),
    "max_upload_size": ConfKey("max_upload_size", as_size),
    "io_threads": ConfKey("io_threads", as_int),
    "ack_replicas": ConfKey("ack_replicas", as_int),
}

#: Keys read by StoreConfig.from_values, or rewritten for it below.
_STORE_KEYS = STORE_CONF_KEYS | {"store_sync_interval"}

#: FastDFS storage.conf keys that trunkstore accepts and has no use for.
IGNORED = frozenset(
    {
        "log_level",
        "client_bind",
        "run_by_group",
        "run_by_user",
        "work_threads",
        "accept_threads",
        "buff_size",
        "disk_rw_separated",
        "disk_reader_threads",
        "disk_writer_threads",
        "disk_recovery_threads",
        "sync_wait_msec",
        "sync_interval",
        "sync_start_time",
        "sync_end_time",
        "write_mark_file_freq",
        "allow_hosts",
        "key_namespace",
        "keep_alive",
        "fsync_after_written_bytes",
        "sync_log_buff_interval",
        "sync_binlog_buff_interval",
        "sync_stat_file_interval",
        "thread_stack_size",
        "if_alias_prefix",
        "check_file_duplicate",
        "file_signature_method",
        "use_access_log",
        "rotate_access_log",
        "rotate_access_log_size",
        "access_log_rotate_time",
        "compress_old_access_log",
        "compress_access_log_days_before",
        "rotate_error_log",
        "rotate_error_log_size",
        "error_log_rotate_time",
        "compress_old_error_log",
        "compress_error_log_days_before",
        "log_file_keep_days",
        "file_sync_skip_invalid_record",
        "use_connection_pool",
        "connection_pool_max_idle_time",
        "compress_binlog",
        "compress_binlog_time",
        "check_store_path_mark",
        "http.domain_name",
        "http.server_port",
        "http.trunk_size",
        "http.anti_steal.check_token",
        "http.anti_steal.token_ttl",
        "http.anti_steal.secret_key",
        "http.anti_steal.token_check_fail",
        "http.need_find_content_type",
        "http.default_content_type",
        "http.mime_types_filename",
        "storage_sync_file_max_delay",
        "storage_sync_file_max_time",
        "trunk_init_check_occupying",
        "trunk_init_reload_from_binlog",
        "trunk_compress_binlog_min_interval",
        "trunk_create_file_advance",
        "trunk_create_file_time_base",
        "trunk_create_file_interval",
        "trunk_create_file_space_threshold",
        "store_slave_file_use_link",
        "use_storage_id",
        "storage_ids_filename",
        "id_type_in_filename",
        "response_ip_addr_size",
        "report_trunk_free_space",
        "slot_min_size_trunk",
        "connection_pool_max_count",
    }
)


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Settings of one storage server (FastDFS ``storage.conf`` key names)."""

    #: Where the store lives: its journal, metadata and (unless ``store_path0`` says otherwise) its files.
    base_path: str
    #: The engine's settings, group name and store paths included.
    store: StoreConfig = field(default_factory=StoreConfig)
    #: FastDFS's "this config file is disabled": the server refuses to start.
    disabled: bool = False
    #: Address to listen on; empty: every address.  A specific address is also the storage's IP.
    bind_addr: str = ""
    port: int = DEFAULT_PORT
    #: Seconds to connect to a tracker.
    connect_timeout: float = 10.0
    #: Seconds a client may take to send its first request, or stall in the middle of one; also the
    #: wait for a tracker's reply.
    network_timeout: float = 30.0
    #: Seconds between beats to each tracker.
    heart_beat_interval: float = 30.0
    #: Seconds between disk-usage reports (and counters in the beat).
    stat_report_interval: float = 60.0
    #: Client connections served at once; the next is closed as it arrives.
    max_connections: int = 256
    #: Trackers to join (``tracker_server``, repeated).
    tracker_servers: tuple[Address, ...] = ()
    #: Sent to the trackers when joining: higher-priority storages are preferred for uploads.
    upload_priority: int = 10
    #: Largest body of a request other than an upload, append or modify (SET_METADATA is the biggest).
    max_pkg_size: int = 256 * KIB
    #: Largest upload (and append or modify) body accepted.
    max_upload_size: int = 64 * GIB
    #: Threads doing the store's blocking work (fsyncs, large reads and writes).
    io_threads: int = 24
    #: An upload is acknowledged only once this many other storages of the group have stored it too
    #: (0: at once, as FastDFS).  It is refused (EBUSY) while fewer are reachable, answered EBUSY at
    #: once if the copies can no longer be made (peers refused the file, or too few are connected),
    #: and ETIMEDOUT if they take longer than ``network_timeout`` (the file is kept and still copied).
    ack_replicas: int = 0

    def __post_init__(self) -> None:
        if not self.base_path:
            raise ConfigError("base_path is required")
        if not 0 <= self.port <= 0xFFFF:
            raise ConfigError(f"port {self.port} out of range 0 .. 65535")
        for name in ("connect_timeout", "network_timeout", "heart_beat_interval", "stat_report_interval"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if not 1 * KIB <= self.max_pkg_size <= 64 * (1 << 20):
            raise ConfigError("max_pkg_size must be between 1KB and 64MB")
        if self.max_upload_size < 0:
            raise ConfigError("max_upload_size must not be negative")
        if not 1 <= self.io_threads <= 256:
            raise ConfigError("io_threads must be 1 .. 256")
        if not 0 <= self.ack_replicas <= 255:
            raise ConfigError("ack_replicas must be 0 .. 255")

    @property
    def group_name(self) -> str:
        return self.store.group_name

    @property
    def listen_host(self) -> str:
        return self.bind_addr or "0.0.0.0"

    @classmethod
    def from_values(
        cls, values: Mapping[str, list[str]], *, source: str = "<config>", **overrides: Any
    ) -> tuple[StorageConfig, list[str]]:
        """The config from parsed ``key = value`` lists, and warnings about unknown keys."""
        settings, warnings = load_settings(values, SCHEMA, ignored=IGNORED | _STORE_KEYS, source=source)
        settings.update(overrides)
        base_path = settings.get("base_path") or ""
        if not base_path:
            raise ConfigError(f"{source}: base_path is required")
        settings["base_path"] = os.path.abspath(base_path)
        settings["store"] = _store_config(values, settings["base_path"], source)
        try:
            return cls(**settings), warnings
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str], **overrides: Any) -> tuple[StorageConfig, list[str]]:
        """Read a ``storage.conf``; ``overrides`` replace fields (``port``, ``bind_addr``)."""
        return cls.from_values(read_conf_file(path), source=os.fspath(path), **overrides)


def _store_config(values: Mapping[str, list[str]], base_path: str, source: str) -> StoreConfig:
    """The engine's part; FastDFS's ``sync_interval`` means something else and is left out."""
    store_values = {key: texts for key, texts in values.items() if key != "sync_interval"}
    overrides: dict[str, Any] = {}
    if "store_sync_interval" in values:
        overrides["sync_interval"] = as_float(values["store_sync_interval"][-1], "store_sync_interval")
    # FastDFS: store_path0 defaults to base_path (files under <base_path>/data).
    if not any(key.startswith("store_path") and key[10:].isdigit() for key in values):
        store_values["store_path0"] = [base_path]
    # The default slot_max_size (16MB) must give way to a small trunk_file_size rather than refuse it.
    if "trunk_file_size" in values and "slot_max_size" not in values:
        trunk_file_size = as_size(values["trunk_file_size"][-1], "trunk_file_size")
        overrides["slot_max_size"] = max(1, min(StoreConfig().slot_max_size, trunk_file_size // 2))
    try:
        return StoreConfig.from_values(store_values, **overrides)
    except TrunkstoreError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
