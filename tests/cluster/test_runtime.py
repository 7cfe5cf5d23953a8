"""The shared server runtime: ordered handling, back-pressure, connection limit, timeouts, stop."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable
from typing import Any

import pytest

from cluster.errors import ConfigError
from cluster.protocol import Frame, FrameDecoder, encode_frame, encode_reply
from cluster.runtime import Connection, ConnectionServer, new_event_loop, run

ECHO = 1  # replied to at once
SLOW = 2  # replied to after an await
BOOM = 3  # the handler raises


class EchoConnection(Connection):
    def __init__(self, server: ConnectionServer) -> None:
        super().__init__(server)
        self.decoder = FrameDecoder(max_body=1024)

    def feed(self, data: bytes) -> None:
        self.decoder.feed(data)

    def next_event(self) -> object | None:
        return self.decoder.next_frame()

    @property
    def idle(self) -> bool:
        return self.decoder.idle

    def handle(self, event: object) -> Awaitable[Any] | None:
        assert isinstance(event, Frame)
        if event.cmd == ECHO:
            self.send(encode_reply(event.body))
            self.served += 1
            return None
        if event.cmd == SLOW:
            return self._slow(event.body)
        raise RuntimeError("handler failure")

    async def _slow(self, body: bytes) -> None:
        await asyncio.sleep(0.05)
        self.send(encode_reply(body))
        self.served += 1


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    pkg_len, cmd, status = struct.unpack("!qBB", await reader.readexactly(10))
    assert (cmd, status) == (100, 0)
    return await reader.readexactly(pkg_len)


async def start(**limits: Any) -> tuple[ConnectionServer, int]:
    server = ConnectionServer(EchoConnection, **limits)
    port = await server.listen("127.0.0.1", 0)
    return server, port


def test_pipelined_requests_are_answered_in_order_across_slow_handlers() -> None:
    async def scenario() -> list[bytes]:
        server, port = await start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frames = [encode_frame(SLOW if i % 3 == 0 else ECHO, b"%d" % i) for i in range(30)]
        writer.write(b"".join(frames))  # all at once: the server must keep them in order
        replies = [await read_reply(reader) for _ in frames]
        writer.close()
        await server.stop()
        return replies

    assert run(scenario()) == [b"%d" % i for i in range(30)]


def test_requests_split_into_single_bytes_are_decoded() -> None:
    async def scenario() -> bytes:
        server, port = await start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in encode_frame(ECHO, b"split"):
            writer.write(bytes([byte]))
            await writer.drain()
        reply = await read_reply(reader)
        writer.close()
        await server.stop()
        return reply

    assert run(scenario()) == b"split"


def test_malformed_frame_closes_only_that_connection() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server, port = await start()
        good_reader, good_writer = await asyncio.open_connection("127.0.0.1", port)
        bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", port)
        bad_writer.write(struct.pack("!qBB", 1 << 40, ECHO, 0))  # over max_body: refused at the header
        closed = await asyncio.wait_for(bad_reader.read(), timeout=5)
        good_writer.write(encode_frame(ECHO, b"still here"))
        reply = await read_reply(good_reader)
        good_writer.close()
        bad_writer.close()
        await server.stop()
        return closed, reply

    assert run(scenario()) == (b"", b"still here")


def test_failing_handler_closes_its_connection_and_the_server_goes_on() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server, port = await start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(BOOM))
        closed = await asyncio.wait_for(reader.read(), timeout=5)
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", port)
        writer2.write(encode_frame(ECHO, b"ok"))
        reply = await read_reply(reader2)
        writer.close()
        writer2.close()
        await server.stop()
        return closed, reply

    assert run(scenario()) == (b"", b"ok")


def test_connections_over_the_limit_are_closed_and_the_others_served() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        server, port = await start(max_connections=3)
        admitted = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for reader, writer in admitted:  # make sure all three are accepted before the extra one
            writer.write(encode_frame(ECHO, b"x"))
            await read_reply(reader)
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        eof = await asyncio.wait_for(extra_reader.read(), timeout=5)
        assert eof == b""
        replies = []
        for reader, writer in admitted:
            writer.write(encode_frame(ECHO, b"y"))
            replies.append(await read_reply(reader))
            writer.close()
        extra_writer.close()
        refused = server.refused
        await server.stop()
        return replies, refused

    assert run(scenario()) == ([b"y"] * 3, 1)


def test_stalled_and_silent_connections_time_out_but_idle_served_ones_stay() -> None:
    async def scenario() -> tuple[bytes, bytes, bytes]:
        server, port = await start(network_timeout=0.3)
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
        stalled_reader, stalled_writer = await asyncio.open_connection("127.0.0.1", port)
        stalled_writer.write(encode_frame(ECHO, b"abcdef")[:12])  # header and part of the body
        served_reader, served_writer = await asyncio.open_connection("127.0.0.1", port)
        served_writer.write(encode_frame(ECHO, b"1"))
        await read_reply(served_reader)
        silent = await asyncio.wait_for(silent_reader.read(), timeout=10)
        stalled = await asyncio.wait_for(stalled_reader.read(), timeout=10)
        await asyncio.sleep(0.5)  # well past the timeout: the served, idle connection must remain
        served_writer.write(encode_frame(ECHO, b"2"))
        reply = await read_reply(served_reader)
        for writer in (silent_writer, stalled_writer, served_writer):
            writer.close()
        await server.stop()
        return silent, stalled, reply

    assert run(scenario()) == (b"", b"", b"2")


def test_idle_timeout_closes_idle_connections_when_set() -> None:
    async def scenario() -> bytes:
        server, port = await start(network_timeout=5, idle_timeout=0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(ECHO, b"1"))
        await read_reply(reader)
        eof = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        await server.stop()
        return eof

    assert run(scenario()) == b""


def test_stop_lets_a_request_in_progress_finish() -> None:
    async def scenario() -> bytes:
        server, port = await start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode_frame(SLOW, b"last"))
        await asyncio.sleep(0.01)
        stopping = asyncio.create_task(server.stop(grace=5))
        reply = await read_reply(reader)
        await stopping
        writer.close()
        return reply

    assert run(scenario()) == b"last"


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ConfigError):
        ConnectionServer(EchoConnection, max_connections=0)
    with pytest.raises(ConfigError):
        ConnectionServer(EchoConnection, network_timeout=0)


def test_listening_on_a_taken_port_is_a_config_error() -> None:
    async def scenario() -> None:
        server, port = await start()
        other = ConnectionServer(EchoConnection)
        try:
            with pytest.raises(ConfigError, match="cannot listen"):
                await other.listen("127.0.0.1", port)
        finally:
            await server.stop()

    loop = new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
