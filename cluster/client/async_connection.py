"""One asyncio connection of the :class:`~cluster.client.AsyncClient`, on an ``asyncio.Protocol``.

A protocol rather than asyncio streams, for three reasons: what the server sent before it reset the
connection stays readable here (streams drop it), so a storage that refuses an upload before its
data has been sent is reported with its own error, as the blocking client does; bytes that arrive
past a reply are seen, so a reply longer than announced is refused; and it is leaner (no stream
objects between the transport and the reply).

Timeouts: one ``asyncio.timeout`` per exchange, pushed back as a streamed upload or download makes
progress, so that ``network_timeout`` bounds a stall rather than a whole transfer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar, cast

from cluster.errors import ClusterError
from cluster.protocol import HEADER_SIZE

from .config import ClientConfig
from .requests import (
    Exchange,
    Key,
    check_extra,
    check_header,
    closed_error,
    connect_error,
    early_reply_error,
    finish,
    keeps_connection,
    transport_error,
    write_sink,
)

#: Reading from the socket pauses while this much is buffered and not yet taken.
HIGH_WATER = 1 << 20
LOW_WATER = 256 * 1024

T = TypeVar("T")


class ReplyBuffer(asyncio.Protocol):
    """Collects what the server sends, keeps it past the end of the connection, and tells the
    reader when more has come or the connection has ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        #: The server closed (or reset) the connection; ``error`` says why if it was not a clean close.
        self.ended = False
        self.error: Exception | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None

    # ---- protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ---- used by the connection
    def take(self, count: int) -> bytes:
        data = bytes(self.data[:count])
        del self.data[:count]
        if self._reading_paused and len(self.data) < LOW_WATER and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait_for_data(self, count: int) -> bool:
        """Wait until ``count`` bytes are buffered; False if the connection ended first."""
        while len(self.data) < count:
            if self.ended:
                return False
            await self._wait()
        return True

    async def drain(self) -> None:
        """Wait while the transport's write buffer is full, until the server says something or leaves.

        Even when it is not full, one turn of the loop is taken: a reply that came early (a storage
        refusing an upload, then resetting the connection) is read before the next write could
        meet the reset, which would make the transport drop the reply unread.
        """
        if not self._writing_paused:
            await asyncio.sleep(0)
            return
        while self._writing_paused and not self.ended and not self.data:
            await self._wait()


