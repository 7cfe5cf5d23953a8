"""The tracker's records of groups and their storages, and the clock it reads.  No I/O.

:class:`~cluster.tracker.registry.Registry` owns these records and changes them in place; the
listings, the selection rules and the saved state read them.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Protocol

from cluster.protocol import StorageBrief, StorageStats, StorageStatus


class Clock(Protocol):
    """Time as the registry sees it: ``monotonic()`` for timeouts, ``wall()`` for timestamps."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


def ip_order(ip: str) -> tuple[int, bytes]:
    """Sort key of an IP address: numeric order, IPv4 before IPv6, text last."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (9, ip.encode())
    return (address.version, address.packed)


@dataclass(slots=True, eq=False)
class Storage:
    """One storage server as the tracker knows it (mutable: the registry updates it in place)."""

    group: str
    ip: str
    port: int
    id: str
    status: StorageStatus
    store_path_count: int
    subdir_count_per_path: int
    version: str = ""
    join_time: int = 0
    up_time: int = 0
    upload_priority: int = 0
    path_total_mb: list[int] = field(default_factory=list)
    path_free_mb: list[int] = field(default_factory=list)
    current_write_path: int = 0
    #: MB free inside the trunk containers this storage allocates in (REPORT_TRUNK_FREE).
    trunk_free_mb: int = 0
    stats: StorageStats = field(default_factory=StorageStats)
    #: Monotonic time of the last sign of life (join, beat, report); None: not since we started.
    last_beat: float | None = None
    #: Wall time of the last beat (listed as last_heart_beat_time).
    last_beat_wall: int = 0
    #: Initial sync: the source storage's ID and the cut-off time.
    src_id: str = ""
    sync_until: int = 0
    #: Replication progress reported by this storage: source key -> synced timestamp.
    synced_from: dict[str, int] = field(default_factory=dict)
    #: Minimum of the reported progress (FastDFS's last_synced_timestamp).
    last_synced_timestamp: int = 0
    #: The group version this storage was last told about; -1: tell it.
    heard_version: int = -1

    @property
    def key(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def total_mb(self) -> int:
        return sum(self.path_total_mb)

    @property
    def free_mb(self) -> int:
        return sum(self.path_free_mb)

    @property
    def active(self) -> bool:
        return self.status is StorageStatus.ACTIVE

    @property
    def holds_data(self) -> bool:
        stats = self.stats
        return stats.success_upload_count > 0 or stats.last_source_update > 0 or stats.last_sync_update > 0

    def brief(self) -> StorageBrief:
        return StorageBrief(self.status, self.port, self.id, self.ip)

    def sort_key(self) -> tuple[tuple[int, bytes], int]:
        return (ip_order(self.ip), self.port)


@dataclass(slots=True, eq=False)
class Group:
    """A group: storages holding the same files.  ``members`` is in IP order (then port)."""

    name: str
    store_path_count: int
    subdir_count_per_path: int
    members: list[Storage] = field(default_factory=list)
    #: Bumped at every membership or status change.
    version: int = 0
    #: Round-robin positions of store_server = 0 and download_server = 0.
    write_index: int = 0
    read_index: int = 0

    def active_members(self) -> list[Storage]:
        return [s for s in self.members if s.status is StorageStatus.ACTIVE]

    def find_id(self, storage_id: str) -> Storage | None:
        for storage in self.members:
            if storage.id == storage_id:
                return storage
        return None

    def with_ip(self, ip: str) -> list[Storage]:
        return [s for s in self.members if s.ip == ip]

    def space(self) -> tuple[int, int]:
        """``(total_mb, free_mb)`` of the active member with the least free space (FastDFS: what
        the group can still take, since every member holds every file); (0, 0) with none active."""
        best: Storage | None = None
        for storage in self.members:
            if storage.status is StorageStatus.ACTIVE and (best is None or storage.free_mb < best.free_mb):
                best = storage
        return (0, 0) if best is None else (best.total_mb, best.free_mb)

    def trunk_free_mb(self) -> int:
        """MB free inside the group's trunk containers: the sum of what the active members report, as
        each allocates only in containers of its own.  Containers are sparse files, so this space is
        counted in ``free_mb`` as well, and the reserve is checked against ``free_mb`` alone."""
        return sum(s.trunk_free_mb for s in self.members if s.status is StorageStatus.ACTIVE)

    def briefs(self) -> tuple[StorageBrief, ...]:
        return tuple(s.brief() for s in self.members)
