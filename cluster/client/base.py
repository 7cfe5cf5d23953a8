"""What the blocking and the asyncio client share besides their I/O: configuration, trackers, pool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from cluster.errors import ClusterError

from .config import ClientConfig, TrackerSpec, make_config
from .pool import ConnectionPool, Poolable
from .requests import TrackerRotation

C = TypeVar("C", bound=Poolable)


class ClientBase(Generic[C]):
    """The state of a client: its config, the tracker rotation and the pool of connections ``C``.

    ``trackers`` (``"host:port"``, ``"host"``, ``(host, port)``) and the timeouts, when given, take
    precedence over ``config``; without a config the defaults of :class:`ClientConfig` apply.
    """

    def __init__(
        self,
        trackers: Sequence[TrackerSpec] | None = None,
        *,
        config: ClientConfig | None = None,
        connect_timeout: float | None = None,
        network_timeout: float | None = None,
    ) -> None:
        self.config = make_config(trackers, config, connect_timeout, network_timeout)
        self._trackers = TrackerRotation([(t.host, t.port) for t in self.config.trackers])
        self._pool: ConnectionPool[C] = ConnectionPool(self.config.max_idle, self.config.pool_max_idle_time)
        self._closed = False

    @property
    def pool(self) -> ConnectionPool[C]:
        """The idle connections kept per server address."""
        return self._pool

    def _close_pool(self) -> None:
        self._closed = True
        self._pool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClusterError("the client is closed")
