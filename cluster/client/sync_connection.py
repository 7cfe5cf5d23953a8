"""One blocking connection of the :class:`~cluster.client.Client`.

The request path is kept lean: a small request is one ``sendall`` of header and body; the reply is
read with ``recv_into`` a buffer each connection allocates once, so that a small reply is usually
one system call, then sliced into the body.  Read and write timeouts are the socket's own
(``SO_RCVTIMEO`` / ``SO_SNDTIMEO``), so a blocking call costs no extra ``poll``.
"""

from __future__ import annotations

import select
import socket
import struct
from typing import Any, BinaryIO

from cluster.errors import ClusterError
from cluster.protocol import HEADER_SIZE

from .config import ClientConfig
from .requests import (
    Exchange,
    Key,
    check_extra,
    check_header,
    closed_error,
    connect_error,
    early_reply_error,
    finish,
    keeps_connection,
    transport_error,
    write_sink,
)

#: Per-connection receive buffer: a small reply fits in it whole.
BUFFER_SIZE = 64 * 1024


def _set_io_timeout(sock: socket.socket, seconds: float) -> None:
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        sock.settimeout(None)
    except OSError:  # no timeval socket options here: Python's own timeouts (a poll per call)
        sock.settimeout(seconds)


class SyncConnection:
    """One blocking connection to a tracker or storage; one exchange at a time."""

    __slots__ = ("buf", "delivered", "idle_since", "key", "reusable", "sent", "sock", "view")

    def __init__(self, sock: socket.socket, key: Key) -> None:
        self.sock = sock
        self.key = key
        self.buf = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buf)
        self.idle_since = 0.0
        #: The last exchange's first write went out / body bytes went to its sink / it ended cleanly.
        self.sent = False
        self.delivered = 0
        self.reusable = False

    @classmethod
    def connect(cls, key: Key, config: ClientConfig) -> SyncConnection:
        try:
            sock = socket.create_connection(key, timeout=config.connect_timeout)
        except OSError as exc:
            raise connect_error(key, exc, config.connect_timeout) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _set_io_timeout(sock, config.network_timeout)
        return cls(sock, key)

    def alive(self) -> bool:
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable  # readable while idle: EOF, a reset, or bytes nobody asked for

    def close(self) -> None:
        self.sock.close()

    # ---- one exchange ---------------------------------------------------------------------------
    def exchange(self, step: Exchange, chunk_size: int, timeout: float) -> Any:
        self.reusable = False
        self.sent = False
        self.delivered = 0
        try:
            if step.upload is None:
                self.sock.sendall(step.frame)
                self.sent = True
            else:
                self._send_upload(step, chunk_size)
            return self._receive(step)
        except ClusterError:
            raise
        except OSError as exc:
            raise transport_error(step, self.key, exc, timeout) from exc

    def _send_upload(self, step: Exchange, chunk_size: int) -> None:
        source = step.upload
        assert source is not None
        progress = step.progress
        head_len = len(step.frame)
        sent = 0
        for piece in source.pieces(step.frame, chunk_size):
            try:
                self.sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                if self.sent:  # the storage may have refused the upload early, then closed
                    self._raise_early_reply(step)
                raise
            self.sent = True
            sent += len(piece)
            if progress is not None and sent > head_len:
                progress(sent - head_len, source.size)

    def _raise_early_reply(self, step: Exchange) -> None:
        try:
            self._recv_header(step)
        except (OSError, ClusterError):
            return  # no reply to learn from: the send error stands
        raise early_reply_error(step, self.buf)

    def _recv_header(self, step: Exchange) -> int:
        """Receive at least the reply header (often the whole reply); returns the bytes received."""
        got = self.sock.recv_into(self.view)
        while got < HEADER_SIZE:
            if got == 0 or (more := self.sock.recv_into(self.view[got:])) == 0:
                raise closed_error(step, self.key, before_reply=got == 0)
            got += more
        return got

    def _fill(self, view: memoryview, start: int, end: int, step: Exchange) -> None:
        while start < end:
            got = self.sock.recv_into(view[start:end])
            if got == 0:
                raise closed_error(step, self.key, before_reply=False)
            start += got

    def _receive(self, step: Exchange) -> Any:
        got = self._recv_header(step)
        pkg_len, status = check_header(step, self.buf)
        check_extra(step, got, pkg_len)
        if status == 0 and step.sink is not None:
            return self._stream_body(step, step.sink, got, pkg_len)
        end = HEADER_SIZE + pkg_len
        body: bytes | bytearray
        if end <= BUFFER_SIZE:
            self._fill(self.view, got, end, step)
            body = self.view[HEADER_SIZE:end].tobytes()
        else:
            body = bytearray(pkg_len)
            target = memoryview(body)
            target[: got - HEADER_SIZE] = self.view[HEADER_SIZE:got]
            self._fill(target, got - HEADER_SIZE, pkg_len, step)
        if status:
            self.reusable = keeps_connection(step, status)
        result = finish(step, status, body)
        self.reusable = True
        return result

    def _stream_body(self, step: Exchange, sink: BinaryIO, got: int, pkg_len: int) -> int:
        progress = step.progress
        done = got - HEADER_SIZE
        if done:
            write_sink(sink, self.view[HEADER_SIZE:got])
            self.delivered = done
            if progress is not None:
                progress(done, pkg_len)
        while done < pkg_len:
            received = self.sock.recv_into(self.view, min(BUFFER_SIZE, pkg_len - done))
            if received == 0:
                raise closed_error(step, self.key, before_reply=False)
            write_sink(sink, self.view[:received])
            done += received
            self.delivered = done
            if progress is not None:
                progress(done, pkg_len)
        self.reusable = True
        return pkg_len
