"""The replica's side of replication: a peer's changes applied here, at the same file IDs.

A peer of the group sends each change from its binlog as a SYNC_* request (see
:mod:`cluster.protocol.sync_messages`); this module turns each into store operations that give
the file exactly the ID, bytes and metadata it has on the peer:

    SYNC_CREATE_FILE    Store.open_replica_upload / put_replica (the trunk slot of the ID, or its path)
    SYNC_DELETE_FILE    Store.delete
    SYNC_UPDATE_FILE    Store.set_meta (the whole metadata, replacing)
    SYNC_APPEND_FILE    Store.append_replica at the source's offset
    SYNC_MODIFY_FILE    Store.modify
    SYNC_TRUNCATE_FILE  Store.truncate
    SYNC_RENAME_FILE    Store.rename_replica

Replication is at-least-once (a sender that restarts resends from its last saved mark), so every
operation is idempotent: a create or append already applied answers EEXIST, a delete of a missing
file ENOENT, and the sender takes both as done.  Each applied change is written to this storage's
binlog in lower case, so that this storage can in turn give a new member of the group a full
copy, and counted in :class:`ReplicaProgress`, which the trackers hear about in SYNC_REPORT.
"""

from __future__ import annotations

import binascii
import contextlib
import errno
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from cluster.errors import ClusterError, InvalidRequest
from cluster.protocol import (
    Command,
    ProtocolError,
    SyncAppendFileRequest,
    SyncCreateFileRequest,
    SyncCreateLinkRequest,
    SyncDeleteFileRequest,
    SyncModifyFileRequest,
    SyncProgress,
    SyncRenameFileRequest,
    SyncTruncateFileRequest,
    SyncUpdateFileRequest,
)
from cluster.protocol.fields import MAX_SERVER_ID
from trunkstore import InvalidArgument

from .handlers import EMPTY_REPLY, SMALL_UPLOAD, Result, check_appender
from .sessions import FLUSH_BYTES, Session

if TYPE_CHECKING:
    from trunkstore.upload import Upload

    from .handlers import StorageService

_TO_STD = str.maketrans("-_", "+/")
#: Replicas of small files come whole, as one frame (the common case: a stream of them); larger ones
#: are streamed into the store like uploads.
WHOLE_REPLICA_COMMANDS = frozenset({Command.SYNC_CREATE_FILE})
WHOLE_REPLICA_LIMIT = SMALL_UPLOAD + 1024  # the data and its head (lengths, group, file name)


def source_key(filename: str) -> str:
    """The storage a remote filename says made it: its numeric storage ID, or its IPv4 address.

    ``""`` for a name too malformed to say (the store refuses such a name anyway).
    """
    try:
        raw = binascii.a2b_base64(filename[10:16].translate(_TO_STD) + "==")
    except (binascii.Error, ValueError):
        return ""
    if len(raw) < 4:
        return ""
    value = int.from_bytes(raw[:4], "big")
    if 0 < value <= MAX_SERVER_ID:
        return str(value)
    return ".".join(str(b) for b in raw[:4])


