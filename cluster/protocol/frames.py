"""Framing: the 10-byte header, whole frames, and an incremental decoder of whole frames.

Every request and reply is ``pkg_len[8] cmd[1] status[1]`` followed by ``pkg_len`` body bytes::

    offset  size  field
    0       8     pkg_len   body length, big-endian int64; negative is refused
    8       1     cmd       request code; every reply uses 100 (Command.RESPONSE)
    9       1     status    replies: 0 or an errno; requests: 0 (QUERY_FILE_INFO puts flags here)

:class:`FrameDecoder` buffers whole frames and suits every connection whose bodies are small (the
tracker, replies to the client).  Storage servers, which receive uploads too large to buffer, use
:class:`cluster.protocol.streaming.RequestDecoder`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .codes import Command
from .errors import ProtocolError

HEADER = struct.Struct("!qBB")
HEADER_SIZE = HEADER.size  # 10


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded frame header."""

    pkg_len: int
    cmd: int
    status: int = 0

    def encode(self) -> bytes:
        if self.pkg_len < 0:
            raise ProtocolError(f"negative pkg_len {self.pkg_len}")
        try:
            return HEADER.pack(self.pkg_len, self.cmd, self.status)
        except struct.error as exc:
            raise ProtocolError(f"unencodable header {self}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Frame:
    """A whole frame: header fields and the complete body."""

    cmd: int
    status: int
    body: bytes

    def encode(self) -> bytes:
        return Header(len(self.body), self.cmd, self.status).encode() + self.body


def decode_header(data: bytes | bytearray) -> Header:
    """The header in the first 10 bytes of ``data``; a negative ``pkg_len`` is refused."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"a frame header is {HEADER_SIZE} bytes, got {len(data)}")
    pkg_len, cmd, status = HEADER.unpack_from(data)
    if pkg_len < 0:
        raise ProtocolError(f"negative pkg_len {pkg_len}")
    return Header(pkg_len, cmd, status)


def encode_frame(cmd: int, body: bytes = b"", status: int = 0) -> bytes:
    """Header and body as one buffer, so that small frames go out in one write."""
    return Header(len(body), cmd, status).encode() + body


def encode_reply(body: bytes = b"", status: int = 0) -> bytes:
    """A reply frame (``cmd`` 100)."""
    return encode_frame(Command.RESPONSE, body, status)


def encode_error(status: int) -> bytes:
    """A header-only error reply carrying ``status`` (an errno)."""
    if not 0 < status <= 0xFF:
        raise ProtocolError(f"an error status must be 1..255, not {status}")
    return encode_frame(Command.RESPONSE, b"", status)


class FrameDecoder:
    """Incremental decoder of whole frames.

    ``feed()`` the bytes as they arrive, then call ``next_frame()`` until it returns ``None`` ("need
    more").  A header whose ``pkg_len`` is negative or above ``max_body`` raises
    :class:`ProtocolError` as soon as the header is complete, before any of the body is buffered;
    the stream cannot be resynchronised after that, so the decoder keeps raising the same error and
    the connection must be closed.  Memory held: at most one partial frame plus whatever was fed
    and not yet taken.
    """

    __slots__ = ("_buf", "_error", "_header", "max_body")

    def __init__(self, max_body: int) -> None:
        if max_body < 0:
            raise ValueError(f"max_body must be >= 0, not {max_body}")
        self.max_body = max_body
        self._buf = bytearray()
        self._header: Header | None = None
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        header = self._header
        if header is None:
            if len(self._buf) < HEADER_SIZE:
                return None
            try:
                header = decode_header(self._buf)
                if header.pkg_len > self.max_body:
                    raise ProtocolError(f"pkg_len {header.pkg_len} is above the limit of {self.max_body}")
            except ProtocolError as exc:
                self._error = exc
                raise
            del self._buf[:HEADER_SIZE]
            self._header = header
        end = header.pkg_len
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[:end])
        del self._buf[:end]
        self._header = None
        return Frame(header.cmd, header.status, body)

    @property
    def idle(self) -> bool:
        """True between frames: no partial frame is buffered (an EOF here is a clean close)."""
        return self._header is None and not self._buf
