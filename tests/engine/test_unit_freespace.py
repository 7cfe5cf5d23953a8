"""FreeSpace against a naive byte-map allocator, plus targeted tests of merging, best fit and errors."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trunkstore.freespace import Extent, FreeSpace, FreeSpaceError

try:
    from .oracle import NaiveFreeSpace
except ImportError:
    from oracle import NaiveFreeSpace  # type: ignore[no-redef]


def assert_same(real: FreeSpace, naive: NaiveFreeSpace) -> None:
    """Every observable of the two allocators agrees, and the real one's invariants hold."""
    real._check()
    assert real.containers() == naive.containers()
    assert real.free_bytes == naive.free_bytes
    assert len(real) == len(naive)
    assert real.largest == naive.largest
    for trunk_id, capacity in naive.containers().items():
        free = real.extents(trunk_id)
        taken = list(real.allocated(trunk_id))
        assert free == naive.extents(trunk_id), f"free extents of container {trunk_id}"
        assert taken == naive.allocated(trunk_id), f"allocated ranges of container {trunk_id}"
        assert sum(e.size for e in free) + sum(e.size for e in taken) == capacity
        assert real.is_empty_container(trunk_id) == naive.is_empty_container(trunk_id)
        assert real.has_container(trunk_id)
        for extent in free:  # is_free at every boundary
            assert real.is_free(trunk_id, extent.offset, extent.size)
            assert real.is_free(trunk_id, extent.offset + extent.size - 1)
            if extent.offset > 0:
                assert not real.is_free(trunk_id, extent.offset - 1)
                assert real.is_free(trunk_id, extent.offset - 1, 2)
            if extent.offset + extent.size < capacity:
                assert not real.is_free(trunk_id, extent.offset + extent.size)
        for extent in taken:
            assert not real.is_free(trunk_id, extent.offset, extent.size)


def outcome(target: object, name: str, *args: int) -> tuple[str, object]:
    try:
        return "ok", getattr(target, name)(*args)
    except FreeSpaceError:
        return "error", None


# ---- comparison with the oracle --------------------------------------------------------------------
TRUNK_IDS = st.integers(1, 5)


class FreeSpaceMachine(RuleBasedStateMachine):
    real: FreeSpace
    naive: NaiveFreeSpace

    @initialize(min_split=st.sampled_from([1, 8, 64, 256]))
    def start(self, min_split: int) -> None:
        self.real = FreeSpace(min_split)
        self.naive = NaiveFreeSpace(min_split)

    def both(self, name: str, *args: int) -> tuple[str, object]:
        real = outcome(self.real, name, *args)
        naive = outcome(self.naive, name, *args)
        assert real == naive, f"{name}{args}: FreeSpace gave {real}, the oracle {naive}"
        return real

    @rule(trunk_id=TRUNK_IDS, capacity=st.integers(1, 3000), free=st.booleans())
    def add_container(self, trunk_id: int, capacity: int, free: bool) -> None:
        outcomes = []
        for target in (self.real, self.naive):
            try:
                target.add_container(trunk_id, capacity, free=free)
                outcomes.append("ok")
            except FreeSpaceError:
                outcomes.append("error")
        assert outcomes[0] == outcomes[1]

    @rule(size=st.one_of(st.integers(1, 64), st.integers(1, 3000), st.integers(-2, 0)))
    def allocate(self, size: int) -> None:
        self.both("allocate", size)

    @precondition(lambda self: any(self.naive.maps.values()))
    @rule(data=st.data())
    def reserve_free_range(self, data: st.DataObject) -> None:
        free = self.naive.all_extents()
        if not free:
            return
        extent = data.draw(st.sampled_from(free))
        start = data.draw(st.integers(extent.offset, extent.offset + extent.size - 1))
        size = data.draw(st.integers(1, extent.offset + extent.size - start))
        assert self.both("reserve", extent.trunk_id, start, size)[0] == "ok"

    @precondition(lambda self: self.naive.maps)
    @rule(data=st.data())
    def free_taken_range(self, data: st.DataObject) -> None:
        taken = [e for t in sorted(self.naive.maps) for e in self.naive.allocated(t)]
        if not taken:
            return
        extent = data.draw(st.sampled_from(taken))
        start = data.draw(st.integers(extent.offset, extent.offset + extent.size - 1))
        size = data.draw(st.integers(1, extent.offset + extent.size - start))
        assert self.both("free", extent.trunk_id, start, size)[0] == "ok"

    @rule(trunk_id=TRUNK_IDS, offset=st.integers(-5, 3005), size=st.integers(-2, 600))
    def free_any_range(self, trunk_id: int, offset: int, size: int) -> None:
        self.both("free", trunk_id, offset, size)

    @rule(trunk_id=TRUNK_IDS, offset=st.integers(-5, 3005), size=st.integers(-2, 600))
    def reserve_any_range(self, trunk_id: int, offset: int, size: int) -> None:
        self.both("reserve", trunk_id, offset, size)

    @rule(trunk_id=TRUNK_IDS)
    def remove_container(self, trunk_id: int) -> None:
        self.both("remove_container", trunk_id)

    @precondition(lambda self: self.naive.maps)
    @rule(data=st.data())
    def is_free(self, data: st.DataObject) -> None:
        trunk_id = data.draw(st.sampled_from(sorted(self.naive.maps)))
        capacity = len(self.naive.maps[trunk_id])
        offset = data.draw(st.integers(0, capacity - 1))
        size = data.draw(st.integers(1, capacity - offset))
        assert self.real.is_free(trunk_id, offset, size) == self.naive.is_free(trunk_id, offset, size)

    @invariant()
    def same_state(self) -> None:
        assert_same(self.real, self.naive)


