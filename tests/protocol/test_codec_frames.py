"""Framing: the header and the whole-frame decoder, fed whole, byte by byte and split everywhere."""

from __future__ import annotations

import struct

import pytest
from protocol_samples import REPLIES, REQUESTS, STREAMED_SAMPLES

from cluster.protocol import (
    HEADER_SIZE,
    Command,
    Frame,
    FrameDecoder,
    Header,
    ProtocolError,
    decode_header,
    encode_error,
    encode_frame,
    encode_reply,
)

ALL_FRAMES = (
    [r.encode() for r in REQUESTS]
    + [s.encode() for s in STREAMED_SAMPLES]
    + [r.reply.encode() for r in REPLIES]
)


def drain(decoder: FrameDecoder) -> list[Frame]:
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


def test_header_layout() -> None:
    assert HEADER_SIZE == 10
    assert Header(5000 + 15, Command.UPLOAD_FILE).encode() == bytes.fromhex("0000000000001397 0b 00")
    assert encode_frame(Command.QUERY_STORE_WITHOUT_GROUP_ONE) == bytes.fromhex("0000000000000000 65 00")
    assert decode_header(bytes.fromhex("000000000000004c 64 00") + b"rest") == Header(76, 100, 0)


def test_header_refuses_negative_and_short() -> None:
    with pytest.raises(ProtocolError):
        decode_header(struct.pack("!qBB", -1, 11, 0))
    with pytest.raises(ProtocolError):
        decode_header(b"\0" * 9)
    with pytest.raises(ProtocolError):
        Header(-1, 11).encode()
    with pytest.raises(ProtocolError):
        Header(0, 256).encode()


def test_reply_and_error_frames() -> None:
    assert encode_reply(b"ab") == bytes.fromhex("0000000000000002 64 00") + b"ab"
    assert encode_error(22) == bytes.fromhex("0000000000000000 64 16")
    for bad in (0, 256, -1):
        with pytest.raises(ProtocolError):
            encode_error(bad)
    assert Frame(100, 2, b"").encode() == encode_error(2)


@pytest.mark.parametrize("frame", ALL_FRAMES, ids=range(len(ALL_FRAMES)))
def test_every_split_point(frame: bytes) -> None:
    whole = FrameDecoder(1 << 20)
    whole.feed(frame)
    expected = drain(whole)
    assert len(expected) == 1 and whole.idle
    assert expected[0].encode() == frame

    for cut in range(len(frame) + 1):
        decoder = FrameDecoder(1 << 20)
        decoder.feed(frame[:cut])
        got = drain(decoder)
        decoder.feed(frame[cut:])
        got += drain(decoder)
        assert got == expected

    decoder = FrameDecoder(1 << 20)
    got = []
    for i in range(len(frame)):
        assert not got
        decoder.feed(frame[i : i + 1])
        got += drain(decoder)
    assert got == expected and decoder.idle


def test_many_frames_in_one_feed() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(b"".join(ALL_FRAMES) + ALL_FRAMES[0][:5])
    frames = drain(decoder)
    assert [f.encode() for f in frames] == ALL_FRAMES
    assert not decoder.idle  # a partial header is buffered


def test_oversized_frame_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(max_body=100)
    decoder.feed(Header(101, Command.ACTIVE_TEST).encode())
    with pytest.raises(ProtocolError):
        decoder.next_frame()
    # The stream cannot be resynchronised: the error sticks.
    decoder.feed(encode_frame(Command.ACTIVE_TEST))
    with pytest.raises(ProtocolError):
        decoder.next_frame()


def test_negative_pkg_len_refused() -> None:
    decoder = FrameDecoder(max_body=100)
    decoder.feed(struct.pack("!qBB", -5, 111, 0))
    with pytest.raises(ProtocolError):
        decoder.next_frame()


def test_limit_is_inclusive_and_zero_body() -> None:
    decoder = FrameDecoder(max_body=3)
    decoder.feed(encode_frame(111, b"abc") + encode_frame(111))
    assert drain(decoder) == [Frame(111, 0, b"abc"), Frame(111, 0, b"")]


def test_header_then_eof_is_not_idle() -> None:
    decoder = FrameDecoder(100)
    assert decoder.idle
    decoder.feed(Header(4, 14).encode())
    assert decoder.next_frame() is None
    assert not decoder.idle


def test_unknown_command_is_still_framed() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(encode_frame(250, b"x", status=7))
    assert drain(decoder) == [Frame(250, 7, b"x")]
