"""Every client operation, once, as a generator of :class:`~cluster.client.requests.Exchange` steps.

Each operation yields the exchanges it needs (the tracker query, then the storage request) and
receives each parsed result back; it returns the operation's result.  The blocking and the asyncio
client drive the same generators, so both behave alike by construction.  A driver throws a failed
step's exception into the generator, so that ``with`` blocks here (an opened source file, the
temporary file of a download) clean up whichever client runs them.

Codec errors raised while a request is built (a bad extension, a name too long) are the caller's
mistake; the drivers turn them into :class:`~cluster.errors.InvalidRequest`.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, BinaryIO, TypeVar

from cluster.errors import AlreadyExists, ClusterError, InvalidRequest, NotFound, Unavailable
from cluster.protocol import (
    AppendFileRequest,
    DeleteFileRequest,
    DeleteStorageRequest,
    DownloadFileRequest,
    EmptyReply,
    FetchTargetReply,
    FileIdReply,
    FileInfoReply,
    GetMetadataRequest,
    ListAllGroupsRequest,
    ListGroupsReply,
    ListStorageRequest,
    ListStoragesReply,
    MetadataFlag,
    MetadataReply,
    ModifyFileRequest,
    QueryFetchOneRequest,
    QueryFileInfoRequest,
    QueryStoreOneRequest,
    QueryUpdateRequest,
    RegenerateAppenderFilenameRequest,
    SetMetadataRequest,
    StatLayout,
    StoreTargetReply,
    StreamedRequest,
    TruncateFileRequest,
    UploadAppenderFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
)
from cluster.protocol.base import Request
from trunkstore.errors import InvalidFileId
from trunkstore.fileid import parse_file_id

from .requests import LIST_REPLY_MAX, UNLIMITED, Exchange, Key, Progress, TrackerRotation, UploadSource
from .results import FileInfo, GroupStat, StorageAddress, StorageStat, StoreTarget

T = TypeVar("T")
#: An operation: yields exchanges, is sent their results, returns ``T``.
Operation = Generator[Exchange, Any, T]
Source = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
Destination = str | os.PathLike[str] | BinaryIO

_EXT = re.compile(r"[A-Za-z0-9._-]{0,6}")
_GROUP_MAX = 16
_FILENAME_MAX = 128
#: Sources up to this size are read into memory and sent with the request head in one write.
SMALL_UPLOAD = 64 * 1024


# ---- reply parsers -------------------------------------------------------------------------------
def _store_target(body: bytes) -> StoreTarget:
    reply = StoreTargetReply.decode(body)
    return StoreTarget(reply.group, reply.ip, reply.port, reply.store_path_index)


def _storage_address(body: bytes) -> StorageAddress:
    reply = FetchTargetReply.decode(body)
    return StorageAddress(reply.group, reply.ip, reply.port)


def _file_id(body: bytes) -> str:
    return FileIdReply.decode(body).file_id


def _empty(body: bytes) -> None:
    EmptyReply.decode(body)


def _content(body: bytes) -> bytes:
    return body if type(body) is bytes else bytes(body)


def _metadata(body: bytes) -> dict[str, str]:
    return dict(MetadataReply.decode(body).meta)


def _file_info(file_id: str, kind: str, body: bytes) -> FileInfo:
    reply = FileInfoReply.decode(body)
    return FileInfo(file_id, reply.file_size, reply.create_timestamp, reply.crc32, reply.source_ip, kind)


def _groups(layout: StatLayout, body: bytes) -> list[GroupStat]:
    return list(ListGroupsReply.decode(body, layout).groups)


def _storages(layout: StatLayout, body: bytes) -> list[StorageStat]:
    return list(ListStoragesReply.decode(body, layout).storages)


# ---- arguments ------------------------------------------------------------------------------------
def split_file_id(file_id: str) -> tuple[str, str]:
    """``group1/M00/...`` as ``("group1", "M00/...")``; a malformed ID is InvalidRequest."""
    if not isinstance(file_id, str):
        raise InvalidRequest(f"a file ID is a str, not {type(file_id).__name__}")
    group, sep, filename = file_id.partition("/")
    if not sep or not 0 < len(group) <= _GROUP_MAX or not 0 < len(filename) <= _FILENAME_MAX:
        raise InvalidRequest(f"malformed file ID {file_id!r}")
    return group, filename


def check_ext(ext: str) -> str:
    if not isinstance(ext, str) or _EXT.fullmatch(ext) is None:
        raise InvalidRequest(f"bad file extension {ext!r}: at most 6 characters from [A-Za-z0-9._-]")
    return ext


def _path_ext(path: str) -> str:
    """A path's suffix as the default extension, if FastDFS would accept it (else none)."""
    suffix = os.path.splitext(path)[1][1:]
    return suffix if suffix and _EXT.fullmatch(suffix) else ""