class ReplicaProgress:
    """How far each source's changes have been applied here: the latest timestamp per source.

    Senders replay a source's binlog in order, so everything that source did up to that time is
    here; the trackers route reads of a young file only to storages past its timestamp.
    Thread-safe: replica writes run on the event loop and in threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, int] = {}
        #: File bytes received from peers and applied.
        self.bytes_in = 0
        self._reported: dict[str, int] = {}

    def applied(self, filename: str, timestamp: int, size: int = 0) -> None:
        key = source_key(filename)
        with self._lock:
            self.bytes_in += size
            if key and timestamp > self._latest.get(key, 0):
                self._latest[key] = timestamp

    def latest(self) -> dict[str, int]:
        with self._lock:
            return dict(self._latest)

    def unreported(self, resolve: Callable[[str], str | None]) -> tuple[SyncProgress, ...]:
        """The progress to report, if it changed since the last call; ``resolve`` maps a source key
        to the storage ID the trackers know it by (``None``: not a known member, left out)."""
        with self._lock:
            if self._latest == self._reported:
                return ()
            self._reported = dict(self._latest)
            latest = dict(self._latest)
        report = []
        for key, timestamp in sorted(latest.items()):
            storage_id = resolve(key)
            if storage_id is not None:
                report.append(SyncProgress(storage_id, timestamp))
        return tuple(report)


class ReplicaBehind(ClusterError):
    """An append, modify or truncate that does not fit this storage's copy of the file (a gap, an
    offset past its end): the copy missed earlier changes.  ENODATA tells the sender to send the file
    whole, as it now is on the source."""

    status = errno.ENODATA


@contextlib.contextmanager
def _behind_if_refused(file_id: str) -> Iterator[None]:
    try:
        yield
    except InvalidArgument as exc:
        raise ReplicaBehind(f"{file_id}: this copy is behind its source: {exc}") from exc


class SyncApplier:
    """Applies SYNC_* requests to the service's store (see the module docstring)."""

    def __init__(self, service: StorageService, progress: ReplicaProgress) -> None:
        self.service = service
        self.store = service.store
        self.progress = progress

    def done(self, op: str, filename: str, timestamp: int, *extra: object, size: int = 0) -> None:
        """A peer's change of ``size`` file bytes is applied: record it (lower case) and count it."""
        binlog = self.service.binlog
        if binlog is not None:
            binlog.record(op, filename, *extra, timestamp=timestamp)
        self.progress.applied(filename, timestamp, size)

    def _file_id(self, group: str, filename: str) -> str:
        return self.service.file_id(group, filename)

    # ---- whole-frame requests ---------------------------------------------------------------------
    def handlers(self) -> dict[int, Callable[[int, bytes], Result]]:
        return {
            Command.SYNC_DELETE_FILE: self._delete,
            Command.SYNC_UPDATE_FILE: self._update,
            Command.SYNC_TRUNCATE_FILE: self._truncate,
            Command.SYNC_RENAME_FILE: self._rename,
            Command.SYNC_CREATE_LINK: self._link,
            Command.SYNC_CREATE_FILE: self._create_whole,
        }

    def _create_whole(self, status: int, body: bytes) -> Result:
        """SYNC_CREATE_FILE of a small file, delivered whole (see :data:`WHOLE_REPLICA_COMMANDS`)."""
        fixed = SyncCreateFileRequest.FIXED_SIZE
        if len(body) < fixed:
            raise ProtocolError(f"SYNC_CREATE_FILE body of {len(body)} bytes is too short")
        head_len = fixed + SyncCreateFileRequest.tail_size(body[:fixed])
        request = SyncCreateFileRequest.decode_head(body[:head_len], len(body))
        file_id = self._file_id(request.group, request.filename)
        data = body[head_len:]

        def work() -> bytes:
            self.store.put_replica(file_id, data)
            self.done("c", request.filename, request.timestamp, size=request.file_size)
            return EMPTY_REPLY

        return work if self.service.durable_meta else work()

    def _delete(self, status: int, body: bytes) -> Result:
        request = SyncDeleteFileRequest.decode(body)
        file_id = self._file_id(request.group, request.filename)

        def work() -> bytes:
            self.store.delete(file_id)
            self.done("d", request.filename, request.timestamp)
            return EMPTY_REPLY

        return work

    def _update(self, status: int, body: bytes) -> Result:
        request = SyncUpdateFileRequest.decode(body)
        file_id = self._file_id(request.group, request.filename)

        def work() -> bytes:
            self.store.set_meta(file_id, dict(request.meta), merge=False)
            self.done("u", request.filename, request.timestamp)
            return EMPTY_REPLY

        return work

    def _truncate(self, status: int, body: bytes) -> Result:
        request = SyncTruncateFileRequest.decode(body)
        file_id = self._file_id(request.group, request.filename)

        def work() -> bytes:
            check_appender(self.store, file_id)
            with _behind_if_refused(file_id):
                self.store.truncate(file_id, request.new_size)
            self.done("t", request.filename, request.timestamp, request.old_size, request.new_size)
            return EMPTY_REPLY

        return work

    def _rename(self, status: int, body: bytes) -> Result:
        request = SyncRenameFileRequest.decode(body)
        dest_id = self._file_id(request.group, request.dest_filename)
        src_id = self._file_id(request.group, request.src_filename)

        def work() -> bytes:
            with _behind_if_refused(src_id):  # e.g. its copy of the appender file missed an append
                self.store.rename_replica(src_id, dest_id)
            self.done("r", request.dest_filename, request.timestamp, request.src_filename)
            return EMPTY_REPLY

        return work

    def _link(self, status: int, body: bytes) -> Result:
        request = SyncCreateLinkRequest.decode(body)
        raise InvalidRequest(
            f"SYNC_CREATE_LINK of {request.dest_filename}: links are sent as whole files (SYNC_CREATE_FILE)"
        )

    # ---- streamed requests ------------------------------------------------------------------------
    def open_session(self, request: object) -> Session | None:
        """The session for a streamed SYNC_* request's head; ``None`` for any other request."""
        if isinstance(request, SyncCreateFileRequest):
            return ReplicaCreateSession(self, request)
        if isinstance(request, SyncAppendFileRequest):
            return ReplicaAppendSession(self, request)
        if isinstance(request, SyncModifyFileRequest):
            return ReplicaModifySession(self, request)
        return None


