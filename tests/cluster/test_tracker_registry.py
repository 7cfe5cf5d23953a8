"""The registry and its status machine, without sockets, on a fake clock."""

from __future__ import annotations

import errno
import json
from dataclasses import replace
from pathlib import Path

import pytest
from tracker_helpers import FakeClock, active_storage, join_request

from cluster.errors import AccessDenied, AlreadyExists, Busy, InvalidRequest, NotFound
from cluster.protocol import (
    ChangeFlag,
    DiskUsage,
    StorageBrief,
    StorageStats,
    StorageStatus,
    SyncProgress,
    SyncSourceReply,
)
from cluster.tracker import persist
from cluster.tracker.registry import Registry

IP = "127.0.0.1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    return Registry(check_active_interval=0.5, clock=clock)


def test_first_storage_of_a_group_goes_online_then_active_on_its_beat(registry: Registry) -> None:
    storage, reply = registry.join(join_request(), IP)
    registry._check()
    assert reply.status is StorageStatus.ONLINE and reply.src_id == ""
    assert storage.id == IP and storage.key == f"{IP}:23000"
    assert registry.group("group1").store_path_count == 1
    registry.beat(storage, None)
    registry._check()
    assert storage.status is StorageStatus.ACTIVE


def test_offline_after_the_interval_and_active_again_on_a_beat(registry: Registry, clock: FakeClock) -> None:
    storage = active_storage(registry)
    clock.advance(0.4)
    assert registry.expire() == []
    clock.advance(0.2)
    assert registry.expire() == [storage]
    registry._check()
    assert storage.status is StorageStatus.OFFLINE
    registry.beat(storage, None)
    assert storage.status is StorageStatus.ACTIVE


def test_two_storages_on_one_host_are_distinct_with_unique_ids(registry: Registry) -> None:
    first = active_storage(registry, port=23000)
    second = active_storage(registry, port=23001)
    assert first is not second
    assert (first.id, second.id) == (IP, f"{IP}:23001")
    assert [s.port for s in registry.group("group1").members] == [23000, 23001]
    again, _ = registry.join(join_request(port=23001), IP)
    assert again is second and again.id == f"{IP}:23001"
    registry._check()


def test_members_are_in_ip_order(registry: Registry) -> None:
    for ip in ("10.0.0.20", "10.0.0.3", "9.1.1.1"):
        registry.join(join_request(), ip)
    assert [s.ip for s in registry.group("group1").members] == ["9.1.1.1", "10.0.0.3", "10.0.0.20"]
    registry._check()


@pytest.mark.parametrize(("paths", "subdirs"), [(2, 256), (1, 128)], ids=["paths", "subdirs"])
def test_join_disagreeing_with_the_group_is_refused(registry: Registry, paths: int, subdirs: int) -> None:
    registry.join(join_request(paths=1, subdirs=256), IP)
    with pytest.raises(InvalidRequest):
        registry.join(join_request(port=23001, paths=paths, subdirs=subdirs), IP)
    registry._check()
    assert len(registry.group("group1").members) == 1


