"""Sending a download's bytes: a file region to a client connection, memory bounded whatever its size.

On asyncio's own event loops :meth:`asyncio.AbstractEventLoop.sendfile` hands the region to the
kernel (``os.sendfile``: no copy through Python).  uvloop has no ``sendfile``, so there the region is
read in chunks of :data:`CHUNK` bytes in a worker thread (a cold read must not stall the event loop)
and written, waiting for the socket to drain after each: at most a chunk and the transport's
high-water mark are held in memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from typing import Protocol

from .handlers import Region

CHUNK = 1 << 20
SENDFILE_PIECE = 16 << 20


class Sink(Protocol):
    """What :func:`send_region` needs of a connection."""

    transport: asyncio.Transport | None

    def send(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


async def send_region(sink: Sink, region: Region, executor: concurrent.futures.Executor, timeout: float) -> None:
    """Send ``region.count`` bytes of ``region``'s file.

    OSError if the file shrinks, the peer goes away, or it reads nothing for ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    transport = sink.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("connection closed")
    if isinstance(loop, asyncio.BaseEventLoop):
        await asyncio.wait_for(sink.drain(), timeout)
        # In pieces, each under the timeout: a client that stops reading is dropped, not waited for.
        position, end = region.offset, region.offset + region.count
        with os.fdopen(os.dup(region.fd), "rb", buffering=0) as file:
            while position < end:
                count = min(SENDFILE_PIECE, end - position)
                sent = await asyncio.wait_for(loop.sendfile(transport, file, position, count), timeout)
                if sent != count:
                    raise OSError(f"sent {sent} of {count} bytes: the file shrank")
                position += sent
        return
    position, end = region.offset, region.offset + region.count
    while position < end:
        chunk = await loop.run_in_executor(executor, os.pread, region.fd, min(CHUNK, end - position), position)
        if not chunk:
            raise OSError(f"the file ended {end - position} bytes early")
        sink.send(chunk)
        position += len(chunk)
        await asyncio.wait_for(sink.drain(), timeout)