class AsyncConnection:
    """One connection to a tracker or storage; one exchange at a time."""

    __slots__ = ("buffer", "delivered", "idle_since", "key", "reusable", "sent", "transport")

    def __init__(self, transport: asyncio.Transport, buffer: ReplyBuffer, key: Key) -> None:
        self.transport = transport
        self.buffer = buffer
        self.key = key
        self.idle_since = 0.0
        #: The last exchange's first write went out / body bytes went to its sink / it ended cleanly.
        self.sent = False
        self.delivered = 0
        self.reusable = False

    @classmethod
    async def connect(cls, key: Key, config: ClientConfig) -> AsyncConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(config.connect_timeout):
                transport, buffer = await loop.create_connection(lambda: ReplyBuffer(loop), key[0], key[1])
        except OSError as exc:
            raise connect_error(key, exc, config.connect_timeout) from exc
        return cls(transport, buffer, key)

    def alive(self) -> bool:
        # Anything received while idle (an EOF, a reset, bytes nobody asked for) makes it unusable.
        return not (self.buffer.ended or self.buffer.data or self.transport.is_closing())

    def close(self) -> None:
        self.transport.close()

    # ---- one exchange ---------------------------------------------------------------------------
    async def exchange(self, step: Exchange, chunk_size: int, timeout: float) -> Any:
        self.reusable = False
        self.sent = False
        self.delivered = 0
        try:
            async with asyncio.timeout(timeout) as deadline:
                if step.upload is None:
                    self.transport.write(step.frame)
                    self.sent = True
                else:
                    await self._send_upload(step, chunk_size, deadline, timeout)
                return await self._receive(step, chunk_size, deadline, timeout)
        except ClusterError:
            raise
        except OSError as exc:
            raise transport_error(step, self.key, exc, timeout) from exc

    async def _send_upload(self, step: Exchange, chunk_size: int, deadline: asyncio.Timeout, timeout: float) -> None:
        source = step.upload
        assert source is not None
        progress = step.progress
        loop = asyncio.get_running_loop()
        head_len = len(step.frame)
        sent = 0
        total = head_len + source.size
        pieces = source.pieces(step.frame, chunk_size)
        while True:
            # A file's chunks are read in a thread: a disk read must not hold up the loop.
            piece = next(pieces, None) if source.file is None or not sent else await _in_thread(next, pieces, None)
            if piece is None:
                break
            self._check_early_reply(step)
            self.transport.write(piece)
            self.sent = True
            sent += len(piece)
            if progress is not None and sent > head_len:
                progress(sent - head_len, source.size)
            if sent < total:
                await self.buffer.drain()
                deadline.reschedule(loop.time() + timeout)

    def _check_early_reply(self, step: Exchange) -> None:
        """Raise what the server said (or that it left) before the request's data was all sent."""
        buffer = self.buffer
        if len(buffer.data) >= HEADER_SIZE:
            raise early_reply_error(step, buffer.data)
        if buffer.ended:
            raise buffer.error or ConnectionResetError("connection closed by the server")

    async def _read(self, step: Exchange, count: int) -> bytes:
        if not await self.buffer.wait_for_data(count):
            raise closed_error(step, self.key, before_reply=False)
        return self.buffer.take(count)

    async def _receive(self, step: Exchange, chunk_size: int, deadline: asyncio.Timeout, timeout: float) -> Any:
        buffer = self.buffer
        if not await buffer.wait_for_data(HEADER_SIZE):
            if buffer.error is not None and not buffer.data:
                raise buffer.error
            raise closed_error(step, self.key, before_reply=not buffer.data)
        pkg_len, status = check_header(step, buffer.data)
        check_extra(step, len(buffer.data), pkg_len)
        buffer.take(HEADER_SIZE)
        if status == 0 and step.sink is not None:
            return await self._stream_body(step, step.sink, pkg_len, chunk_size, deadline, timeout)
        body: bytes | bytearray
        if pkg_len <= chunk_size:
            body = await self._read(step, pkg_len)
        else:
            loop = asyncio.get_running_loop()
            body = bytearray()
            while len(body) < pkg_len:
                body += await self._read_some(step, min(chunk_size, pkg_len - len(body)))
                deadline.reschedule(loop.time() + timeout)
        check_extra(step, HEADER_SIZE + pkg_len + len(buffer.data), pkg_len)
        if status:
            self.reusable = keeps_connection(step, status)
        result = finish(step, status, body)
        self.reusable = True
        return result

    async def _read_some(self, step: Exchange, limit: int) -> bytes:
        """At least one byte and at most ``limit``, as soon as any has arrived."""
        if not await self.buffer.wait_for_data(1):
            raise closed_error(step, self.key, before_reply=False)
        return self.buffer.take(limit)

    async def _stream_body(
        self, step: Exchange, sink: BinaryIO, pkg_len: int, chunk_size: int, deadline: asyncio.Timeout, timeout: float
    ) -> int:
        progress = step.progress
        loop = asyncio.get_running_loop()
        done = 0
        while done < pkg_len:
            data = await self._read_some(step, min(chunk_size, pkg_len - done))
            await _in_thread(write_sink, sink, data)
            done += len(data)
            self.delivered = done
            if progress is not None:
                progress(done, pkg_len)
            deadline.reschedule(loop.time() + timeout)
        check_extra(step, HEADER_SIZE + pkg_len + len(self.buffer.data), pkg_len)
        self.reusable = True
        return pkg_len


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the loop's default executor (local file I/O)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