def _measure(file: BinaryIO) -> int:
    """Bytes left to read in ``file``: from fstat for a regular file, else by seeking to its end."""
    try:
        st = os.fstat(file.fileno())
    except (AttributeError, OSError, ValueError):
        st = None
    try:
        if st is not None and stat.S_ISREG(st.st_mode):
            return max(st.st_size - file.tell(), 0)
        position = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(position)
        return max(end - position, 0)
    except (AttributeError, OSError, ValueError):
        raise InvalidRequest("the upload source's size is unknown (not a file, not seekable): pass size=") from None


def _local_error(action: str, path: str, exc: OSError) -> ClusterError:
    cls = NotFound if isinstance(exc, FileNotFoundError) else ClusterError
    return cls(f"cannot {action} {path!r}: {exc.strerror or exc}")


@contextmanager
def open_source(source: Source, size: int | None) -> Iterator[tuple[UploadSource, str]]:
    """The upload source and its default extension (a path's suffix)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        length = memoryview(source).nbytes
        if size is not None and size != length:
            raise InvalidRequest(f"size={size} given for {length} bytes of data")
        yield UploadSource(length, data=source), ""
        return
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise _local_error("open", path, exc) from exc
        with file:
            yield _file_source(file, size), _path_ext(path)
        return
    if not callable(getattr(source, "read", None)):
        raise InvalidRequest(f"cannot upload a {type(source).__name__}: bytes, a path or a binary file")
    if size is not None and size < 0:
        raise InvalidRequest(f"size must not be negative: {size}")
    yield _file_source(source, size), ""


def _file_source(file: BinaryIO, size: int | None) -> UploadSource:
    """A file source; a small one is read at once, so that its upload goes out in one write."""
    source = UploadSource(_measure(file) if size is None else size, file=file)
    if source.size <= SMALL_UPLOAD:
        return UploadSource(source.size, data=source.read(source.size) if source.size else b"")
    return source


# ---- tracker --------------------------------------------------------------------------------------
def _tracker(request: Request, subject: str, parse: Any, max_reply: int = 64) -> Exchange:
    return Exchange(None, request.encode(), request.command, subject, parse, max_reply, idempotent=True)


def query_store(group: str | None = None) -> Operation[StoreTarget]:
    """The storage an upload goes to (QUERY_STORE_WITHOUT_GROUP_ONE, or WITH_GROUP with a group)."""
    target: StoreTarget = yield _tracker(QueryStoreOneRequest(group), group or "", _store_target)
    return target


def _query_fetch(group: str, filename: str) -> Operation[StorageAddress]:
    request = QueryFetchOneRequest(group, filename)
    target: StorageAddress = yield _tracker(request, f"{group}/{filename}", _storage_address)
    return target


def _query_update(group: str, filename: str) -> Operation[StorageAddress]:
    request = QueryUpdateRequest(group, filename)
    target: StorageAddress = yield _tracker(request, f"{group}/{filename}", _storage_address)
    return target


def query_fetch(file_id: str) -> Operation[StorageAddress]:
    """A storage to read ``file_id`` from (QUERY_FETCH_ONE)."""
    return (yield from _query_fetch(*split_file_id(file_id)))


def query_update(file_id: str) -> Operation[StorageAddress]:
    """The storage to change ``file_id`` on (QUERY_UPDATE)."""
    return (yield from _query_update(*split_file_id(file_id)))


def list_groups(layout: StatLayout) -> Operation[list[GroupStat]]:
    groups: list[GroupStat] = yield _tracker(ListAllGroupsRequest(), "", partial(_groups, layout), LIST_REPLY_MAX)
    return groups


def list_storages(layout: StatLayout, group: str, storage_id: str | None = None) -> Operation[list[StorageStat]]:
    request = ListStorageRequest(group, storage_id)
    storages: list[StorageStat] = yield _tracker(request, group, partial(_storages, layout), LIST_REPLY_MAX)
    return storages


def delete_storage(trackers: Sequence[Key], group: str, storage_id: str) -> Operation[None]:
    """Delete a storage that is not serving from ``group`` on every tracker (each keeps its own
    membership), as ``fdfs_monitor ... delete`` does.  A tracker that does not know the storage, or
    has deleted it already, is fine as long as one of them deleted it or had; a tracker that cannot
    be reached is an error naming it, so that the delete can be repeated once it is back."""
    request = DeleteStorageRequest(group, storage_id)
    done, unreachable = 0, []
    missing: NotFound | None = None
    for key in trackers:
        try:
            yield Exchange(key, request.encode(), request.command, f"{group} {storage_id}", _empty, idempotent=True)
        except NotFound as exc:
            missing = exc
        except AlreadyExists:
            done += 1  # deleted there already
        except ClusterError as exc:
            if not TrackerRotation.fails_over(exc):
                raise
            unreachable.append(f"{key[0]}:{key[1]} ({exc})")
        else:
            done += 1
    if unreachable:
        raise Unavailable(f"storage {storage_id} of {group} deleted on {done} tracker(s); not reached: "
                          + "; ".join(unreachable))  # fmt: skip
    if not done:
        assert missing is not None
        raise missing


# ---- storage --------------------------------------------------------------------------------------
def _key(target: StorageAddress | StoreTarget) -> tuple[str, int]:
    return (target.host, target.port)


def _streamed(
    target: StorageAddress | StoreTarget,
    head: StreamedRequest,
    subject: str,
    parse: Any,
    source: UploadSource,
    progress: Progress | None,
) -> Exchange:
    return Exchange(_key(target), head.encode_head(), head.command, subject, parse, upload=source, progress=progress)


def _set_meta_exchange(
    target: StorageAddress | StoreTarget, group: str, filename: str, meta: Mapping[str, str], merge: bool
) -> Exchange:
    flag = MetadataFlag.MERGE if merge else MetadataFlag.OVERWRITE
    request = SetMetadataRequest(group, filename, tuple(meta.items()), flag)
    return Exchange(_key(target), request.encode(), request.command, f"{group}/{filename}", _empty, idempotent=True)


def upload(
    source: Source,
    ext: str,
    group: str | None,
    meta: Mapping[str, str] | None,
    progress: Progress | None,
    size: int | None,
    appender: bool = False,
) -> Operation[str]:
    """A new normal (or appender) file; its metadata set after on the same storage."""
    with open_source(source, size) as (data, default_ext):
        ext = check_ext(ext or default_ext)
        target = yield from query_store(group)
        cls = UploadAppenderFileRequest if appender else UploadFileRequest
        head = cls(target.store_path_index, data.size, ext)
        file_id: str = yield _streamed(target, head, target.group, _file_id, data, progress)
    if meta:
        group_name, filename = split_file_id(file_id)
        yield _set_meta_exchange(target, group_name, filename, meta, False)
    return file_id


def upload_slave(
    master_id: str,
    prefix: str,
    source: Source,
    ext: str,
    meta: Mapping[str, str] | None,
    progress: Progress | None,
    size: int | None,
) -> Operation[str]:
    """A slave file named after ``master_id`` with ``prefix``, on the master's storage."""
    group, master = split_file_id(master_id)
    with open_source(source, size) as (data, default_ext):
        ext = check_ext(ext or default_ext)
        target = yield from _query_update(group, master)
        head = UploadSlaveFileRequest(master, prefix, data.size, ext)
        file_id: str = yield _streamed(target, head, master_id, _file_id, data, progress)
    if meta:
        slave_group, filename = split_file_id(file_id)
        yield _set_meta_exchange(target, slave_group, filename, meta, False)
    return file_id