TestFreeSpaceAgainstOracle = FreeSpaceMachine.TestCase
TestFreeSpaceAgainstOracle.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)


@pytest.mark.parametrize("seed", range(4))
def test_long_random_run_against_oracle(seed: int) -> None:
    """Many small files in a few containers: fill, churn and drain, compared at every step."""
    rng = random.Random(seed)
    real, naive = FreeSpace(32), NaiveFreeSpace(32)
    for trunk_id in (1, 2, 3):
        real.add_container(trunk_id, 8192)
        naive.add_container(trunk_id, 8192)
    live: list[Extent] = []
    for _ in range(1500):
        if live and rng.random() < 0.45:
            extent = live.pop(rng.randrange(len(live)))
            assert real.free(*extent) == naive.free(*extent)
        else:
            size = rng.choice([rng.randint(1, 40), rng.randint(40, 400), rng.randint(400, 3000)])
            got = real.allocate(size)
            assert got == naive.allocate(size)
            if got is not None:
                live.append(got)
        assert_same(real, naive)
    for extent in live:
        real.free(*extent)
    for trunk_id in (1, 2, 3):
        assert real.is_empty_container(trunk_id)
        real.remove_container(trunk_id)
    real._check()
    assert real.free_bytes == 0 and len(real) == 0 and real.containers() == {}


# ---- targeted --------------------------------------------------------------------------------------
def fresh(capacity: int = 1000, min_split: int = 16, containers: tuple[int, ...] = (1,)) -> FreeSpace:
    space = FreeSpace(min_split)
    for trunk_id in containers:
        space.add_container(trunk_id, capacity)
    space._check()
    return space


def test_error_is_value_error() -> None:
    assert issubclass(FreeSpaceError, ValueError)


def test_allocate_best_fit_by_size() -> None:
    space = fresh(1000, min_split=1)
    a = space.allocate(100)
    b = space.allocate(300)
    c = space.allocate(50)
    space.allocate(550)
    assert (a, b, c) == (Extent(1, 0, 100), Extent(1, 100, 300), Extent(1, 400, 50))
    space.free(1, 0, 100)  # hole of 100
    space.free(1, 400, 50)  # hole of 50
    space._check()
    # 40 fits both holes: the smaller one wins, though it lies further into the container.
    assert space.allocate(40) == Extent(1, 400, 40)
    assert space.allocate(60) == Extent(1, 0, 60)
    space._check()


