"""A lean blocking connection to a FastDFS-compatible tracker or storage, for measuring servers.

The frames come from the sans-IO codec in :mod:`cluster.protocol`; this module only moves them.
It is written so that the client costs as little as possible per request, since on one connection
the client's time adds to every round trip:

* each request goes out in one ``sendall`` (header, head and data in one buffer, built once);
* the reply is read with ``recv_into`` into a buffer allocated once and reused, usually in one call,
  since the client never pipelines and so nothing but the reply can arrive;
* ``TCP_NODELAY``, so small frames are not held back by Nagle's algorithm;
* a blocking socket with the kernel's send and receive timeouts, so no ``poll()`` per call.
"""

from __future__ import annotations

import socket
import struct

from cluster.protocol import HEADER_SIZE, ProtocolError, Status

HEADER = struct.Struct("!qBB")

#: Bytes a reply buffer starts with; it grows to the largest reply seen.
INITIAL_BUFFER = 64 * 1024


class ReplyError(Exception):
    """The server answered with a non-zero status (an errno)."""

    def __init__(self, status: int, what: str) -> None:
        self.status = status
        try:
            name = Status(status).name
        except ValueError:
            name = f"status {status}"
        super().__init__(f"{what}: {name}")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to a ``(host, port)`` pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


class Wire:
    """One persistent connection; :meth:`call` sends a whole frame and waits for its reply."""

    __slots__ = ("address", "buffer", "sock", "view")

    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A Python-level timeout costs a poll() before every send and receive; the kernel's own
        # timeouts cost nothing until they expire (the call then fails with EAGAIN, an OSError).
        self.sock.settimeout(None)
        seconds = int(timeout)
        timeval = struct.pack("@ll", seconds, int((timeout - seconds) * 1e6))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.buffer = bytearray(INITIAL_BUFFER)
        self.view = memoryview(self.buffer)

    def call(self, frame: bytes | bytearray | memoryview, what: str) -> memoryview:
        """Send ``frame``; the reply's body, a view valid until the next call.

        Raises :class:`ReplyError` for an error status, :class:`ProtocolError` for a reply that is
        not a reply, and ``OSError`` (``ConnectionError`` on EOF) when the connection fails.
        """
        sock = self.sock
        sock.sendall(frame)
        view = self.view
        got = sock.recv_into(view)
        while got < HEADER_SIZE:
            more = sock.recv_into(view[got:])
            if not more:
                raise ConnectionError(f"{what}: connection closed after {got} bytes of a reply header")
            got += more
        pkg_len, cmd, status = HEADER.unpack_from(view)
        if cmd != 100 or pkg_len < 0:
            raise ProtocolError(f"{what}: not a reply header (cmd {cmd}, pkg_len {pkg_len})")
        end = HEADER_SIZE + pkg_len
        if end > len(view):
            view = self._grow(end, got)
        while got < end:
            more = sock.recv_into(view[got:end])
            if not more:
                raise ConnectionError(f"{what}: connection closed after {got - HEADER_SIZE} of {pkg_len} bytes")
            got += more
        if status:
            raise ReplyError(status, what)
        return view[HEADER_SIZE:end]

    def _grow(self, size: int, keep: int) -> memoryview:
        buffer = bytearray(size)
        buffer[:keep] = self.view[:keep]
        self.buffer = buffer
        self.view = memoryview(buffer)
        return self.view

    def close(self) -> None:
        self.sock.close()
