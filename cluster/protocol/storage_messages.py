"""Client -> storage requests held whole in memory, and the storage's replies.

Requests::

    14 DOWNLOAD_FILE      offset[8] length[8] group[16] filename     length 0: to the end
    12 DELETE_FILE        group[16] filename
    13 SET_METADATA       filename_len[8] meta_len[8] flag[1] group[16] filename meta
    15 GET_METADATA       group[16] filename
    22 QUERY_FILE_INFO    group[16] filename                         flags in the header's status
    36 TRUNCATE_FILE      filename_len[8] new_size[8] filename
    38 REGENERATE_APPENDER_FILENAME   filename

Replies::

    file ID      (11, 21, 23, 38)  group[16] filename                 no NUL after the name
    download     (14)              the file's bytes
    metadata     (15)              metadata records (cluster.protocol.metadata)
    file info    (22)              file_size[8] create_timestamp[8] crc32[8] source_ip[16]   40 bytes
    empty        (12, 13, 24, 34, 36)

The file-info crc32 is an unsigned 32-bit value sent sign-extended into the int64, as FastDFS does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from .base import Reply, Request
from .codes import Command, FileInfoFlag
from .errors import ProtocolError
from .fields import (
    GROUP_LEN,
    IP_LEN,
    check_name_len,
    check_size,
    decode_fixed,
    decode_group_file,
    decode_name,
    encode_fixed,
    encode_group_file,
    encode_name,
    expect_len,
    expect_min_len,
    pack,
)
from .metadata import Metadata, MetadataFlag, decode_metadata, encode_metadata, normalize_metadata

DOWNLOAD_HEAD = struct.Struct("!qq16s")  # 32
SET_METADATA_HEAD = struct.Struct("!qqc16s")  # 33
TRUNCATE_HEAD = struct.Struct("!qq")  # 16
FILE_INFO = struct.Struct("!qqq16s")  # 40


@dataclass(frozen=True, slots=True)
class DownloadFileRequest(Request):
    """DOWNLOAD_FILE (14): ``length`` bytes from ``offset`` (0: to the end)."""

    COMMAND: ClassVar[Command] = Command.DOWNLOAD_FILE
    group: str
    filename: str
    offset: int = 0
    length: int = 0

    def encode_body(self) -> bytes:
        check_size(self.offset, "offset")
        check_size(self.length, "length")
        head = pack(DOWNLOAD_HEAD, self.offset, self.length, encode_fixed(self.group, GROUP_LEN, "group"))
        return head + encode_name(self.filename, "filename")

    @classmethod
    def decode(cls, body: bytes) -> DownloadFileRequest:
        expect_min_len(body, DOWNLOAD_HEAD.size + 1, "DOWNLOAD_FILE")
        offset, length, group = DOWNLOAD_HEAD.unpack_from(body)
        return cls(
            decode_fixed(group, "group"),
            decode_name(body[DOWNLOAD_HEAD.size :], "filename"),
            check_size(offset, "offset"),
            check_size(length, "length"),
        )


@dataclass(frozen=True, slots=True)
class DeleteFileRequest(Request):
    """DELETE_FILE (12): the file and its metadata."""

    COMMAND: ClassVar[Command] = Command.DELETE_FILE
    group: str
    filename: str

    def encode_body(self) -> bytes:
        return encode_group_file(self.group, self.filename)

    @classmethod
    def decode(cls, body: bytes) -> DeleteFileRequest:
        return cls(*decode_group_file(body, "DELETE_FILE"))


@dataclass(frozen=True, slots=True)
class SetMetadataRequest(Request):
    """SET_METADATA (13).  ``meta`` is normalised on construction (truncated, sorted, unique)."""

    COMMAND: ClassVar[Command] = Command.SET_METADATA
    group: str
    filename: str
    meta: Metadata
    flag: MetadataFlag = MetadataFlag.OVERWRITE

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", normalize_metadata(self.meta))

    def encode_body(self) -> bytes:
        name = encode_name(self.filename, "filename")
        meta = encode_metadata(self.meta)
        group = encode_fixed(self.group, GROUP_LEN, "group")
        flag = MetadataFlag(self.flag).value.encode("ascii")
        return pack(SET_METADATA_HEAD, len(name), len(meta), flag, group) + name + meta

    @classmethod
    def decode(cls, body: bytes) -> SetMetadataRequest:
        expect_min_len(body, SET_METADATA_HEAD.size, "SET_METADATA")
        name_len, meta_len, flag, group = SET_METADATA_HEAD.unpack_from(body)
        check_name_len(name_len, "filename")
        if meta_len < 0 or SET_METADATA_HEAD.size + name_len + meta_len != len(body):
            raise ProtocolError(f"SET_METADATA lengths {name_len} + {meta_len} do not match the body")
        try:
            meta_flag = MetadataFlag(flag.decode("ascii"))
        except ValueError:
            raise ProtocolError(f"bad metadata flag {flag!r}") from None
        name_end = SET_METADATA_HEAD.size + name_len
        return cls(
            decode_fixed(group, "group"),
            decode_name(body[SET_METADATA_HEAD.size : name_end], "filename"),
            decode_metadata(body[name_end:]),
            meta_flag,
        )


@dataclass(frozen=True, slots=True)
class GetMetadataRequest(Request):
    """GET_METADATA (15)."""

    COMMAND: ClassVar[Command] = Command.GET_METADATA
    group: str
    filename: str

    def encode_body(self) -> bytes:
        return encode_group_file(self.group, self.filename)

    @classmethod
    def decode(cls, body: bytes) -> GetMetadataRequest:
        return cls(*decode_group_file(body, "GET_METADATA"))


@dataclass(frozen=True, slots=True)
class QueryFileInfoRequest(Request):
    """QUERY_FILE_INFO (22); ``flags`` travel in the header's status byte."""

    COMMAND: ClassVar[Command] = Command.QUERY_FILE_INFO
    group: str
    filename: str
    flags: FileInfoFlag = FileInfoFlag.NONE

    @property
    def header_status(self) -> int:
        return _file_info_flags(self.flags)

    def encode_body(self) -> bytes:
        return encode_group_file(self.group, self.filename)

    @classmethod
    def decode(cls, body: bytes, status: int = 0) -> QueryFileInfoRequest:
        return cls(*decode_group_file(body, "QUERY_FILE_INFO"), _file_info_flags(status))