def test_allocate_ties_go_to_lowest_container_then_offset() -> None:
    space = fresh(1000, min_split=1, containers=(3, 1, 2))
    assert space.allocate(10) == Extent(1, 0, 10)
    # Three equal holes: two in container 2, one in container 3; container 1 keeps a larger extent.
    for trunk_id in (2, 3):
        space.reserve(trunk_id, 0, 1000)
    space.free(2, 500, 100)
    space.free(2, 100, 100)
    space.free(3, 0, 100)
    space._check()
    assert space.allocate(100) == Extent(2, 100, 100)
    assert space.allocate(100) == Extent(2, 500, 100)
    assert space.allocate(100) == Extent(3, 0, 100)
    space._check()


def test_small_remainder_stays_with_the_allocation() -> None:
    space = fresh(1000, min_split=256)
    assert space.allocate(800) == Extent(1, 0, 1000)  # 200 left < 256: handed out whole
    assert space.free_bytes == 0 and space.allocate(1) is None
    space.free(1, 0, 1000)
    assert space.allocate(744) == Extent(1, 0, 744)  # exactly 256 left: split off
    assert space.extents(1) == [Extent(1, 744, 256)]
    space._check()


def test_allocate_none_when_nothing_fits() -> None:
    space = fresh(1000)
    assert space.allocate(1001) is None
    assert space.free_bytes == 1000
    space._check()
    empty = FreeSpace(16)
    assert empty.allocate(1) is None


@pytest.mark.parametrize(
    ("order", "merged"),
    [
        ("left", Extent(1, 100, 200)),
        ("right", Extent(1, 200, 200)),
        ("both", Extent(1, 100, 300)),
        ("none", Extent(1, 200, 100)),
    ],
)
def test_free_merges_neighbours(order: str, merged: Extent) -> None:
    space = fresh(1000, min_split=1)
    space.reserve(1, 0, 1000)
    if order in ("left", "both"):
        space.free(1, 100, 100)
    if order in ("right", "both"):
        space.free(1, 300, 100)
    assert space.free(1, 200, 100) == merged
    assert merged in space.extents(1)
    space._check()


def test_free_whole_container_back_to_one_extent_any_order() -> None:
    rng = random.Random(7)
    space = fresh(4096, min_split=1)
    pieces = []
    while space.free_bytes:
        got = space.allocate(min(rng.randint(1, 300), space.largest))
        assert got is not None
        pieces.append(got)
    assert space.free_bytes == 0
    rng.shuffle(pieces)
    for piece in pieces:
        space.free(*piece)
        space._check()
        taken = sum(e.size for e in space.allocated(1))
        assert taken + space.free_bytes == 4096
    assert space.extents(1) == [Extent(1, 0, 4096)]
    assert space.is_empty_container(1)


def test_add_container_not_free_then_free_pieces() -> None:
    space = FreeSpace(16)
    space.add_container(9, 500, free=False)
    assert space.extents(9) == [] and list(space.allocated(9)) == [Extent(9, 0, 500)]
    assert not space.is_empty_container(9)
    space.free(9, 200, 100)
    space.free(9, 0, 100)
    assert list(space.allocated(9)) == [Extent(9, 100, 100), Extent(9, 300, 200)]
    space.free(9, 100, 100)
    assert space.extents(9) == [Extent(9, 0, 300)]
    space._check()


@pytest.mark.parametrize(
    ("offset", "size"),
    [(100, 100), (150, 10), (50, 100), (150, 100), (0, 1000), (199, 1), (99, 2)],
)
def test_double_free_raises_and_changes_nothing(offset: int, size: int) -> None:
    space = fresh(1000, min_split=1)
    space.reserve(1, 0, 1000)
    space.free(1, 100, 100)
    before = (space.extents(1), space.free_bytes)
    with pytest.raises(FreeSpaceError):
        space.free(1, offset, size)
    space._check()
    assert (space.extents(1), space.free_bytes) == before


@pytest.mark.parametrize(("offset", "size"), [(-1, 10), (990, 11), (1000, 1), (10, 0), (10, -5)])
def test_free_outside_container_raises(offset: int, size: int) -> None:
    space = fresh(1000)
    space.reserve(1, 0, 1000)
    with pytest.raises(FreeSpaceError):
        space.free(1, offset, size)
    space._check()


