"""Storage -> storage replication requests.

FastDFS's layouts (``storage/storage_sync.c``): length fields first, then the source operation's
``timestamp[4]`` and ``group[16]``, then the names, then the data.  ``timestamp`` is the Unix time
of the operation on the source storage (from its binlog)::

    16 SYNC_CREATE_FILE    filename_len[8] file_size[8] timestamp[4] group[16] filename      + data
    18 SYNC_UPDATE_FILE    filename_len[8] meta_len[8]  timestamp[4] group[16] filename      + meta
    25 SYNC_APPEND_FILE    filename_len[8] offset[8] length[8] timestamp[4] group[16] filename + data
    35 SYNC_MODIFY_FILE    filename_len[8] offset[8] length[8] timestamp[4] group[16] filename + data
    37 SYNC_TRUNCATE_FILE  filename_len[8] old_size[8] new_size[8] timestamp[4] group[16] filename
    17 SYNC_DELETE_FILE    timestamp[4] group[16] filename
    40 SYNC_RENAME_FILE    dest_len[8] src_len[8] timestamp[4] group[16] dest_filename src_filename
    19 SYNC_CREATE_LINK    dest_len[8] src_len[8] timestamp[4] group[16] dest_filename src_filename

CREATE, APPEND and MODIFY carry file data and are streamed (their messages are heads, see
:class:`~cluster.protocol.base.StreamedRequest`); UPDATE carries the file's whole metadata
(binlog op ``U``), in the encoding of :mod:`cluster.protocol.metadata`.  Every reply is empty; a
replica that already applied the operation answers EEXIST.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from .base import Request, StreamedRequest
from .codes import Command
from .errors import ProtocolError
from .fields import (
    GROUP_LEN,
    check_name_len,
    check_size,
    decode_fixed,
    decode_name,
    encode_fixed,
    encode_name,
    expect_len,
    expect_min_len,
    pack,
)
from .metadata import Metadata, decode_metadata, encode_metadata, normalize_metadata

CREATE_HEAD = struct.Struct("!qqI16s")  # 36: filename_len, file_size (or meta_len), timestamp, group
RANGE_HEAD = struct.Struct("!qqqI16s")  # 44: filename_len, offset, length, timestamp, group
TRUNCATE_HEAD = RANGE_HEAD  # filename_len, old_size, new_size, timestamp, group
PAIR_HEAD = struct.Struct("!qqI16s")  # 36: dest_len, src_len, timestamp, group
DELETE_HEAD = struct.Struct("!I16s")  # 20


def _group(group: str) -> bytes:
    return encode_fixed(group, GROUP_LEN, "group")


@dataclass(frozen=True, slots=True)
class SyncCreateFileRequest(StreamedRequest):
    """SYNC_CREATE_FILE (16): a replica of a new file; ``file_size`` data bytes follow."""

    COMMAND: ClassVar[Command] = Command.SYNC_CREATE_FILE
    FIXED_SIZE: ClassVar[int] = CREATE_HEAD.size

    timestamp: int
    group: str
    filename: str
    file_size: int

    @property
    def data_size(self) -> int:
        return self.file_size

    @classmethod
    def tail_size(cls, fixed: bytes) -> int:
        return check_name_len(CREATE_HEAD.unpack_from(fixed)[0], "filename")

    def encode_head_body(self) -> bytes:
        name = encode_name(self.filename, "filename")
        size = check_size(self.file_size, "file_size")
        return pack(CREATE_HEAD, len(name), size, self.timestamp, _group(self.group)) + name

    @classmethod
    def decode_head(cls, head: bytes, pkg_len: int) -> Self:
        if len(head) < CREATE_HEAD.size or len(head) != cls.head_size(head):
            raise ProtocolError(f"malformed SYNC_CREATE_FILE head of {len(head)} bytes")
        _, file_size, timestamp, group = CREATE_HEAD.unpack_from(head)
        cls.check_data_size(check_size(file_size, "file_size"), len(head), pkg_len)
        name = decode_name(head[CREATE_HEAD.size :], "filename")
        return cls(timestamp, decode_fixed(group, "group"), name, file_size)


@dataclass(frozen=True, slots=True)
class _SyncRangeHead(StreamedRequest):
    timestamp: int
    group: str
    filename: str
    offset: int
    length: int

    FIXED_SIZE: ClassVar[int] = RANGE_HEAD.size

    @property
    def data_size(self) -> int:
        return self.length

    @classmethod
    def tail_size(cls, fixed: bytes) -> int:
        return check_name_len(RANGE_HEAD.unpack_from(fixed)[0], "filename")

    def encode_head_body(self) -> bytes:
        name = encode_name(self.filename, "filename")
        offset = check_size(self.offset, "offset")
        length = check_size(self.length, "length")
        return pack(RANGE_HEAD, len(name), offset, length, self.timestamp, _group(self.group)) + name

    @classmethod
    def decode_head(cls, head: bytes, pkg_len: int) -> Self:
        if len(head) < RANGE_HEAD.size or len(head) != cls.head_size(head):
            raise ProtocolError(f"malformed {cls.COMMAND.name} head of {len(head)} bytes")
        _, offset, length, timestamp, group = RANGE_HEAD.unpack_from(head)
        check_size(offset, "offset")
        cls.check_data_size(check_size(length, "length"), len(head), pkg_len)
        name = decode_name(head[RANGE_HEAD.size :], "filename")
        return cls(timestamp, decode_fixed(group, "group"), name, offset, length)


@dataclass(frozen=True, slots=True)
class SyncAppendFileRequest(_SyncRangeHead):
    """SYNC_APPEND_FILE (25): ``length`` bytes appended at ``offset`` (the old size) on the source."""

    COMMAND: ClassVar[Command] = Command.SYNC_APPEND_FILE


@dataclass(frozen=True, slots=True)
class SyncModifyFileRequest(_SyncRangeHead):
    """SYNC_MODIFY_FILE (35): ``length`` bytes overwritten at ``offset`` on the source."""

    COMMAND: ClassVar[Command] = Command.SYNC_MODIFY_FILE


@dataclass(frozen=True, slots=True)
class SyncUpdateFileRequest(Request):
    """SYNC_UPDATE_FILE (18): the file's metadata as it now is on the source (normalised)."""

    COMMAND: ClassVar[Command] = Command.SYNC_UPDATE_FILE
    timestamp: int
    group: str
    filename: str
    meta: Metadata

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", normalize_metadata(self.meta))

    def encode_body(self) -> bytes:
        name = encode_name(self.filename, "filename")
        meta = encode_metadata(self.meta)
        return pack(CREATE_HEAD, len(name), len(meta), self.timestamp, _group(self.group)) + name + meta

    @classmethod
    def decode(cls, body: bytes) -> SyncUpdateFileRequest:
        expect_min_len(body, CREATE_HEAD.size, "SYNC_UPDATE_FILE")
        name_len, meta_len, timestamp, group = CREATE_HEAD.unpack_from(body)
        check_name_len(name_len, "filename")
        if meta_len < 0 or CREATE_HEAD.size + name_len + meta_len != len(body):
            raise ProtocolError(f"SYNC_UPDATE_FILE lengths {name_len} + {meta_len} do not match the body")
        name_end = CREATE_HEAD.size + name_len
        name = decode_name(body[CREATE_HEAD.size : name_end], "filename")
        return cls(timestamp, decode_fixed(group, "group"), name, decode_metadata(body[name_end:]))


