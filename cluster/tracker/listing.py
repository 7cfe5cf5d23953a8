"""The LIST_* replies: the registry's groups and storages as FastDFS group and storage stats."""

from __future__ import annotations

from dataclasses import replace

from cluster.protocol import GroupStat, RwMode, StatLayout, StorageStat, StorageStatus

from .config import ReservedSpace
from .members import Group, Storage
from .selection import storage_writable, store_candidates

#: Width of the version field in each layout.
_VERSION_WIDTH = {StatLayout.V6_15: 8, StatLayout.V6_10: 6}


def group_stat(group: Group, reserve: ReservedSpace) -> GroupStat:
    """One group's stats; ``total_mb``/``free_mb`` are those of the active member with the least free
    space, as FastDFS computes them."""
    total_mb, free_mb = group.space()
    members = [s for s in group.members if s.status is not StorageStatus.DELETED]
    active = [s for s in members if s.active]
    writable = store_candidates(group, reserve)
    port_of = active[0] if active else members[0] if members else None
    return GroupStat(
        group_name=group.name,
        total_mb=total_mb,
        free_mb=free_mb,
        trunk_free_mb=group.trunk_free_mb(),
        storage_count=len(members),
        storage_port=port_of.port if port_of is not None else 0,
        current_write_server=group.write_index % len(active) if active else 0,
        store_path_count=group.store_path_count,
        subdir_count_per_path=group.subdir_count_per_path,
        current_trunk_file_id=0,
        reserved_mb=reserve.reserved_mb(total_mb),
        readable_count=len(active),
        writable_count=len(writable),
        storage_http_port=0,
        active_count=len(active),
    )


def storage_stat(storage: Storage, reserve: ReservedSpace, layout: StatLayout) -> StorageStat:
    """One storage's stats, with the counters of its last beat and the tracker's own times."""
    rw_mode = RwMode.NONE
    if storage.active:
        rw_mode = RwMode.READ | (RwMode.WRITE if storage_writable(storage, reserve) else RwMode.NONE)
    stats = replace(
        storage.stats,
        last_heart_beat_time=storage.last_beat_wall,
        last_synced_timestamp=max(storage.last_synced_timestamp, storage.stats.last_synced_timestamp),
    )
    return StorageStat(
        status=storage.status,
        id=storage.id,
        ip=storage.ip,
        src_id=storage.src_id,
        version=storage.version[: _VERSION_WIDTH[layout]],
        join_time=storage.join_time,
        up_time=storage.up_time,
        total_mb=storage.total_mb,
        free_mb=storage.free_mb,
        upload_priority=storage.upload_priority,
        store_path_count=storage.store_path_count,
        subdir_count_per_path=storage.subdir_count_per_path,
        current_write_path=storage.current_write_path,
        storage_port=storage.port,
        stats=stats,
        if_trunk_server=False,
        rw_mode=rw_mode,
        reserved_mb=reserve.reserved_mb(storage.total_mb),
    )


def storages_matching(group: Group, storage_id: str | None) -> list[Storage]:
    """The members LIST_STORAGE names: all, or those whose ID or IP is ``storage_id``."""
    if storage_id is None:
        return list(group.members)
    return [s for s in group.members if storage_id in (s.id, s.ip, s.key)]