def _file_info_flags(value: int) -> FileInfoFlag:
    if value & ~int(FileInfoFlag.NO_CRC32 | FileInfoFlag.SILENT):  # plain int: ~ on an IntFlag keeps its bits
        raise ProtocolError(f"bad QUERY_FILE_INFO flags {value:#x}")
    return FileInfoFlag(value)


@dataclass(frozen=True, slots=True)
class TruncateFileRequest(Request):
    """TRUNCATE_FILE (36): cut an appender file to ``new_size`` bytes (no group)."""

    COMMAND: ClassVar[Command] = Command.TRUNCATE_FILE
    filename: str
    new_size: int = 0

    def encode_body(self) -> bytes:
        check_size(self.new_size, "new_size")
        name = encode_name(self.filename, "filename")
        return pack(TRUNCATE_HEAD, len(name), self.new_size) + name

    @classmethod
    def decode(cls, body: bytes) -> TruncateFileRequest:
        expect_min_len(body, TRUNCATE_HEAD.size, "TRUNCATE_FILE")
        name_len, new_size = TRUNCATE_HEAD.unpack_from(body)
        expect_len(body, TRUNCATE_HEAD.size + check_name_len(name_len, "filename"), "TRUNCATE_FILE")
        return cls(decode_name(body[TRUNCATE_HEAD.size :], "filename"), check_size(new_size, "new_size"))


@dataclass(frozen=True, slots=True)
class RegenerateAppenderFilenameRequest(Request):
    """REGENERATE_APPENDER_FILENAME (38): turn an appender file into a normal one, renamed."""

    COMMAND: ClassVar[Command] = Command.REGENERATE_APPENDER_FILENAME
    filename: str

    def encode_body(self) -> bytes:
        return encode_name(self.filename, "filename")

    @classmethod
    def decode(cls, body: bytes) -> RegenerateAppenderFilenameRequest:
        return cls(decode_name(body, "filename"))


@dataclass(frozen=True, slots=True)
class FileIdReply(Reply):
    """Reply to the uploads and to REGENERATE_APPENDER_FILENAME: where the file now lives."""

    group: str
    filename: str

    def encode_body(self) -> bytes:
        return encode_group_file(self.group, self.filename)

    @classmethod
    def decode(cls, body: bytes) -> FileIdReply:
        return cls(*decode_group_file(body, "file ID reply"))

    @property
    def file_id(self) -> str:
        return f"{self.group}/{self.filename}"


@dataclass(frozen=True, slots=True)
class DownloadReply(Reply):
    """Reply to DOWNLOAD_FILE: the bytes themselves.  Large downloads are better sent as a header
    (``encode_reply`` with the announced length) followed by the file."""

    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode(cls, body: bytes) -> DownloadReply:
        return cls(bytes(body))


@dataclass(frozen=True, slots=True)
class MetadataReply(Reply):
    """Reply to GET_METADATA.  ``meta`` is normalised on construction."""

    meta: Metadata

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", normalize_metadata(self.meta))

    def encode_body(self) -> bytes:
        return encode_metadata(self.meta)

    @classmethod
    def decode(cls, body: bytes) -> MetadataReply:
        return cls(decode_metadata(body))


@dataclass(frozen=True, slots=True)
class FileInfoReply(Reply):
    """Reply to QUERY_FILE_INFO.  Exactly 40 bytes."""

    file_size: int
    create_timestamp: int
    crc32: int
    source_ip: str

    def encode_body(self) -> bytes:
        if not 0 <= self.crc32 <= 0xFFFFFFFF:
            raise ProtocolError(f"crc32 out of range: {self.crc32}")
        signed = self.crc32 - (1 << 32) if self.crc32 & 0x80000000 else self.crc32
        return pack(
            FILE_INFO,
            check_size(self.file_size, "file_size"),
            check_size(self.create_timestamp, "create_timestamp"),
            signed,
            encode_fixed(self.source_ip, IP_LEN, "source ip"),
        )

    @classmethod
    def decode(cls, body: bytes) -> FileInfoReply:
        expect_len(body, FILE_INFO.size, "file info reply")
        file_size, timestamp, crc, ip = FILE_INFO.unpack(body)
        # Sign-extended by FastDFS; a sender that does not sign-extend is accepted too.
        if not -(1 << 31) <= crc <= 0xFFFFFFFF:
            raise ProtocolError(f"crc32 field out of range: {crc}")
        return cls(
            check_size(file_size, "file_size"),
            check_size(timestamp, "create_timestamp"),
            crc & 0xFFFFFFFF,
            decode_fixed(ip, "source ip"),
        )