@dataclass(frozen=True, slots=True)
class SyncTruncateFileRequest(Request):
    """SYNC_TRUNCATE_FILE (37): the source cut the file from ``old_size`` to ``new_size``."""

    COMMAND: ClassVar[Command] = Command.SYNC_TRUNCATE_FILE
    timestamp: int
    group: str
    filename: str
    old_size: int
    new_size: int

    def encode_body(self) -> bytes:
        name = encode_name(self.filename, "filename")
        old = check_size(self.old_size, "old_size")
        new = check_size(self.new_size, "new_size")
        return pack(TRUNCATE_HEAD, len(name), old, new, self.timestamp, _group(self.group)) + name

    @classmethod
    def decode(cls, body: bytes) -> SyncTruncateFileRequest:
        expect_min_len(body, TRUNCATE_HEAD.size, "SYNC_TRUNCATE_FILE")
        name_len, old, new, timestamp, group = TRUNCATE_HEAD.unpack_from(body)
        expect_len(body, TRUNCATE_HEAD.size + check_name_len(name_len, "filename"), "SYNC_TRUNCATE_FILE")
        return cls(
            timestamp,
            decode_fixed(group, "group"),
            decode_name(body[TRUNCATE_HEAD.size :], "filename"),
            check_size(old, "old_size"),
            check_size(new, "new_size"),
        )


@dataclass(frozen=True, slots=True)
class SyncDeleteFileRequest(Request):
    """SYNC_DELETE_FILE (17)."""

    COMMAND: ClassVar[Command] = Command.SYNC_DELETE_FILE
    timestamp: int
    group: str
    filename: str

    def encode_body(self) -> bytes:
        return pack(DELETE_HEAD, self.timestamp, _group(self.group)) + encode_name(self.filename, "filename")

    @classmethod
    def decode(cls, body: bytes) -> SyncDeleteFileRequest:
        expect_min_len(body, DELETE_HEAD.size + 1, "SYNC_DELETE_FILE")
        timestamp, group = DELETE_HEAD.unpack_from(body)
        return cls(timestamp, decode_fixed(group, "group"), decode_name(body[DELETE_HEAD.size :], "filename"))


@dataclass(frozen=True, slots=True)
class _SyncPair(Request):
    timestamp: int
    group: str
    dest_filename: str
    src_filename: str

    def encode_body(self) -> bytes:
        dest = encode_name(self.dest_filename, "dest filename")
        src = encode_name(self.src_filename, "src filename")
        return pack(PAIR_HEAD, len(dest), len(src), self.timestamp, _group(self.group)) + dest + src

    @classmethod
    def decode(cls, body: bytes) -> Self:
        what = cls.COMMAND.name
        expect_min_len(body, PAIR_HEAD.size, what)
        dest_len, src_len, timestamp, group = PAIR_HEAD.unpack_from(body)
        check_name_len(dest_len, "dest filename")
        check_name_len(src_len, "src filename")
        expect_len(body, PAIR_HEAD.size + dest_len + src_len, what)
        dest_end = PAIR_HEAD.size + dest_len
        return cls(
            timestamp,
            decode_fixed(group, "group"),
            decode_name(body[PAIR_HEAD.size : dest_end], "dest filename"),
            decode_name(body[dest_end:], "src filename"),
        )


@dataclass(frozen=True, slots=True)
class SyncRenameFileRequest(_SyncPair):
    """SYNC_RENAME_FILE (40): ``src_filename`` became ``dest_filename`` (a regenerated appender)."""

    COMMAND: ClassVar[Command] = Command.SYNC_RENAME_FILE


@dataclass(frozen=True, slots=True)
class SyncCreateLinkRequest(_SyncPair):
    """SYNC_CREATE_LINK (19): ``dest_filename`` names the same content as ``src_filename``."""

    COMMAND: ClassVar[Command] = Command.SYNC_CREATE_LINK
