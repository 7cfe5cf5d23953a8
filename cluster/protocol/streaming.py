"""Incremental request decoder for storage servers: file data is handed out as it arrives.

A storage receives uploads far larger than it may buffer (a 2 GiB upload must not cost 2 GiB of
memory), so for the commands that carry file data the decoder delivers events instead of a frame::

    RequestHead(request)      the typed head (sizes, extension, file name), as soon as it is complete
    BodyChunk(data)           zero or more: the file bytes, in order, as they were fed
    BodyEnd()                 all ``request.data_size`` bytes have been delivered

Every other command arrives whole, as a :class:`~cluster.protocol.frames.Frame`, for
:func:`~cluster.protocol.dispatch.parse_request`.  The decoder never holds more than one head
(bounded: the longest head is 44 bytes plus a 128-byte file name), one buffered frame (at most
``max_body``) and whatever was fed but not yet taken: a server that drains ``next_event()`` after
each ``feed()`` holds no more than one network read of file data at a time.

Any :class:`ProtocolError` leaves the stream unsynchronised (the rest of the body is still
coming): the decoder keeps raising it and the connection must be closed, which is what a storage
does after an EINVAL reply anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import StreamedRequest
from .errors import ProtocolError
from .frames import HEADER_SIZE, Frame, Header, decode_header
from .sync_messages import SyncAppendFileRequest, SyncCreateFileRequest, SyncModifyFileRequest
from .upload_messages import (
    AppendFileRequest,
    ModifyFileRequest,
    UploadAppenderFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
)

#: Commands whose body ends with streamed file data, and the message class of their head.
STREAMED: dict[int, type[StreamedRequest]] = {
    cls.COMMAND: cls
    for cls in (
        UploadFileRequest,
        UploadAppenderFileRequest,
        UploadSlaveFileRequest,
        AppendFileRequest,
        ModifyFileRequest,
        SyncCreateFileRequest,
        SyncAppendFileRequest,
        SyncModifyFileRequest,
    )
}


@dataclass(frozen=True, slots=True)
class RequestHead:
    """The head of a streamed request; ``request.data_size`` bytes of file data follow."""

    request: StreamedRequest


@dataclass(frozen=True, slots=True)
class BodyChunk:
    """Some of the file data of the current streamed request (never empty)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class BodyEnd:
    """The current streamed request's data is complete."""


Event = Frame | RequestHead | BodyChunk | BodyEnd


class RequestDecoder:
    """Incremental decoder of requests that streams the file data of uploads.

    ``max_body`` limits the body of a buffered request; ``max_stream`` limits the body (head and
    data) of a streamed one.  A header above its limit, or with a negative ``pkg_len``, raises
    :class:`ProtocolError` before any of its body is buffered.

    ``whole_commands`` are streamed commands delivered as one :class:`Frame` instead when their
    body is at most ``whole_limit`` bytes: for a stream of many small requests (replication), one
    event per request costs less than three, and the data is small enough to hold.
    """

    __slots__ = (
        "_buf",
        "_error",
        "_header",
        "_remaining",
        "_stream_cls",
        "_whole_commands",
        "_whole_limit",
        "max_body",
        "max_stream",
    )

    def __init__(
        self, max_body: int, max_stream: int, whole_commands: frozenset[int] = frozenset(), whole_limit: int = 0
    ) -> None:
        if max_body < 0 or max_stream < 0 or whole_limit < 0:
            raise ValueError("limits must be >= 0")
        self.max_body = max_body
        self.max_stream = max_stream
        self._whole_commands = whole_commands
        self._whole_limit = whole_limit
        self._buf = bytearray()
        self._error: ProtocolError | None = None
        self._header: Header | None = None  # set while a body is expected
        self._stream_cls: type[StreamedRequest] | None = None  # set while a streamed head is expected
        self._remaining = -1  # data bytes still to deliver; -1 when not inside streamed data

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> Event | None:
        """The next event, or ``None`` if more bytes are needed."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ProtocolError as exc:
            self._error = exc
            raise

    @property
    def idle(self) -> bool:
        """True between requests: nothing partial is buffered (an EOF here is a clean close)."""
        return self._header is None and self._remaining < 0 and not self._buf

    def _next(self) -> Event | None:
        if self._remaining >= 0:
            return self._data_event()
        header = self._header
        if header is None:
            if len(self._buf) < HEADER_SIZE:
                return None
            header = self._start(decode_header(self._buf))
            del self._buf[:HEADER_SIZE]
        if self._stream_cls is not None:
            return self._head_event(header, self._stream_cls)
        if len(self._buf) < header.pkg_len:
            return None
        body = bytes(self._buf[: header.pkg_len])
        del self._buf[: header.pkg_len]
        self._header = None
        return Frame(header.cmd, header.status, body)

    def _start(self, header: Header) -> Header:
        stream_cls = STREAMED.get(header.cmd)
        limit = self.max_body if stream_cls is None else self.max_stream
        if header.pkg_len > limit:
            name = stream_cls.COMMAND.name if stream_cls else str(header.cmd)
            raise ProtocolError(f"pkg_len {header.pkg_len} of command {name} is above the limit of {limit}")
        if stream_cls is not None and header.pkg_len < stream_cls.FIXED_SIZE:
            raise ProtocolError(f"{stream_cls.COMMAND.name} body of {header.pkg_len} bytes is too short")
        if stream_cls is not None and header.pkg_len <= self._whole_limit and header.cmd in self._whole_commands:
            stream_cls = None  # small enough: buffered and delivered whole
        self._header = header
        self._stream_cls = stream_cls
        return header

    def _head_event(self, header: Header, cls: type[StreamedRequest]) -> Event | None:
        if len(self._buf) < cls.FIXED_SIZE:
            return None
        head_len = cls.head_size(bytes(self._buf[: cls.FIXED_SIZE]))
        if head_len > header.pkg_len:
            name = cls.COMMAND.name
            raise ProtocolError(f"{name} head of {head_len} bytes overruns pkg_len {header.pkg_len}")
        if len(self._buf) < head_len:
            return None
        request = cls.decode_head(bytes(self._buf[:head_len]), header.pkg_len)
        del self._buf[:head_len]
        self._header = None
        self._stream_cls = None
        self._remaining = request.data_size
        return RequestHead(request)

    def _data_event(self) -> Event | None:
        if self._remaining == 0:
            self._remaining = -1
            return BodyEnd()
        if not self._buf:
            return None
        take = min(self._remaining, len(self._buf))
        if take == len(self._buf):
            chunk = bytes(self._buf)
            self._buf.clear()
        else:
            chunk = bytes(self._buf[:take])
            del self._buf[:take]
        self._remaining -= take
        return BodyChunk(chunk)