@pytest.mark.parametrize(
    "request_changes",
    [{"group": "bad group"}, {"paths": 0}, {"paths": 300}, {"subdirs": 0}],
    ids=["group-name", "no-paths", "too-many-paths", "no-subdirs"],
)
def test_bad_joins_are_refused(registry: Registry, request_changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        registry.join(join_request(**request_changes), IP)  # type: ignore[arg-type]
    assert not registry.groups
    registry._check()


def test_a_storage_cannot_move_to_another_group(registry: Registry) -> None:
    registry.join(join_request("group1"), IP)
    with pytest.raises(AlreadyExists):
        registry.join(join_request("group2"), IP)
    registry._check()


def test_a_new_member_of_a_group_with_data_waits_for_its_sync(registry: Registry, clock: FakeClock) -> None:
    source = active_storage(registry, uploads=5)
    new, reply = registry.join(join_request(port=23001), IP)
    registry._check()
    assert reply.status is StorageStatus.WAIT_SYNC and reply.src_id == source.id
    assert new.sync_until == int(clock.now)
    # the source asks about the newcomer it saw in its briefs
    assert registry.sync_src_request(source, "group1", new.id) == SyncSourceReply(source.id, int(clock.now))
    assert registry.sync_dest_request(new) == SyncSourceReply(source.id, int(clock.now))
    registry.beat(new, None)  # beats do not end the sync
    assert new.status is StorageStatus.WAIT_SYNC
    registry.report_status(source, "group1", StorageBrief(StorageStatus.SYNCING, new.port, new.id, new.ip))
    assert new.status is StorageStatus.SYNCING
    registry.sync_notify(new, source.id, new.sync_until)
    assert new.status is StorageStatus.ONLINE
    registry.beat(new, None)
    assert new.status is StorageStatus.ACTIVE
    registry._check()


def test_a_new_member_of_a_group_without_data_goes_online(registry: Registry) -> None:
    active_storage(registry, uploads=0)
    _, reply = registry.join(join_request(port=23001), IP)
    assert reply.status is StorageStatus.ONLINE


def test_a_storage_that_says_it_has_served_before_is_not_resynced(registry: Registry) -> None:
    active_storage(registry, uploads=5)
    _, reply = registry.join(join_request(port=23001, init_flag=False, status=StorageStatus.ACTIVE), IP)
    assert reply.status is StorageStatus.ONLINE


def test_a_known_storage_rejoining_goes_online(registry: Registry) -> None:
    storage = active_storage(registry)
    active_storage(registry, port=23001)
    registry.beat(storage, StorageStats(success_upload_count=5))
    again, reply = registry.join(join_request(), IP)
    assert again is storage and reply.status is StorageStatus.ONLINE
    registry._check()


def test_sync_src_request_for_unknown_or_initial_storage_is_enoent(registry: Registry) -> None:
    source = active_storage(registry)
    with pytest.raises(NotFound):
        registry.sync_src_request(source, "group1", "10.9.9.9")
    with pytest.raises(InvalidRequest):
        registry.sync_src_request(source, "other", source.id)
    assert registry.sync_src_request(source, "group1", source.id) == SyncSourceReply()


def test_report_status_refuses_other_statuses(registry: Registry) -> None:
    storage = active_storage(registry)
    brief = StorageBrief(StorageStatus.DELETED, storage.port, storage.id, storage.ip)
    with pytest.raises(InvalidRequest):
        registry.report_status(storage, "group1", brief)
    with pytest.raises(NotFound):
        registry.report_status(storage, "group1", StorageBrief(StorageStatus.ONLINE, 1, "nobody", "10.0.0.1"))


def test_beat_replies_carry_the_members_once_per_change(registry: Registry) -> None:
    first = active_storage(registry)
    assert registry.beat(first, None).flags == ChangeFlag.NONE
    second, _ = registry.join(join_request(port=23001), IP)
    reply = registry.beat(first, None)
    assert reply.flags == ChangeFlag.GROUP_CHANGED
    assert [(b.port, b.status) for b in reply.briefs] == [(23000, StorageStatus.ACTIVE), (23001, StorageStatus.ONLINE)]
    assert registry.beat(first, None).briefs == ()
    registry.beat(second, None)  # second becomes ACTIVE: first hears of it
    assert registry.beat(first, None).briefs[1].status is StorageStatus.ACTIVE


def test_disk_usage_must_cover_every_store_path(registry: Registry) -> None:
    storage, _ = registry.join(join_request(paths=2), IP)
    with pytest.raises(InvalidRequest):
        registry.report_disk_usage(storage, (DiskUsage(10, 5),), most_free=False)
    registry.report_disk_usage(storage, (DiskUsage(10, 5), DiskUsage(10, 8)), most_free=True)
    assert storage.current_write_path == 1 and storage.free_mb == 13
    registry._check()


def test_sync_report_records_progress_per_source(registry: Registry) -> None:
    first = active_storage(registry)
    second = active_storage(registry, port=23001)
    registry.sync_report(
        second, (SyncProgress(first.id, 1234), SyncProgress("unknown", 99), SyncProgress(second.id, 5))
    )
    assert second.synced_from == {first.key: 1234}
    assert second.last_synced_timestamp == 1234


def test_group_space_is_the_member_with_least_free(registry: Registry) -> None:
    active_storage(registry, free=(700,), total=1000)
    active_storage(registry, port=23001, free=(300,), total=900)
    assert registry.group("group1").space() == (900, 300)


def test_a_forgotten_storage_object_is_refused(registry: Registry) -> None:
    storage = active_storage(registry)
    fresh = Registry(0.5, FakeClock())
    with pytest.raises(AccessDenied):
        fresh.beat(storage, None)


# ---- persistence ------------------------------------------------------------------------------------
def test_state_round_trip_loads_storages_offline(tmp_path: Path, registry: Registry, clock: FakeClock) -> None:
    first = active_storage(registry, uploads=3, free=(500, 600))
    waiting, _ = registry.join(join_request(port=23001, paths=2), IP)
    registry.beat(first, StorageStats(success_upload_count=9))
    path = tmp_path / "data" / "state.json"
    persist.write_state(path, persist.snapshot(registry))
    loaded = Registry(0.5, clock)
    assert persist.read_state(path, loaded)
    loaded._check()
    restored = loaded.by_key[first.key]
    assert restored.status is StorageStatus.OFFLINE and restored.id == first.id
    assert restored.path_free_mb == [500, 600] and restored.stats.success_upload_count == 9
    assert loaded.by_key[waiting.key].status is StorageStatus.WAIT_SYNC
    assert loaded.by_key[waiting.key].src_id == first.id
    # beating again makes it ACTIVE
    again, reply = loaded.join(join_request(paths=2, init_flag=False, status=StorageStatus.ACTIVE), IP)
    assert again is restored and reply.status is StorageStatus.ONLINE
    loaded.beat(again, None)
    assert again.status is StorageStatus.ACTIVE
    loaded._check()


def test_missing_state_file_is_an_empty_start(tmp_path: Path, registry: Registry) -> None:
    assert not persist.read_state(tmp_path / "none.json", registry)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda doc: "not json {",
        lambda doc: json.dumps({**doc, "format": "other"}),
        lambda doc: json.dumps({**doc, "groups": [{**doc["groups"][0], "store_path_count": 0}]}),
        lambda doc: json.dumps({**doc, "groups": doc["groups"] * 2}),
        lambda doc: json.dumps(
            {**doc, "groups": [{**doc["groups"][0], "storages": [{**doc["groups"][0]["storages"][0], "port": "x"}]}]}
        ),
        lambda doc: json.dumps(
            {**doc, "groups": [{**doc["groups"][0], "storages": [{**doc["groups"][0]["storages"][0], "stats": [1]}]}]}
        ),
    ],
    ids=["not-json", "format", "path-count", "group-twice", "port-type", "stats-length"],
)
def test_a_damaged_state_file_is_refused_whole(tmp_path: Path, registry: Registry, mangle: object) -> None:
    active_storage(registry)
    document = persist.snapshot(registry)
    path = tmp_path / "state.json"
    path.write_text(mangle(document))  # type: ignore[operator]
    fresh = Registry(0.5, FakeClock())
    with pytest.raises(persist.StateError):
        persist.read_state(path, fresh)
    assert not fresh.groups and not fresh.by_key


