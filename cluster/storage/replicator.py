"""The sender's side of replication: this storage's binlog, replayed to each peer of its group.

One :class:`PeerSync` task per peer (the group's members as the trackers list them), as FastDFS
runs one sync thread per peer.  Each reads the binlog from the position saved in its mark file
(``data/sync/<storage ID>.mark``), turns each record into a SYNC_* request carrying the file's
*current* bytes or metadata (a record of a file deleted since is skipped: its delete follows), and
sends the requests pipelined, up to :data:`WINDOW` at a time, reading the replies in order.  The
position advances only past records the peer has answered, and the mark is saved every second and
whenever the peer is caught up: after a restart a few records may be sent twice, which the peer
answers EEXIST (or ENOENT for a delete) and the sender takes as done.

What is sent: records of changes clients made here (upper case).  A peer new to the group starts
from the beginning of the binlog, so it gets every file this storage is the source of.  If the
tracker made this storage the new peer's *sync source* (SYNC_SRC_REQ answers with this storage's
ID and a cut-off time), the replicated records (lower case) up to the cut-off go too, so the new
peer also gets the files of members that are gone; once they are sent this storage reports the
peer ONLINE to every tracker (REPORT_STATUS), as FastDFS's source does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cluster.errors import ClusterError, ConnectionLost
from cluster.protocol import (
    HEADER_SIZE,
    Command,
    ProtocolError,
    ReportStatusRequest,
    Request,
    StorageBrief,
    StorageStatus,
    SyncSourceReply,
    SyncSrcRequest,
    decode_header,
)
from trunkstore import Store, TrunkstoreError
from trunkstore.diskio import write_file_atomic

from .binlog import BinlogPosition, BinlogReader, BinlogRecord
from .sync_requests import Outgoing, SyncRequests, quick, whole_file_records

if TYPE_CHECKING:
    import concurrent.futures

log = logging.getLogger(__name__)

#: Requests in flight to one peer.
WINDOW = 64
#: Records read from the binlog at a time.
BATCH = 256
_CHUNK = 1 << 20
#: Seconds between saves of a mark while records flow.
MARK_EVERY = 1.0
#: Seconds between questions to a tracker about a new peer's sync source.
ASK_EVERY = 2.0
#: Replies that mean "applied" to an idempotent replay (EBUSY, a slot still held by a file whose
#: delete has not arrived yet, is retried with back-off instead).
_DONE = frozenset({0, errno.EEXIST, errno.ENOENT})
#: Refusals a sender remembers, the newest (a peer that refuses everything must not fill the memory).
#: More than can still be ahead of its mark: records are read from the mark BATCH at a time.  Of an
#: older record, the sender no longer knows whether the peer took it (see :meth:`PeerSync.may_lack`).
REFUSALS_KEPT = 1024
#: Peers in these statuses are not sent to (not yet placed by a tracker, or gone).
_SKIPPED_STATUSES = frozenset({StorageStatus.INIT, StorageStatus.DELETED, StorageStatus.IP_CHANGED, StorageStatus.NONE})


def wanted_peers(briefs: Iterable[StorageBrief], me: tuple[str, int]) -> dict[str, StorageBrief]:
    """The group's other members to replicate to, by storage ID (kept across address changes)."""
    return {b.storage_id: b for b in briefs if (b.ip, b.port) != me and b.status not in _SKIPPED_STATUSES}


