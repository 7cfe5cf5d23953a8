"""Group and storage stats: the LIST_* replies and the storage's beat, in both FastDFS generations.

One typed :class:`GroupStat` / :class:`StorageStat` serves both wire layouts; a field that one layout
lacks reads back as its default.  Which layout a tracker sends is a configuration choice, since no
reply satisfies both families of clients:

* ``StatLayout.V6_10`` (FastDFS <= 6.10, what the PyPI clients parse)::

    group stat,   105 bytes: group[17] total_mb free_mb trunk_free_mb storage_count storage_port
                             storage_http_port active_count current_write_server store_path_count
                             subdir_count_per_path current_trunk_file_id          (11 x int64)
    storage stat, 612 bytes: !B16s16s128s16s6s10q + stats block + if_trunk_server[1]
                             status id ip domain src_id version[6], then join_time up_time total_mb
                             free_mb upload_priority store_path_count subdir_count_per_path
                             current_write_path storage_port storage_http_port

* ``StatLayout.V6_15`` (FastDFS >= 6.15, what its own fdfs_monitor parses)::

    group stat,   113 bytes: group[17] total_mb free_mb reserved_mb trunk_free_mb storage_count
                             storage_port readable_count writable_count current_write_server
                             store_path_count subdir_count_per_path current_trunk_file_id (12 x int64)
    storage stat, 487 bytes: status[1] rw_mode[1] id[16] ip[16] src_id[16] version[8], then join_time
                             up_time total_mb free_mb reserved_mb upload_priority store_path_count
                             subdir_count_per_path current_write_path storage_port (10 x int64)
                             + stats block + if_trunk_server[1]

The 348-byte stats block (also the body of a storage's BEAT) is the same in both:
``alloc_count[4] current_count[4] max_count[4]`` (connections) and the 42 int64 counters of
:class:`StorageStats`, in field order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from enum import Enum

from .base import Reply
from .codes import RwMode, StorageStatus
from .errors import ProtocolError
from .fields import (
    DOMAIN_LEN,
    GROUP_LEN,
    IP_LEN,
    STORAGE_ID_LEN,
    VERSION_LEN,
    check_storage_status,
    decode_fixed,
    encode_fixed,
    pack,
)


class StatLayout(Enum):
    V6_10 = "6.10"
    V6_15 = "6.15"


@dataclass(frozen=True, slots=True)
class StorageStats:
    """A storage's counters: connections (int32), operations, bytes and times (int64)."""

    alloc_count: int = 0
    current_count: int = 0
    max_count: int = 0
    total_upload_count: int = 0
    success_upload_count: int = 0
    total_append_count: int = 0
    success_append_count: int = 0
    total_modify_count: int = 0
    success_modify_count: int = 0
    total_truncate_count: int = 0
    success_truncate_count: int = 0
    total_set_meta_count: int = 0
    success_set_meta_count: int = 0
    total_delete_count: int = 0
    success_delete_count: int = 0
    total_download_count: int = 0
    success_download_count: int = 0
    total_get_meta_count: int = 0
    success_get_meta_count: int = 0
    total_create_link_count: int = 0
    success_create_link_count: int = 0
    total_delete_link_count: int = 0
    success_delete_link_count: int = 0
    total_upload_bytes: int = 0
    success_upload_bytes: int = 0
    total_append_bytes: int = 0
    success_append_bytes: int = 0
    total_modify_bytes: int = 0
    success_modify_bytes: int = 0
    total_download_bytes: int = 0
    success_download_bytes: int = 0
    total_sync_in_bytes: int = 0
    success_sync_in_bytes: int = 0
    total_sync_out_bytes: int = 0
    success_sync_out_bytes: int = 0
    total_file_open_count: int = 0
    success_file_open_count: int = 0
    total_file_read_count: int = 0
    success_file_read_count: int = 0
    total_file_write_count: int = 0
    success_file_write_count: int = 0
    last_source_update: int = 0
    last_sync_update: int = 0
    last_synced_timestamp: int = 0
    last_heart_beat_time: int = 0

    def encode(self) -> bytes:
        return pack(STATS, *(getattr(self, name) for name in _STATS_FIELDS))

    @classmethod
    def decode(cls, raw: bytes) -> StorageStats:
        if len(raw) != STATS.size:
            raise ProtocolError(f"a stats block is {STATS.size} bytes, not {len(raw)}")
        return cls(*STATS.unpack(raw))


STATS = struct.Struct("!3i42q")  # 348
_STATS_FIELDS = tuple(f.name for f in fields(StorageStats))
assert len(_STATS_FIELDS) == 45 and STATS.size == 348

