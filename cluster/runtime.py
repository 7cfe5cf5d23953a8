"""asyncio plumbing shared by the tracker and the storage server.

* :func:`new_event_loop` / :func:`run`: uvloop where it is installed (measured here: a
  ``Protocol``-based server on uvloop serves 3-4x the round trips of stock asyncio), asyncio otherwise.
* :class:`Connection`: an ``asyncio.Protocol`` that hands decoded requests to ``handle()`` strictly
  one after another.  A handler that finishes at once costs no task and no future; one that must wait
  (a thread doing an fsync, a large file being sent) returns an awaitable, and the connection stops
  reading until it is done, so a client that pipelines or floods cannot make the server buffer more
  than one network read ahead.
* :class:`StopSignals`: SIGTERM and SIGINT as a request to stop, honoured at any moment of start-up.
* :class:`ConnectionServer`: listens, enforces ``max_connections`` (the connection over the limit is
  closed at once, as FastDFS does), closes connections that stall mid-request for ``network_timeout``
  or sit idle for ``idle_timeout``, and stops gracefully.

Subclasses supply the codec: ``feed()``, ``next_event()``, ``idle`` and ``handle()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar, cast

from cluster.errors import ConfigError
from cluster.protocol import ProtocolError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Bytes buffered ahead of a request still being handled before the connection stops reading.
READ_AHEAD_LIMIT = 256 * 1024


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a loop from :func:`new_event_loop`."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


#: The signals that stop a server gracefully.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM and SIGINT as a request to stop, from before the event loop runs until it has stopped.

    Used as a context manager around ``main``: on entry, Python's KeyboardInterrupt and the default
    SIGTERM action are replaced by noting the request, so that a signal arriving while the server
    starts (the store opening, the port being bound) cannot interrupt it half-way; :meth:`attach`
    then hands the signals to the running loop and returns an event that is set at once if one has
    already arrived.  On exit the previous handlers are restored.
    """

    def __init__(self, early_stop: Sequence[int] = ()) -> None:
        #: Signals noted before this took over (by ``python -m``'s handlers while the modules loaded);
        #: read once this object's own handlers are in place, so that none falls between the two.
        self._early_stop = early_stop
        self.requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
        self._note_signals()
        if self._early_stop:
            self.requested = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _note_signals(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.requested = True

    def attach(self) -> asyncio.Event:
        """The running loop handles the signals from now on: the returned event is set on one."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def requested() -> None:
            self.requested = True
            stop.set()

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, requested)
        self._loop = loop
        if self.requested:  # arrived before the loop took over
            stop.set()
        return stop

    def detach(self) -> None:
        """Back to noting the signals, so that one arriving while the loop shuts down is harmless."""
        if self._loop is not None:
            for signum in STOP_SIGNALS:
                self._loop.remove_signal_handler(signum)
            self._loop = None
        self._note_signals()


class Connection(asyncio.Protocol):
    """One accepted connection; requests are decoded by the subclass and handled in order."""

    def __init__(self, server: ConnectionServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_active = time.monotonic()
        #: Requests completely handled on this connection.
        self.served = 0
        self._pending: asyncio.Future[Any] | None = None
        self._reading_paused = False
        self._closing = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False

    # ---- what subclasses provide --------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def next_event(self) -> object | None:
        """The next decoded request (or stream event); ``None`` when more bytes are needed."""
        raise NotImplementedError

    @property
    def idle(self) -> bool:
        """True between requests: nothing partial is buffered."""
        raise NotImplementedError

    def handle(self, event: object) -> Awaitable[Any] | None:
        """Handle one event; return an awaitable to hold further events until it completes."""
        raise NotImplementedError

    def protocol_error(self, exc: ProtocolError) -> None:
        """The bytes received cannot be decoded; the default closes the connection."""
        log.info("%s: closing after a malformed request: %s", self.peer, exc)
        self.close()

    def handler_failed(self, exc: BaseException) -> None:
        """A handler raised unexpectedly: log it and close, since the stream may be out of step."""
        log.error("%s: request handler failed", self.peer, exc_info=exc)
        self.close()

    # ---- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.admit(self):
            log.warning("%s: refused, %d connections is the limit", self.peer, self.server.max_connections)
            self._closing = True
            transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.feed(data)
        if self._pending is None:
            self._process()
        elif not self._reading_paused:
            self._pause_reading()

    def eof_received(self) -> bool | None:
        if not self.idle:
            log.info("%s: connection closed mid-request", self.peer)
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.forget(self)
        if self._pending is not None:
            self._pending.cancel()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))
        self.transport = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- for handlers -------------------------------------------------------------------------
    @property
    def closing(self) -> bool:
        return self._closing

    def send(self, data: bytes | bytearray | memoryview) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self._closing:
            raise ConnectionResetError("connection closed")
        if not self._write_paused:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        try:
            await waiter
        finally:
            self._drain_waiter = None

    @property
    def ready_for_request(self) -> bool:
        """True when a request arriving now would be handled at once: nothing pending or buffered."""
        return self._pending is None and not self._closing and self.idle

    def hold(self, pending: Awaitable[Any]) -> None:
        """Handle no further request until ``pending`` completes (for work started outside :meth:`handle`)."""
        future = asyncio.ensure_future(pending)
        self._pending = future
        future.add_done_callback(self._handled)

    def close(self) -> None:
        """Close once what was written has been sent."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    # ---- the request loop ---------------------------------------------------------------------
    def _process(self) -> None:
        while self._pending is None and not self._closing:
            try:
                event = self.next_event()
            except ProtocolError as exc:
                self.protocol_error(exc)
                return
            if event is None:
                if self._reading_paused:
                    self._resume_reading()
                return
            try:
                pending = self.handle(event)
            except Exception as exc:
                self.handler_failed(exc)
                return
            if pending is not None:
                self.hold(pending)
                return

    def _handled(self, future: asyncio.Future[Any]) -> None:
        self._pending = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.handler_failed(exc)
            return
        self.last_active = time.monotonic()
        self._process()

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._closing:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()


class ConnectionServer:
    """A listening server of :class:`Connection` objects with limits and timeouts.

    ``network_timeout``: a connection that has not sent its first request, or that stalls in the
    middle of one, for this long is closed.  ``idle_timeout``: a connection idle between requests
    for this long is closed; 0 keeps such connections open, which FastDFS's client pools rely on.
    """

    def __init__(
        self,
        connection_factory: Callable[[ConnectionServer], Connection],
        *,
        max_connections: int = 256,
        network_timeout: float = 30.0,
        idle_timeout: float = 0.0,
    ) -> None:
        if max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        if network_timeout <= 0 or idle_timeout < 0:
            raise ConfigError("network_timeout must be positive and idle_timeout not negative")
        self._factory = connection_factory
        self.max_connections = max_connections
        self.network_timeout = network_timeout
        self.idle_timeout = idle_timeout
        self.connections: set[Connection] = set()
        #: Connections closed because they were over the limit, or timed out.
        self.refused = 0
        self.timed_out = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None

    def admit(self, connection: Connection) -> bool:
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            return False
        self.connections.add(connection)
        return True

    def forget(self, connection: Connection) -> None:
        self.connections.discard(connection)

    async def listen(self, host: str, port: int) -> int:
        """Start listening on ``host:port`` (0: any free port); returns the bound port."""
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: self._factory(self), host, port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep())
        bound: int = server.sockets[0].getsockname()[1]
        return bound

    async def _sweep(self) -> None:
        period = min(self.network_timeout, self.idle_timeout or self.network_timeout) / 4
        period = max(0.05, min(period, 1.0))
        while True:
            await asyncio.sleep(period)
            self.close_stale(time.monotonic())

    def close_stale(self, now: float) -> None:
        for connection in list(self.connections):
            if connection._pending is not None:  # a handler is at work: not the client's fault
                continue
            quiet = now - connection.last_active
            if not connection.idle or connection.served == 0:
                limit = self.network_timeout
            elif self.idle_timeout:
                limit = self.idle_timeout
            else:
                continue
            if quiet > limit:
                self.timed_out += 1
                log.info("%s: closing after %.1f s without progress", connection.peer, quiet)
                connection.abort()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, let requests in progress finish for up to ``grace`` seconds, close the rest."""
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        deadline = time.monotonic() + grace
        while True:
            # A request still arriving (an upload's data) is in progress too: let it complete.
            for connection in list(self.connections):
                if connection._pending is None and connection.idle:
                    connection.close()
            busy = [c for c in self.connections if c._pending is not None or not c.idle]
            if not busy or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)
        self._servers.clear()
