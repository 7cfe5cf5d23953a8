"""Large downloads on both kinds of event loop: asyncio's (``sendfile``) and uvloop's (chunked reads).

The server runs in-process on a thread with the chosen loop, so that both ways of sending a file
region are exercised whatever loop the command line picks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from procs import WireClient
from storage_wire import EINVAL, download, upload

from cluster.runtime import new_event_loop
from cluster.storage import StorageConfig, StorageServer
from trunkstore.conffile import parse_conf_text

MIB = 1 << 20
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "default": new_event_loop,  # uvloop where it is installed
}


@pytest.fixture(params=list(LOOPS), ids=list(LOOPS))
def address(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    text = f"base_path = {tmp_path}\nbind_addr = 127.0.0.1\nport = 0\nsync_mode = none\ntrunk_file_size = 4MB"
    config, _ = StorageConfig.from_values(parse_conf_text(text))
    started = threading.Event()
    holder: dict[str, object] = {}

    async def serve() -> None:
        server = StorageServer(config)
        await server.start()
        stop = asyncio.Event()
        holder["address"] = f"127.0.0.1:{server.port}"
        holder["stop"] = lambda: server_loop.call_soon_threadsafe(stop.set)
        started.set()
        await stop.wait()
        await server.stop()

    server_loop = LOOPS[request.param]()
    thread = threading.Thread(target=server_loop.run_until_complete, args=(serve(),))
    thread.start()
    assert started.wait(30)
    try:
        yield str(holder["address"])
    finally:
        holder["stop"]()  # type: ignore[operator]
        thread.join(30)
        server_loop.close()


@pytest.mark.parametrize(
    ("size", "offset", "length"),
    [(3 * MIB, 0, 0), (3 * MIB, 12345, 2 * MIB), (1 * MIB, 100, 0), (3 * MIB, 3 * MIB - 70_000, 0), (40 * MIB, 7, 0)],
    ids=["plain-whole", "plain-range", "trunk-tail", "plain-last-70k", "several-sendfile-pieces"],
)
def test_large_download_regions(address: str, size: int, offset: int, length: int) -> None:
    data = bytes(range(251)) * (size // 251 + 1)
    data = data[:size]
    with WireClient(address) as wire:
        name = upload(wire, data, "bin")
        expected = data[offset:] if length == 0 else data[offset : offset + length]
        assert download(wire, name, offset, length) == (0, expected)
        assert download(wire, name) == (0, data)
        assert download(wire, name, size) == (EINVAL, b"")
