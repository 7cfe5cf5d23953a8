"""One client connection to the storage: stream events in, store work, replies out.

The request loop and its back-pressure are :class:`cluster.runtime.Connection`'s; this class turns
the :class:`~cluster.protocol.RequestDecoder`'s events into calls on the
:class:`~cluster.storage.handlers.StorageService` and the streamed-request sessions:

* quick work (reads of small files, writes without fsync) runs right here on the event loop, with
  no task or future per request, and its reply goes out in one write;
* work that blocks (fsync in durable mode, large files) runs in the server's bounded thread pool;
  while it runs the connection reads no further, so a client cannot make the server buffer ahead,
  and concurrent uploads from many connections meet in the store's group commit;
* a reply to a request that wrote binlog records waits, with ``sync_mode = always``, until they
  are on disk (:mod:`cluster.storage.binlog_sync`), and an upload's, with ``ack_replicas``, until
  the peers hold it; the connection handles nothing else meanwhile, so replies keep their order;
* errors become FastDFS's header-only replies; after an EINVAL reply the connection is closed, as
  FastDFS's storage does, and so it is after an unexpected error (EIO, logged with its traceback).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from cluster.errors import AccessDenied, Busy, ClusterError, status_for_exception
from cluster.protocol import SYNC_COMMANDS, BodyChunk, Command, Frame, ProtocolError, RequestDecoder, RequestHead
from cluster.protocol.frames import HEADER, HEADER_SIZE
from cluster.runtime import Connection
from trunkstore import SlotConflict, TrunkstoreError

from .binlog import BinlogPosition
from .handlers import (
    SMALL_UPLOAD_FRAME_LEN,
    WHOLE_TRUNK_DOWNLOAD_FRAME_LEN,
    WHOLE_TRUNK_DOWNLOAD_HEADER,
    Region,
    reply_header,
)
from .pipeline import ReplicaPipeline
from .sessions import Session, open_session
from .sync_apply import WHOLE_REPLICA_COMMANDS, WHOLE_REPLICA_LIMIT
from .transfer import send_region

if TYPE_CHECKING:
    from .binlog_sync import BinlogSync
    from .server import StorageServer

log = logging.getLogger(__name__)

T = TypeVar("T")

_QUIT = int(Command.QUIT)
_SYNC_CREATE = int(Command.SYNC_CREATE_FILE)
_EXPECTED = (TrunkstoreError, ClusterError, ProtocolError, OSError)


def error_reply(status: int) -> bytes:
    return HEADER.pack(0, Command.RESPONSE, status)


class StorageConnection(Connection):
    """A client connection of a :class:`~cluster.storage.server.StorageServer`."""

    def __init__(self, server: StorageServer) -> None:
        super().__init__(server.connections)
        self.storage = server
        self.service = server.service
        config = server.config
        self.decoder = RequestDecoder(
            config.max_pkg_size, config.max_upload_size, WHOLE_REPLICA_COMMANDS, WHOLE_REPLICA_LIMIT
        )
        self.session: Session | None = None
        replication = server.replication
        #: With sync_mode always, replies wait through this until their binlog records are on disk.
        self.binlog_sync = replication.binlog_sync if replication is not None and self.service.durable else None
        #: The binlog, if some reply waits for its records: then where each request's records end is noted.
        waits = self.binlog_sync is not None or config.ack_replicas > 0
        self._noted_binlog = self.service.binlog if waits else None
        #: Where the binlog records of the request in hand end (None: it wrote none).
        self._recorded: BinlogPosition | None = None
        #: A peer's replica creates stored side by side (durable stores only).
        self.replicas = ReplicaPipeline(server.executor, self._send_counted, self.fail, self.binlog_sync)
        #: The store work running in a thread for this connection, if any.
        self._work: concurrent.futures.Future[Any] | None = None

    # ---- codec ------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        # The commonest request, a whole small-file download arriving in one read while nothing
        # else is in progress, goes straight to the service: no decoder, no event objects.
        # So does a whole small upload when the store needs no sync to acknowledge it.
        size = len(data)
        if size <= SMALL_UPLOAD_FRAME_LEN and self.ready_for_request and not self.replicas:
            try:
                if size == WHOLE_TRUNK_DOWNLOAD_FRAME_LEN and data[:HEADER_SIZE] == WHOLE_TRUNK_DOWNLOAD_HEADER:
                    result = self.service.whole_download(data[HEADER_SIZE:])
                else:
                    result = self.service.whole_upload(data)
            except Exception as exc:
                self.last_active = time.monotonic()
                self.fail(exc)
                return
            if result is not None:
                self.last_active = time.monotonic()
                pending = self._replied(result)
                if pending is not None:
                    self.hold(pending)
                return
        super().data_received(data)

    def feed(self, data: bytes) -> None:
        self.decoder.feed(data)

    def next_event(self) -> object | None:
        return self.decoder.next_event()

    @property
    def idle(self) -> bool:
        return self.decoder.idle and self.session is None

    # ---- errors -----------------------------------------------------------------------------------
    def protocol_error(self, exc: ProtocolError) -> None:
        log.info("%s: malformed request: %s", self.peer, exc)
        self.fail(exc)

    def handler_failed(self, exc: BaseException) -> None:
        self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        """Answer ``exc`` with its status; close after EINVAL (as FastDFS) or anything unexpected."""
        status = status_for_exception(exc)
        if not isinstance(exc, _EXPECTED):
            log.error("%s: request failed unexpectedly", self.peer, exc_info=exc)
            status = errno.EIO
        elif status == errno.EIO:
            log.warning("%s: request failed: %s", self.peer, exc)
        elif isinstance(exc, SlotConflict):
            # Refused (EBUSY, the sender retries) and the local file kept.  Passing: the slot's file has
            # a delete still on its way.  Lasting: two members' trunk-id sequences overlap.
            log.warning(
                "%s: %s (if this persists, the group's storages lack disjoint trunk_id_start / trunk_id_step)",
                self.peer,
                exc,
            )
        else:
            log.debug("%s: request refused (%s): %s", self.peer, errno.errorcode.get(status, status), exc)
        self.send(error_reply(status))
        if status == errno.EINVAL or status == errno.EIO:
            self.close()

    # ---- events -----------------------------------------------------------------------------------
    def handle(self, event: object) -> Awaitable[Any] | None:
        if self.replicas and not (event.__class__ is Frame and event.cmd == _SYNC_CREATE):
            return self._after_replicas(event)
        if event.__class__ is Frame:
            return self._frame(event)
        if event.__class__ is BodyChunk:
            return self._chunk(event.data)
        if event.__class__ is RequestHead:
            return self._head(event.request)
        return self._end()

    def _frame(self, frame: Frame) -> Awaitable[Any] | None:
        if frame.cmd == _QUIT:
            self.close()
            return None
        self._recorded = None
        try:
            if frame.cmd in SYNC_COMMANDS:
                self._check_peer(frame.cmd)
            result = self._here(self.service.handle_frame, frame.cmd, frame.status, frame.body)
        except Exception as exc:
            if frame.cmd == _SYNC_CREATE and self.replicas:
                return self.replicas.start(_raiser(exc))  # answered after the creates before it
            self.fail(exc)
            return None
        if result.__class__ is bytes:
            return self._reply_when_durable(result)
        if frame.cmd == _SYNC_CREATE:
            return self.replicas.start(result)  # type: ignore[arg-type]
        if isinstance(result, Region):
            return self._send_region(result)
        return self._reply_from_thread(result)  # type: ignore[arg-type]

    def _check_peer(self, cmd: int) -> None:
        ip = self.peer.rpartition(":")[0]
        if not self.storage.accepts_sync_from(ip):
            raise AccessDenied(f"{Command(cmd).name} from {self.peer}, which is not a storage of this group")

    def _send_counted(self, reply: bytes) -> None:
        self.send(reply)
        self.served += 1

    async def _after_replicas(self, event: object) -> None:
        """Any request after replica creates waits until they are done and answered."""
        await self.replicas.until(0)
        pending = self.handle(event)
        if pending is not None:
            await pending

    def _reply_when_durable(self, reply: bytes) -> Awaitable[Any] | None:
        """Send ``reply`` once the request's binlog records are on disk (sync_mode always); what to wait
        for before the next request, if anything."""
        recorded, binlog_sync = self._recorded, self.binlog_sync
        if recorded is None or binlog_sync is None or binlog_sync.covers(recorded):
            return self._replied(reply)
        return self._send_when_durable(reply, recorded)

    async def _send_when_durable(self, reply: bytes, recorded: BinlogPosition) -> None:
        assert self.binlog_sync is not None
        try:
            await self.binlog_sync.durable(recorded)
        except ClusterError as exc:
            self.fail(exc)
            return
        self.send(reply)
        self.served += 1

    def _replied(self, reply: bytes) -> Awaitable[Any] | None:
        """Send a whole reply; what to wait for before the next request, if anything."""
        self.send(reply)
        self.served += 1
        # A client that sends requests without reading the replies must not make them pile up.
        return self._drained() if self._write_paused else None

    async def _drained(self) -> None:
        """Wait for the client to read what was sent; one that stops reading is dropped."""
        try:
            await asyncio.wait_for(self.drain(), self.storage.config.network_timeout)
        except (TimeoutError, ConnectionError):
            log.info("%s: not reading its replies: closing", self.peer)
            self.abort()

    async def _reply_from_thread(self, work: Callable[[], bytes]) -> None:
        try:
            data = await self._in_thread(work)
        except Exception as exc:
            self.fail(exc)
            return
        pending = self._reply_when_durable(data)
        if pending is not None:
            await pending

    async def _send_region(self, region: Region) -> None:
        try:
            self.send(reply_header(region.count))
            await send_region(self, region, self.storage.executor, self.storage.config.network_timeout)
        except (OSError, ConnectionError) as exc:
            # The header is out: the only way to report a failure now is to close.
            log.warning("%s: download failed after its header: %s", self.peer, exc or type(exc).__name__)
            self.abort()
            return
        finally:
            region.close()
        self.served += 1

    # ---- streamed requests ------------------------------------------------------------------------
    def _head(self, request: Any) -> Awaitable[Any] | None:
        self._recorded = None
        try:
            if request.COMMAND in SYNC_COMMANDS:
                self._check_peer(request.COMMAND)
            session = open_session(self.service, request)
            if session.creates and self.storage.config.ack_replicas:
                self._check_copies_possible()
        except Exception as exc:
            session = _Refused(exc)
        self.session = session
        if session.error is not None:
            return None
        if session.open_threaded:
            return self._step(session, session.open)
        try:
            session.open()
        except Exception as exc:
            session.error = exc
        return None

    def _chunk(self, data: bytes) -> Awaitable[Any] | None:
        session = self.session
        assert session is not None
        if session.error is not None:
            return None  # the data of a refused request is read and dropped
        if session.write_threaded:
            return self._step(session, session.write, data)
        try:
            self._here(session.write, data)
        except Exception as exc:
            session.error = exc
            session.abort()
        return None

    async def _step(self, session: Session, step: Callable[..., None], *args: Any) -> None:
        try:
            await self._in_thread(step, *args)
        except Exception as exc:
            session.error = exc
            await self._in_thread(session.abort)

    def _end(self) -> Awaitable[Any] | None:
        session = self.session
        assert session is not None
        if session.error is not None:
            self.session = None
            self.fail(session.error)
            return None
        if session.finish_threaded:
            return self._finish(session)
        self.session = None
        try:
            data = self._here(session.finish)
        except Exception as exc:
            session.abort()
            self.fail(exc)
            return None
        if session.creates and self.storage.config.ack_replicas:
            return self._send_when_copied(data)
        return self._reply_when_durable(data)

    async def _finish(self, session: Session) -> None:
        try:
            # Once finishing has started the request is the store's: a disconnect no longer aborts it.
            self.session = None
            data = await self._in_thread(session.finish)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._in_thread(session.abort)
            self.fail(exc)
            return
        if session.creates and self.storage.config.ack_replicas:
            await self._send_when_copied(data)
            return
        pending = self._reply_when_durable(data)
        if pending is not None:
            await pending

    # ---- copies on other storages before the reply (ack_replicas) -----------------------------------
    def _check_copies_possible(self) -> None:
        replication = self.storage.replication
        wanted = self.storage.config.ack_replicas
        reachable = replication.reachable() if replication is not None else 0
        if reachable < wanted:
            raise Busy(f"an upload needs {wanted} other storage(s) of the group to copy it; {reachable} reachable")

    async def _send_when_copied(self, reply: bytes) -> None:
        """Send an upload's reply once its record is on disk (sync_mode always) and ``ack_replicas``
        peers hold the file; else EIO, EBUSY (too few peers can take it) or ETIMEDOUT."""
        replication = self.storage.replication
        recorded = self._recorded
        assert replication is not None and recorded is not None, "an upload records its file"
        config = self.storage.config
        try:
            if self.binlog_sync is not None:
                await self.binlog_sync.durable(recorded)
            await replication.copied(recorded, config.ack_replicas, config.network_timeout)
        except ClusterError as exc:
            self.fail(exc)
            return
        self.send(reply)
        self.served += 1

    # ---- running the store's work -------------------------------------------------------------------
    def _here(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the event loop, noting where the binlog records it writes end."""
        binlog = self._noted_binlog
        if binlog is None:
            return fn(*args)
        result, recorded = binlog.written_by(fn, *args)
        if recorded is not None:
            self._recorded = recorded  # a request's later steps write later records
        return result

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the server's thread pool, noting where the binlog records it writes end."""
        binlog = self._noted_binlog
        if binlog is None:
            work = self.storage.executor.submit(_unrecorded, fn, *args)
        elif self.binlog_sync is None:
            work = self.storage.executor.submit(binlog.written_by, fn, *args)
        else:
            work = self.storage.executor.submit(_recorded_durably, self.binlog_sync, fn, *args)
        self._work = work
        try:
            result, recorded = await asyncio.wrap_future(work)
        finally:
            self._work = None
        if recorded is not None:
            self._recorded = recorded
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        work = self._work
        super().connection_lost(exc)
        session = self.session
        self.session = None
        if session is None:
            return
        log.info("%s: disconnected in the middle of a request: discarding it", self.peer)
        executor = self.storage.executor

        def abort(_: object = None) -> None:
            try:
                session.abort()
            except Exception:
                log.exception("%s: could not discard an interrupted request", self.peer)

        if work is not None and not work.done():
            # A write is still running in a thread: discard once it has finished.
            work.add_done_callback(abort)
        else:
            self.storage.track(executor.submit(abort))


class _Refused(Session):
    """A streamed request refused at its head: its data is dropped, then the error is the reply."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def abort(self) -> None:
        pass


def _unrecorded(fn: Callable[..., T], *args: Any) -> tuple[T, BinlogPosition | None]:
    return fn(*args), None


def _recorded_durably(binlog_sync: BinlogSync, fn: Callable[..., T], *args: Any) -> tuple[T, BinlogPosition | None]:
    """:meth:`Binlog.written_by`, then the records it wrote synced in the same thread, so that the reply
    finds them on disk (any failure is reported by :meth:`BinlogSync.durable` when the reply waits)."""
    result, recorded = binlog_sync.binlog.written_by(fn, *args)
    if recorded is not None:
        binlog_sync.sync_here(recorded)
    return result, recorded


def _raiser(exc: BaseException) -> Callable[[], bytes]:
    def work() -> bytes:
        raise exc

    return work
