"""FastDFS's selection rules: which group, storage and store path an upload goes to, and which
storage a download or an update goes to.  Pure functions of the registry's state, except for the
round-robin positions they advance.  Each costs O(storages in the group), or O(groups) more for
an upload without a group.

Uploads go only to ACTIVE storages of a group whose every ACTIVE member is above the reserve
(FastDFS compares the member with the least free space, since every member holds every file), on a
store path above its share of the reserve; with no such storage the answer is ENOSPC.

Downloads go only to ACTIVE storages, and, for a file younger than ``storage_sync_file_max_delay``,
only to those known to hold it: its source (the IPv4 address in the file name: every storage of the
group with that address, since several may share one host) or a storage whose reported replication
progress from that source is past the file's timestamp.  If none is known to hold it, any ACTIVE one.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.errors import InvalidRequest, NoSpace, NotFound
from cluster.protocol.fields import MAX_SERVER_ID
from trunkstore.errors import TrunkstoreError
from trunkstore.fileid import parse_file_id, source_to_ip

from .config import DownloadServer, ReservedSpace, StoreLookup, StorePath, StoreServer, TrackerConfig
from .members import Group, Storage
from .registry import Registry


@dataclass(frozen=True, slots=True)
class FileOrigin:
    """What a file name says about where the file was written, and when."""

    source_ip: str
    timestamp: int
    #: The numeric storage ID the name carries instead of an address (FastDFS's ``use_storage_id``).
    source_id: str = ""

    def made(self, storage: Storage) -> bool:
        """Whether ``storage`` is the file's source (by its ID, or else by its address)."""
        if self.source_id:
            return storage.id == self.source_id
        return storage.ip == self.source_ip


def file_origin(group: str, filename: str) -> FileOrigin:
    """Validate ``filename`` (``M00/...``) as a file ID of ``group``; malformed is EINVAL."""
    try:
        file_id = parse_file_id(f"{group}/{filename}", group)
    except TrunkstoreError as exc:
        raise InvalidRequest(f"bad file name {filename!r}: {exc}") from None
    if 0 < file_id.source <= MAX_SERVER_ID:
        return FileOrigin("", file_id.timestamp, str(file_id.source))
    return FileOrigin(source_to_ip(file_id.source), file_id.timestamp)


# ---- uploads -------------------------------------------------------------------------------------
def path_has_room(storage: Storage, index: int, reserve: ReservedSpace) -> bool:
    return reserve.has_room(storage.path_total_mb[index], storage.path_free_mb[index], storage.store_path_count)


def storage_writable(storage: Storage, reserve: ReservedSpace) -> bool:
    """ACTIVE, above the reserve, with at least one store path above its share."""
    if not storage.active or not reserve.has_room(storage.total_mb, storage.free_mb):
        return False
    return any(path_has_room(storage, i, reserve) for i in range(len(storage.path_total_mb)))


def store_candidates(group: Group, reserve: ReservedSpace) -> list[Storage]:
    """The storages of ``group`` an upload may go to, in IP order; empty if the group is full."""
    total_mb, free_mb = group.space()
    if not reserve.has_room(total_mb, free_mb):
        return []
    return [s for s in group.members if storage_writable(s, reserve)]


def choose_group(registry: Registry, config: TrackerConfig, name: str | None) -> tuple[Group, list[Storage]]:
    """The group of an upload (``name`` given: that group) and its candidate storages."""
    reserve = config.reserved_storage_space
    if name is None and config.store_lookup is StoreLookup.SPECIFIED_GROUP:
        name = config.store_group
    if name is not None:
        group = registry.group(name)
        candidates = store_candidates(group, reserve)
        if not candidates:
            raise NoSpace(f"no storage of group {name!r} can take an upload")
        return group, candidates
    groups = list(registry.ordered_groups())
    if not groups:
        raise NotFound("no storage has joined yet")
    if config.store_lookup is StoreLookup.ROUND_ROBIN:
        start = registry.group_index % len(groups)
        for step in range(len(groups)):
            position = (start + step) % len(groups)
            candidates = store_candidates(groups[position], reserve)
            if candidates:
                registry.group_index = (position + 1) % len(groups)
                return groups[position], candidates
        raise NoSpace("no group can take an upload")
    best: tuple[Group, list[Storage]] | None = None
    best_free = -1
    for group in groups:
        candidates = store_candidates(group, reserve)
        free_mb = group.space()[1]
        if candidates and free_mb > best_free:
            best, best_free = (group, candidates), free_mb
    if best is None:
        raise NoSpace("no group can take an upload")
    return best


