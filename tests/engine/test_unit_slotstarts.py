"""SlotStarts and walk_starts: where live slots start in a container, learnt from its headers and kept up to date."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from trunkstore.fastpath import SlotMap
from trunkstore.freespace import Extent
from trunkstore.slot import TYPE_FILE, TYPE_SHARED, pack_header
from trunkstore.slotstarts import SlotStarts, next_valid_slot, walk_starts
from trunkstore.trunk import TrunkContainer

CAPACITY = 1 << 20
TRUNK = 3


@pytest.fixture
def container(tmp_path: Path) -> Iterator[TrunkContainer]:
    opened = TrunkContainer.create(str(tmp_path / f"{TRUNK:06d}"), TRUNK, 2, 0x1F, 0xA0, CAPACITY)
    yield opened
    opened.close()


def put_slot(container: TrunkContainer, offset: int, alloc: int, size: int, kind: bytes = TYPE_FILE) -> None:
    container.write_slot(offset, pack_header(kind, alloc, size, 0, 0, bytes(7)), b"x" * size)


def run(offset: int, size: int, trunk_id: int = TRUNK) -> Extent:
    return Extent(trunk_id, offset, size)


# ---- SlotStarts ----------------------------------------------------------------------------------------
def test_starts_are_unknown_until_learnt_and_then_shared_with_the_read_path(container: TrunkContainer) -> None:
    slot_map = SlotMap()
    starts = SlotStarts(slot_map)
    assert starts.known(TRUNK) is None
    learnt = {0, 256}
    starts.learn(container, learnt)
    assert starts.known(TRUNK) is learnt
    mapped, directory, shared = slot_map.entries[TRUNK]
    assert mapped is container.map
    assert directory == b"M02/1F/A0/"
    # The read fast path reads the same set object, so later changes reach it without a copy.
    assert shared is learnt


def test_started_and_ended_update_the_set_the_read_path_sees(container: TrunkContainer) -> None:
    slot_map = SlotMap()
    starts = SlotStarts(slot_map)
    starts.learn(container, {0})
    starts.started(TRUNK, 512)
    starts.ended(TRUNK, 0)
    starts.ended(TRUNK, 4096)  # never started: nothing to remove
    assert starts.known(TRUNK) == {512}
    assert slot_map.entries[TRUNK][2] == {512}


def test_changes_to_a_container_not_learnt_yet_are_left_to_the_walk(container: TrunkContainer) -> None:
    # Until the container is walked its starts are unknown; recording one start would make the
    # others look absent.
    starts = SlotStarts(SlotMap())
    starts.started(TRUNK, 256)
    starts.ended(TRUNK, 0)
    assert starts.known(TRUNK) is None


def test_forget_drops_the_starts_and_the_read_path_entry(container: TrunkContainer) -> None:
    slot_map = SlotMap()
    starts = SlotStarts(slot_map)
    starts.learn(container, {0})
    starts.forget(TRUNK)
    assert starts.known(TRUNK) is None
    assert slot_map.entries == {}
    starts.forget(TRUNK)  # forgetting twice, or a container never learnt, is harmless
    starts.forget(99)
    assert slot_map.entries == {}


def test_a_container_without_a_map_is_known_but_not_on_the_read_path(container: TrunkContainer) -> None:
    container.close()  # no map any more
    slot_map = SlotMap()
    starts = SlotStarts(slot_map)
    starts.learn(container, {0})
    assert starts.known(TRUNK) == {0}
    assert slot_map.entries == {}


# ---- walk_starts ---------------------------------------------------------------------------------------
def test_walk_finds_every_slot_of_each_run(container: TrunkContainer) -> None:
    put_slot(container, 0, 256, 10)
    put_slot(container, 256, 1024, 900, kind=TYPE_SHARED)
    put_slot(container, 1280, 256, 0)
    put_slot(container, 8192, 512, 100)
    put_slot(container, 8704, 256, 200)
    assert walk_starts(container, [run(0, 1536), run(8192, 768)], {}) == {0, 256, 1280, 8192, 8704}


def test_walk_of_no_runs_finds_nothing(container: TrunkContainer) -> None:
    put_slot(container, 0, 256, 10)
    assert walk_starts(container, [], {}) == set()


def test_walk_steps_over_reservations_not_written_yet(container: TrunkContainer) -> None:
    put_slot(container, 0, 256, 10)
    # [256, 768) is reserved: its bytes are still zeros, but the slots after it are live.
    put_slot(container, 768, 256, 10)
    put_slot(container, 1024, 512, 300)
    reserved = {(TRUNK, 256): 512, (TRUNK + 1, 1536): 256}
    assert walk_starts(container, [run(0, 1536)], reserved) == {0, 768, 1024}


def test_walk_steps_over_a_reservation_at_the_start_of_a_run(container: TrunkContainer) -> None:
    put_slot(container, 512, 256, 10)
    assert walk_starts(container, [run(0, 768)], {(TRUNK, 0): 512}) == {512}


def test_reservations_of_another_container_are_not_stepped_over(container: TrunkContainer) -> None:
    put_slot(container, 0, 256, 10)
    put_slot(container, 768, 256, 10)
    assert walk_starts(container, [run(0, 1024)], {(TRUNK + 1, 256): 512}) == {0}


def test_after_damage_the_walk_resumes_only_at_a_slot_whose_data_matches_its_crc(container: TrunkContainer) -> None:
    put_slot(container, 0, 256, 10)
    container.write(256, b"garbage that is no slot header")
    put_slot(container, 512, 256, 10)  # a header, but its crc32 (0) does not match its data
    put_slot(container, 4096, 256, 10)  # in the next run: still found
    assert walk_starts(container, [run(0, 768), run(4096, 256)], {}) == {0, 4096}


def put_checked_slot(container: TrunkContainer, offset: int, alloc: int, data: bytes) -> None:
    container.write_slot(offset, pack_header(TYPE_FILE, alloc, len(data), zlib.crc32(data), 0, bytes(7)), data)


def test_after_damage_the_walk_resumes_at_the_next_intact_slot(container: TrunkContainer) -> None:
    put_checked_slot(container, 0, 256, b"first")
    put_checked_slot(container, 256, 512, b"damaged" * 20)
    put_checked_slot(container, 768, 256, b"after")
    put_checked_slot(container, 1024, 256, b"last")
    container.write(256, bytes(24))  # the second slot's header wiped
    assert walk_starts(container, [run(0, 1280)], {}) == {0, 768, 1024}
    assert next_valid_slot(container, 256, 1280) == 768
    assert next_valid_slot(container, 1025, 1280) == 1280  # none left


def test_a_slot_claiming_more_than_its_run_ends_the_walk(container: TrunkContainer) -> None:
    put_slot(container, 0, 256, 10)
    put_slot(container, 256, 4096, 10)  # its alloc runs past the run's end
    assert walk_starts(container, [run(0, 1024)], {}) == {0}
