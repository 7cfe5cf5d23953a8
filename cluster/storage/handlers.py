"""Client requests to store operations to reply bytes: the storage's service, without sockets.

Whole-frame requests go through :meth:`StorageService.handle_frame`, which returns one of

* ``bytes``: the complete reply frame, ready for one write;
* a :data:`Blocking` callable: work that may block on an fsync or a long read, for the caller to run
  in a thread; it returns the reply frame;
* a :class:`Region`: a file range to send after its reply header (large downloads, by ``sendfile``).

Requests that carry file data (uploads, append, modify) become a session from
:mod:`cluster.storage.sessions`.  Errors are raised as the engine, protocol and cluster exceptions,
all of which carry the errno the reply header gets (:func:`cluster.errors.status_for_exception`).

FastDFS's answers, followed here: a request naming another group, a malformed file name or an
offset past the end is EINVAL; a missing file ENOENT; a download of a 0-byte file EINVAL (its
offset 0 is not below its size).
"""

from __future__ import annotations

import binascii
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cluster.errors import InvalidRequest, NotFound
from cluster.protocol import (
    ActiveTestRequest,
    Command,
    DeleteFileRequest,
    DownloadFileRequest,
    FileIdReply,
    FileInfoFlag,
    FileInfoReply,
    GetMetadataRequest,
    MetadataFlag,
    ProtocolError,
    QueryFileInfoRequest,
    RegenerateAppenderFilenameRequest,
    SetMetadataRequest,
    TruncateFileRequest,
    encode_metadata,
)
from cluster.protocol.codes import STORE_PATH_ANY
from cluster.protocol.fields import MAX_SERVER_ID, check_ext, decode_fixed
from cluster.protocol.frames import HEADER
from cluster.protocol.upload_messages import UPLOAD_HEAD
from trunkstore import FileKind, FileNotFound, Store

from .binlog import Binlog

if TYPE_CHECKING:
    from .sync_apply import SyncApplier

#: Downloads up to this size are read into memory and sent with their header in one write.
SMALL_DOWNLOAD = 64 * 1024
#: Uploads up to this size are received on the event loop (in memory); larger ones in threads.
SMALL_UPLOAD = 64 * 1024
#: Where the file data of an UPLOAD_FILE frame starts, and the longest such frame of a small upload.
_UPLOAD_DATA_START = HEADER.size + UPLOAD_HEAD.size
SMALL_UPLOAD_FRAME_LEN = _UPLOAD_DATA_START + SMALL_UPLOAD
#: Length of a trunk file's remote name: ``Mxx/HH/HH/`` + 27 + 16 base64 characters + 7 for the extension.
TRUNK_NAME_LEN = 60
#: Top byte of a trunk file's size field: the "size is encoded" mark and the trunk flag.
_TRUNK_MARK = 0x88
_TO_STD = str.maketrans("-_", "+/")
#: Body length of a DOWNLOAD_FILE request naming a trunk file: offset, length, group, name.
_WHOLE_TRUNK_DOWNLOAD = 32 + TRUNK_NAME_LEN
_UPLOAD_FILE = int(Command.UPLOAD_FILE)
#: The frame header of such a request, and the length of the whole frame.
WHOLE_TRUNK_DOWNLOAD_HEADER = HEADER.pack(_WHOLE_TRUNK_DOWNLOAD, Command.DOWNLOAD_FILE, 0)
WHOLE_TRUNK_DOWNLOAD_FRAME_LEN = HEADER.size + _WHOLE_TRUNK_DOWNLOAD
#: Chunk for computing a crc32 over a file's contents.
_CRC_CHUNK = 1 << 20

RESPONSE = int(Command.RESPONSE)
_pack_header = HEADER.pack
EMPTY_REPLY = _pack_header(0, RESPONSE, 0)

Blocking = Callable[[], bytes]


def reply(body: bytes) -> bytes:
    """A success reply frame: header and body in one buffer."""
    return _pack_header(len(body), RESPONSE, 0) + body


def reply_header(length: int) -> bytes:
    """The header of a success reply whose ``length`` body bytes follow separately."""
    return _pack_header(length, RESPONSE, 0)


@dataclass(frozen=True, slots=True)
class Region:
    """``count`` bytes of the open file ``fd`` from ``offset``: the body of a download reply.

    The descriptor is opened when the request is handled, so a delete that follows cannot take the
    bytes away (a plain file stays readable while open); whoever sends the region closes it.
    """

    fd: int
    offset: int
    count: int

    def close(self) -> None:
        os.close(self.fd)


