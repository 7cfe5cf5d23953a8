"""What a tracker knows: groups, their storages, and the storage status machine.  No I/O.

A storage is identified, as in FastDFS without storage IDs, by the IP address it connects from and
the port it announces in STORAGE_JOIN; internally the key is ``"ip:port"``, so that two storages on
one host (127.0.0.1 in tests) are distinct.  Its storage ID, which the protocol carries in 16 bytes
(listings, briefs, sync requests), is its IP text as in FastDFS, unless another storage of the group
already has that IP: then it is ``"ip:port"`` (or a hex form when that does not fit), so IDs stay
unique within a group.  A storage that announces a numeric storage ID in its join (1 .. 2**24-1,
FastDFS's ``use_storage_id``: the ID it writes into its file names instead of its address) is known
by that ID.  An ID is given once, at the first join, and kept.

Status machine (FastDFS's)::

    JOIN (new, empty group or no peer holds data)        -> ONLINE
    JOIN (new, an ACTIVE peer holds data)                -> WAIT_SYNC, with that peer as sync source
                                                            and now as cut-off
    JOIN (known, or init_flag false with an established status) -> ONLINE
    SYNC_NOTIFY (88) / REPORT_STATUS (76) ONLINE|ACTIVE  -> ONLINE   (initial sync done)
    REPORT_STATUS SYNCING                                -> SYNCING
    BEAT / REPORT_DISK_USAGE while ONLINE or OFFLINE     -> ACTIVE
    no beat for check_active_interval while ONLINE|ACTIVE -> OFFLINE
    loaded from disk at start                            -> OFFLINE (sync states kept)

Every status or membership change bumps the group's ``version``; a storage whose last heard version
differs gets the group's member briefs in its next beat reply.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable, Iterator

from cluster.errors import AccessDenied, AlreadyExists, Busy, InvalidRequest, NotFound
from cluster.protocol import (
    ChangeFlag,
    DiskUsage,
    StorageBrief,
    StorageJoinReply,
    StorageJoinRequest,
    StorageStats,
    StorageStatus,
    SyncProgress,
    SyncSourceReply,
    TrackerChangesReply,
)
from cluster.protocol.fields import MAX_SERVER_ID

from .members import Clock, Group, Storage, SystemClock

STORAGE_ID_LEN = 16
MAX_STORE_PATHS = 256
MAX_SUBDIRS = 256
#: Longest storage IP text the client-facing replies can carry (15-byte fields).
MAX_IP_LEN = 15

#: Statuses of a storage still receiving its initial copy of the group's files.
SYNC_STATES = frozenset({StorageStatus.INIT, StorageStatus.WAIT_SYNC, StorageStatus.SYNCING})
#: Statuses a beat turns into ACTIVE.
ACTIVATABLE = frozenset({StorageStatus.ONLINE, StorageStatus.OFFLINE, StorageStatus.ACTIVE})
#: Statuses a storage announces in its join when it has served before (it has the group's data).
ESTABLISHED = frozenset({StorageStatus.ONLINE, StorageStatus.ACTIVE, StorageStatus.OFFLINE})
#: Statuses a sync source may have (FastDFS's list).
SOURCE_STATES = frozenset({StorageStatus.OFFLINE, StorageStatus.ONLINE, StorageStatus.ACTIVE, StorageStatus.RECOVERY})


class Registry:
    """Groups and storages, and every state change the storage commands make."""

    def __init__(self, check_active_interval: float, clock: Clock | None = None) -> None:
        self.check_active_interval = check_active_interval
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.groups: dict[str, Group] = {}
        #: Group names in order (FastDFS sorts groups by name).
        self.group_order: list[str] = []
        self.by_key: dict[str, Storage] = {}
        #: Round-robin position of store_lookup = 0.
        self.group_index = 0
        #: Set by any change worth saving; the saver clears it.
        self.dirty = False

    # ---- lookups ------------------------------------------------------------------------------
    def group(self, name: str) -> Group:
        found = self.groups.get(name)
        if found is None:
            raise NotFound(f"no group {name!r}")
        return found

    def ordered_groups(self) -> Iterator[Group]:
        for name in self.group_order:
            yield self.groups[name]

    def storages(self) -> Iterator[Storage]:
        for group in self.ordered_groups():
            yield from group.members

    # ---- membership ---------------------------------------------------------------------------
    def join(self, request: StorageJoinRequest, peer_ip: str) -> tuple[Storage, StorageJoinReply]:
        """STORAGE_JOIN from a storage connected from ``peer_ip``."""
        _check_join(request, peer_ip)
        key = f"{peer_ip}:{request.storage_port}"
        storage = self.by_key.get(key)
        if storage is not None and storage.group != request.group:
            raise AlreadyExists(f"storage {key} already belongs to group {storage.group!r}")
        group = self.groups.get(request.group)
        if group is not None and (
            group.store_path_count != request.store_path_count
            or group.subdir_count_per_path != request.subdir_count_per_path
        ):
            raise InvalidRequest(
                f"storage {key} has store_path_count {request.store_path_count} and subdir_count_per_path "
                f"{request.subdir_count_per_path}; group {request.group!r} has {group.store_path_count} "
                f"and {group.subdir_count_per_path}"
            )
        if storage is None and group is not None:
            storage = self._moved(group, request, peer_ip, key)
        now = self.clock.wall()
        if group is None:
            group = Group(request.group, request.store_path_count, request.subdir_count_per_path)
            self.groups[group.name] = group
            self.group_order = sorted(self.groups)
        if storage is None:
            storage = Storage(
                group=group.name,
                ip=peer_ip,
                port=request.storage_port,
                id=self._announced_id(group, request) or self._new_id(group, peer_ip, request.storage_port),
                status=StorageStatus.INIT,
                store_path_count=request.store_path_count,
                subdir_count_per_path=request.subdir_count_per_path,
                join_time=request.join_time or int(now),
            )
            group.members.append(storage)
            group.members.sort(key=Storage.sort_key)
            self.by_key[key] = storage
            group.version += 1
        elif request.join_time and (not storage.join_time or request.join_time < storage.join_time):
            storage.join_time = request.join_time
        if storage.status is StorageStatus.DELETED:
            # Deleted from the group, back again: a new member, placed like any other.
            self._set_status(group, storage, StorageStatus.INIT)
        storage.version = request.version
        storage.up_time = request.up_time
        storage.upload_priority = request.upload_priority
        storage.last_beat = self.clock.monotonic()
        storage.heard_version = -1
        if len(storage.path_total_mb) != group.store_path_count:
            storage.path_total_mb = [0] * group.store_path_count
            storage.path_free_mb = [0] * group.store_path_count
        self._settle_join(group, storage, request)
        self.dirty = True
        return storage, StorageJoinReply(storage.status, storage.src_id)

    def delete_storage(self, group_name: str, name: str, connected: Callable[[Storage], bool]) -> Storage:
        """SERVER_DELETE_STORAGE: ``name`` (a storage ID, IP or ``ip:port``) leaves ``group_name``.

        Only a storage that is not serving may go (FastDFS: EBUSY for an ONLINE or ACTIVE one; here
        also for one still ``connected`` to this tracker, whatever its status); EALREADY if it is
        deleted already.  It stays listed as DELETED, its peers stop copying to it, and members it
        was the sync source of get another.  If it joins again it is a new member (INIT).
        """
        group = self.group(group_name)
        matches = [s for s in group.members if name in (s.id, s.key)] or [s for s in group.members if s.ip == name]
        if not matches:
            raise NotFound(f"no storage {name!r} in group {group.name!r}")
        if len(matches) > 1:
            keys = ", ".join(s.key for s in matches)
            raise InvalidRequest(f"{name!r} names storages {keys} of group {group.name!r}: give ip:port")
        storage = matches[0]
        if storage.status is StorageStatus.DELETED:
            raise AlreadyExists(f"storage {storage.key} is deleted already", errno.EALREADY)
        if storage.status in (StorageStatus.ONLINE, StorageStatus.ACTIVE):
            raise Busy(f"storage {storage.key} is {storage.status.name}: stop it first")
        if connected(storage):
            raise Busy(f"storage {storage.key} is still connected: stop it first")
        self._set_status(group, storage, StorageStatus.DELETED)
        storage.src_id, storage.sync_until = "", 0
        storage.path_free_mb = [0] * group.store_path_count
        storage.path_total_mb = [0] * group.store_path_count
        storage.trunk_free_mb = 0
        for member in group.members:
            if member.src_id == storage.id and member.status in SYNC_STATES:
                self._assign_sync_source(group, member)
        return storage

    def _settle_join(self, group: Group, storage: Storage, request: StorageJoinRequest) -> None:
        claims_synced = not request.init_flag and request.status in ESTABLISHED
        if storage.status in SYNC_STATES and not claims_synced:
            if storage.status is StorageStatus.INIT:
                self._assign_sync_source(group, storage)
            return
        if storage.status in SYNC_STATES or request.status in ESTABLISHED or storage.status in ESTABLISHED:
            self._set_status(group, storage, StorageStatus.ONLINE)
            return
        self._assign_sync_source(group, storage)

    def _assign_sync_source(self, group: Group, storage: Storage) -> None:
        """A storage new to the group: copy from an ACTIVE peer holding data, or start ONLINE."""
        peers = [s for s in group.members if s is not storage and s.status is not StorageStatus.DELETED]
        if not any(s.holds_data for s in peers):
            storage.src_id, storage.sync_until = "", 0
            self._set_status(group, storage, StorageStatus.ONLINE)
            return
        sources = [s for s in peers if s.active and s.holds_data] or [s for s in peers if s.active]
        if not sources:
            self._set_status(group, storage, StorageStatus.INIT)  # retried at its next beat
            return
        storage.src_id = sources[0].id
        storage.sync_until = int(self.clock.wall())
        self._set_status(group, storage, StorageStatus.WAIT_SYNC)

    def _moved(self, group: Group, request: StorageJoinRequest, ip: str, key: str) -> Storage | None:
        """A known storage, by the numeric ID it announces, now at another address or port: it is
        moved there if its old address is not serving (else the join is refused as a duplicate ID)."""
        if not _numeric_id(request.storage_id):
            return None
        storage = group.find_id(request.storage_id)
        if storage is None:
            return None
        if storage.status in (StorageStatus.ACTIVE, StorageStatus.ONLINE):
            raise AlreadyExists(
                f"storage ID {storage.id} is in use by {storage.key}, which is serving; {key} cannot join with it"
            )
        del self.by_key[storage.key]
        storage.ip, storage.port = ip, request.storage_port
        self.by_key[key] = storage
        group.members.sort(key=Storage.sort_key)
        group.version += 1
        return storage

    def _announced_id(self, group: Group, request: StorageJoinRequest) -> str:
        """The numeric storage ID a storage announces (it writes it into its file IDs), or ``""``."""
        announced = request.storage_id
        if not _numeric_id(announced):
            return ""
        if any(s.id == announced for s in group.members):
            raise AlreadyExists(f"storage ID {announced} is taken by another storage of group {group.name!r}")
        return announced

    def _new_id(self, group: Group, ip: str, port: int) -> str:
        taken = {s.id for s in group.members}
        for candidate in (ip, f"{ip}:{port}"):
            if len(candidate) <= STORAGE_ID_LEN and candidate not in taken:
                return candidate
        try:
            base = f"{ipaddress.ip_address(ip).packed.hex()}:{port}"
        except ValueError:
            base = f"{ip.encode().hex()}:{port}"
        candidate, number = base[:STORAGE_ID_LEN], 0
        while candidate in taken:
            number += 1
            suffix = f"~{number}"
            candidate = base[: STORAGE_ID_LEN - len(suffix)] + suffix
        return candidate

    def _set_status(self, group: Group, storage: Storage, status: StorageStatus) -> None:
        if storage.status is not status:
            storage.status = status
            group.version += 1
            self.dirty = True

    # ---- reports from a joined storage -------------------------------------------------------
    def beat(self, storage: Storage, stats: StorageStats | None) -> TrackerChangesReply:
        """STORAGE_BEAT: the storage is alive; its counters, if sent, are kept for the listings."""
        group = self._group_of(storage)
        now = self.clock.wall()
        if stats is not None:
            storage.stats = stats
        storage.last_beat_wall = int(now)
        self._alive(group, storage)
        return self.changes_for(storage)

    def report_disk_usage(self, storage: Storage, paths: tuple[DiskUsage, ...], most_free: bool) -> TrackerChangesReply:
        """REPORT_DISK_USAGE: one entry per store path.  With ``most_free`` (store_path = 2) the
        storage's write path becomes the one with the most free space."""
        group = self._group_of(storage)
        if len(paths) != group.store_path_count:
            raise InvalidRequest(f"disk usage of {len(paths)} store paths, the group has {group.store_path_count}")
        storage.path_total_mb = [p.total_mb for p in paths]
        storage.path_free_mb = [p.free_mb for p in paths]
        if most_free:
            free = storage.path_free_mb
            storage.current_write_path = max(range(len(free)), key=lambda i: (free[i], -i))
        self._alive(group, storage)
        return self.changes_for(storage)

    def report_trunk_free(self, storage: Storage, trunk_free_mb: int) -> None:
        """REPORT_TRUNK_FREE: the free space inside ``storage``'s own trunk containers."""
        group = self._group_of(storage)
        storage.trunk_free_mb = trunk_free_mb
        self._alive(group, storage)

    def sync_report(self, storage: Storage, peers: tuple[SyncProgress, ...]) -> TrackerChangesReply:
        """SYNC_REPORT: how far this storage has applied each peer's changes."""
        group = self._group_of(storage)
        lowest = 0
        for progress in peers:
            source = group.find_id(progress.storage_id)
            if source is None or source is storage or progress.synced_timestamp <= 0:
                continue
            storage.synced_from[source.key] = progress.synced_timestamp
            if source.active:
                lowest = progress.synced_timestamp if not lowest else min(lowest, progress.synced_timestamp)
        if lowest:
            storage.last_synced_timestamp = lowest
        self._alive(group, storage)
        return self.changes_for(storage)

    def _alive(self, group: Group, storage: Storage) -> None:
        storage.last_beat = self.clock.monotonic()
        if storage.status in ACTIVATABLE:
            self._set_status(group, storage, StorageStatus.ACTIVE)
        elif storage.status is StorageStatus.INIT:
            self._assign_sync_source(group, storage)

    def changes_for(self, storage: Storage) -> TrackerChangesReply:
        """The reply to a beat or report: the group's members if the storage has not heard of the
        group's latest membership and statuses."""
        group = self._group_of(storage)
        if storage.heard_version == group.version:
            return TrackerChangesReply()
        storage.heard_version = group.version
        return TrackerChangesReply(ChangeFlag.GROUP_CHANGED, group.briefs())

    # ---- initial sync --------------------------------------------------------------------------
    def sync_dest_request(self, storage: Storage) -> SyncSourceReply:
        """SYNC_DEST_REQ (87): the new storage asks who feeds it."""
        group = self._group_of(storage)
        if storage.status is StorageStatus.INIT:
            self._assign_sync_source(group, storage)
        return self._source_reply(group, storage)

    def sync_src_request(self, storage: Storage, group_name: str, dest_id: str) -> SyncSourceReply:
        """SYNC_SRC_REQ (86): a member asks whether, and up to when, it must feed ``dest_id``."""
        group = self._group_of(storage)
        if group_name != group.name:
            raise InvalidRequest(f"group {group_name!r} is not this storage's group {group.name!r}")
        dest = group.find_id(dest_id)
        if dest is None or dest.status in (StorageStatus.INIT, StorageStatus.DELETED, StorageStatus.IP_CHANGED):
            raise NotFound(f"no storage {dest_id!r} waiting for a sync in group {group.name!r}")
        return self._source_reply(group, dest)

    def _source_reply(self, group: Group, dest: Storage) -> SyncSourceReply:
        if not dest.src_id:
            return SyncSourceReply()
        source = group.find_id(dest.src_id)
        if source is None or source.status not in SOURCE_STATES:
            dest.src_id, dest.sync_until = "", 0
            self.dirty = True
            return SyncSourceReply()
        return SyncSourceReply(dest.src_id, dest.sync_until)

    def sync_notify(self, storage: Storage, src_id: str, until: int) -> None:
        """SYNC_NOTIFY (88): the new storage has its initial copy: it goes ONLINE."""
        group = self._group_of(storage)
        if storage.status in SYNC_STATES:
            if src_id and group.find_id(src_id) is not None:
                storage.src_id, storage.sync_until = src_id, until
            self._set_status(group, storage, StorageStatus.ONLINE)

    def report_status(self, storage: Storage, group_name: str, brief: StorageBrief) -> None:
        """REPORT_STATUS (76): a member reports a peer's (or its own) status in the initial sync."""
        group = self._group_of(storage)
        if group_name != group.name:
            raise InvalidRequest(f"group {group_name!r} is not this storage's group {group.name!r}")
        target = self.by_key.get(f"{brief.ip}:{brief.port}")
        if target is None or target.group != group.name:
            target = group.find_id(brief.storage_id)
        if target is None:
            raise NotFound(f"no storage {brief.storage_id!r} ({brief.ip}:{brief.port}) in group {group.name!r}")
        status = brief.status
        if status is StorageStatus.SYNCING:
            if target.status in (StorageStatus.WAIT_SYNC, StorageStatus.INIT):
                self._set_status(group, target, StorageStatus.SYNCING)
        elif status in (StorageStatus.ONLINE, StorageStatus.ACTIVE):
            if target.status in SYNC_STATES:
                self._set_status(group, target, StorageStatus.ONLINE)
        else:
            raise InvalidRequest(f"a storage cannot report the status {status.name}")

    def disconnected(self, storage: Storage) -> bool:
        """The storage's connection to this tracker closed: an ONLINE or ACTIVE storage is OFFLINE at
        once, as FastDFS's tracker does, rather than offered until check_active_interval passes
        (it joins again when it comes back).  Returns whether its status changed."""
        if storage.status not in (StorageStatus.ACTIVE, StorageStatus.ONLINE):
            return False
        self._set_status(self._group_of(storage), storage, StorageStatus.OFFLINE)
        return True

    # ---- time ----------------------------------------------------------------------------------
    def expire(self) -> list[Storage]:
        """Mark OFFLINE every ONLINE or ACTIVE storage silent for check_active_interval."""
        now = self.clock.monotonic()
        expired = []
        for group in self.ordered_groups():
            for storage in group.members:
                if storage.status not in (StorageStatus.ACTIVE, StorageStatus.ONLINE):
                    continue
                if storage.last_beat is None or now - storage.last_beat > self.check_active_interval:
                    self._set_status(group, storage, StorageStatus.OFFLINE)
                    expired.append(storage)
        return expired

    # ---- loading and saving ----------------------------------------------------------------------
    def add_loaded(self, group: Group) -> None:
        """Adopt a group read back from disk (see :mod:`cluster.tracker.persist`): its storages are
        OFFLINE until they beat again, except those in the middle of an initial sync."""
        if group.name in self.groups:
            raise InvalidRequest(f"group {group.name!r} listed twice")
        for storage in group.members:
            if storage.key in self.by_key:
                raise InvalidRequest(f"storage {storage.key} listed twice")
            if storage.status not in SYNC_STATES and storage.status is not StorageStatus.DELETED:
                storage.status = StorageStatus.OFFLINE
            storage.last_beat = None
            storage.heard_version = -1
            self.by_key[storage.key] = storage
        group.members.sort(key=Storage.sort_key)
        self.groups[group.name] = group
        self.group_order = sorted(self.groups)

    def _group_of(self, storage: Storage) -> Group:
        group = self.groups.get(storage.group)
        if group is None or self.by_key.get(storage.key) is not storage:
            raise AccessDenied(f"storage {storage.key} is not a member any more")
        return group

    # ---- invariants ------------------------------------------------------------------------------
    def _check(self) -> None:
        """Assert the registry's invariants (tests call this after every mutation)."""
        assert self.group_order == sorted(self.groups), "group order"
        seen: set[str] = set()
        for name, group in self.groups.items():
            assert group.name == name
            assert 1 <= group.store_path_count <= MAX_STORE_PATHS
            ids = [s.id for s in group.members]
            assert len(ids) == len(set(ids)), f"duplicate storage IDs in {name}"
            assert group.members == sorted(group.members, key=Storage.sort_key), f"member order in {name}"
            deleted = {s.id for s in group.members if s.status is StorageStatus.DELETED}
            for storage in group.members:
                assert storage.group == name, f"{storage.key} in {name} says {storage.group}"
                assert storage.key not in seen, f"{storage.key} in two groups"
                seen.add(storage.key)
                assert self.by_key.get(storage.key) is storage, f"{storage.key} not indexed"
                assert 0 < len(storage.id) <= STORAGE_ID_LEN
                assert len(storage.path_total_mb) == len(storage.path_free_mb)
                assert len(storage.path_total_mb) in (0, group.store_path_count)
                assert 0 <= storage.current_write_path < group.store_path_count
                assert storage.store_path_count == group.store_path_count
                assert storage.status is not StorageStatus.WAIT_SYNC or storage.src_id, "WAIT_SYNC without source"
                assert storage.src_id not in deleted, f"{storage.key} syncs from a deleted storage"
        assert seen == set(self.by_key), "index holds storages no group has"
        assert self.group_index >= 0


def _numeric_id(storage_id: str) -> bool:
    return storage_id.isdigit() and 0 < int(storage_id) <= MAX_SERVER_ID


def _check_join(request: StorageJoinRequest, peer_ip: str) -> None:
    group = request.group
    if not (group and len(group) <= 16 and all(c.isalnum() or c in "_-" for c in group)):
        raise InvalidRequest(f"bad group name {group!r}")
    if not 1 <= request.store_path_count <= MAX_STORE_PATHS:
        raise InvalidRequest(f"store_path_count {request.store_path_count} out of range 1 .. {MAX_STORE_PATHS}")
    if not 1 <= request.subdir_count_per_path <= MAX_SUBDIRS:
        raise InvalidRequest(f"subdir_count_per_path {request.subdir_count_per_path} out of range 1 .. {MAX_SUBDIRS}")
    if not 0 < request.storage_port < 65536:
        raise InvalidRequest(f"storage port {request.storage_port} out of range")
    if len(peer_ip) > MAX_IP_LEN:
        raise InvalidRequest(f"storage address {peer_ip!r} does not fit the protocol's 15-byte IP fields")