def choose_storage(group: Group, candidates: list[Storage], rule: StoreServer) -> Storage:
    """One of ``candidates`` (non-empty, in IP order) by the ``store_server`` rule."""
    if rule is StoreServer.ROUND_ROBIN:
        position = group.write_index % len(candidates)
        group.write_index = position + 1
        return candidates[position]
    if rule is StoreServer.FIRST_BY_IP:
        return candidates[0]
    return min(candidates, key=lambda s: s.upload_priority)  # ties: the first by IP


def choose_path(storage: Storage, config: TrackerConfig) -> int:
    """The store path index of an upload to ``storage``, by the ``store_path`` rule."""
    reserve = config.reserved_storage_space
    roomy = [i for i in range(len(storage.path_total_mb)) if path_has_room(storage, i, reserve)]
    if not roomy:
        raise NoSpace(f"no store path of storage {storage.key} can take an upload")
    if config.store_path is StorePath.MOST_FREE:
        free = storage.path_free_mb
        return max(roomy, key=lambda i: (free[i], -i))
    start = storage.current_write_path
    chosen = next((i for i in roomy if i >= start), roomy[0])
    storage.current_write_path = (chosen + 1) % storage.store_path_count
    return chosen


def store_one(registry: Registry, config: TrackerConfig, name: str | None) -> tuple[Group, Storage, int]:
    """QUERY_STORE_*_ONE: group, storage and store path of an upload."""
    group, candidates = choose_group(registry, config, name)
    storage = choose_storage(group, candidates, config.store_server)
    return group, storage, choose_path(storage, config)


def store_all(registry: Registry, config: TrackerConfig, name: str | None) -> tuple[Group, list[Storage], int]:
    """QUERY_STORE_*_ALL: every storage of the chosen group that takes uploads, and the store
    path of the one the ``store_server`` rule picks."""
    group, candidates = choose_group(registry, config, name)
    storage = choose_storage(group, candidates, config.store_server)
    return group, candidates, choose_path(storage, config)


# ---- downloads and updates -------------------------------------------------------------------------
def _is_young(origin: FileOrigin, config: TrackerConfig, now: float) -> bool:
    return origin.timestamp + config.storage_sync_file_max_delay > now


def holders(group: Group, origin: FileOrigin, config: TrackerConfig, now: float) -> list[Storage]:
    """ACTIVE storages known to hold the file (its sources first); all ACTIVE ones for an old file."""
    active = group.active_members()
    sources = [s for s in active if origin.made(s)]
    if not _is_young(origin, config, now):
        return sources + [s for s in active if not origin.made(s)]
    source_keys = [s.key for s in group.members if origin.made(s)]
    synced = [
        s
        for s in active
        if not origin.made(s)
        and (
            max(s.last_synced_timestamp, s.stats.last_synced_timestamp) > origin.timestamp
            or any(s.synced_from.get(key, 0) > origin.timestamp for key in source_keys)
        )
    ]
    return sources + synced


def _active(group: Group) -> list[Storage]:
    active = group.active_members()
    if not active:
        raise NotFound(f"no active storage in group {group.name!r}")
    return active


def fetch_one(registry: Registry, config: TrackerConfig, group_name: str, filename: str, now: float) -> Storage:
    """QUERY_FETCH_ONE: the storage to download from, by the ``download_server`` rule."""
    group = registry.group(group_name)
    origin = file_origin(group_name, filename)
    active = _active(group)
    known = holders(group, origin, config, now)
    if config.download_server is DownloadServer.SOURCE_FIRST and known and origin.made(known[0]):
        return known[0]
    pool = known or active
    position = group.read_index % len(pool)
    group.read_index = position + 1
    return pool[position]


def update_one(registry: Registry, config: TrackerConfig, group_name: str, filename: str) -> Storage:
    """QUERY_UPDATE: the file's source storage if ACTIVE, else one by the ``store_server`` rule."""
    group = registry.group(group_name)
    origin = file_origin(group_name, filename)
    active = _active(group)
    for storage in active:
        if origin.made(storage):
            return storage
    return choose_storage(group, active, config.store_server)


def fetch_all(
    registry: Registry, config: TrackerConfig, group_name: str, filename: str, now: float
) -> tuple[int, list[str]]:
    """QUERY_FETCH_ALL: ``(port, ips)`` of the storages to read the file from.  The reply names one
    port for all, so only storages listening on the first one's port are listed."""
    group = registry.group(group_name)
    origin = file_origin(group_name, filename)
    pool = holders(group, origin, config, now) or _active(group)
    port = pool[0].port
    return port, [s.ip for s in pool if s.port == port]