Result = bytes | Blocking | Region


class StorageService:
    """One storage's request handling around its :class:`trunkstore.Store`.

    What blocks depends on the store's ``sync_mode``: with ``always``, writes of file data wait for
    fsync (``durable``); with ``always`` or ``interval``, metadata commits do (``durable_meta``).
    Such work is returned as :data:`Blocking` for a thread; otherwise it is done at once.
    """

    def __init__(self, store: Store, binlog: Binlog | None = None) -> None:
        self.store = store
        #: Where every change is recorded for the group's other storages (none: not replicated).
        self.binlog = binlog
        #: Applies the peers' SYNC_* requests, once replication is enabled.
        self.replica: SyncApplier | None = None
        #: The IP of the group member with a numeric storage ID, if known (set with replication).
        self.member_ip: Callable[[str], str | None] = lambda storage_id: None
        self.group = store.group
        self.prefix = store.group + "/"
        mode = store.config.sync_mode
        self.durable = mode == "always"
        self.durable_meta = mode != "none"
        #: Small uploads are stored on the event loop unless their commit waits for a sync (or their
        #: reply for copies on other storages): with ``uploads_wait`` the whole-upload short path is off.
        self.uploads_wait = self.durable or (self.durable_meta and store.config.dedup)
        self._path_count = store.config.store_path_count
        self._group_field = FileIdReply(self.group, "x").encode_body()[:16]
        self._whole_download_head = bytes(16) + self._group_field  # offset 0, length 0, group
        self._frames: dict[int, Callable[[int, bytes], Result]] = {
            Command.DOWNLOAD_FILE: self._download,
            Command.DELETE_FILE: self._delete,
            Command.SET_METADATA: self._set_metadata,
            Command.GET_METADATA: self._get_metadata,
            Command.QUERY_FILE_INFO: self._query_file_info,
            Command.TRUNCATE_FILE: self._truncate,
            Command.REGENERATE_APPENDER_FILENAME: self._regenerate,
            Command.ACTIVE_TEST: self._active_test,
        }

    # ---- names ------------------------------------------------------------------------------------
    def file_id(self, group: str, filename: str) -> str:
        """The file ID of a request's ``group`` and remote ``filename``; another group is EINVAL."""
        if group != self.group:
            raise InvalidRequest(f"group {group!r} is not this storage's group {self.group!r}")
        return self.prefix + filename

    def own_file_id(self, filename: str) -> str:
        """The file ID of a request that names no group (append, modify, truncate, regenerate)."""
        return self.prefix + filename

    def file_id_reply(self, file_id: str) -> bytes:
        """The reply naming a new file: ``group[16]`` and its remote name, without a NUL."""
        return reply(self._group_field + file_id[len(self.prefix) :].encode("ascii"))

    def created(self, file_id: str) -> bytes:
        """A client's upload is stored: record it for the peers, and the reply naming it."""
        filename = file_id[len(self.prefix) :]
        if self.binlog is not None:
            self.binlog.record("C", filename)
        return reply(self._group_field + filename.encode("ascii"))

    def changed(self, op: str, file_id: str, *extra: object) -> None:
        """Record a client's change of ``file_id`` for the peers (binlog ``op``, upper case)."""
        if self.binlog is not None:
            self.binlog.record(op, file_id[len(self.prefix) :], *extra)

    def enable_replication(self, applier: SyncApplier) -> None:
        """Serve the peers' SYNC_* requests with ``applier``."""
        self.replica = applier
        self._frames.update(applier.handlers())

    # ---- dispatch ---------------------------------------------------------------------------------
    def serves(self, cmd: int) -> bool:
        return cmd in self._frames

    def handle_frame(self, cmd: int, status: int, body: bytes) -> Result:
        """Handle a whole request frame; an unknown command or a malformed body is EINVAL."""
        handler = self._frames.get(cmd)
        if handler is None:
            raise ProtocolError(f"command {cmd} is not served by a storage")
        return handler(status, body)

    def _maybe_blocking(self, work: Blocking, blocks: bool) -> Result:
        return work if blocks else work()

    # ---- whole-frame requests ---------------------------------------------------------------------
    def _active_test(self, status: int, body: bytes) -> Result:
        ActiveTestRequest.decode(body)
        return EMPTY_REPLY

    def whole_download(self, body: bytes) -> bytes | None:
        """The reply to the commonest request, a whole small trunk file of this group; else ``None``.

        It skips building the request message; anything else (a range, another group, a large or
        plain file, a malformed body) is ``None``, for :meth:`handle_frame` to answer.
        """
        if len(body) != _WHOLE_TRUNK_DOWNLOAD or body[:32] != self._whole_download_head:
            return None
        try:
            filename = body[32:].decode("ascii")
        except UnicodeDecodeError:
            return None
        data = self.store.read_small(self.prefix + filename, SMALL_DOWNLOAD)
        # Anything the engine's fast path does not find (a stale ID, a 0-byte file, which is EINVAL)
        # goes the general way, which reports precisely why.
        return reply(data) if data else None

    def whole_upload(self, frame: bytes) -> bytes | None:
        """The reply to a whole small UPLOAD_FILE ``frame`` (header included) stored at once; else ``None``.

        For a frame that arrived in one read: it skips the streaming decoder and the upload session.
        Anything it does not take (durable mode, whose writes wait for fsync in a thread; a malformed
        head; another command) is ``None``, for the general path to answer.
        """
        if self.uploads_wait or not _UPLOAD_DATA_START <= len(frame) <= SMALL_UPLOAD_FRAME_LEN:
            return None
        pkg_len, cmd, _status = HEADER.unpack_from(frame)
        if cmd != _UPLOAD_FILE or pkg_len != len(frame) - HEADER.size:
            return None
        index, file_size, raw_ext = UPLOAD_HEAD.unpack_from(frame, HEADER.size)
        if file_size != len(frame) - _UPLOAD_DATA_START or (index != STORE_PATH_ANY and index >= self._path_count):
            return None
        try:
            ext = check_ext(decode_fixed(raw_ext, "ext"))
        except ProtocolError:
            return None
        return self.created(self.store.put(frame[_UPLOAD_DATA_START:], ext))

    def _download(self, status: int, body: bytes) -> Result:
        whole = self.whole_download(body)
        if whole is not None:
            return whole
        request = DownloadFileRequest.decode(body)
        file_id = self.file_id(request.group, request.filename)
        offset, length = request.offset, request.length
        store = self.store
        if 0 <= trunk_file_size(request.filename) <= SMALL_DOWNLOAD:
            data = store.get(file_id)  # validates the ID, checks the slot and the crc32
            start, count = _clip(offset, length, len(data))
            return reply(data if count == len(data) else data[start : start + count])
        path, base, size = store.locate(file_id)
        start, count = _clip(offset, length, size)
        fd = _open(path, file_id)
        counters = store.counters
        counters.download_total += 1
        if count > SMALL_DOWNLOAD:
            counters.download_ok += 1
            counters.download_bytes += count
            return Region(fd, base + start, count)
        try:
            data = os.pread(fd, count, base + start)
        finally:
            os.close(fd)
        if len(data) != count:
            raise FileNotFound(f"{file_id} shrank while being read")
        counters.download_ok += 1
        counters.download_bytes += count
        return reply(data)

    def _delete(self, status: int, body: bytes) -> Result:
        request = DeleteFileRequest.decode(body)
        file_id = self.file_id(request.group, request.filename)

        def work() -> bytes:
            # Recorded first: once the delete frees a trunk slot an upload may take it at once, and
            # the peers must see this delete before that upload, or the slot is still taken there.
            # (A delete that then fails leaves a record of a file that is gone anyway, or, on an I/O
            # error, a peer without a file this storage still has.)
            self.changed("D", file_id)
            self.store.delete(file_id)
            return EMPTY_REPLY

        # A delete also drops the file's metadata, a SQLite commit.
        return self._maybe_blocking(work, self.durable_meta)

    def _set_metadata(self, status: int, body: bytes) -> Result:
        request = SetMetadataRequest.decode(body)
        file_id = self.file_id(request.group, request.filename)
        merge = request.flag == MetadataFlag.MERGE
        meta = dict(request.meta)

        def work() -> bytes:
            self.store.set_meta(file_id, meta, merge=merge)
            self.changed("U", file_id)
            return EMPTY_REPLY

        return self._maybe_blocking(work, self.durable_meta)

    def _get_metadata(self, status: int, body: bytes) -> Result:
        request = GetMetadataRequest.decode(body)
        meta = self.store.get_meta(self.file_id(request.group, request.filename))
        if not meta:
            raise NotFound(f"{request.filename} has no metadata")
        return reply(encode_metadata(meta))

    def _query_file_info(self, status: int, body: bytes) -> Result:
        request = QueryFileInfoRequest.decode(body, status)
        file_id = self.file_id(request.group, request.filename)
        stat = self.store.stat(file_id)
        # The crc32 in an appender's ID is its first upload's, and a slave's ID is its master's: FastDFS
        # computes theirs from the contents unless the client asked it not to.
        source_ip = self._source_ip(stat.source, stat.source_ip)
        if stat.kind not in (FileKind.APPENDER, FileKind.SLAVE) or request.flags & FileInfoFlag.NO_CRC32:
            return FileInfoReply(stat.size, stat.create_time, stat.crc32, source_ip).encode()
        store = self.store

        def work() -> bytes:
            path, offset, size = store.locate(file_id)
            crc = _crc32_of(path, offset, size, file_id)
            return FileInfoReply(size, stat.create_time, crc, source_ip).encode()

        return work

    def _source_ip(self, source: int, decoded: str) -> str:
        """The address of the storage that made a file: for a numeric storage ID, the member's IP, as
        FastDFS's storage answers from its table of IDs."""
        if not 0 < source <= MAX_SERVER_ID:
            return decoded
        config = self.store.config
        if source == config.storage_id:
            return config.storage_ip
        return self.member_ip(str(source)) or decoded

    def _truncate(self, status: int, body: bytes) -> Result:
        request = TruncateFileRequest.decode(body)
        file_id = self.own_file_id(request.filename)
        old_size = check_appender(self.store, file_id)

        def work() -> bytes:
            self.store.truncate(file_id, request.new_size)
            self.changed("T", file_id, old_size, request.new_size)
            return EMPTY_REPLY

        return self._maybe_blocking(work, self.durable)

    def _regenerate(self, status: int, body: bytes) -> Result:
        request = RegenerateAppenderFilenameRequest.decode(body)
        file_id = self.own_file_id(request.filename)
        check_appender(self.store, file_id)

        def work() -> bytes:
            new_id = self.store.regenerate_appender_name(file_id)
            self.changed("R", new_id, request.filename)
            return self.file_id_reply(new_id)

        # It reads the whole file for its crc32: never on the event loop.
        return work