class Wakeup:
    """Wakes a waiting sender when a record is appended, from any thread, at little cost to the writer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._event = asyncio.Event()
        self._waiting = False

    def notify(self) -> None:
        if not self._waiting:
            return
        self._waiting = False
        if threading.get_ident() == self._thread:
            self._event.set()
        else:
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, more: Callable[[], bool], timeout: float) -> None:
        """Until :meth:`notify` or ``timeout``; at once if ``more()`` says records came meanwhile."""
        self._event.clear()
        self._waiting = True
        try:
            if more():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        finally:
            self._waiting = False


@dataclass(slots=True)
class Mark:
    """A peer's progress through this storage's binlog, kept in its mark file."""

    position: BinlogPosition
    #: As the sync source of a new peer: the cut-off time, and whether everything up to it is sent.
    until: int = 0
    initial_done: bool = False

    @classmethod
    def load(cls, path: str) -> Mark:
        try:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            return cls(
                BinlogPosition(int(saved["binlog_index"]), int(saved["binlog_offset"])),
                int(saved.get("until", 0)),
                bool(saved.get("initial_done", False)),
            )
        except FileNotFoundError:
            return cls(BinlogPosition())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s unreadable (%s): replaying the binlog from its start", path, exc)
            return cls(BinlogPosition())

    def save(self, path: str) -> None:
        record = {
            "binlog_index": self.position.index,
            "binlog_offset": self.position.offset,
            "until": self.until,
            "initial_done": self.initial_done,
        }
        write_file_atomic(path, json.dumps(record).encode())


class ReplicationContext:
    """What every sender of one storage shares."""

    def __init__(
        self,
        store: Store,
        sync_dir: str,
        executor: concurrent.futures.Executor,
        connect_timeout: float,
        network_timeout: float,
        my_id: Callable[[], str],
        tracker_call: Callable[[Request], Awaitable[bytes]],
        report_all: Callable[[Request], Awaitable[None]],
    ) -> None:
        self.store = store
        self.group = store.group
        #: Builds the requests of the binlog's records (shared: it holds no per-peer state).
        self.requests = SyncRequests(store)
        self.sync_dir = sync_dir
        self.executor = executor
        self.connect_timeout = connect_timeout
        self.network_timeout = network_timeout
        #: This storage's ID as the trackers know it ("" before one has said).
        self.my_id = my_id
        #: Ask one tracker (``await tracker_call(request)`` -> reply body).
        self.tracker_call = tracker_call
        #: Tell every tracker (``await report_all(request)``).
        self.report_all = report_all


class PeerSync:
    """Replays the binlog to one peer, for as long as the task runs (see the module docstring)."""

    def __init__(
        self,
        context: ReplicationContext,
        peer: StorageBrief,
        wakeup: Wakeup,
        binlog_end: Callable[[], BinlogPosition],
    ) -> None:
        self.context = context
        self.peer = peer
        self.key = peer.storage_id
        self.wakeup = wakeup
        self._binlog_end = binlog_end
        safe_id = "".join(c if c.isalnum() or c in ".-" else "_" for c in peer.storage_id)
        self.mark_path = os.path.join(context.sync_dir, f"{safe_id}.mark")
        self.mark = Mark.load(self.mark_path)
        self.reader = BinlogReader(context.sync_dir, self.mark.position)
        self.sent = 0
        self.skipped = 0
        #: Bytes of requests the peer has answered.
        self.bytes_out = 0
        #: Called when the peer has answered more records (see :meth:`Replication.copied`).
        self.on_progress: Callable[[], None] | None = None
        self._saved_at = 0.0
        self._asked_at = float("-inf")
        self._reported_at = float("-inf")
        #: The tracker's last answer named this storage as the peer's source for the copy in the mark.
        self._source_answer = False
        #: Records the peer refused for good (EINVAL), by the position after each, oldest first: not sent
        #: again, and not counted as copies the peer holds (see :meth:`Replication.copies`).
        self.refused: dict[BinlogPosition, None] = {}
        #: The position after the newest refusal no longer in :attr:`refused`.
        self._forgotten = BinlogPosition()
        self._reader_io: asyncio.StreamReader | None = None
        #: Reply bytes read but not yet taken apart.
        self._replies = bytearray()
        self._writer_io: asyncio.StreamWriter | None = None

    @property
    def connected(self) -> bool:
        """Whether a connection to the peer is up (it can take copies now)."""
        return self._writer_io is not None

    @property
    def caught_up(self) -> bool:
        return self.mark.position >= self._binlog_end()

    # ---- the task ---------------------------------------------------------------------------------
    async def run(self) -> None:
        backoff = 0.1
        failing = False
        try:
            while True:
                start = self.mark.position
                try:
                    await self._connect()
                    await self._stream()
                except asyncio.CancelledError:
                    raise
                except (OSError, EOFError, TimeoutError, ProtocolError, ClusterError, TrunkstoreError) as exc:
                    if self.mark.position > start:
                        # Records went through before this failure: a new problem, retried at once.
                        if failing:
                            log.info("peer %s: replicating again", self.key)
                        failing, backoff = False, 0.1
                    if not failing:
                        log.warning("peer %s: %s; retrying", self.key, exc or type(exc).__name__)
                    failing = True
                finally:
                    self._close()
                    self.reader.position = self.mark.position
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        finally:
            self._save_mark()
            self.reader.close()

    def update(self, peer: StorageBrief) -> None:
        """The trackers list the peer with a new status, or at a new address (it restarted elsewhere)."""
        moved = (peer.ip, peer.port) != (self.peer.ip, self.peer.port)
        self.peer = peer
        if moved:
            self._close()  # the next request finds the connection gone and reconnects to the new address

    async def _connect(self) -> None:
        self._reader_io, self._writer_io = await asyncio.wait_for(
            asyncio.open_connection(self.peer.ip, self.peer.port), self.context.connect_timeout
        )

    def _close(self) -> None:
        self._replies.clear()
        writer = self._writer_io
        self._reader_io = self._writer_io = None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
            if self.on_progress is not None:
                self.on_progress()  # uploads waiting for this peer's copy may have to give up

    def _save_mark(self) -> None:
        try:
            self.mark.save(self.mark_path)
        except OSError as exc:
            log.warning("peer %s: cannot save %s: %s", self.key, self.mark_path, exc)
        self._saved_at = time.monotonic()

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._check_initial_source()
            records = self.reader.read(BATCH)
            if not records:
                await self._caught_up()
                await self.wakeup.wait(lambda: self._binlog_end() > self.reader.position, 1.0)
                continue
            batch = [r for r in records if self._wanted(r)]
            end = records[-1].end
            for start in range(0, len(batch), WINDOW):
                part = batch[start : start + WINDOW]
                if all(quick(r) for r in part):
                    # Small trunk files are read from the page cache in microseconds: here, on the loop.
                    # A thread would cost more than the reads, in GIL hand-overs that also delay clients.
                    outgoing = self._prepare(part)
                    await asyncio.sleep(0)  # let client requests in between windows
                else:
                    outgoing = await loop.run_in_executor(self.context.executor, self._prepare, part)
                await self._send(outgoing)
            self.mark.position = end
            if self.on_progress is not None:
                self.on_progress()
            await asyncio.sleep(0)  # a long run of records not sent must not hold up the loop
            if time.monotonic() - self._saved_at >= MARK_EVERY:
                self._save_mark()

    def may_lack(self, position: BinlogPosition) -> bool:
        """Whether the peer refused the record ending at ``position``, or may have: as far back as
        refusals have been forgotten, a record passed over cannot be told from one copied."""
        return position in self.refused or position <= self._forgotten

    def _wanted(self, record: BinlogRecord) -> bool:
        if self.refused and record.end in self.refused:
            return False
        if record.from_source:
            return True
        mark = self.mark
        return bool(mark.until) and not mark.initial_done and record.timestamp <= mark.until

    # ---- a new peer's initial copy --------------------------------------------------------------------
    async def _check_initial_source(self) -> None:
        """For a peer waiting for its initial copy: ask the tracker (every ASK_EVERY seconds) whether
        this storage is its source, and up to when; a new answer starts a new copy."""
        mark = self.mark
        if self.peer.status not in (StorageStatus.WAIT_SYNC, StorageStatus.SYNCING):
            return
        my_id = self.context.my_id()
        now = time.monotonic()
        if not my_id or now - self._asked_at < ASK_EVERY:
            return
        self._asked_at = now
        try:
            body = await self.context.tracker_call(SyncSrcRequest(self.context.group, self.peer.storage_id))
        except (OSError, TimeoutError, ClusterError, ProtocolError) as exc:
            log.debug("peer %s: no sync source answer: %s", self.key, exc)
            return
        reply = SyncSourceReply.decode(body)
        self._source_answer = reply.src_id == my_id and reply.until_timestamp == mark.until
        if reply.src_id == my_id and reply.until_timestamp and reply.until_timestamp != mark.until:
            log.info("peer %s: sync source for its initial copy, up to %d", self.key, reply.until_timestamp)
            mark.until = reply.until_timestamp
            mark.initial_done = False
            # Lower-case records already passed over were not sent: start again from the beginning.
            # A peer that starts an initial copy is new to the group: what an earlier one refused, it may take.
            mark.position = BinlogPosition()
            self.refused.clear()
            self._forgotten = BinlogPosition()
            self.reader.position = mark.position
            self._save_mark()
            self._source_answer = True
            await self._report(StorageStatus.SYNCING)
        elif reply.src_id != my_id and mark.until:
            # A copy this storage made for an earlier member of that ID: not this one's.
            mark.until, mark.initial_done = 0, False
            self._save_mark()

    async def _caught_up(self) -> None:
        mark = self.mark
        if mark.until and not mark.initial_done:
            mark.initial_done = True
            log.info("peer %s: initial copy sent", self.key)
            await self._report(StorageStatus.ONLINE)
            self._reported_at = time.monotonic()
        elif (
            mark.initial_done
            and self._source_answer
            and self.peer.status in (StorageStatus.WAIT_SYNC, StorageStatus.SYNCING)
            and time.monotonic() - self._reported_at >= ASK_EVERY
        ):
            # A tracker that was down or not yet joined when the copy was done still waits for it
            # (and the tracker still names this storage as the source, for this copy).
            await self._report(StorageStatus.ONLINE)
            self._reported_at = time.monotonic()
        if time.monotonic() - self._saved_at >= MARK_EVERY or mark.initial_done:
            self._save_mark()

    async def _report(self, status: StorageStatus) -> None:
        peer = self.peer
        brief = StorageBrief(status, peer.port, peer.storage_id, peer.ip)
        await self.context.report_all(ReportStatusRequest(self.context.group, brief))

    # ---- building requests (on the loop for small trunk files, else in a thread) --------------------
    def _prepare(self, records: list[BinlogRecord]) -> list[Outgoing]:
        outgoing, skipped = self.context.requests.prepare(records, self.key)
        self.skipped += skipped
        return outgoing

    # ---- sending ------------------------------------------------------------------------------------
    async def _send(self, outgoing: list[Outgoing]) -> None:
        """Send pipelined, at most WINDOW unanswered, then whatever the peer's answers call for.

        A change the peer cannot apply because its copy is behind (a rename of an appender file it
        never had: ENOENT; an append, modify or truncate that does not fit its copy: ENODATA) is
        followed by the file itself, whole as it is now: delete, create, metadata.  The mark does
        not pass such a record until its follow-up is answered.
        """
        followups: list[BinlogRecord] = []
        answered = await self._pipeline(outgoing, followups)
        for _ in range(2):
            if not followups:
                break
            records = whole_file_records(followups)
            followups = []
            loop = asyncio.get_running_loop()
            whole = await loop.run_in_executor(self.context.executor, self.context.requests.prepare_whole, records)
            answered = max(answered, await self._pipeline(whole, followups, advance=False))
        if followups:
            raise ConnectionLost(f"peer {self.key} still cannot apply {followups[0].op} {followups[0].filename}")
        self.mark.position = max(self.mark.position, answered)

    async def _pipeline(
        self, outgoing: list[Outgoing], followups: list[BinlogRecord], *, advance: bool = True
    ) -> BinlogPosition:
        """Send and read the answers; the position after the last record answered.  With ``advance``
        the mark follows the answers (up to the first record that needs a follow-up)."""
        writer = self._writer_io
        if writer is None:
            raise ConnectionLost("not connected")
        pending: deque[Outgoing] = deque()
        answered = BinlogPosition()
        for item in outgoing:
            if item.region is None:
                writer.write(item.frame)
            else:
                answered = max(answered, await self._answers(pending, len(pending), followups, advance))
                await self._send_region(writer, item)
            pending.append(item)
            self.sent += 1
            if len(pending) >= WINDOW:
                answered = max(answered, await self._answers(pending, len(pending) - WINDOW // 2, followups, advance))
        return max(answered, await self._answers(pending, len(pending), followups, advance))

    async def _send_region(self, writer: asyncio.StreamWriter, item: Outgoing) -> None:
        assert item.region is not None
        path, offset, size = item.region
        writer.write(item.frame)
        loop = asyncio.get_running_loop()
        fd = await loop.run_in_executor(self.context.executor, os.open, path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            done = 0
            while done < size:
                count = min(_CHUNK, size - done)
                chunk = await loop.run_in_executor(self.context.executor, os.pread, fd, count, offset + done)
                if len(chunk) != count:
                    # The file shrank under us: the peer's request cannot be completed; start over.
                    raise ConnectionLost(f"{path} changed while being sent")
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), self.context.network_timeout)
                done += count
        finally:
            os.close(fd)

    async def _answers(
        self, pending: deque[Outgoing], count: int, followups: list[BinlogRecord], advance: bool
    ) -> BinlogPosition:
        """Read the replies to the first ``count`` pending requests (empty bodies: 10 bytes each),
        as many as have arrived per read, under one timeout; the position after the last one."""
        reader, writer = self._reader_io, self._writer_io
        if reader is None or writer is None:
            raise ConnectionLost("not connected")
        answered = BinlogPosition()
        if count <= 0:
            return answered
        buffer = self._replies
        async with asyncio.timeout(self.context.network_timeout):
            await writer.drain()
            while count:
                while len(buffer) < HEADER_SIZE:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise ConnectionLost(f"peer {self.key} closed the connection")
                    buffer += chunk
                header = decode_header(bytes(buffer[:HEADER_SIZE]))
                del buffer[:HEADER_SIZE]
                if header.cmd != Command.RESPONSE or header.pkg_len:
                    raise ConnectionLost(f"unexpected reply {header} from peer {self.key}")
                item = pending.popleft()
                self._answered(item, header.status, followups, advance)
                answered = max(answered, item.record.end)
                count -= 1
        if self.on_progress is not None:
            self.on_progress()
        return answered

    def _answered(self, item: Outgoing, status: int, followups: list[BinlogRecord], advance: bool) -> None:
        record = item.record
        op = record.op.upper()
        if status in (errno.ENOENT, errno.ENODATA) and op in "RAMT":
            # The peer lacks the file, or its copy missed earlier changes: it gets the file whole.
            followups.append(record)
        elif status == errno.EINVAL:
            # A change the peer can never apply (it closes the connection after EINVAL): passed over
            # from now on, or the records after it would never get through.
            log.warning("peer %s refused %s %s (EINVAL); passed over", self.key, record.op, record.filename)
            refused = self.refused
            refused[record.end] = None
            if len(refused) > REFUSALS_KEPT:
                oldest = next(iter(refused))
                del refused[oldest]
                self._forgotten = max(self._forgotten, oldest)
            raise ConnectionLost(f"peer {self.key} closed the connection after EINVAL")
        elif status not in _DONE:
            name = errno.errorcode.get(status, status)
            raise ConnectionLost(f"peer {self.key} answered {name} to {record.op} {record.filename}")
        if advance and not followups:
            # Answered, and nothing before it in this window awaits a follow-up.
            self.mark.position = max(self.mark.position, record.end)
        self.bytes_out += len(item.frame) + (item.region[2] if item.region is not None else 0)
