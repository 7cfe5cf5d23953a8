"""Storage -> tracker: joining, beats and reports, and the tracker's replies.

FastDFS's layouts of these commands, with storage IDs of 16 bytes and IP text of 46 (room for
IPv6); the tracker list of STORAGE_JOIN is text, one ``host:port`` per line::

    81 STORAGE_JOIN        group[17] storage_port[8] store_path_count[8] subdir_count_per_path[8]
                           upload_priority[8] join_time[8] up_time[8] version[8] init_flag[1]
                           status[1] storage_id[16] current_tracker_ip[46] tracker_count[8]   145 bytes
                           + tracker_count lines "host:port\\n"
                           reply: status[1] src_id[16]                                        17 bytes
    83 STORAGE_BEAT        empty, or the 348-byte stats block (cluster.protocol.stats)
    84 REPORT_DISK_USAGE   n x (total_mb[8] free_mb[8]), one per store path, n >= 1
    74 REPORT_TRUNK_FREE   trunk_free_mb[8]: free space inside the storage's trunk containers;
                           reply empty
    89 SYNC_REPORT         n x (storage_id[16] synced_timestamp[4]): how far each peer's
                           changes have been applied here
       reply to 83/84/89:  empty, or flags[1] (ChangeFlag) + n x brief[67]; with GROUP_CHANGED,
                           the briefs are the group's members

    brief = status[1] port[4] storage_id[16] ip[46]                                          67 bytes
"""

from __future__ import annotations

import struct
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
TRUNK_FREE = struct.Struct("!q")  # 8
SYNC_PROGRESS = struct.Struct("!16sI")  # 20


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
class ReportTrunkFreeRequest(Request):
    """STORAGE_REPORT_TRUNK_FREE (74): MB free inside the trunk containers this storage allocates in.

    In FastDFS only a group's trunk server sends it, with the free space of the whole group's trunks;
    every trunkstore storage allocates in containers of its own, so each reports those, and a group's
    figure is the sum over its members.
    """

    COMMAND: ClassVar[Command] = Command.STORAGE_REPORT_TRUNK_FREE
    trunk_free_mb: int

    def encode_body(self) -> bytes:
        return pack(TRUNK_FREE, check_size(self.trunk_free_mb, "trunk_free_mb"))

    @classmethod
    def decode(cls, body: bytes) -> ReportTrunkFreeRequest:
        expect_len(body, TRUNK_FREE.size, "STORAGE_REPORT_TRUNK_FREE")
        return cls(check_size(TRUNK_FREE.unpack(body)[0], "trunk_free_mb"))


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
        size = BRIEF.size
        briefs = tuple(StorageBrief.decode(body[1 + i * size : 1 + (i + 1) * size]) for i in range(count))
        return cls(_change_flags(body[0]), briefs)


def _change_flags(value: int) -> ChangeFlag:
    # ~ on an IntFlag stays within its defined bits: mask with a plain int.
    if value & ~int(ChangeFlag.LEADER_CHANGED | ChangeFlag.TRUNK_SERVER_CHANGED | ChangeFlag.GROUP_CHANGED):
        raise ProtocolError(f"bad change flags {value:#x}")
    return ChangeFlag(value)