def trunk_file_size(filename: str) -> int:
    """The size a trunk file's remote name declares, or -1 if the name is not a trunk file's.

    Decodes only what routing a download needs (the size field, from fixed positions, as the
    engine's read fast path does); the store validates the whole ID when it reads.
    """
    if len(filename) != TRUNK_NAME_LEN:
        return -1
    try:
        info = binascii.a2b_base64(filename[10:37].translate(_TO_STD) + "=")
    except (binascii.Error, ValueError):
        return -1
    if len(info) != 20 or info[8] & _TRUNK_MARK != _TRUNK_MARK:
        return -1
    return int.from_bytes(info[12:16], "big")


def check_appender(store: Store, file_id: str) -> int:
    """The current size of appender file ``file_id``.

    As FastDFS answers: a trunk file (never an appender) or a missing file is ENOENT, any other file
    that is not an appender EINVAL.
    """
    stat = store.stat(file_id)
    if stat.kind == FileKind.TRUNK:
        raise NotFound(f"{file_id} is a trunk file, not an appender file")
    if stat.kind != FileKind.APPENDER:
        raise InvalidRequest(f"{file_id} is not an appender file")
    return stat.size


def _clip(offset: int, length: int, size: int) -> tuple[int, int]:
    """``(start, count)`` of a download: ``length`` 0 means to the end, too long is clipped."""
    if offset >= size:
        raise InvalidRequest(f"download offset {offset} is not below the file size {size}")
    remaining = size - offset
    return offset, remaining if length == 0 else min(length, remaining)


def _open(path: str, file_id: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFound(f"no file {file_id}") from None


def _crc32_of(path: str, offset: int, size: int, file_id: str) -> int:
    fd = _open(path, file_id)
    crc = 0
    try:
        position, end = offset, offset + size
        while position < end:
            chunk = os.pread(fd, min(_CRC_CHUNK, end - position), position)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            position += len(chunk)
    finally:
        os.close(fd)
    return crc
