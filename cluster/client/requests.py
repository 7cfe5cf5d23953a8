"""Sans-IO core shared by both clients: one request/reply exchange, reply checks, retry policy.

An operation (:mod:`cluster.client.operations`) is a generator that yields :class:`Exchange` steps
and receives each one's parsed result; :class:`~cluster.client.Client` and
:class:`~cluster.client.AsyncClient` are drivers that carry the steps over blocking sockets or
asyncio streams.  Everything a driver decides that is not I/O lives here, once:

* :func:`check_header` refuses a reply whose header breaks the protocol, or whose body would be
  larger than the step allows (40 bytes for a store query, 39 for a fetch query, ...);
* :func:`finish` maps a non-zero status to the :mod:`cluster.errors` hierarchy and parses the body;
* :func:`may_retry` says when a failed exchange may be sent again on a fresh connection;
* :class:`TrackerRotation` orders the trackers from the last one that answered (failover).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from cluster.errors import (
    ClusterError,
    ConnectionLost,
    InvalidRequest,
    RequestTimeout,
    Unavailable,
    error_for_status,
)
from cluster.protocol import HEADER_SIZE, Command, ProtocolError

#: No limit on a reply body's size (downloads of the whole file).
UNLIMITED = 1 << 62
#: Largest body accepted with an error status (FastDFS sends none).
ERROR_BODY_MAX = 4096
#: Largest reply to a request that returns a name, metadata or a fixed-size record.
SMALL_REPLY_MAX = 64 * 1024
#: Largest group or storage listing accepted.
LIST_REPLY_MAX = 64 << 20

Key = tuple[str, int]
Progress = Callable[[int, int], None]

_HEADER = struct.Struct("!qBB")


class ProtocolViolation(ConnectionLost):
    """A reply that breaks the protocol; the connection it came on is discarded, never retried."""


@dataclass(frozen=True, slots=True)
class UploadSource:
    """File data to stream after a request's head: bytes in memory, or a binary file read in chunks."""

    size: int
    data: bytes | bytearray | memoryview | None = None
    file: BinaryIO | None = None

    def pieces(self, head: bytes, chunk_size: int) -> Iterator[bytes | memoryview]:
        """The writes of the request: ``head`` and the data in one write when it is in memory and
        fits one chunk; else ``head``, then the data in chunks of at most ``chunk_size`` bytes.

        The first write never consumes a file source, so a request whose first write fails on a
        connection the server had closed can be sent again with the same source.
        """
        if self.data is not None:
            if self.size <= chunk_size:
                yield head + bytes(self.data)
                return
            yield head
            view = memoryview(self.data)
            for start in range(0, self.size, chunk_size):
                yield view[start : start + chunk_size]
            return
        yield head
        remaining = self.size
        while remaining:
            chunk = self.read(min(chunk_size, remaining))
            remaining -= len(chunk)
            yield chunk

    def read(self, want: int) -> bytes:
        """Exactly ``want`` bytes from the file (several reads if it returns short ones)."""
        assert self.file is not None
        parts: list[bytes] = []
        got = 0
        while got < want:
            try:
                chunk = self.file.read(want - got)
            except OSError as exc:
                raise ClusterError(f"reading the upload source failed: {exc}") from exc
            if not chunk:
                raise InvalidRequest(f"the upload source ended before its announced size of {self.size} bytes")
            if len(chunk) > want - got:
                raise InvalidRequest("the upload source returned more bytes than asked for")
            parts.append(chunk)
            got += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its reply, as an operation yields it to a driver."""

    #: The storage to send it to; ``None``: a tracker, with failover.
    address: Key | None
    #: Header and body (or, with ``upload``, header and head), sent in one write.
    frame: bytes
    command: Command
    #: What the request is about (a file ID, a group), for error messages.
    subject: str
    #: Turns the reply body into the step's result; raises ProtocolError on a malformed body.
    parse: Callable[[bytes], Any]
    #: Largest reply body accepted.
    max_reply: int = SMALL_REPLY_MAX
    #: Safe to send again if the connection is lost after it was sent (reads, overwrites).
    idempotent: bool = False
    #: File data streamed after ``frame``.
    upload: UploadSource | None = None
    #: The reply body is streamed into this file instead (the result is its length).
    sink: BinaryIO | None = None
    progress: Progress | None = None

    def describe(self) -> str:
        name = self.command.name.lower()
        return f"{name} {self.subject}" if self.subject else name


def describe_address(key: Key | None) -> str:
    return "tracker" if key is None else f"{key[0]}:{key[1]}"


def check_header(step: Exchange, header: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(pkg_len, status)`` of a reply header, refusing one that breaks the protocol."""
    pkg_len, cmd, status = _HEADER.unpack_from(header)
    if cmd != Command.RESPONSE:
        raise ProtocolViolation(f"{step.describe()}: reply header has command {cmd}, not {int(Command.RESPONSE)}")
    if pkg_len < 0:
        raise ProtocolViolation(f"{step.describe()}: reply header has a negative length {pkg_len}")
    limit = ERROR_BODY_MAX if status else step.max_reply
    if pkg_len > limit:
        raise ProtocolViolation(f"{step.describe()}: reply body of {pkg_len} bytes is above the {limit} expected")
    return pkg_len, status


