"""The storage-side request decoder: streamed heads, data chunks and whole frames."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from protocol_samples import APPENDER, NAME, REQUESTS, STREAMED_SAMPLES, StreamedSample

from cluster.protocol import (
    STREAMED,
    AppendFileRequest,
    BodyChunk,
    BodyEnd,
    Command,
    Event,
    Frame,
    Header,
    ProtocolError,
    Request,
    RequestDecoder,
    RequestHead,
    SyncCreateFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
    encode_frame,
    parse_request,
)

MAX_BODY = 1 << 16
MAX_STREAM = 1 << 40


def drain(decoder: RequestDecoder) -> list[Event]:
    events = []
    while (event := decoder.next_event()) is not None:
        events.append(event)
    return events


def merged(events: list[Event]) -> list[Event]:
    """Consecutive chunks joined: how the data was cut depends on how it was fed."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, BodyChunk) and out and isinstance(out[-1], BodyChunk):
            out[-1] = BodyChunk(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def expected_events(sample: StreamedSample) -> list[Event]:
    data: list[Event] = [BodyChunk(sample.data)] if sample.data else []
    return [RequestHead(sample.request), *data, BodyEnd()]


def test_streamed_commands() -> None:
    assert set(STREAMED) == {11, 23, 21, 24, 34, 16, 25, 35}


@pytest.mark.parametrize("sample", STREAMED_SAMPLES, ids=lambda s: type(s.request).__name__)
def test_streamed_request_every_split_point(sample: StreamedSample) -> None:
    frame = sample.encode()
    expected = expected_events(sample)
    for cut in range(len(frame) + 1):
        decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
        decoder.feed(frame[:cut])
        events = drain(decoder)
        decoder.feed(frame[cut:])
        events += drain(decoder)
        assert merged(events) == expected, cut
        assert decoder.idle

    decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
    events = []
    for i in range(len(frame)):
        decoder.feed(frame[i : i + 1])
        events += drain(decoder)
    assert merged(events) == expected
    assert all(len(e.data) == 1 for e in events if isinstance(e, BodyChunk))


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_buffered_request_every_split_point(request_: Request) -> None:
    frame = request_.encode()
    header = Header(len(frame) - 10, frame[8], frame[9])
    expected = [Frame(header.cmd, header.status, frame[10:])]
    for cut in range(len(frame) + 1):
        decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
        decoder.feed(frame[:cut])
        events = drain(decoder)
        decoder.feed(frame[cut:])
        events += drain(decoder)
        assert events == expected
    assert parse_request(header.cmd, frame[10:], header.status) == request_


def test_pipelined_mix() -> None:
    frames = [s.encode() for s in STREAMED_SAMPLES] + [r.encode() for r in REQUESTS]
    decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
    decoder.feed(b"".join(frames))
    events = merged(drain(decoder))
    expected: list[Event] = []
    for sample in STREAMED_SAMPLES:
        expected += expected_events(sample)
    expected += [Frame(r.command, r.header_status, r.encode_body()) for r in REQUESTS]
    assert events == expected


def test_head_delivered_before_data() -> None:
    decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
    head = UploadFileRequest(0, 1 << 30, "bin")
    decoder.feed(head.encode_head())
    assert drain(decoder) == [RequestHead(head)]
    decoder.feed(b"x" * 1000)
    assert drain(decoder) == [BodyChunk(b"x" * 1000)]
    assert not decoder.idle


def test_data_boundary_respected() -> None:
    decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
    nxt = encode_frame(Command.ACTIVE_TEST)
    decoder.feed(UploadFileRequest(0, 3, "").encode(b"abc") + nxt)
    assert drain(decoder) == [
        RequestHead(UploadFileRequest(0, 3, "")), BodyChunk(b"abc"), BodyEnd(), Frame(111, 0, b""),
    ]  # fmt: skip


def test_two_gib_upload_keeps_memory_small() -> None:
    size = 2 << 30
    piece = bytes(4 << 20)
    decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
    tracemalloc.start()
    try:
        decoder.feed(UploadFileRequest(0, size, "bin").encode_head())
        assert isinstance(decoder.next_event(), RequestHead)
        received = 0
        while received < size:
            decoder.feed(piece)
            while isinstance(event := decoder.next_event(), BodyChunk):
                received += len(event.data)
        assert isinstance(event, BodyEnd)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert peak < 100 << 20


def test_limits() -> None:
    decoder = RequestDecoder(max_body=10, max_stream=100)
    decoder.feed(Header(101, Command.UPLOAD_FILE).encode())
    with pytest.raises(ProtocolError):
        decoder.next_event()
    with pytest.raises(ProtocolError):  # sticky
        decoder.next_event()

    decoder = RequestDecoder(max_body=10, max_stream=100)
    decoder.feed(Header(11, Command.DELETE_FILE).encode())
    with pytest.raises(ProtocolError):
        decoder.next_event()

    decoder = RequestDecoder(max_body=10, max_stream=100)
    decoder.feed(Header(100, Command.UPLOAD_FILE).encode())
    assert decoder.next_event() is None  # accepted, waiting for the head


@pytest.mark.parametrize(
    "frame",
    [
        # file_size != pkg_len - 15
        Header(15 + 5, Command.UPLOAD_FILE).encode() + struct.pack("!Bq6s", 0, 4, b"txt"),
        # negative file_size
        Header(15, Command.UPLOAD_FILE).encode() + struct.pack("!Bq6s", 0, -1, b"txt"),
        # bad extension
        Header(15, Command.UPLOAD_FILE).encode() + struct.pack("!Bq6s", 0, 0, b"t/t"),
        # body shorter than the fixed head
        Header(14, Command.UPLOAD_FILE).encode(),
        # file name longer than the body
        Header(20, Command.APPEND_FILE).encode() + struct.pack("!qq", 10, 0),
        # file name length zero
        Header(16, Command.APPEND_FILE).encode() + struct.pack("!qq", 0, 0),
        # negative file name length
        Header(100, Command.MODIFY_FILE).encode() + struct.pack("!qqq", -3, 0, 0),
        # empty slave prefix
        UploadSlaveFileRequest(NAME, "p", 0, "").encode(b"").replace(b"p\0", b"\0\0", 1),
        # non-ASCII file name
        AppendFileRequest(APPENDER, 0).encode(b"").replace(b"M00", b"M\xc30"),
    ],
)
def test_malformed_heads(frame: bytes) -> None:
    decoder = RequestDecoder(MAX_BODY, MAX_STREAM)
    decoder.feed(frame)
    with pytest.raises(ProtocolError):
        drain(decoder)


def test_whole_commands_come_as_one_frame_when_small() -> None:
    decoder = RequestDecoder(MAX_BODY, MAX_STREAM, frozenset({Command.SYNC_CREATE_FILE}), whole_limit=200)
    small = SyncCreateFileRequest(7, "group1", NAME, 10)
    large = SyncCreateFileRequest(8, "group1", NAME, 300)
    upload = UploadFileRequest(0, 10, "txt")
    stream = small.encode(b"0123456789") + large.encode(bytes(300)) + upload.encode(b"abcdefghij")
    events: list[Event] = []
    for byte in range(len(stream)):  # byte by byte: a frame is only complete at its last byte
        decoder.feed(stream[byte : byte + 1])
        events.extend(drain(decoder))
    frame = events[0]
    assert isinstance(frame, Frame) and frame.cmd == Command.SYNC_CREATE_FILE
    assert encode_frame(frame.cmd, frame.body) == small.encode(b"0123456789")
    heads = [e.request for e in events if isinstance(e, RequestHead)]
    assert heads == [large, upload]  # over the limit, or not a whole command: streamed as before
    assert b"".join(e.data for e in events if isinstance(e, BodyChunk)) == bytes(300) + b"abcdefghij"
    assert decoder.idle


def test_whole_limit_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        RequestDecoder(MAX_BODY, MAX_STREAM, frozenset(), whole_limit=-1)
