"""SpaceGuard against a fake disk: the reserve is never eaten into."""

from __future__ import annotations

import errno

import pytest

from trunkstore import space
from trunkstore.config import StoreConfig
from trunkstore.errors import StoreFull
from trunkstore.space import SpaceGuard


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A clock that moves only when a test moves it, so that re-probing depends on bytes alone."""
    fake = FakeClock()
    monkeypatch.setattr(space, "time", fake)
    return fake


class FakeDisks:
    """File systems whose free space shrinks as bytes are written to them."""

    def __init__(self, **disks: tuple[int, int]) -> None:
        self.disks = {name: list(sizes) for name, sizes in disks.items()}
        self.probes = 0

    def probe(self, path: str) -> tuple[int, int]:
        self.probes += 1
        total, available = self.disks[path]
        return total, available

    def write(self, path: str, nbytes: int) -> None:
        self.disks[path][1] -= nbytes


def reserve(text: str):  # type: ignore[no-untyped-def]
    return StoreConfig(reserved_storage_space=text).reserved_bytes


def test_admit_until_the_reserve_then_store_full() -> None:
    disks = FakeDisks(a=(1000, 500))
    guard = SpaceGuard(["a"], reserve("10%"), probe=disks.probe)  # reserve 100: 400 usable
    guard.admit(0, 300)
    disks.write("a", 300)
    with pytest.raises(StoreFull) as info:
        guard.admit(0, 101)
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)
    guard.admit(0, 100)  # exactly up to the reserve
    disks.write("a", 100)
    with pytest.raises(StoreFull):
        guard.admit(0, 1)


def test_full_disk_refuses_even_small_writes() -> None:
    disks = FakeDisks(a=(1000, 0))
    guard = SpaceGuard(["a"], reserve("0%"), probe=disks.probe)
    with pytest.raises(StoreFull):
        guard.admit(0, 1)
    guard.admit(0, 0)


def test_absolute_reserve() -> None:
    disks = FakeDisks(a=(10 << 30, 3 << 30))
    guard = SpaceGuard(["a"], reserve("2G"), probe=disks.probe)
    guard.admit(0, 1 << 30)
    disks.write("a", 1 << 30)
    with pytest.raises(StoreFull):
        guard.admit(0, 1)


def test_space_freed_on_disk_is_seen_again() -> None:
    disks = FakeDisks(a=(1000, 150))
    guard = SpaceGuard(["a"], reserve("10%"), probe=disks.probe)
    with pytest.raises(StoreFull):
        guard.admit(0, 100)
    disks.write("a", -500)  # files deleted elsewhere
    guard.admit(0, 100)


def test_store_paths_are_independent() -> None:
    disks = FakeDisks(a=(1000, 100), b=(1000, 900))
    guard = SpaceGuard(["a", "b"], reserve("10%"), probe=disks.probe)
    with pytest.raises(StoreFull):
        guard.admit(0, 1)
    guard.admit(1, 700)
    assert guard.most_free() == 1
    assert guard.usage(0) == (1000, 100)
    assert guard.usage(1) == (1000, 900)


def test_probe_is_not_called_for_every_admit(clock: FakeClock) -> None:
    disks = FakeDisks(a=(1 << 40, 1 << 39))
    guard = SpaceGuard(["a"], reserve("10%"), probe=disks.probe)
    for _ in range(1000):
        guard.admit(0, 4096)
    assert disks.probes == 1
    clock.now += 10
    guard.admit(0, 4096)
    assert disks.probes == 2


def test_reprobe_after_a_quarter_of_the_headroom() -> None:
    disks = FakeDisks(a=(1000, 1000))
    guard = SpaceGuard(["a"], reserve("0%"), probe=disks.probe)
    for _ in range(2):
        guard.admit(0, 100)
        disks.write("a", 100)
    assert disks.probes == 1
    guard.admit(0, 100)  # 300 admitted since the probe > 1000 // 4: ask the file system again
    assert disks.probes == 2


def test_burst_of_admissions_cannot_pass_the_reserve() -> None:
    disks = FakeDisks(a=(1000, 500))
    guard = SpaceGuard(["a"], reserve("10%"), probe=disks.probe)  # 400 usable
    guard.admit(0, 400)  # admitted; the write has not reached the disk yet
    with pytest.raises(StoreFull):
        guard.admit(0, 300)  # 700 would then be written into 400 usable bytes
