"""FastDFS's selection rules over a registry on a fake clock: uploads, downloads, updates."""

from __future__ import annotations

import pytest
from tracker_helpers import FakeClock, active_storage, file_name, join_request, make_config

from cluster.errors import InvalidRequest, NoSpace, NotFound
from cluster.protocol import StorageStats, SyncProgress
from cluster.tracker import selection
from cluster.tracker.config import DownloadServer, ReservedSpace, StoreLookup, StorePath, StoreServer
from cluster.tracker.registry import Registry

IP = "127.0.0.1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    return Registry(check_active_interval=120, clock=clock)


def _groups_of(registry: Registry, count: int, **config: object) -> list[str]:
    cfg = make_config(**config)
    return [selection.store_one(registry, cfg, None)[0].name for _ in range(count)]


def test_no_group_at_all_is_enoent(registry: Registry) -> None:
    with pytest.raises(NotFound):
        selection.store_one(registry, make_config(), None)
    with pytest.raises(NotFound):
        selection.store_one(registry, make_config(), "group1")


def test_store_lookup_round_robin(registry: Registry) -> None:
    for index, group in enumerate(("g1", "g2", "g3")):
        active_storage(registry, port=23000 + index, group=group)
    assert _groups_of(registry, 4, store_lookup=StoreLookup.ROUND_ROBIN) == ["g1", "g2", "g3", "g1"]


def test_store_lookup_specified_group(registry: Registry) -> None:
    active_storage(registry, group="g1")
    active_storage(registry, port=23001, group="g2")
    config = {"store_lookup": StoreLookup.SPECIFIED_GROUP, "store_group": "g2"}
    assert _groups_of(registry, 2, **config) == ["g2", "g2"]
    with pytest.raises(NotFound):
        _groups_of(registry, 1, store_lookup=StoreLookup.SPECIFIED_GROUP, store_group="g9")


def test_store_lookup_most_free(registry: Registry) -> None:
    active_storage(registry, group="g1", free=(100,))
    active_storage(registry, port=23001, group="g2", free=(900,))
    active_storage(registry, port=23002, group="g3", free=(500,))
    assert _groups_of(registry, 2, store_lookup=StoreLookup.MOST_FREE) == ["g2", "g2"]


def test_a_named_group_wins_over_store_lookup(registry: Registry) -> None:
    active_storage(registry, group="g1", free=(100,))
    active_storage(registry, port=23001, group="g2", free=(900,))
    group, _, _ = selection.store_one(registry, make_config(), "g1")
    assert group.name == "g1"


def _ports(registry: Registry, count: int, rule: StoreServer) -> list[int]:
    config = make_config(store_server=rule)
    return [selection.store_one(registry, config, "group1")[1].port for _ in range(count)]


def test_store_server_round_robin(registry: Registry) -> None:
    for port in (23002, 23000, 23001):
        active_storage(registry, port=port)
    assert _ports(registry, 4, StoreServer.ROUND_ROBIN) == [23000, 23001, 23002, 23000]


def test_store_server_first_by_ip(registry: Registry) -> None:
    active_storage(registry, ip="10.0.0.20")
    active_storage(registry, ip="10.0.0.3")
    config = make_config(store_server=StoreServer.FIRST_BY_IP)
    assert {selection.store_one(registry, config, None)[1].ip for _ in range(3)} == {"10.0.0.3"}


def test_store_server_by_priority(registry: Registry) -> None:
    active_storage(registry, port=23000, priority=10)
    active_storage(registry, port=23001, priority=3)
    active_storage(registry, port=23002, priority=3)
    assert _ports(registry, 3, StoreServer.BY_PRIORITY) == [23001, 23001, 23001]


def test_store_path_round_robin_skips_full_paths(registry: Registry) -> None:
    active_storage(registry, free=(500, 0, 300))
    config = make_config(store_path=StorePath.ROUND_ROBIN)
    assert [selection.store_one(registry, config, None)[2] for _ in range(4)] == [0, 2, 0, 2]


def test_store_path_most_free(registry: Registry) -> None:
    active_storage(registry, free=(500, 900, 300))
    config = make_config(store_path=StorePath.MOST_FREE)
    assert [selection.store_one(registry, config, None)[2] for _ in range(2)] == [1, 1]


def test_store_all_lists_every_candidate(registry: Registry) -> None:
    for port in (23000, 23001):
        active_storage(registry, port=port)
    group, storages, path = selection.store_all(registry, make_config(), None)
    assert group.name == "group1" and [s.port for s in storages] == [23000, 23001] and path == 0


@pytest.mark.parametrize(
    ("reserve", "free", "room"),
    [("10%", 201, True), ("10%", 200, False), ("100MB", 101, True), ("100MB", 100, False), ("0", 0, False)],
    ids=["ratio-above", "ratio-at", "mb-above", "mb-at", "empty-disk"],
)
def test_reserved_space_per_storage(registry: Registry, reserve: str, free: int, room: bool) -> None:
    active_storage(registry, free=(free,), total=2000)
    config = make_config(reserved_storage_space=ReservedSpace.parse(reserve))
    if room:
        assert selection.store_one(registry, config, None)[1].port == 23000
    else:
        with pytest.raises(NoSpace):
            selection.store_one(registry, config, None)


def test_a_group_with_a_full_member_takes_no_uploads(registry: Registry) -> None:
    active_storage(registry, group="g1", port=23000, free=(1000,))
    active_storage(registry, group="g1", port=23001, free=(10,))
    active_storage(registry, group="g2", port=23002, free=(300,))
    config = make_config(reserved_storage_space=ReservedSpace.parse("100M"), store_lookup=StoreLookup.ROUND_ROBIN)
    assert {selection.store_one(registry, config, None)[0].name for _ in range(3)} == {"g2"}
    with pytest.raises(NoSpace):
        selection.store_one(registry, config, "g1")


