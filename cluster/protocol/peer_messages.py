"""Storage -> tracker requests and the tracker's replies (section 4 of the protocol notes).

FastDFS's own layouts where the notes give them; where they leave one open, FastDFS's layout of
the same command, with the notes' field widths (storage IDs 16, IP text 46)::

    81 STORAGE_JOIN        group[17] storage_port[8] store_path_count[8] subdir_count_per_path[8]
                           upload_priority[8] join_time[8] up_time[8] version[8] init_flag[1]
                           status[1] storage_id[16] current_tracker_ip[46] tracker_count[8]   145 bytes
                           + tracker_count lines "host:port\\n"
                           reply: status[1] src_id[16]                                        17 bytes
    83 STORAGE_BEAT        empty, or the 348-byte stats block (cluster.protocol.stats)
    84 REPORT_DISK_USAGE   n x (total_mb[8] free_mb[8]), one per store path, n >= 1
    89 SYNC_REPORT         n x (storage_id[16] synced_timestamp[4]): how far each peer's
                           changes have been applied here
       reply to 83/84/89:  empty, or flags[1] (ChangeFlag) + n x brief[67]; with GROUP_CHANGED,
                           the briefs are the group's members
    86 SYNC_SRC_REQ        group[16] dest_id[16]: "should I feed this new storage, and up to when?"
    87 SYNC_DEST_REQ       empty: "which storage feeds me?" (asked by a joining storage)
       reply to 86/87:     empty (nobody), or src_id[16] until_timestamp[8]                  24 bytes
    88 SYNC_NOTIFY         src_id[16] until_timestamp[8]: the initial sync is done; reply empty
    76 REPORT_STATUS       group[16] brief[67]: a storage's new status; reply empty
    75 PARAMETER_REQ       empty; reply "key=value\\n" lines (the tracker's settings for storages)

    brief = status[1] port[4] storage_id[16] ip[46]                                          67 bytes
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from .base import Reply, Request
from .codes import ChangeFlag, Command, StorageStatus
from .errors import ProtocolError
from .fields import (
    GROUP_LEN,
    IP_TEXT_LEN,
    STORAGE_ID_LEN,
    VERSION_LEN,
    Address,
    check_port,
    check_size,
    check_storage_status,
    decode_fixed,
    decode_text,
    encode_fixed,
    encode_text,
    expect_len,
    expect_min_len,
    pack,
)
from .stats import STATS, StorageStats

JOIN = struct.Struct("!17s6q8sBB16s46sq")  # 145
JOIN_REPLY = struct.Struct("!B16s")  # 17
BRIEF = struct.Struct("!Bi16s46s")  # 67
DISK_USAGE = struct.Struct("!qq")  # 16
SYNC_PROGRESS = struct.Struct("!16sI")  # 20
SYNC_SOURCE = struct.Struct("!16sq")  # 24


@dataclass(frozen=True, slots=True)
class StorageBrief:
    """A storage as the tracker tells its peers about it."""

    status: StorageStatus
    port: int
    storage_id: str
    ip: str

    def encode(self) -> bytes:
        return pack(
            BRIEF,
            check_storage_status(self.status),
            check_port(self.port),
            encode_fixed(self.storage_id, STORAGE_ID_LEN, "storage id"),
            encode_fixed(self.ip, IP_TEXT_LEN, "ip"),
        )

    @classmethod
    def decode(cls, raw: bytes) -> StorageBrief:
        expect_len(raw, BRIEF.size, "storage brief")
        status, port, storage_id, ip = BRIEF.unpack(raw)
        return cls(
            check_storage_status(status),
            check_port(port),
            decode_fixed(storage_id, "storage id"),
            decode_fixed(ip, "ip"),
        )


def _encode_trackers(trackers: tuple[Address, ...]) -> bytes:
    return b"".join(
        encode_text(f"{t.host}:{check_port(t.port, 'tracker port')}", "tracker address") + b"\n"
        for t in trackers
    )


def _decode_trackers(raw: bytes, count: int) -> tuple[Address, ...]:
    if count == 0:
        expect_len(raw, 0, "STORAGE_JOIN tracker list")
        return ()
    lines = raw.split(b"\n")
    if len(lines) != count + 1 or lines[-1]:
        raise ProtocolError(f"STORAGE_JOIN announces {count} trackers but does not list them one per line")
    trackers = []
    for line in lines[:-1]:
        host, sep, port = decode_text(line, "tracker address").rpartition(":")
        if not sep or not host or not port.isdigit() or len(port) > 5:
            raise ProtocolError(f"bad tracker address {line!r}")
        trackers.append(Address(host, check_port(int(port), "tracker port")))
    return tuple(trackers)


@dataclass(frozen=True, slots=True)
class StorageJoinRequest(Request):
    """STORAGE_JOIN (81): a storage announces itself, with the trackers it knows of."""

    COMMAND: ClassVar[Command] = Command.STORAGE_JOIN
    group: str
    storage_id: str
    storage_port: int
    store_path_count: int
    subdir_count_per_path: int
    upload_priority: int = 0
    join_time: int = 0
    up_time: int = 0
    version: str = ""
    init_flag: bool = False
    status: StorageStatus = StorageStatus.INIT
    current_tracker_ip: str = ""
    trackers: tuple[Address, ...] = ()

    def encode_body(self) -> bytes:
        head = pack(
            JOIN,
            encode_fixed(self.group, GROUP_LEN, "group") + b"\0",
            check_port(self.storage_port, "storage port"),
            check_size(self.store_path_count, "store_path_count"),
            check_size(self.subdir_count_per_path, "subdir_count_per_path"),
            self.upload_priority,
            check_size(self.join_time, "join_time"),
            check_size(self.up_time, "up_time"),
            encode_fixed(self.version, VERSION_LEN, "version"),
            1 if self.init_flag else 0,
            check_storage_status(self.status),
            encode_fixed(self.storage_id, STORAGE_ID_LEN, "storage id"),
            encode_fixed(self.current_tracker_ip, IP_TEXT_LEN, "current tracker ip"),
            len(self.trackers),
        )
        return head + _encode_trackers(self.trackers)

    @classmethod
    def decode(cls, body: bytes) -> StorageJoinRequest:
        expect_min_len(body, JOIN.size, "STORAGE_JOIN")
        (group, port, paths, subdirs, priority, join_time, up_time, version, init_flag, status, storage_id,
         tracker_ip, tracker_count) = JOIN.unpack_from(body)  # fmt: skip
        if init_flag > 1:
            raise ProtocolError(f"STORAGE_JOIN init_flag must be 0 or 1, not {init_flag}")
        return cls(
            decode_fixed(group[:GROUP_LEN], "group"),
            decode_fixed(storage_id, "storage id"),
            check_port(port, "storage port"),
            check_size(paths, "store_path_count"),
            check_size(subdirs, "subdir_count_per_path"),
            priority,
            check_size(join_time, "join_time"),
            check_size(up_time, "up_time"),
            decode_fixed(version, "version"),
            init_flag == 1,
            check_storage_status(status),
            decode_fixed(tracker_ip, "current tracker ip"),
            _decode_trackers(body[JOIN.size :], check_size(tracker_count, "tracker_count")),
        )


@dataclass(frozen=True, slots=True)
class StorageJoinReply(Reply):
    """Reply to STORAGE_JOIN: the status the tracker holds for the storage, and its sync source."""

    status: StorageStatus
    src_id: str = ""

    def encode_body(self) -> bytes:
        src = encode_fixed(self.src_id, STORAGE_ID_LEN, "source storage id")
        return pack(JOIN_REPLY, check_storage_status(self.status), src)

    @classmethod
    def decode(cls, body: bytes) -> StorageJoinReply:
        expect_len(body, JOIN_REPLY.size, "STORAGE_JOIN reply")
        status, src = JOIN_REPLY.unpack(body)
        return cls(check_storage_status(status), decode_fixed(src, "source storage id"))


@dataclass(frozen=True, slots=True)
class BeatRequest(Request):
    """STORAGE_BEAT (83), with the storage's counters or without."""

    COMMAND: ClassVar[Command] = Command.STORAGE_BEAT
    stats: StorageStats | None = None

    def encode_body(self) -> bytes:
        return b"" if self.stats is None else self.stats.encode()

    @classmethod
    def decode(cls, body: bytes) -> BeatRequest:
        if not body:
            return cls()
        expect_len(body, STATS.size, "STORAGE_BEAT")
        return cls(StorageStats.decode(body))


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """One store path's space, in MB."""

    total_mb: int
    free_mb: int


