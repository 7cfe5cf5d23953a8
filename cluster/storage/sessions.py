"""Requests that carry file data, received as a stream: uploads, appends and modifies.

A :class:`Session` is made from the request's head, then sees ``open()``, ``write(chunk)`` for each
piece of data as it arrives, and ``finish()`` (which returns the reply frame) or ``abort()`` when
the client goes away before the end.  Sessions touch no socket; the connection runs each step on
the event loop or in a thread, as the session's ``*_threaded`` flags say, and stops reading from the
client while a step runs in a thread, so memory stays bounded whatever the upload's size.

* small uploads (up to :data:`SMALL_UPLOAD`) are gathered and stored with one ``Store.put``;
* other uploads (normal, appender, slave) stream into a :class:`trunkstore.upload.Upload`: small ones in
  memory (committed into a trunk slot), larger ones into a spool file; an abort leaves nothing.
* append and modify write at advancing offsets, coalescing small network reads into writes of up
  to :data:`FLUSH_BYTES`; an append cut short is truncated back to the size it had, as if it had
  never started (a modify cut short keeps what was written, as FastDFS's does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cluster.errors import InvalidRequest
from cluster.protocol import (
    STORE_PATH_ANY,
    AppendFileRequest,
    ModifyFileRequest,
    StreamedRequest,
    UploadAppenderFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
)

from .handlers import EMPTY_REPLY, SMALL_UPLOAD, check_appender

if TYPE_CHECKING:
    from trunkstore.upload import Upload

    from .handlers import StorageService

#: Append and modify data is written in pieces of up to this many bytes.
FLUSH_BYTES = 256 * 1024


class Session:
    """The store-side state of one streamed request."""

    #: A client's upload: a new file (whose reply may wait for copies on other storages).
    creates = False
    #: Which steps may block long enough (file I/O, fsync) to belong in a thread.
    open_threaded = False
    write_threaded = False
    finish_threaded = False

    #: The first error: the rest of the data is read and dropped, then this is the reply.
    error: BaseException | None = None

    def open(self) -> None:
        raise NotImplementedError

    def write(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError

    def abort(self) -> None:
        """Undo what the session did; called when the client disconnects before the end."""
        raise NotImplementedError


class UploadSession(Session):
    """UPLOAD_FILE, UPLOAD_APPENDER_FILE and UPLOAD_SLAVE_FILE."""

    creates = True

    def __init__(
        self,
        service: StorageService,
        request: UploadFileRequest | UploadAppenderFileRequest | UploadSlaveFileRequest,
    ) -> None:
        self.service = service
        self.request = request
        self.upload: Upload | None = None
        large = request.file_size > SMALL_UPLOAD or isinstance(request, UploadAppenderFileRequest)
        self.open_threaded = self.write_threaded = large
        # With dedup a commit also records the content in SQLite.
        dedup_commit = service.durable_meta and service.store.config.dedup
        self.finish_threaded = large or service.durable or dedup_commit
        if not isinstance(request, UploadSlaveFileRequest):
            _check_store_path(service, request.store_path_index)

    def open(self) -> None:
        request = self.request
        store = self.service.store
        if isinstance(request, UploadSlaveFileRequest):
            master_id = self.service.own_file_id(request.master_filename)
            self.upload = store.open_slave_upload(master_id, request.prefix, request.file_size, request.ext)
        else:
            appender = isinstance(request, UploadAppenderFileRequest)
            self.upload = store.open_upload(request.file_size, request.ext, appender=appender)

    def write(self, chunk: bytes) -> None:
        assert self.upload is not None
        self.upload.write(chunk)

    def finish(self) -> bytes:
        assert self.upload is not None
        return self.service.created(self.upload.commit())

    def abort(self) -> None:
        if self.upload is not None:
            self.upload.abort()


class SmallUploadSession(Session):
    """UPLOAD_FILE of at most :data:`SMALL_UPLOAD` bytes: gathered in memory, stored in one ``put``.

    The file is small enough to hold, and one call into the store is the cheapest way to a trunk
    slot (the common case, and the one whose rate matters).
    """

    creates = True

    def __init__(self, service: StorageService, request: UploadFileRequest) -> None:
        self.service = service
        self.ext = request.ext
        self.parts: list[bytes] = []
        self.finish_threaded = service.durable or (service.durable_meta and service.store.config.dedup)
        _check_store_path(service, request.store_path_index)

    def open(self) -> None:
        pass

    def write(self, chunk: bytes) -> None:
        self.parts.append(chunk)

    def finish(self) -> bytes:
        parts = self.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return self.service.created(self.service.store.put(data, self.ext))

    def abort(self) -> None:
        self.parts = []


def _check_store_path(service: StorageService, index: int) -> None:
    if index != STORE_PATH_ANY and index >= service.store.config.store_path_count:
        raise InvalidRequest(f"store_path_index {index} is not a configured store path")


class _RewriteSession(Session):
    """Shared by append and modify: data written into an existing appender file in pieces."""

    def __init__(self, service: StorageService, filename: str, size: int) -> None:
        self.service = service
        self.file_id = service.own_file_id(filename)
        self.size = size
        self.original_size = -1
        self.written = 0  # bytes handed to the store so far
        self._pending = bytearray()
        self.write_threaded = self.finish_threaded = service.durable or size > SMALL_UPLOAD

    def open(self) -> None:
        self.original_size = check_appender(self.service.store, self.file_id)

    def write(self, chunk: bytes) -> None:
        pending = self._pending
        if not pending and len(chunk) >= FLUSH_BYTES:
            self._store(chunk)
            return
        pending += chunk
        if len(pending) >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._store(data)

    def _store(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> bytes:
        self._flush()
        self._record()
        return EMPTY_REPLY

    def _record(self) -> None:
        raise NotImplementedError


class AppendSession(_RewriteSession):
    """APPEND_FILE: data added at the end of an appender file."""

    def __init__(self, service: StorageService, request: AppendFileRequest) -> None:
        super().__init__(service, request.filename, request.file_size)
        #: No other connection's append landed between this session's pieces.
        self.alone = True

    def _store(self, data: bytes) -> None:
        size = self.service.store.append(self.file_id, data)
        offset = size - len(data)
        if offset != self.original_size + self.written:
            self.alone = False  # another connection appended in between
        self.written += len(data)
        # Where this piece really went: another connection may have appended since this one opened.
        self.service.changed("A", self.file_id, offset, len(data))

    def _record(self) -> None:
        pass  # each piece was recorded as it was written

    def abort(self) -> None:
        self._pending.clear()
        if not self.written or self.original_size < 0 or not self.alone:
            return  # nothing written, or others' appends are mixed in: what was written stays
        end = self.original_size + self.written
        # Cut back only if nothing was appended after this session's pieces either.
        if self.service.store.truncate(self.file_id, self.original_size, expected_size=end):
            self.service.changed("T", self.file_id, end, self.original_size)


class ModifySession(_RewriteSession):
    """MODIFY_FILE: data written over an appender file from ``offset`` (at most its size)."""

    def __init__(self, service: StorageService, request: ModifyFileRequest) -> None:
        super().__init__(service, request.filename, request.file_size)
        self.offset = request.offset

    def open(self) -> None:
        super().open()
        if self.offset > self.original_size:
            raise InvalidRequest(f"modify offset {self.offset} is past the file's {self.original_size} bytes")

    def _store(self, data: bytes) -> None:
        self.service.store.modify(self.file_id, self.offset + self.written, data)
        self.written += len(data)

    def _record(self) -> None:
        self.service.changed("M", self.file_id, self.offset, self.written)

    def abort(self) -> None:
        self._pending.clear()
        if self.written:
            self._record()  # what was written stays (as FastDFS's), so the peers get it too


def open_session(service: StorageService, request: StreamedRequest) -> Session:
    """The session for a streamed request's head; a command a storage does not serve is EINVAL."""
    if isinstance(request, UploadFileRequest) and request.file_size <= SMALL_UPLOAD:
        return SmallUploadSession(service, request)
    if isinstance(request, (UploadFileRequest, UploadAppenderFileRequest, UploadSlaveFileRequest)):
        return UploadSession(service, request)
    if isinstance(request, AppendFileRequest):
        return AppendSession(service, request)
    if isinstance(request, ModifyFileRequest):
        return ModifySession(service, request)
    if service.replica is not None:
        replica_session = service.replica.open_session(request)
        if replica_session is not None:
            return replica_session
    raise InvalidRequest(f"{request.command.name} is not served to clients")
