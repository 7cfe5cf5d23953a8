"""PoolSpace: which trunk ids are the store's own, where each container's free space is kept, and its checks."""

from __future__ import annotations

import pytest

from trunkstore.poolspace import PoolSpace


@pytest.fixture
def spaces() -> PoolSpace:
    # Storage 2 of a group of three: ids 2, 5, 8, ...
    return PoolSpace(store_paths=2, slot_min_size=256, id_start=2, id_step=3)


def test_own_ids_are_the_start_and_every_step_after_it(spaces: PoolSpace) -> None:
    assert [t for t in range(1, 15) if spaces.is_own(t)] == [2, 5, 8, 11, 14]


@pytest.mark.parametrize(("given", "own"), [(0, 2), (2, 2), (3, 5), (5, 5), (6, 8), (100, 101)])
def test_own_id_from_rounds_up_into_the_own_part(spaces: PoolSpace, given: int, own: int) -> None:
    assert spaces.own_id_from(given) == own


def test_containers_go_to_the_own_or_foreign_space_of_their_store_path(spaces: PoolSpace) -> None:
    assert spaces.of(5, 1) is spaces.own[1]
    assert spaces.of(4, 1) is spaces.foreign[1]
    assert spaces.of(8, 0) is spaces.own[0]
    assert spaces.own[0] is not spaces.own[1] and spaces.own[0] is not spaces.foreign[0]


def test_only_own_containers_move_the_next_id_on(spaces: PoolSpace) -> None:
    spaces.saw(7)  # a peer's container (a replica)
    assert spaces.next_id == 2
    spaces.saw(8)
    assert spaces.next_id == 11
    spaces.saw(5)  # an older one never moves it back
    assert spaces.next_id == 11


def test_new_id_steps_over_taken_ids_and_counts_as_seen(spaces: PoolSpace) -> None:
    taken = {2, 5}
    assert spaces.new_id(taken.__contains__) == 8
    assert spaces.next_id == 11
    assert spaces.new_id(taken.__contains__) == 11


def test_free_space_totals_cover_both_sides(spaces: PoolSpace) -> None:
    spaces.own[0].add_container(2, 4096)
    spaces.foreign[1].add_container(4, 8192)
    spaces.foreign[1].allocate(1024)
    assert spaces.free_bytes() == 4096 + 8192 - 1024
    assert spaces.own_free_bytes() == 4096
    assert spaces.free_extents() == 2


def test_check_is_clean_when_every_container_is_open_and_on_its_side(spaces: PoolSpace) -> None:
    spaces.own[0].add_container(2, 4096)
    spaces.foreign[0].add_container(3, 4096)
    assert spaces.check(lambda trunk_id: True) == []


def test_check_reports_containers_not_open_or_on_the_wrong_side(spaces: PoolSpace) -> None:
    spaces.own[1].add_container(3, 4096)  # a peer's id among the own containers
    spaces.foreign[0].add_container(5, 4096)  # an own id among the replicas
    problems = spaces.check(lambda trunk_id: trunk_id != 5)
    assert problems == [
        "store path 1: container 3 is in the wrong free space",
        "store path 0: container 5 tracked but not open",
        "store path 0: container 5 is in the wrong free space",
    ]