def _download_exchange(
    target: StorageAddress, group: str, filename: str, offset: int, length: int, sink: BinaryIO | None = None,
    progress: Progress | None = None,
) -> Exchange:  # fmt: skip
    request = DownloadFileRequest(group, filename, offset, length)
    return Exchange(
        _key(target), request.encode(), request.command, f"{group}/{filename}", _content,
        length or UNLIMITED, idempotent=True, sink=sink, progress=progress,
    )  # fmt: skip


def download(file_id: str, offset: int, length: int) -> Operation[bytes]:
    """``length`` bytes (0: all) of ``file_id`` from ``offset``."""
    group, filename = split_file_id(file_id)
    target = yield from _query_fetch(group, filename)
    data: bytes = yield _download_exchange(target, group, filename, offset, length)
    return data


def download_to(file_id: str, dest: Destination, offset: int, length: int, progress: Progress | None) -> Operation[int]:
    """Stream ``file_id`` into a file object, or into a path (a temporary file renamed when complete)."""
    group, filename = split_file_id(file_id)
    target = yield from _query_fetch(group, filename)
    if not isinstance(dest, (str, os.PathLike)):
        written: int = yield _download_exchange(target, group, filename, offset, length, dest, progress)
        return written
    with _temporary_beside(os.fspath(dest)) as (temp, sink):
        written = yield _download_exchange(target, group, filename, offset, length, sink, progress)
        sink.close()
        os.replace(temp, dest)
    return written