def _not_connected(storage: object) -> bool:
    return False


def test_delete_storage_refuses_serving_unknown_and_ambiguous_storages(registry: Registry) -> None:
    active = active_storage(registry, port=23000)
    offline = active_storage(registry, port=23001)
    registry.disconnected(offline)
    with pytest.raises(Busy):
        registry.delete_storage("group1", active.key, _not_connected)  # ACTIVE
    with pytest.raises(Busy):
        registry.delete_storage("group1", offline.key, lambda storage: storage is offline)  # still connected
    with pytest.raises(NotFound):
        registry.delete_storage("group1", "10.9.9.9", _not_connected)
    with pytest.raises(NotFound):
        registry.delete_storage("nogroup", offline.key, _not_connected)
    with pytest.raises(Busy, match="ACTIVE"):
        registry.delete_storage("group1", IP, _not_connected)  # the ID of the first (FastDFS: its IP)
    assert offline.status is StorageStatus.OFFLINE
    registry._check()


def test_an_ip_shared_by_storages_with_numeric_ids_does_not_name_one(registry: Registry) -> None:
    for port, storage_id in ((23000, "1"), (23001, "2")):
        storage, _ = registry.join(replace(join_request(port=port), storage_id=storage_id), IP)
        registry.disconnected(storage)
    with pytest.raises(InvalidRequest, match="give ip:port"):
        registry.delete_storage("group1", IP, _not_connected)
    assert registry.delete_storage("group1", "2", _not_connected).port == 23001
    registry._check()


@pytest.mark.parametrize("by", ["key", "id"])
def test_a_deleted_storage_is_listed_deleted_and_comes_back_as_a_new_member(registry: Registry, by: str) -> None:
    keep = active_storage(registry, port=23000)
    gone = active_storage(registry, port=23001)
    registry.beat(keep, StorageStats(success_upload_count=5))  # the group has data now
    version = registry.group("group1").version
    registry.disconnected(gone)
    deleted = registry.delete_storage("group1", gone.key if by == "key" else gone.id, _not_connected)
    registry._check()
    assert deleted is gone and gone.status is StorageStatus.DELETED and gone.free_mb == 0
    assert registry.group("group1").version > version  # the peers hear of it and stop copying to it
    assert registry.changes_for(keep).briefs[-1].status is StorageStatus.DELETED
    with pytest.raises(AlreadyExists) as refused:
        registry.delete_storage("group1", gone.key, _not_connected)
    assert refused.value.status == errno.EALREADY
    again, reply = registry.join(join_request(port=23001), IP)
    registry._check()
    # Joins as a new member would: the group has data, so it is to copy it from the active member.
    assert again is gone and reply.status is StorageStatus.WAIT_SYNC and reply.src_id == keep.id


def test_members_syncing_from_a_deleted_storage_get_another_source(registry: Registry, clock: FakeClock) -> None:
    first = active_storage(registry, port=23000)
    second = active_storage(registry, port=23001)
    for storage in (first, second):
        registry.beat(storage, StorageStats(success_upload_count=5))
    newcomer, reply = registry.join(join_request(port=23002), IP)
    assert reply.status is StorageStatus.WAIT_SYNC
    source = first if reply.src_id == first.id else second
    other = second if source is first else first
    registry.disconnected(source)
    registry.delete_storage("group1", source.key, _not_connected)
    registry._check()
    assert newcomer.status is StorageStatus.WAIT_SYNC and newcomer.src_id == other.id
