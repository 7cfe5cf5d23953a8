"""Fuzzing: random and mutated bytes make the decoders return or raise ProtocolError, nothing else."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_samples import REPLIES, REQUESTS, STREAMED_SAMPLES

from cluster.protocol import (
    Command,
    Frame,
    FrameDecoder,
    ProtocolError,
    RequestDecoder,
    StatLayout,
    parse_reply,
    parse_request,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMMANDS = [int(c) for c in Command] + [0, 1, 99, 255]
REQUEST_FRAMES = [r.encode() for r in REQUESTS] + [s.encode() for s in STREAMED_SAMPLES]
REPLY_CASES = [(s.request_cmd, s.reply.encode()[10:], s.layout) for s in REPLIES]


def try_parse_request(cmd: int, body: bytes, status: int) -> None:
    with contextlib.suppress(ProtocolError):
        parse_request(cmd, body, status)


def try_parse_reply(cmd: int, body: bytes, layout: StatLayout) -> None:
    with contextlib.suppress(ProtocolError):
        parse_reply(cmd, body, layout)


def run_decoders(stream: bytes, cuts: list[int]) -> None:
    """Feed ``stream`` to both decoders in pieces, parsing every whole frame that comes out."""
    pieces = []
    start = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        pieces.append(stream[start:cut])
        start = max(start, cut)
    pieces.append(stream[start:])

    frames = FrameDecoder(max_body=4096)
    try:
        for piece in pieces:
            frames.feed(piece)
            while (frame := frames.next_frame()) is not None:
                try_parse_request(frame.cmd, frame.body, frame.status)
    except ProtocolError:
        pass

    requests = RequestDecoder(max_body=4096, max_stream=1 << 20)
    try:
        for piece in pieces:
            requests.feed(piece)
            while (event := requests.next_event()) is not None:
                if isinstance(event, Frame):
                    try_parse_request(event.cmd, event.body, event.status)
    except ProtocolError:
        pass


@FUZZ
@given(st.sampled_from(COMMANDS), st.binary(max_size=700), st.integers(0, 255))
def test_random_bodies(cmd: int, body: bytes, status: int) -> None:
    try_parse_request(cmd, body, status)
    for layout in StatLayout:
        try_parse_reply(cmd, body, layout)


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
def test_random_streams(stream: bytes, cuts: list[int]) -> None:
    run_decoders(stream, cuts)


@st.composite
def mutated(draw: st.DrawFn, frames: list[bytes]) -> bytes:
    frame = bytearray(draw(st.sampled_from(frames)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(frame) - 1, 0)))
        if kind == "flip" and frame:
            frame[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and frame:
            frame[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord(":"), ord("\n"), 1, 2]))
        elif kind == "truncate":
            del frame[pos:]
        elif kind == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del frame[pos : pos + draw(st.integers(1, 8))]
    return bytes(frame)


@FUZZ
@given(mutated(REQUEST_FRAMES), st.lists(st.integers(0, 2000), max_size=4))
def test_mutated_request_frames(frame: bytes, cuts: list[int]) -> None:
    run_decoders(frame, cuts)
    if len(frame) >= 10:
        try_parse_request(frame[8], frame[10:], frame[9])


@FUZZ
@given(st.sampled_from(REPLY_CASES), st.data())
def test_mutated_reply_bodies(case: tuple[int, bytes, StatLayout], data: st.DataObject) -> None:
    cmd, body, layout = case
    if not body:
        body = data.draw(st.binary(max_size=40))
    mutant = data.draw(mutated([body]))
    try_parse_reply(cmd, mutant, layout)
    try_parse_reply(cmd, mutant, StatLayout.V6_10 if layout is StatLayout.V6_15 else StatLayout.V6_15)