@contextmanager
def _temporary_beside(path: str) -> Iterator[tuple[str, BinaryIO]]:
    """A new file next to ``path`` (same file system, so a rename replaces ``path`` atomically);
    removed unless it has been renamed when the block ends."""
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _local_error("create", temp, exc) from exc
    sink = os.fdopen(fd, "wb")
    try:
        yield temp, sink
    finally:
        sink.close()
        if os.path.lexists(temp):
            os.unlink(temp)


def _storage_call(
    query: Any, file_id: str, build: Any, parse: Any, *, idempotent: bool
) -> Generator[Exchange, Any, Any]:
    """The common shape: ask the tracker where ``file_id`` lives, then send one whole request there."""
    group, filename = split_file_id(file_id)
    target = yield from query(group, filename)
    request: Request = build(group, filename)
    return (yield Exchange(_key(target), request.encode(), request.command, file_id, parse, idempotent=idempotent))


def delete(file_id: str) -> Operation[None]:
    yield from _storage_call(_query_update, file_id, DeleteFileRequest, _empty, idempotent=False)


def set_meta(file_id: str, meta: Mapping[str, str], merge: bool) -> Operation[None]:
    group, filename = split_file_id(file_id)
    target = yield from _query_update(group, filename)
    yield _set_meta_exchange(target, group, filename, meta, merge)


def get_meta(file_id: str) -> Operation[dict[str, str]]:
    # Through QUERY_UPDATE, as FastDFS's clients do: the source storage has the latest metadata.
    meta: dict[str, str] = yield from _storage_call(
        _query_update, file_id, GetMetadataRequest, _metadata, idempotent=True
    )
    return meta


def file_info(file_id: str) -> Operation[FileInfo]:
    try:
        kind = str(parse_file_id(file_id).kind)
    except InvalidFileId as exc:
        raise InvalidRequest(str(exc)) from None
    info: FileInfo = yield from _storage_call(
        _query_fetch, file_id, QueryFileInfoRequest, partial(_file_info, file_id, kind), idempotent=True
    )
    return info


def append(file_id: str, source: Source, progress: Progress | None, size: int | None) -> Operation[None]:
    group, filename = split_file_id(file_id)
    with open_source(source, size) as (data, _):
        target = yield from _query_update(group, filename)
        yield _streamed(target, AppendFileRequest(filename, data.size), file_id, _empty, data, progress)


def modify(file_id: str, offset: int, source: Source, size: int | None) -> Operation[None]:
    group, filename = split_file_id(file_id)
    with open_source(source, size) as (data, _):
        target = yield from _query_update(group, filename)
        yield _streamed(target, ModifyFileRequest(filename, offset, data.size), file_id, _empty, data, None)


def truncate(file_id: str, size: int) -> Operation[None]:
    yield from _storage_call(
        _query_update, file_id, lambda _group, name: TruncateFileRequest(name, size), _empty, idempotent=True
    )


def regenerate_appender_name(file_id: str) -> Operation[str]:
    new_id: str = yield from _storage_call(
        _query_update, file_id, lambda _group, name: RegenerateAppenderFilenameRequest(name), _file_id,
        idempotent=False,
    )  # fmt: skip
    return new_id