GROUP_V6_15 = struct.Struct("!17s12q")  # 113
GROUP_V6_10 = struct.Struct("!17s11q")  # 105
STORAGE_HEAD_V6_15 = struct.Struct("!BB16s16s16s8s10q")  # 138; + stats + if_trunk_server = 487
STORAGE_HEAD_V6_10 = struct.Struct("!B16s16s128s16s6s10q")  # 263; + stats + if_trunk_server = 612
V6_10_VERSION_LEN = 6


def _group17(name: str) -> bytes:
    return encode_fixed(name, GROUP_LEN, "group") + b"\0"


def _group_name(raw: bytes) -> str:
    # The 17th byte is room for C's terminator, never part of the name.
    return decode_fixed(raw[:GROUP_LEN], "group")


@dataclass(frozen=True, slots=True)
class GroupStat:
    """One group's stats; ``reserved_mb``, ``readable_count`` and ``writable_count`` exist only in
    V6_15, ``storage_http_port`` and ``active_count`` only in V6_10."""

    group_name: str
    total_mb: int = 0
    free_mb: int = 0
    trunk_free_mb: int = 0
    storage_count: int = 0
    storage_port: int = 0
    current_write_server: int = 0
    store_path_count: int = 0
    subdir_count_per_path: int = 0
    current_trunk_file_id: int = 0
    reserved_mb: int = 0
    readable_count: int = 0
    writable_count: int = 0
    storage_http_port: int = 0
    active_count: int = 0

    def encode(self, layout: StatLayout) -> bytes:
        if layout is StatLayout.V6_15:
            return pack(
                GROUP_V6_15, _group17(self.group_name), self.total_mb, self.free_mb, self.reserved_mb,
                self.trunk_free_mb, self.storage_count, self.storage_port, self.readable_count,
                self.writable_count, self.current_write_server, self.store_path_count,
                self.subdir_count_per_path, self.current_trunk_file_id,
            )  # fmt: skip
        return pack(
            GROUP_V6_10, _group17(self.group_name), self.total_mb, self.free_mb, self.trunk_free_mb,
            self.storage_count, self.storage_port, self.storage_http_port, self.active_count,
            self.current_write_server, self.store_path_count, self.subdir_count_per_path,
            self.current_trunk_file_id,
        )  # fmt: skip

    @classmethod
    def decode(cls, raw: bytes, layout: StatLayout) -> GroupStat:
        size = group_stat_size(layout)
        if len(raw) != size:
            raise ProtocolError(f"a {layout.value} group stat is {size} bytes, not {len(raw)}")
        if layout is StatLayout.V6_15:
            (name, total, free, reserved, trunk_free, count, port, readable, writable, write_server,
             paths, subdirs, trunk_id) = GROUP_V6_15.unpack(raw)  # fmt: skip
            return cls(
                _group_name(name), total, free, trunk_free, count, port, write_server, paths,
                subdirs, trunk_id, reserved_mb=reserved, readable_count=readable, writable_count=writable,
            )  # fmt: skip
        (name, total, free, trunk_free, count, port, http_port, active, write_server, paths, subdirs,
         trunk_id) = GROUP_V6_10.unpack(raw)  # fmt: skip
        return cls(
            _group_name(name), total, free, trunk_free, count, port, write_server, paths,
            subdirs, trunk_id, storage_http_port=http_port, active_count=active,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StorageStat:
    """One storage's stats; ``rw_mode`` and ``reserved_mb`` exist only in V6_15, ``domain_name``
    and ``storage_http_port`` only in V6_10 (whose version field is 6 bytes, not 8)."""

    status: StorageStatus
    id: str
    ip: str
    src_id: str = ""
    version: str = ""
    join_time: int = 0
    up_time: int = 0
    total_mb: int = 0
    free_mb: int = 0
    upload_priority: int = 0
    store_path_count: int = 0
    subdir_count_per_path: int = 0
    current_write_path: int = 0
    storage_port: int = 0
    stats: StorageStats = field(default_factory=StorageStats)
    if_trunk_server: bool = False
    rw_mode: RwMode = RwMode.NONE
    reserved_mb: int = 0
    domain_name: str = ""
    storage_http_port: int = 0

    def encode(self, layout: StatLayout) -> bytes:
        ident = encode_fixed(self.id, STORAGE_ID_LEN, "storage id")
        ip = encode_fixed(self.ip, IP_LEN, "ip")
        src = encode_fixed(self.src_id, STORAGE_ID_LEN, "source storage id")
        tail = self.stats.encode() + (b"\1" if self.if_trunk_server else b"\0")
        if layout is StatLayout.V6_15:
            head = pack(
                STORAGE_HEAD_V6_15, check_storage_status(self.status), _rw_mode(self.rw_mode), ident, ip, src,
                encode_fixed(self.version, VERSION_LEN, "version"), self.join_time, self.up_time,
                self.total_mb, self.free_mb, self.reserved_mb, self.upload_priority, self.store_path_count,
                self.subdir_count_per_path, self.current_write_path, self.storage_port,
            )  # fmt: skip
            return head + tail
        head = pack(
            STORAGE_HEAD_V6_10, check_storage_status(self.status), ident, ip,
            encode_fixed(self.domain_name, DOMAIN_LEN, "domain name"), src,
            encode_fixed(self.version, V6_10_VERSION_LEN, "version"), self.join_time, self.up_time,
            self.total_mb, self.free_mb, self.upload_priority, self.store_path_count,
            self.subdir_count_per_path, self.current_write_path, self.storage_port, self.storage_http_port,
        )  # fmt: skip
        return head + tail

    @classmethod
    def decode(cls, raw: bytes, layout: StatLayout) -> StorageStat:
        size = storage_stat_size(layout)
        if len(raw) != size:
            raise ProtocolError(f"a {layout.value} storage stat is {size} bytes, not {len(raw)}")
        stats = StorageStats.decode(raw[-1 - STATS.size : -1])
        trunk = raw[-1] != 0  # a C bool: any non-zero byte is true
        if layout is StatLayout.V6_15:
            (status, rw_mode, ident, ip, src, version, join_time, up_time, total, free, reserved,
             priority, paths, subdirs, write_path, port) = STORAGE_HEAD_V6_15.unpack_from(raw)  # fmt: skip
            return cls(
                check_storage_status(status), decode_fixed(ident, "storage id"), decode_fixed(ip, "ip"),
                decode_fixed(src, "source storage id"), decode_fixed(version, "version"), join_time,
                up_time, total, free, priority, paths, subdirs, write_path, port, stats, trunk,
                rw_mode=_rw_mode(rw_mode), reserved_mb=reserved,
            )  # fmt: skip
        (status, ident, ip, domain, src, version, join_time, up_time, total, free, priority, paths,
         subdirs, write_path, port, http_port) = STORAGE_HEAD_V6_10.unpack_from(raw)  # fmt: skip
        return cls(
            check_storage_status(status), decode_fixed(ident, "storage id"), decode_fixed(ip, "ip"),
            decode_fixed(src, "source storage id"), decode_fixed(version, "version"), join_time, up_time,
            total, free, priority, paths, subdirs, write_path, port, stats, trunk,
            domain_name=decode_fixed(domain, "domain name"), storage_http_port=http_port,
        )  # fmt: skip


def _rw_mode(value: int) -> RwMode:
    if value & ~int(RwMode.READ | RwMode.WRITE):  # plain int: ~ on an IntFlag keeps its bits only
        raise ProtocolError(f"bad rw_mode {value:#x}")
    return RwMode(value)


def group_stat_size(layout: StatLayout) -> int:
    return GROUP_V6_15.size if layout is StatLayout.V6_15 else GROUP_V6_10.size


def storage_stat_size(layout: StatLayout) -> int:
    head = STORAGE_HEAD_V6_15 if layout is StatLayout.V6_15 else STORAGE_HEAD_V6_10
    return head.size + STATS.size + 1


@dataclass(frozen=True, slots=True)
class ListGroupsReply(Reply):
    """Reply to LIST_ALL_GROUPS (91, n group stats) and LIST_ONE_GROUP (90, exactly one)."""

    groups: tuple[GroupStat, ...]
    layout: StatLayout

    def encode_body(self) -> bytes:
        return b"".join(group.encode(self.layout) for group in self.groups)

    @classmethod
    def decode(cls, body: bytes, layout: StatLayout) -> ListGroupsReply:
        size = group_stat_size(layout)
        if len(body) % size:
            raise ProtocolError(f"group list of {len(body)} bytes is not a multiple of {size}")
        groups = tuple(GroupStat.decode(body[i : i + size], layout) for i in range(0, len(body), size))
        return cls(groups, layout)


@dataclass(frozen=True, slots=True)
class ListStoragesReply(Reply):
    """Reply to LIST_STORAGE (92): n storage stats."""

    storages: tuple[StorageStat, ...]
    layout: StatLayout

    def encode_body(self) -> bytes:
        return b"".join(storage.encode(self.layout) for storage in self.storages)

    @classmethod
    def decode(cls, body: bytes, layout: StatLayout) -> ListStoragesReply:
        size = storage_stat_size(layout)
        if len(body) % size:
            raise ProtocolError(f"storage list of {len(body)} bytes is not a multiple of {size}")
        storages = tuple(StorageStat.decode(body[i : i + size], layout) for i in range(0, len(body), size))
        return cls(storages, layout)
