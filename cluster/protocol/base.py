"""Base classes of the typed messages: how a message becomes a frame.

Every message is a frozen, slotted dataclass deriving from one of these.  ``encode_body()`` gives
the body bytes, ``encode()`` the whole frame (header and body, ready for one write), and the
classmethod ``decode(body)`` the message back, raising only :class:`ProtocolError`.

Requests whose body ends with file data that may be gigabytes long (uploads, appends, modifies and
their replication counterparts) derive from :class:`StreamedRequest` instead: the message holds the
fixed-size leading part of the body (the "head": sizes, extension, file name) and ``data_size``,
the number of file bytes that follow it, which are never part of the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from .codes import Command
from .errors import ProtocolError
from .frames import Header, encode_frame


class Request:
    """A request whose whole body is held in memory."""

    __slots__ = ()
    COMMAND: ClassVar[Command]

    @property
    def command(self) -> Command:
        return self.COMMAND

    @property
    def header_status(self) -> int:
        """The header's status byte: 0 for every request but QUERY_FILE_INFO."""
        return 0

    def encode_body(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        return encode_frame(self.command, self.encode_body(), self.header_status)


class Reply:
    """A successful reply (``cmd`` 100, status 0); error replies are header-only (``encode_error``)."""

    __slots__ = ()

    def encode_body(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        return encode_frame(Command.RESPONSE, self.encode_body())


class StreamedRequest:
    """A request made of a head (this message) followed by ``data_size`` bytes of file data.

    On the wire the body is ``head + data`` and the header's ``pkg_len`` counts both; the head
    announces the data size and a decoder checks that it equals ``pkg_len - len(head)``.  The head
    is ``FIXED_SIZE`` bytes, then a variable part (a file name) whose length the fixed part gives.
    """

    __slots__ = ()
    COMMAND: ClassVar[Command]
    FIXED_SIZE: ClassVar[int]

    @property
    def command(self) -> Command:
        return self.COMMAND

    @property
    def data_size(self) -> int:
        raise NotImplementedError

    @classmethod
    def tail_size(cls, fixed: bytes) -> int:
        """Length of the head's variable part, read from its first ``FIXED_SIZE`` bytes."""
        raise NotImplementedError

    @classmethod
    def decode_head(cls, head: bytes, pkg_len: int) -> Self:
        """The message from its complete head, checking the data size against ``pkg_len``."""
        raise NotImplementedError

    def encode_head_body(self) -> bytes:
        raise NotImplementedError

    def encode_head(self) -> bytes:
        """Header and head: the caller sends the ``data_size`` bytes of data after these."""
        head = self.encode_head_body()
        return Header(len(head) + self.data_size, self.command).encode() + head

    def encode(self, data: bytes) -> bytes:
        """The whole frame, for data small enough to hold in memory."""
        if len(data) != self.data_size:
            raise ProtocolError(f"{len(data)} data bytes given for a data size of {self.data_size}")
        return self.encode_head() + data

    @classmethod
    def head_size(cls, fixed: bytes) -> int:
        return cls.FIXED_SIZE + cls.tail_size(fixed)

    @classmethod
    def check_data_size(cls, data_size: int, head_len: int, pkg_len: int) -> None:
        if data_size != pkg_len - head_len:
            raise ProtocolError(
                f"{cls.COMMAND.name}: data size {data_size} != pkg_len {pkg_len} - head {head_len}"
            )


@dataclass(frozen=True, slots=True)
class RequestWithData:
    """A streamed request decoded from a whole body: its head and the data that followed it."""

    request: StreamedRequest
    data: bytes

    def encode(self) -> bytes:
        return self.request.encode(self.data)


def decode_with_data(cls: type[StreamedRequest], body: bytes) -> RequestWithData:
    """Split a whole streamed-request body into its head message and its data."""
    if len(body) < cls.FIXED_SIZE:
        raise ProtocolError(f"{cls.COMMAND.name} body is shorter than its {cls.FIXED_SIZE}-byte head")
    head_len = cls.head_size(body[: cls.FIXED_SIZE])
    if head_len > len(body):
        raise ProtocolError(f"{cls.COMMAND.name} head of {head_len} bytes overruns a {len(body)}-byte body")
    return RequestWithData(cls.decode_head(body[:head_len], len(body)), body[head_len:])


@dataclass(frozen=True, slots=True)
class EmptyReply(Reply):
    """The empty success reply: delete, set-metadata, append, modify, truncate, sync commands."""

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> EmptyReply:
        if body:
            raise ProtocolError(f"expected an empty reply body, got {len(body)} bytes")
        return cls()


@dataclass(frozen=True, slots=True)
class ActiveTestRequest(Request):
    """ACTIVE_TEST (111), to tracker or storage: empty body, empty reply."""

    COMMAND: ClassVar[Command] = Command.ACTIVE_TEST

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> ActiveTestRequest:
        if body:
            raise ProtocolError(f"ACTIVE_TEST body must be empty, got {len(body)} bytes")
        return cls()


@dataclass(frozen=True, slots=True)
class QuitRequest(Request):
    """QUIT (82): empty body; the server sends no reply and closes the connection."""

    COMMAND: ClassVar[Command] = Command.QUIT

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> QuitRequest:
        if body:
            raise ProtocolError(f"QUIT body must be empty, got {len(body)} bytes")
        return cls()