@dataclass(frozen=True, slots=True)
class ReportDiskUsageRequest(Request):
    """STORAGE_REPORT_DISK_USAGE (84): one entry per store path, in store path order."""

    COMMAND: ClassVar[Command] = Command.STORAGE_REPORT_DISK_USAGE
    paths: tuple[DiskUsage, ...]

    def encode_body(self) -> bytes:
        if not self.paths:
            raise ProtocolError("a disk usage report covers at least one store path")
        return b"".join(
            pack(DISK_USAGE, check_size(p.total_mb, "total_mb"), check_size(p.free_mb, "free_mb"))
            for p in self.paths
        )

    @classmethod
    def decode(cls, body: bytes) -> ReportDiskUsageRequest:
        if not body or len(body) % DISK_USAGE.size:
            raise ProtocolError(f"disk usage report of {len(body)} bytes is not n >= 1 times 16")
        return cls(
            tuple(
                DiskUsage(check_size(total, "total_mb"), check_size(free, "free_mb"))
                for total, free in DISK_USAGE.iter_unpack(body)
            )
        )


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Changes from ``storage_id`` are applied here up to ``synced_timestamp``."""

    storage_id: str
    synced_timestamp: int


@dataclass(frozen=True, slots=True)
class SyncReportRequest(Request):
    """STORAGE_SYNC_REPORT (89): replication progress, one entry per peer (possibly none)."""

    COMMAND: ClassVar[Command] = Command.STORAGE_SYNC_REPORT
    peers: tuple[SyncProgress, ...] = ()

    def encode_body(self) -> bytes:
        return b"".join(
            pack(SYNC_PROGRESS, encode_fixed(p.storage_id, STORAGE_ID_LEN, "storage id"), p.synced_timestamp)
            for p in self.peers
        )

    @classmethod
    def decode(cls, body: bytes) -> SyncReportRequest:
        if len(body) % SYNC_PROGRESS.size:
            raise ProtocolError(f"sync report of {len(body)} bytes is not a multiple of 20")
        return cls(
            tuple(
                SyncProgress(decode_fixed(storage_id, "storage id"), timestamp)
                for storage_id, timestamp in SYNC_PROGRESS.iter_unpack(body)
            )
        )


@dataclass(frozen=True, slots=True)
class TrackerChangesReply(Reply):
    """Reply to a beat or a report: what changed on the tracker, if anything."""

    flags: ChangeFlag = ChangeFlag.NONE
    briefs: tuple[StorageBrief, ...] = ()

    def encode_body(self) -> bytes:
        if not self.flags and not self.briefs:
            return b""
        return bytes((_change_flags(self.flags),)) + b"".join(b.encode() for b in self.briefs)

    @classmethod
    def decode(cls, body: bytes) -> TrackerChangesReply:
        if not body:
            return cls()
        count, extra = divmod(len(body) - 1, BRIEF.size)
        if extra:
            raise ProtocolError(f"tracker changes reply of {len(body)} bytes is not 1 + n*67")
        briefs = tuple(StorageBrief.decode(body[1 + i * BRIEF.size : 1 + (i + 1) * BRIEF.size]) for i in range(count))
        return cls(_change_flags(body[0]), briefs)


def _change_flags(value: int) -> ChangeFlag:
    if value & ~(ChangeFlag.LEADER_CHANGED | ChangeFlag.TRUNK_SERVER_CHANGED | ChangeFlag.GROUP_CHANGED):
        raise ProtocolError(f"bad change flags {value:#x}")
    return ChangeFlag(value)


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
