"""The asyncio client: :class:`AsyncClient`, for use from one event loop (uvloop or asyncio).

Same operations, names and behaviour as :class:`~cluster.client.Client`: both drive the generators
of :mod:`cluster.client.operations`; the connections are in :mod:`.async_connection`.  The chunks
of a large local source file are read, and those of a download to a local file written, in a
thread, so that a slow disk never stalls the loop's other work.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from cluster.errors import ClusterError

from . import operations as ops
from .async_connection import AsyncConnection
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

T = TypeVar("T")


class AsyncClient(ClientBase[AsyncConnection]):
    """The asyncio twin of :class:`~cluster.client.Client`: the same methods, as coroutines.

    ``async with AsyncClient(["127.0.0.1:22122"]) as client: file_id = await client.upload(b"...")``.
    """

    # ---- life cycle -----------------------------------------------------------------------------
    async def close(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        self._close_pool()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- the driver -----------------------------------------------------------------------------
    async def _run(self, op: Operation[T]) -> T:
        self._check_open()
        step, value = advance(op, None, None)
        while step is not None:
            try:
                if step.address is None:
                    result = await self._tracker_exchange(step)
                else:
                    result = await self._exchange(step.address, step)
            except BaseException as exc:
                step, value = advance(op, None, exc)
            else:
                step, value = advance(op, result, None)
        returned: T = value
        return returned

    async def _tracker_exchange(self, step: Exchange) -> Any:
        failures: list[str] = []
        for index, key in self._trackers.order():
            try:
                result = await self._exchange(key, step)
            except ClusterError as exc:
                if not self._trackers.fails_over(exc):
                    self._trackers.answered(index)
                    raise
                failures.append(f"{key[0]}:{key[1]}: {exc}")
                continue
            self._trackers.answered(index)
            return result
        raise self._trackers.unavailable(failures)

    async def _exchange(self, key: Key, step: Exchange) -> Any:
        config = self.config
        retries = 1
        while True:
            conn = self._pool.take(key)
            reused = conn is not None
            if conn is None:
                conn = await AsyncConnection.connect(key, config)
            try:
                result = await conn.exchange(step, config.chunk_size, config.network_timeout)
            except ClusterError as exc:
                if conn.reusable:
                    self._pool.give(key, conn)
                else:
                    conn.close()
                if not may_retry(exc, step, reused=reused, sent=conn.sent, delivered=conn.delivered, retries=retries):
                    raise
                retries -= conn.sent
                continue
            except BaseException:
                conn.close()
                raise
            self._pool.give(key, conn)
            return result

    # ---- tracker --------------------------------------------------------------------------------
    async def query_store(self, group: str | None = None) -> StoreTarget:
        return await self._run(ops.query_store(group))

    async def query_fetch(self, file_id: str) -> StorageAddress:
        return await self._run(ops.query_fetch(file_id))

    async def query_update(self, file_id: str) -> StorageAddress:
        return await self._run(ops.query_update(file_id))

    async def list_groups(self) -> list[GroupStat]:
        return await self._run(ops.list_groups(self.config.stat_layout))

    async def list_storages(self, group: str, storage_id: str | None = None) -> list[StorageStat]:
        return await self._run(ops.list_storages(self.config.stat_layout, group, storage_id))

    async def delete_storage(self, group: str, storage_id: str) -> None:
        """Delete a stopped storage (its ID, IP or ``ip:port``) from ``group`` on every tracker."""
        await self._run(ops.delete_storage(self._trackers.trackers, group, storage_id))

    # ---- files ----------------------------------------------------------------------------------
    async def upload(
        self,
        source: Source,
        ext: str = "",
        *,
        group: str | None = None,
        meta: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        size: int | None = None,
    ) -> str:
        return await self._run(ops.upload(source, ext, group, meta, progress, size))

    async def upload_appender(
        self,
        source: Source,
        ext: str = "",
        *,
        group: str | None = None,
        meta: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        size: int | None = None,
    ) -> str:
        return await self._run(ops.upload(source, ext, group, meta, progress, size, appender=True))

    async def upload_slave(
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
        return await self._run(ops.upload_slave(master_id, prefix, source, ext, meta, progress, size))

    async def download(self, file_id: str, offset: int = 0, length: int = 0) -> bytes:
        return await self._run(ops.download(file_id, offset, length))

    async def download_to(
        self,
        file_id: str,
        dest: Destination,
        offset: int = 0,
        length: int = 0,
        *,
        progress: Progress | None = None,
    ) -> int:
        return await self._run(ops.download_to(file_id, dest, offset, length, progress))

    async def delete(self, file_id: str) -> None:
        await self._run(ops.delete(file_id))

    async def set_meta(self, file_id: str, meta: Mapping[str, str], *, merge: bool = False) -> None:
        await self._run(ops.set_meta(file_id, meta, merge))

    async def get_meta(self, file_id: str) -> dict[str, str]:
        return await self._run(ops.get_meta(file_id))

    async def file_info(self, file_id: str) -> FileInfo:
        return await self._run(ops.file_info(file_id))

    # ---- appender files -------------------------------------------------------------------------
    async def append(
        self, file_id: str, source: Source, *, progress: Progress | None = None, size: int | None = None
    ) -> None:
        await self._run(ops.append(file_id, source, progress, size))

    async def modify(self, file_id: str, offset: int, source: Source, *, size: int | None = None) -> None:
        await self._run(ops.modify(file_id, offset, source, size))

    async def truncate(self, file_id: str, size: int = 0) -> None:
        await self._run(ops.truncate(file_id, size))

    async def regenerate_appender_name(self, file_id: str) -> str:
        return await self._run(ops.regenerate_appender_name(file_id))
