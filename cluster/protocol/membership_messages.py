"""Storage -> tracker: a new member's initial sync, status reports, parameters.

FastDFS's layouts, with storage IDs of 16 bytes and IP text of 46::

    86 SYNC_SRC_REQ        group[16] dest_id[16]: "should I feed this new storage, and up to when?"
    87 SYNC_DEST_REQ       empty: "which storage feeds me?" (asked by a joining storage)
       reply to 86/87:     empty (nobody), or src_id[16] until_timestamp[8]                  24 bytes
    88 SYNC_NOTIFY         src_id[16] until_timestamp[8]: the initial sync is done; reply empty
    76 REPORT_STATUS       group[16] brief[67]: a storage's new status; reply empty
    75 PARAMETER_REQ       empty; reply "key=value\\n" lines (the tracker's settings for storages)

A new storage joins as INIT; the tracker picks a source and a cut-off time (WAIT_SYNC); the source,
told by 86, replays its binlog up to the cut-off; the new storage, told by 87, reports completion
with 88 and goes ONLINE.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from .base import Reply, Request
from .codes import Command
from .errors import ProtocolError
from .fields import (
    GROUP_LEN,
    STORAGE_ID_LEN,
    check_size,
    decode_fixed,
    decode_text,
    encode_fixed,
    encode_text,
    expect_len,
    pack,
)
from .peer_messages import BRIEF, StorageBrief

SYNC_SOURCE = struct.Struct("!16sq")  # 24


@dataclass(frozen=True, slots=True)
class SyncSrcRequest(Request):
    """STORAGE_SYNC_SRC_REQ (86): asked by a storage about ``dest_id``, a new member of its group."""

    COMMAND: ClassVar[Command] = Command.STORAGE_SYNC_SRC_REQ
    group: str
    dest_id: str

    def encode_body(self) -> bytes:
        return encode_fixed(self.group, GROUP_LEN, "group") + encode_fixed(
            self.dest_id, STORAGE_ID_LEN, "dest storage id"
        )

    @classmethod
    def decode(cls, body: bytes) -> SyncSrcRequest:
        expect_len(body, GROUP_LEN + STORAGE_ID_LEN, "STORAGE_SYNC_SRC_REQ")
        return cls(decode_fixed(body[:GROUP_LEN], "group"), decode_fixed(body[GROUP_LEN:], "dest storage id"))


@dataclass(frozen=True, slots=True)
class SyncDestRequest(Request):
    """STORAGE_SYNC_DEST_REQ (87): a joining storage asks which peer will feed it."""

    COMMAND: ClassVar[Command] = Command.STORAGE_SYNC_DEST_REQ

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> SyncDestRequest:
        expect_len(body, 0, "STORAGE_SYNC_DEST_REQ")
        return cls()


@dataclass(frozen=True, slots=True)
class SyncSourceReply(Reply):
    """Reply to 86/87: the source storage and the cut-off time, or ``src_id`` None for nobody."""

    src_id: str | None = None
    until_timestamp: int = 0

    def encode_body(self) -> bytes:
        if self.src_id is None:
            if self.until_timestamp:
                raise ProtocolError("a cut-off time without a source storage cannot be sent")
            return b""
        src = encode_fixed(self.src_id, STORAGE_ID_LEN, "source storage id")
        return pack(SYNC_SOURCE, src, check_size(self.until_timestamp, "until_timestamp"))

    @classmethod
    def decode(cls, body: bytes) -> SyncSourceReply:
        if not body:
            return cls()
        expect_len(body, SYNC_SOURCE.size, "sync source reply")
        src, until = SYNC_SOURCE.unpack(body)
        return cls(decode_fixed(src, "source storage id"), check_size(until, "until_timestamp"))


@dataclass(frozen=True, slots=True)
class SyncNotifyRequest(Request):
    """STORAGE_SYNC_NOTIFY (88): the new storage has everything from ``src_id`` up to the cut-off."""

    COMMAND: ClassVar[Command] = Command.STORAGE_SYNC_NOTIFY
    src_id: str
    until_timestamp: int

    def encode_body(self) -> bytes:
        src = encode_fixed(self.src_id, STORAGE_ID_LEN, "source storage id")
        return pack(SYNC_SOURCE, src, check_size(self.until_timestamp, "until_timestamp"))

    @classmethod
    def decode(cls, body: bytes) -> SyncNotifyRequest:
        expect_len(body, SYNC_SOURCE.size, "STORAGE_SYNC_NOTIFY")
        src, until = SYNC_SOURCE.unpack(body)
        return cls(decode_fixed(src, "source storage id"), check_size(until, "until_timestamp"))


@dataclass(frozen=True, slots=True)
class ReportStatusRequest(Request):
    """STORAGE_REPORT_STATUS (76): a storage's status changed (``brief`` describes it)."""

    COMMAND: ClassVar[Command] = Command.STORAGE_REPORT_STATUS
    group: str
    brief: StorageBrief

    def encode_body(self) -> bytes:
        return encode_fixed(self.group, GROUP_LEN, "group") + self.brief.encode()

    @classmethod
    def decode(cls, body: bytes) -> ReportStatusRequest:
        expect_len(body, GROUP_LEN + BRIEF.size, "STORAGE_REPORT_STATUS")
        return cls(decode_fixed(body[:GROUP_LEN], "group"), StorageBrief.decode(body[GROUP_LEN:]))


@dataclass(frozen=True, slots=True)
class ParameterRequest(Request):
    """STORAGE_PARAMETER_REQ (75): the settings a tracker imposes on its storages."""

    COMMAND: ClassVar[Command] = Command.STORAGE_PARAMETER_REQ

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> ParameterRequest:
        expect_len(body, 0, "STORAGE_PARAMETER_REQ")
        return cls()


@dataclass(frozen=True, slots=True)
class ParameterReply(Reply):
    """Reply to PARAMETER_REQ: ``key=value`` pairs, in order.  Keys are ASCII without ``=``;
    values printable ASCII (spaces allowed)."""

    params: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> Mapping[str, str]:
        return dict(self.params)

    def encode_body(self) -> bytes:
        lines = []
        for key, value in self.params:
            if not key or "=" in key or not (value.isascii() and value.isprintable()):
                raise ProtocolError(f"bad parameter {key!r}={value!r}")
            lines.append(encode_text(key, "parameter name") + b"=" + value.encode("ascii") + b"\n")
        return b"".join(lines)

    @classmethod
    def decode(cls, body: bytes) -> ParameterReply:
        if not body:
            return cls()
        lines = body.split(b"\n")
        if lines[-1]:
            raise ProtocolError("parameter reply does not end with a newline")
        params = []
        for line in lines[:-1]:
            key, sep, value = line.partition(b"=")
            if not sep or not key:
                raise ProtocolError(f"parameter line without key=value: {line!r}")
            if not (value.isascii() and value.decode("ascii").isprintable()):
                raise ProtocolError(f"parameter value is not printable ASCII: {line!r}")
            params.append((decode_text(key, "parameter name"), value.decode("ascii")))
        return cls(tuple(params))
