"""The blocking client: :class:`Client`, over plain sockets, safe to share between threads.

Its connections are in :mod:`.sync_connection`; the operations it drives, shared with the asyncio
client, in :mod:`.operations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from cluster.errors import ClusterError

from . import operations as ops
from .base import ClientBase
from .operations import Destination, Operation, Source
from .requests import (
    Exchange,
    Key,
    Progress,
    advance,
    may_retry,
)
from .results import FileInfo, GroupStat, StorageAddress, StorageStat, StoreTarget
from .sync_connection import SyncConnection

T = TypeVar("T")


class Client(ClientBase[SyncConnection]):
    """A blocking trunkstore / FastDFS client.

    ``Client(["10.0.0.1:22122", ("10.0.0.2", 22122)])``, or ``Client(config=ClientConfig.from_file(
    "client.conf"))``.  Trackers are tried in order from the last one that answered; connections
    are pooled per server.  Every failure raises a :class:`cluster.errors.ClusterError`.
    """

    # ---- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        self._close_pool()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- the driver -----------------------------------------------------------------------------
    def _run(self, op: Operation[T]) -> T:
        self._check_open()
        step, value = advance(op, None, None)
        while step is not None:
            try:
                result = self._tracker_exchange(step) if step.address is None else self._exchange(step.address, step)
            except BaseException as exc:
                step, value = advance(op, None, exc)
            else:
                step, value = advance(op, result, None)
        returned: T = value
        return returned

    def _tracker_exchange(self, step: Exchange) -> Any:
        failures: list[str] = []
        for index, key in self._trackers.order():
            try:
                result = self._exchange(key, step)
            except ClusterError as exc:
                if not self._trackers.fails_over(exc):
                    self._trackers.answered(index)
                    raise
                failures.append(f"{key[0]}:{key[1]}: {exc}")
                continue
            self._trackers.answered(index)
            return result
        raise self._trackers.unavailable(failures)

    def _exchange(self, key: Key, step: Exchange) -> Any:
        config = self.config
        retries = 1
        while True:
            conn = self._pool.take(key)
            reused = conn is not None
            if conn is None:
                conn = SyncConnection.connect(key, config)
            try:
                result = conn.exchange(step, config.chunk_size, config.network_timeout)
            except ClusterError as exc:
                self._release(key, conn)
                if not may_retry(exc, step, reused=reused, sent=conn.sent, delivered=conn.delivered, retries=retries):
                    raise
                retries -= conn.sent
                continue
            except BaseException:
                conn.close()
                raise
            self._pool.give(key, conn)
            return result

    def _release(self, key: Key, conn: SyncConnection) -> None:
        if conn.reusable:
            self._pool.give(key, conn)
        else:
            conn.close()

    # ---- tracker --------------------------------------------------------------------------------
    def query_store(self, group: str | None = None) -> StoreTarget:
        """Where an upload would go (the tracker step of :meth:`upload`)."""
        return self._run(ops.query_store(group))

    def query_fetch(self, file_id: str) -> StorageAddress:
        """A storage to read ``file_id`` from."""
        return self._run(ops.query_fetch(file_id))

    def query_update(self, file_id: str) -> StorageAddress:
        """The storage to change ``file_id`` (or its metadata) on."""
        return self._run(ops.query_update(file_id))

    def list_groups(self) -> list[GroupStat]:
        return self._run(ops.list_groups(self.config.stat_layout))

    def list_storages(self, group: str, storage_id: str | None = None) -> list[StorageStat]:
        return self._run(ops.list_storages(self.config.stat_layout, group, storage_id))

    def delete_storage(self, group: str, storage_id: str) -> None:
        """Delete a stopped storage (its ID, IP or ``ip:port``) from ``group`` on every tracker, as
        ``fdfs_monitor ... delete`` does; :class:`~cluster.errors.Busy` while it is serving."""
        self._run(ops.delete_storage(self._trackers.trackers, group, storage_id))

    # ---- files ----------------------------------------------------------------------------------
    def upload(
        self,
        source: Source,
        ext: str = "",
        *,
        group: str | None = None,
        meta: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        size: int | None = None,
    ) -> str:
        """Store ``source`` (bytes, a path, or a binary file streamed from its position); the file ID.

        A path's extension defaults to its suffix; a file object's size is found by ``fstat`` or
        seeking, or given as ``size``.  ``progress(sent, total)`` is called as data goes out.
        ``meta`` is set by a second request to the same storage; if that one fails, its error is
        raised and the file stays stored without metadata (as with FastDFS's clients).
        """
        return self._run(ops.upload(source, ext, group, meta, progress, size))

    def upload_appender(
        self,
        source: Source,
        ext: str = "",
        *,
        group: str | None = None,
        meta: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        size: int | None = None,
    ) -> str:
        """Like :meth:`upload`, for a file that can later be appended to, modified and truncated."""
        return self._run(ops.upload(source, ext, group, meta, progress, size, appender=True))

    def upload_slave(
        self,
        master_id: str,
        prefix: str,
        source: Source,
        ext: str = "",
        *,
        meta: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        size: int | None = None,
    ) -> str:
        """A slave of ``master_id``: named after it with ``prefix``, stored beside it."""
        return self._run(ops.upload_slave(master_id, prefix, source, ext, meta, progress, size))

    def download(self, file_id: str, offset: int = 0, length: int = 0) -> bytes:
        """``length`` bytes (0: to the end) from ``offset``."""
        return self._run(ops.download(file_id, offset, length))

    def download_to(
        self,
        file_id: str,
        dest: Destination,
        offset: int = 0,
        length: int = 0,
        *,
        progress: Progress | None = None,
    ) -> int:
        """Stream the file into ``dest`` as it arrives; the number of bytes written.

        A path is written to a temporary file beside it, renamed over it once complete; on any
        failure the temporary file is removed and ``dest`` is untouched.
        """
        return self._run(ops.download_to(file_id, dest, offset, length, progress))

    def delete(self, file_id: str) -> None:
        self._run(ops.delete(file_id))

    def set_meta(self, file_id: str, meta: Mapping[str, str], *, merge: bool = False) -> None:
        """Replace the file's metadata (with ``merge``: add or update these names only)."""
        self._run(ops.set_meta(file_id, meta, merge))

    def get_meta(self, file_id: str) -> dict[str, str]:
        return self._run(ops.get_meta(file_id))

    def file_info(self, file_id: str) -> FileInfo:
        return self._run(ops.file_info(file_id))

    # ---- appender files -------------------------------------------------------------------------
    def append(
        self, file_id: str, source: Source, *, progress: Progress | None = None, size: int | None = None
    ) -> None:
        self._run(ops.append(file_id, source, progress, size))

    def modify(self, file_id: str, offset: int, source: Source, *, size: int | None = None) -> None:
        self._run(ops.modify(file_id, offset, source, size))

    def truncate(self, file_id: str, size: int = 0) -> None:
        self._run(ops.truncate(file_id, size))

    def regenerate_appender_name(self, file_id: str) -> str:
        """Turn an appender file into a normal file under a new ID (returned)."""
        return self._run(ops.regenerate_appender_name(file_id))


__all__ = ["Client"]