def test_a_storage_without_a_disk_report_takes_no_uploads(registry: Registry) -> None:
    storage, _ = registry.join(join_request(), IP)
    registry.beat(storage, None)
    with pytest.raises(NoSpace):
        selection.store_one(registry, make_config(), None)


def test_only_active_storages_are_chosen(registry: Registry, clock: FakeClock) -> None:
    active_storage(registry, port=23000)
    late = active_storage(registry, port=23001)
    registry.check_active_interval = 1
    clock.advance(2)
    registry.beat(late, None)
    registry.expire()
    assert {p for p in _ports(registry, 4, StoreServer.ROUND_ROBIN)} == {23001}
    assert selection.fetch_one(registry, make_config(), "group1", file_name(), clock.now).port == 23001


# ---- downloads ---------------------------------------------------------------------------------
def test_fetch_of_a_bad_name_is_einval_and_unknown_group_enoent(registry: Registry, clock: FakeClock) -> None:
    active_storage(registry)
    config = make_config()
    for bad in ("M00/00/00/short.txt", "nonsense", file_name()[:-1] + "/"):
        with pytest.raises(InvalidRequest):
            selection.fetch_one(registry, config, "group1", bad, clock.now)
    with pytest.raises(NotFound):
        selection.fetch_one(registry, config, "nogroup", file_name(), clock.now)


def test_fetch_with_no_active_storage_is_enoent(registry: Registry, clock: FakeClock) -> None:
    active_storage(registry)
    clock.advance(200)
    registry.expire()
    with pytest.raises(NotFound):
        selection.fetch_one(registry, make_config(), "group1", file_name(), clock.now)


def test_download_round_robin_for_old_files(registry: Registry, clock: FakeClock) -> None:
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        active_storage(registry, ip=ip)
    old = file_name("10.0.0.2", timestamp=int(clock.now) - 100_000)
    config = make_config(download_server=DownloadServer.ROUND_ROBIN)
    picks = [selection.fetch_one(registry, config, "group1", old, clock.now).ip for _ in range(6)]
    assert sorted(set(picks)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_download_of_a_young_file_goes_to_storages_known_to_hold_it(registry: Registry, clock: FakeClock) -> None:
    source = active_storage(registry, ip="10.0.0.1")
    synced = active_storage(registry, ip="10.0.0.2")
    active_storage(registry, ip="10.0.0.3")
    young_ts = int(clock.now) - 10
    young = file_name("10.0.0.1", timestamp=young_ts)
    config = make_config(download_server=DownloadServer.ROUND_ROBIN)
    picks = {selection.fetch_one(registry, config, "group1", young, clock.now).ip for _ in range(6)}
    assert picks == {"10.0.0.1"}
    registry.sync_report(synced, (SyncProgress(source.id, young_ts + 1),))
    picks = {selection.fetch_one(registry, config, "group1", young, clock.now).ip for _ in range(6)}
    assert picks == {"10.0.0.1", "10.0.0.2"}


def test_young_file_whose_source_is_gone_goes_to_any_active(registry: Registry, clock: FakeClock) -> None:
    active_storage(registry, ip="10.0.0.2")
    young = file_name("10.0.0.9", timestamp=int(clock.now))
    assert selection.fetch_one(registry, make_config(), "group1", young, clock.now).ip == "10.0.0.2"


def test_download_source_first(registry: Registry, clock: FakeClock) -> None:
    for ip in ("10.0.0.1", "10.0.0.2"):
        active_storage(registry, ip=ip)
    old = file_name("10.0.0.2", timestamp=1)
    config = make_config(download_server=DownloadServer.SOURCE_FIRST)
    assert {selection.fetch_one(registry, config, "group1", old, clock.now).ip for _ in range(4)} == {"10.0.0.2"}


def test_a_shared_source_ip_makes_every_storage_on_it_a_candidate(registry: Registry, clock: FakeClock) -> None:
    active_storage(registry, ip="10.0.0.1", port=23000)
    active_storage(registry, ip="10.0.0.1", port=23001)
    active_storage(registry, ip="10.0.0.5", port=23000)
    young = file_name("10.0.0.1", timestamp=int(clock.now))
    picks = {selection.fetch_one(registry, make_config(), "group1", young, clock.now).key for _ in range(6)}
    assert picks == {"10.0.0.1:23000", "10.0.0.1:23001"}


def test_update_goes_to_the_source_or_by_store_server(registry: Registry, clock: FakeClock) -> None:
    active_storage(registry, ip="10.0.0.1")
    source = active_storage(registry, ip="10.0.0.2")
    config = make_config(store_server=StoreServer.FIRST_BY_IP)
    assert selection.update_one(registry, config, "group1", file_name("10.0.0.2")) is source
    assert selection.update_one(registry, config, "group1", file_name("10.0.0.9")).ip == "10.0.0.1"


def test_fetch_all_lists_holders_on_one_port(registry: Registry, clock: FakeClock) -> None:
    active_storage(registry, ip="10.0.0.1", port=23000)
    active_storage(registry, ip="10.0.0.2", port=23000)
    active_storage(registry, ip="10.0.0.3", port=23001)
    old = file_name("10.0.0.2", timestamp=1)
    port, ips = selection.fetch_all(registry, make_config(), "group1", old, clock.now)
    assert port == 23000 and ips == ["10.0.0.2", "10.0.0.1"]


def test_uploads_counted_in_stats_do_not_change_selection(registry: Registry) -> None:
    storage = active_storage(registry)
    registry.beat(storage, StorageStats(success_upload_count=10))
    assert selection.store_one(registry, make_config(), None)[1] is storage
