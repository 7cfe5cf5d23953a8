"""Client -> storage requests that carry file data: their heads, the data being streamed.

Each message is the head of its request; the file data follows it on the wire and is never held
in the message (see :class:`~cluster.protocol.base.StreamedRequest`)::

    11 UPLOAD_FILE           store_path_index[1] file_size[8] ext[6]                         + data
    23 UPLOAD_APPENDER_FILE  store_path_index[1] file_size[8] ext[6]                         + data
    21 UPLOAD_SLAVE_FILE     master_len[8] file_size[8] prefix[16] ext[6] master_filename    + data
    24 APPEND_FILE           filename_len[8] file_size[8] filename                           + data
    34 MODIFY_FILE           filename_len[8] offset[8] file_size[8] filename                 + data

``file_size`` must equal ``pkg_len`` minus the head length (``pkg_len - 15`` for an upload).
``store_path_index`` 0xFF lets the storage choose.  Replies: a
:class:`~cluster.protocol.storage_messages.FileIdReply` for uploads, an empty one otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from .base import StreamedRequest
from .codes import Command
from .errors import ProtocolError
from .fields import (
    EXT_LEN,
    PREFIX_LEN,
    check_ext,
    check_name_len,
    check_prefix,
    check_size,
    decode_fixed,
    decode_name,
    encode_fixed,
    encode_name,
    pack,
)

UPLOAD_HEAD = struct.Struct("!Bq6s")  # 15
SLAVE_HEAD = struct.Struct("!qq16s6s")  # 38
APPEND_HEAD = struct.Struct("!qq")  # 16
MODIFY_HEAD = struct.Struct("!qqq")  # 24


@dataclass(frozen=True, slots=True)
class _UploadHead(StreamedRequest):
    store_path_index: int
    file_size: int
    ext: str = ""

    FIXED_SIZE: ClassVar[int] = UPLOAD_HEAD.size

    @property
    def data_size(self) -> int:
        return self.file_size

    @classmethod
    def tail_size(cls, fixed: bytes) -> int:
        return 0

    def encode_head_body(self) -> bytes:
        check_size(self.file_size, "file_size")
        ext = encode_fixed(check_ext(self.ext), EXT_LEN, "ext")
        return pack(UPLOAD_HEAD, self.store_path_index, self.file_size, ext)

    @classmethod
    def decode_head(cls, head: bytes, pkg_len: int) -> Self:
        if len(head) != UPLOAD_HEAD.size:
            raise ProtocolError(f"an upload head is {UPLOAD_HEAD.size} bytes, not {len(head)}")
        index, file_size, ext = UPLOAD_HEAD.unpack(head)
        cls.check_data_size(check_size(file_size, "file_size"), len(head), pkg_len)
        return cls(index, file_size, check_ext(decode_fixed(ext, "ext")))


@dataclass(frozen=True, slots=True)
class UploadFileRequest(_UploadHead):
    """UPLOAD_FILE (11): a new normal file of ``file_size`` bytes."""

    COMMAND: ClassVar[Command] = Command.UPLOAD_FILE


@dataclass(frozen=True, slots=True)
class UploadAppenderFileRequest(_UploadHead):
    """UPLOAD_APPENDER_FILE (23): a new appender file (never stored in a trunk)."""

    COMMAND: ClassVar[Command] = Command.UPLOAD_APPENDER_FILE


@dataclass(frozen=True, slots=True)
class UploadSlaveFileRequest(StreamedRequest):
    """UPLOAD_SLAVE_FILE (21): a file named after ``master_filename`` with ``prefix`` (not empty)."""

    COMMAND: ClassVar[Command] = Command.UPLOAD_SLAVE_FILE
    FIXED_SIZE: ClassVar[int] = SLAVE_HEAD.size

    master_filename: str
    prefix: str
    file_size: int
    ext: str = ""

    @property
    def data_size(self) -> int:
        return self.file_size

    @classmethod
    def tail_size(cls, fixed: bytes) -> int:
        master_len, _, _, _ = SLAVE_HEAD.unpack_from(fixed)
        return check_name_len(master_len, "master filename")

    def encode_head_body(self) -> bytes:
        check_size(self.file_size, "file_size")
        master = encode_name(self.master_filename, "master filename")
        prefix = encode_fixed(check_prefix(self.prefix), PREFIX_LEN, "prefix")
        ext = encode_fixed(check_ext(self.ext), EXT_LEN, "ext")
        return pack(SLAVE_HEAD, len(master), self.file_size, prefix, ext) + master

    @classmethod
    def decode_head(cls, head: bytes, pkg_len: int) -> Self:
        if len(head) < SLAVE_HEAD.size or len(head) != cls.head_size(head):
            raise ProtocolError(f"malformed UPLOAD_SLAVE_FILE head of {len(head)} bytes")
        _, file_size, prefix, ext = SLAVE_HEAD.unpack_from(head)
        cls.check_data_size(check_size(file_size, "file_size"), len(head), pkg_len)
        return cls(
            decode_name(head[SLAVE_HEAD.size :], "master filename"),
            check_prefix(decode_fixed(prefix, "prefix")),
            file_size,
            check_ext(decode_fixed(ext, "ext")),
        )


@dataclass(frozen=True, slots=True)
class AppendFileRequest(StreamedRequest):
    """APPEND_FILE (24): ``file_size`` bytes to add at the end of an appender file (no group)."""

    COMMAND: ClassVar[Command] = Command.APPEND_FILE
    FIXED_SIZE: ClassVar[int] = APPEND_HEAD.size

    filename: str
    file_size: int

    @property
    def data_size(self) -> int:
        return self.file_size

    @classmethod
    def tail_size(cls, fixed: bytes) -> int:
        filename_len, _ = APPEND_HEAD.unpack_from(fixed)
        return check_name_len(filename_len, "filename")

    def encode_head_body(self) -> bytes:
        check_size(self.file_size, "file_size")
        name = encode_name(self.filename, "filename")
        return pack(APPEND_HEAD, len(name), self.file_size) + name

    @classmethod
    def decode_head(cls, head: bytes, pkg_len: int) -> Self:
        if len(head) < APPEND_HEAD.size or len(head) != cls.head_size(head):
            raise ProtocolError(f"malformed APPEND_FILE head of {len(head)} bytes")
        _, file_size = APPEND_HEAD.unpack_from(head)
        cls.check_data_size(check_size(file_size, "file_size"), len(head), pkg_len)
        return cls(decode_name(head[APPEND_HEAD.size :], "filename"), file_size)


@dataclass(frozen=True, slots=True)
class ModifyFileRequest(StreamedRequest):
    """MODIFY_FILE (34): overwrite ``file_size`` bytes at ``offset`` (at most the file's size)."""

    COMMAND: ClassVar[Command] = Command.MODIFY_FILE
    FIXED_SIZE: ClassVar[int] = MODIFY_HEAD.size

    filename: str
    offset: int
    file_size: int

    @property
    def data_size(self) -> int:
        return self.file_size

    @classmethod
    def tail_size(cls, fixed: bytes) -> int:
        filename_len, _, _ = MODIFY_HEAD.unpack_from(fixed)
        return check_name_len(filename_len, "filename")

    def encode_head_body(self) -> bytes:
        check_size(self.offset, "offset")
        check_size(self.file_size, "file_size")
        name = encode_name(self.filename, "filename")
        return pack(MODIFY_HEAD, len(name), self.offset, self.file_size) + name

    @classmethod
    def decode_head(cls, head: bytes, pkg_len: int) -> Self:
        if len(head) < MODIFY_HEAD.size or len(head) != cls.head_size(head):
            raise ProtocolError(f"malformed MODIFY_FILE head of {len(head)} bytes")
        _, offset, file_size = MODIFY_HEAD.unpack_from(head)
        check_size(offset, "offset")
        cls.check_data_size(check_size(file_size, "file_size"), len(head), pkg_len)
        return cls(decode_name(head[MODIFY_HEAD.size :], "filename"), offset, file_size)