def test_unknown_container_raises() -> None:
    space = fresh(1000)
    for call in (
        lambda: space.free(2, 0, 10),
        lambda: space.reserve(2, 0, 10),
        lambda: space.extents(2),
        lambda: list(space.allocated(2)),
        lambda: space.remove_container(2),
        lambda: space.is_empty_container(2),
        lambda: space.add_container(1, 10),
    ):
        with pytest.raises(FreeSpaceError):
            call()
    space._check()


def test_reserve_exact_range_keeps_small_remainders() -> None:
    space = fresh(1000, min_split=256)
    space.reserve(1, 10, 985)
    assert space.extents(1) == [Extent(1, 0, 10), Extent(1, 995, 5)]
    assert list(space.allocated(1)) == [Extent(1, 10, 985)]
    space._check()


@pytest.mark.parametrize(("offset", "size"), [(5, 10), (0, 1001), (-1, 2), (10, 0), (995, 6)])
def test_reserve_range_not_free_raises(offset: int, size: int) -> None:
    space = fresh(1000)
    space.reserve(1, 0, 10)
    with pytest.raises(FreeSpaceError):
        space.reserve(1, offset, size)
    space._check()
    assert space.extents(1) == [Extent(1, 10, 990)]


def test_is_free() -> None:
    space = fresh(1000, min_split=1)
    space.reserve(1, 0, 1000)
    space.free(1, 100, 50)
    assert space.is_free(1, 100)
    assert space.is_free(1, 149)
    assert not space.is_free(1, 99)
    assert not space.is_free(1, 150)
    assert space.is_free(1, 0, 101)  # any byte of the range
    assert space.is_free(1, 149, 500)
    assert not space.is_free(1, 0, 100)
    assert not space.is_free(1, 150, 850)
    # Allocating from the free extent (it may be held apart as the carve) is seen too.
    assert space.allocate(20) == Extent(1, 100, 20)
    assert not space.is_free(1, 100, 20)
    assert space.is_free(1, 100, 21)


def test_remove_container_only_when_wholly_free() -> None:
    space = fresh(1000, min_split=1, containers=(1, 2))
    got = space.allocate(10)
    assert got is not None and got.trunk_id == 1
    with pytest.raises(FreeSpaceError):
        space.remove_container(1)
    assert space.has_container(1)
    space.free(*got)
    space.remove_container(1)
    space.remove_container(2)
    assert space.containers() == {} and space.free_bytes == 0 and len(space) == 0
    space._check()
    space.add_container(1, 500)  # an id can be reused once removed
    assert space.extents(1) == [Extent(1, 0, 500)]


def test_sequential_fill_is_contiguous_and_drains_lowest_container_first() -> None:
    space = fresh(1 << 20, min_split=600, containers=(1, 2))
    position = 0
    while True:
        got = space.allocate(1000)
        assert got is not None
        if got.trunk_id != 1:
            break
        assert got.offset == position
        position += got.size
        space._check()
    assert position == 1 << 20  # the last slot took 1576 bytes (576 < min_split): nothing dropped
    assert got == Extent(2, 0, 1000)
    space._check()


def test_allocated_is_complement_of_free() -> None:
    space = fresh(100, min_split=1)
    space.reserve(1, 0, 10)
    space.reserve(1, 50, 10)
    space.reserve(1, 90, 10)
    assert space.extents(1) == [Extent(1, 10, 40), Extent(1, 60, 30)]
    assert list(space.allocated(1)) == [Extent(1, 0, 10), Extent(1, 50, 10), Extent(1, 90, 10)]


@pytest.mark.parametrize("size", [0, -1, -1000])
def test_allocate_non_positive_size_is_refused(size: int) -> None:
    space = fresh(1000)
    with pytest.raises(FreeSpaceError):
        space.allocate(size)
    space._check()
    assert space.free_bytes == 1000
    assert space.extents(1) == [Extent(1, 0, 1000)]


def test_refused_free_keeps_left_neighbour() -> None:
    space = fresh(7, min_split=1)
    space.reserve(1, 0, 7)
    space.free(1, 0, 2)
    space.free(1, 5, 2)
    # [2, 6) touches the free [0, 2) on its left and overlaps the free [5, 7): a double free.
    with pytest.raises(FreeSpaceError):
        space.free(1, 2, 4)
    space._check()
    assert space.extents(1) == [Extent(1, 0, 2), Extent(1, 5, 2)]
    assert space.free_bytes == 4
