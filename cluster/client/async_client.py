"""The asyncio client: :class:`AsyncClient`, over asyncio streams, for use from one event loop.

Same operations, names and behaviour as :class:`~cluster.client.Client` (both drive the generators
of :mod:`cluster.client.operations`).  Timeouts: one ``asyncio.timeout`` per exchange, pushed
back as a streamed upload or download makes progress, so that ``network_timeout`` bounds a stall
rather than a whole transfer.  Reading a local source file or writing a local destination file is
done in the loop (page-cache speed), as the blocking client does.

One difference from the blocking client: a storage that refuses an upload before reading its data
(replying with an error, then closing) resets the connection, and asyncio streams drop the reply
with it, so the upload fails with ConnectionLost rather than the refusal's own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

from cluster.errors import ClusterError
from cluster.protocol import HEADER_SIZE

from . import operations as ops
from .config import ClientConfig, TrackerSpec, make_config
from .operations import Destination, Operation, Source
from .pool import ConnectionPool
from .requests import (
    Exchange,
    Key,
    Progress,
    TrackerRotation,
    advance,
    check_header,
    closed_error,
    connect_error,
    finish,
    keeps_connection,
    may_retry,
    transport_error,
    write_sink,
)
from .results import FileInfo, GroupStat, StorageAddress, StorageStat, StoreTarget

T = TypeVar("T")

#: The stream reader's buffer limit.
READ_LIMIT = 256 * 1024


class AsyncConnection:
    """One asyncio stream connection to a tracker or storage; one exchange at a time."""

    __slots__ = ("delivered", "idle_since", "key", "reader", "reusable", "sent", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: Key) -> None:
        self.reader = reader
        self.writer = writer
        self.key = key
        self.idle_since = 0.0
        self.sent = False
        self.delivered = 0
        self.reusable = False

    @classmethod
    async def connect(cls, key: Key, config: ClientConfig) -> AsyncConnection:
        try:
            async with asyncio.timeout(config.connect_timeout):
                reader, writer = await asyncio.open_connection(key[0], key[1], limit=READ_LIMIT)
        except OSError as exc:
            raise connect_error(key, exc, config.connect_timeout) from exc
        return cls(reader, writer, key)

    def alive(self) -> bool:
        reader = self.reader
        return not (reader.at_eof() or reader.exception() is not None or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()

    # ---- one exchange ---------------------------------------------------------------------------
    async def exchange(self, step: Exchange, chunk_size: int, timeout: float) -> Any:
        self.reusable = False
        self.sent = False
        self.delivered = 0
        try:
            async with asyncio.timeout(timeout) as deadline:
                if step.upload is None:
                    self.writer.write(step.frame)
                    self.sent = True
                else:
                    await self._send_upload(step, chunk_size, deadline, timeout)
                return await self._receive(step, chunk_size, deadline, timeout)
        except ClusterError:
            raise
        except (OSError, EOFError) as exc:
            raise transport_error(step, self.key, exc, timeout) from exc

    async def _send_upload(self, step: Exchange, chunk_size: int, deadline: asyncio.Timeout, timeout: float) -> None:
        source = step.upload
        assert source is not None
        progress = step.progress
        loop = asyncio.get_running_loop()
        head_len = len(step.frame)
        sent = 0
        for piece in source.pieces(step.frame, chunk_size):
            self.writer.write(piece)
            self.sent = True
            await self.writer.drain()
            deadline.reschedule(loop.time() + timeout)
            sent += len(piece)
            if progress is not None and sent > head_len:
                progress(sent - head_len, source.size)

    async def _receive(self, step: Exchange, chunk_size: int, deadline: asyncio.Timeout, timeout: float) -> Any:
        reader = self.reader
        try:
            header = await reader.readexactly(HEADER_SIZE)
        except asyncio.IncompleteReadError as exc:
            raise closed_error(step, self.key, before_reply=not exc.partial) from None
        pkg_len, status = check_header(step, header)
        if status == 0 and step.sink is not None:
            return await self._stream_body(step, step.sink, pkg_len, chunk_size, deadline, timeout)
        body: bytes | bytearray
        if pkg_len <= chunk_size:
            body = await reader.readexactly(pkg_len) if pkg_len else b""
        else:
            body = bytearray(pkg_len)
            view = memoryview(body)
            done = 0
            loop = asyncio.get_running_loop()
            while done < pkg_len:
                data = await self._read_some(step, min(chunk_size, pkg_len - done))
                view[done : done + len(data)] = data
                done += len(data)
                deadline.reschedule(loop.time() + timeout)
        if status:
            self.reusable = keeps_connection(step, status)
        result = finish(step, status, body)
        self.reusable = True
        return result

    async def _read_some(self, step: Exchange, limit: int) -> bytes:
        data = await self.reader.read(limit)
        if not data:
            raise closed_error(step, self.key, before_reply=False)
        return data

    async def _stream_body(
        self, step: Exchange, sink: BinaryIO, pkg_len: int, chunk_size: int, deadline: asyncio.Timeout, timeout: float
    ) -> int:
        progress = step.progress
        loop = asyncio.get_running_loop()
        done = 0
        while done < pkg_len:
            data = await self._read_some(step, min(chunk_size, pkg_len - done))
            write_sink(sink, data)
            done += len(data)
            self.delivered = done
            if progress is not None:
                progress(done, pkg_len)
            deadline.reschedule(loop.time() + timeout)
        self.reusable = True
        return pkg_len


class AsyncClient:
    """The asyncio twin of :class:`~cluster.client.Client`: the same methods, as coroutines.

    ``async with AsyncClient(["127.0.0.1:22122"]) as client: file_id = await client.upload(b"...")``.
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
        self._pool: ConnectionPool[AsyncConnection] = ConnectionPool(
            self.config.max_idle, self.config.pool_max_idle_time
        )
        self._closed = False

    # ---- life cycle -----------------------------------------------------------------------------
    async def close(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        self._closed = True
        self._pool.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def pool(self) -> ConnectionPool[AsyncConnection]:
        return self._pool

    # ---- the driver -----------------------------------------------------------------------------
    async def _run(self, op: Operation[T]) -> T:
        if self._closed:
            raise ClusterError("the client is closed")
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