class ReplicaCreateSession(Session):
    """SYNC_CREATE_FILE of a file too large to come whole: streamed into the store in threads."""

    open_threaded = write_threaded = finish_threaded = True

    def __init__(self, applier: SyncApplier, request: SyncCreateFileRequest) -> None:
        self.applier = applier
        self.request = request
        self.file_id = applier._file_id(request.group, request.filename)
        self.upload: Upload | None = None

    def open(self) -> None:
        self.upload = self.applier.store.open_replica_upload(self.file_id, self.request.file_size)

    def write(self, chunk: bytes) -> None:
        assert self.upload is not None
        self.upload.write(chunk)

    def finish(self) -> bytes:
        assert self.upload is not None
        self.upload.commit()
        request = self.request
        self.applier.done("c", request.filename, request.timestamp, size=request.file_size)
        return EMPTY_REPLY

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()


class _ReplicaRewriteSession(Session):
    """Shared by SYNC_APPEND_FILE and SYNC_MODIFY_FILE: data written at the source's offsets."""

    def __init__(self, applier: SyncApplier, request: SyncAppendFileRequest | SyncModifyFileRequest) -> None:
        self.applier = applier
        self.request = request
        self.file_id = applier._file_id(request.group, request.filename)
        self.written = 0
        self._pending = bytearray()
        self.open_threaded = self.write_threaded = self.finish_threaded = True

    def open(self) -> None:
        check_appender(self.applier.store, self.file_id)

    def write(self, chunk: bytes) -> None:
        self._pending += chunk
        if len(self._pending) >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._store(self.request.offset + self.written, data)
            self.written += len(data)

    def _store(self, offset: int, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> bytes:
        self._flush()
        request = self.request
        self.applier.done(
            self.OP, request.filename, request.timestamp, request.offset, request.length, size=self.written
        )
        return EMPTY_REPLY

    OP = ""

    def abort(self) -> None:
        self._pending.clear()


class ReplicaAppendSession(_ReplicaRewriteSession):
    OP = "a"

    def _store(self, offset: int, data: bytes) -> None:
        with _behind_if_refused(self.file_id):
            self.applier.store.append_replica(self.file_id, offset, data)


class ReplicaModifySession(_ReplicaRewriteSession):
    OP = "m"

    def _store(self, offset: int, data: bytes) -> None:
        with _behind_if_refused(self.file_id):
            self.applier.store.modify(self.file_id, offset, data)
