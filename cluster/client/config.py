"""The client's configuration: trackers, timeouts, connection pool, stat layout.

Loadable from a FastDFS ``client.conf``; the keys are FastDFS's where FastDFS has one::

    tracker_server = 10.0.0.1:22122          # repeated, one line per tracker
    connect_timeout = 5                      # seconds (or 500ms, 5s ...)
    network_timeout = 30                     # seconds a read or a write may stall
    use_connection_pool = true
    connection_pool_max_idle_time = 3600     # seconds an idle pooled connection is kept
    connection_pool_max_idle_count = 8       # trunkstore: idle connections kept per server
    stat_layout = 6.15                       # trunkstore: 6.15 or 6.10, for the LIST_* replies
    chunk_size = 256KB                       # trunkstore: bytes per read/write when streaming

FastDFS keys with no meaning here (``base_path``, ``log_level`` ...) are accepted and ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from cluster.conf import ConfKey, as_bool, as_int, as_seconds, as_size, load_settings, parse_address, read_conf_file
from cluster.errors import ConfigError
from cluster.protocol import Address, StatLayout

log = logging.getLogger(__name__)

TRACKER_PORT = 22122

TrackerSpec = str | tuple[str, int] | Address


def parse_tracker(spec: TrackerSpec) -> Address:
    """A tracker given as ``"host:port"``, ``"host"`` (port 22122), ``(host, port)`` or an Address."""
    if isinstance(spec, Address):
        return spec
    if isinstance(spec, tuple):
        host, port = spec
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return parse_address(text, TRACKER_PORT, "tracker_server")
    return parse_address(spec, TRACKER_PORT, "tracker_server")


def _as_tracker(text: str, key: str) -> Address:
    return parse_address(text, TRACKER_PORT, key)


def _as_layout(text: str, key: str) -> StatLayout:
    try:
        return StatLayout(text.strip())
    except ValueError:
        choices = ", ".join(layout.value for layout in StatLayout)
        raise ConfigError(f"{key}: {text!r} is not one of {choices}") from None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a :class:`~cluster.client.Client` or :class:`~cluster.client.AsyncClient` needs."""

    #: Trackers, tried in order from the last one that answered.
    trackers: tuple[Address, ...] = ()
    #: Seconds a TCP connect may take.
    connect_timeout: float = 5.0
    #: Seconds a read or write may stall before :class:`~cluster.errors.RequestTimeout`.
    network_timeout: float = 30.0
    #: Keep connections open between requests (per server address).
    use_connection_pool: bool = True
    #: Idle connections kept per server address.
    pool_max_idle: int = 8
    #: Seconds an idle connection stays in the pool before it is closed instead of reused.
    pool_max_idle_time: float = 3600.0
    #: Layout of the tracker's group and storage stats (FastDFS >= 6.15, or <= 6.10).
    stat_layout: StatLayout = StatLayout.V6_15
    #: Bytes per read from a source and per write of streamed file data.
    chunk_size: int = 256 * 1024

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.network_timeout <= 0:
            raise ConfigError("connect_timeout and network_timeout must be positive")
        if self.pool_max_idle < 0 or self.pool_max_idle_time < 0:
            raise ConfigError("connection pool limits must not be negative")
        if self.chunk_size < 1024:
            raise ConfigError(f"chunk_size must be at least 1024 bytes, not {self.chunk_size}")

    @property
    def max_idle(self) -> int:
        """Idle connections kept per address: 0 when pooling is off."""
        return self.pool_max_idle if self.use_connection_pool else 0

    def with_trackers(self, trackers: Sequence[TrackerSpec]) -> ClientConfig:
        return replace(self, trackers=tuple(parse_tracker(spec) for spec in trackers))

    @classmethod
    def from_values(cls, values: Mapping[str, list[str]], source: str = "<config>") -> tuple[ClientConfig, list[str]]:
        """The config from parsed ``key = value`` lines, and warnings about unknown keys."""
        settings, warnings = load_settings(values, SCHEMA, ignored=IGNORED, source=source)
        try:
            return cls(**settings), warnings
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ClientConfig:
        """The config from a ``client.conf``; unknown keys are logged as warnings."""
        config, warnings = cls.from_values(read_conf_file(path), os.fspath(path))
        for warning in warnings:
            log.warning("%s", warning)
        return config


SCHEMA: dict[str, ConfKey] = {
    "tracker_server": ConfKey("trackers", _as_tracker, repeated=True),
    "connect_timeout": ConfKey("connect_timeout", as_seconds),
    "network_timeout": ConfKey("network_timeout", as_seconds),
    "use_connection_pool": ConfKey("use_connection_pool", as_bool),
    "connection_pool_max_idle_time": ConfKey("pool_max_idle_time", as_seconds),
    "connection_pool_max_idle_count": ConfKey("pool_max_idle", as_int),
    "stat_layout": ConfKey("stat_layout", _as_layout),
    "chunk_size": ConfKey("chunk_size", as_size),
}

#: FastDFS client.conf keys that have no meaning for this client.
IGNORED = frozenset(
    {
        "base_path",
        "log_level",
        "load_fdfs_parameters_from_tracker",
        "use_storage_id",
        "storage_ids_filename",
        "http.tracker_server_port",
        "tracker_server_port",
        "connection_pool_max_count_per_entry",
        "connect_first_by",
    }
)


def make_config(
    trackers: Sequence[TrackerSpec] | None,
    config: ClientConfig | None,
    connect_timeout: float | None,
    network_timeout: float | None,
) -> ClientConfig:
    """A client's config from its constructor's arguments: ``config`` (or the defaults) with the
    trackers and timeouts given explicitly taking precedence."""
    result = config if config is not None else ClientConfig()
    if trackers:  # an empty list leaves the config's trackers
        if isinstance(trackers, (str, Address)) or (
            isinstance(trackers, tuple) and len(trackers) == 2 and isinstance(trackers[1], int)
        ):
            trackers = [trackers]  # one tracker given on its own
        result = result.with_trackers(trackers)
    if connect_timeout is not None:
        result = replace(result, connect_timeout=connect_timeout)
    if network_timeout is not None:
        result = replace(result, network_timeout=network_timeout)
    if not result.trackers:
        raise ConfigError("no tracker given (tracker_server)")
    return result