def check_extra(step: Exchange, received: int, pkg_len: int) -> None:
    """Refuse bytes received past the announced reply: nothing may follow a reply unasked."""
    if received > HEADER_SIZE + pkg_len:
        raise ProtocolViolation(f"{step.describe()}: {received - HEADER_SIZE - pkg_len} bytes after the reply")


def finish(step: Exchange, status: int, body: bytes | bytearray) -> Any:
    """The step's result from a complete reply: an error status raises its ClusterError."""
    if status:
        raise status_error(step, status)
    try:
        return step.parse(body)  # type: ignore[arg-type]  # parsers accept any bytes-like body
    except ProtocolError as exc:
        raise ProtocolViolation(f"{step.describe()}: malformed reply: {exc}") from None


def status_error(step: Exchange, status: int) -> ClusterError:
    return error_for_status(status, step.describe())


def keeps_connection(step: Exchange, status: int) -> bool:
    """Whether a connection stays usable after a complete reply with ``status``.

    A storage closes the connection after a header-only EINVAL reply (its request may have been
    cut short), so that connection is not pooled; trackers keep connections open after errors.
    """
    return status != errno.EINVAL or step.address is None


def early_reply_error(step: Exchange, header: bytes | bytearray) -> ClusterError:
    """The error of a reply that arrived while the request's data was still being sent."""
    _, status = check_header(step, header)
    if not status:
        return ProtocolViolation(f"{step.describe()}: success reply before the request's data was sent")
    return status_error(step, status)


def write_sink(sink: BinaryIO, data: bytes | memoryview) -> None:
    try:
        sink.write(data)
    except OSError as exc:
        raise ClusterError(f"writing the download failed: {exc}") from exc


def may_retry(exc: ClusterError, step: Exchange, *, reused: bool, sent: bool, delivered: int, retries: int) -> bool:
    """Whether an exchange that failed with ``exc`` may be sent again on a fresh connection.

    * A pooled connection the server closed while idle fails on its first write: nothing reached
      the server, so any request may go again.
    * A lost connection after the request went out: only an idempotent request whose reply has not
      started to reach a sink (a caller's file) is sent again, once.  An upload's outcome is unknown
      then, and it is never sent twice.
    Protocol violations and timeouts are never retried.
    """
    if not isinstance(exc, ConnectionLost) or isinstance(exc, ProtocolViolation):
        return False
    if reused and not sent:
        return True
    return retries > 0 and step.idempotent and delivered == 0


def connect_error(key: Key, exc: OSError, timeout: float) -> ClusterError:
    """The error of a failed connect: a timeout, or the server unreachable."""
    where = describe_address(key)
    if isinstance(exc, TimeoutError):
        return RequestTimeout(f"connecting to {where} timed out after {timeout:g}s")
    return Unavailable(f"cannot connect to {where}: {exc.strerror or exc}")


def transport_error(step: Exchange, key: Key, exc: BaseException, timeout: float) -> ClusterError:
    """The error of a failed read or write on an open connection."""
    where = f"{step.describe()} on {describe_address(key)}"
    if isinstance(exc, (TimeoutError, BlockingIOError)):
        return RequestTimeout(f"{where}: no progress for {timeout:g}s")
    if isinstance(exc, EOFError):
        return ConnectionLost(f"{where}: connection closed by the server mid-reply")
    return ConnectionLost(f"{where}: connection lost: {exc}")


def closed_error(step: Exchange, key: Key, before_reply: bool) -> ConnectionLost:
    where = f"{step.describe()} on {describe_address(key)}"
    when = "before replying" if before_reply else "mid-reply"
    return ConnectionLost(f"{where}: connection closed by the server {when}")


class TrackerRotation:
    """The trackers in the order to try them: from the last one that answered, then the next ones."""

    __slots__ = ("_current", "trackers")

    def __init__(self, trackers: Sequence[Key]) -> None:
        if not trackers:
            raise InvalidRequest("no tracker configured")
        self.trackers = tuple(trackers)
        self._current = 0

    def order(self) -> Iterator[tuple[int, Key]]:
        start, count = self._current, len(self.trackers)
        for step in range(count):
            index = (start + step) % count
            yield index, self.trackers[index]

    def answered(self, index: int) -> None:
        self._current = index

    @staticmethod
    def fails_over(exc: ClusterError) -> bool:
        """Whether to try the next tracker: it could not be reached, timed out or dropped the link."""
        return isinstance(exc, (Unavailable, RequestTimeout, ConnectionLost)) and not isinstance(exc, ProtocolViolation)

    def unavailable(self, failures: list[str]) -> Unavailable:
        return Unavailable(f"no tracker answered ({len(self.trackers)} tried): " + "; ".join(failures))


def advance(op: Generator[Exchange, Any, Any], result: Any, error: BaseException | None) -> tuple[Exchange | None, Any]:
    """Send the last step's result into an operation (or throw the step's error into it).

    Returns ``(next step, None)``, or ``(None, the operation's result)`` once it has finished.  A
    request the codec refuses to encode is the caller's mistake: InvalidRequest.
    """
    try:
        step = op.send(result) if error is None else op.throw(error)
    except StopIteration as done:
        return None, done.value
    except ProtocolError as exc:
        raise InvalidRequest(str(exc)) from None
    return step, None
