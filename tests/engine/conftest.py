"""Fixtures and helpers shared by the store-level tests: opening stores in ``tmp_path``, checking them."""

from __future__ import annotations

import os
import tracemalloc
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trunkstore import Store
from trunkstore.reports import CheckReport
from trunkstore.space import SpaceGuard

MIB = 1 << 20

#: Small containers so that a few hundred files force container creation, splitting and merging.
TINY: dict[str, Any] = {
    "trunk_file_size": 4 * MIB,
    "slot_max_size": 256 * 1024,
    "slot_min_size": 256,
    "sync_mode": "none",
}


def assert_check(store: Store, *, fix: bool = False) -> CheckReport:
    """Run ``store.check()``, print every problem, and require that there are none."""
    report = store.check(fix=fix)
    for problem in report.problems:
        print("check problem:", problem)
    assert report.ok, report.problems
    return report


def walk_files(root: str | os.PathLike[str]) -> set[str]:
    """Every file (not directory) under ``root``, relative to it."""
    found = set()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def walk_all(root: str | os.PathLike[str]) -> set[str]:
    """Every file and directory under ``root``, relative to it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def leaf_dirs(store_dir: str | os.PathLike[str]) -> list[str]:
    """The ``data/HH/HH`` directories that exist under one store path."""
    data = Path(store_dir) / "data"
    if not data.is_dir():
        return []
    return sorted(f"{high.name}/{low.name}" for high in data.iterdir() if high.is_dir() for low in high.iterdir())


def container_files(root: str | os.PathLike[str]) -> list[str]:
    """Paths of the trunk containers (six-digit names) under a store root."""
    return sorted(
        os.path.join(dirpath, name)
        for dirpath, _dirnames, filenames in os.walk(root)
        for name in filenames
        if len(name) == 6 and name.isdigit()
    )


@pytest.fixture
def check_store() -> Callable[..., CheckReport]:
    """The :func:`assert_check` helper, for test modules (which do not import this file)."""
    return assert_check


@pytest.fixture
def fs() -> types.SimpleNamespace:
    """File-system helpers: ``walk_files``, ``walk_all``, ``leaf_dirs``, ``container_files``."""
    return types.SimpleNamespace(
        walk_files=walk_files, walk_all=walk_all, leaf_dirs=leaf_dirs, container_files=container_files
    )


def peak_memory(call: Callable[[], Any]) -> tuple[Any, int]:
    """``(call(), peak bytes allocated while it ran)``, as tracemalloc counts them (printed too)."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"tracemalloc peak {peak / MIB:.1f} MiB")
    return result, peak


@pytest.fixture
def measure_peak() -> Callable[[Callable[[], Any]], tuple[Any, int]]:
    """The :func:`peak_memory` helper: ``result, peak = measure_peak(lambda: ...)``."""
    return peak_memory


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def open_store(store_root: Path) -> Iterator[Callable[..., Store]]:
    """``open_store(**settings)`` opens a Store (at ``store_root`` unless ``root=`` is given); all are closed."""
    opened: list[Store] = []

    def make(root: str | os.PathLike[str] | None = None, **settings: Any) -> Store:
        store = Store(store_root if root is None else root, **settings)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    """A store with default settings except that writes are not synced (speed)."""
    return open_store(sync_mode="none")


@pytest.fixture
def tiny_store(open_store: Callable[..., Store]) -> Store:
    return open_store(**TINY)


class FakeDisk:
    """A disk-space probe for :class:`SpaceGuard` whose free space a test controls."""

    def __init__(self) -> None:
        self.available: dict[int, int] = {}
        self.total = 1 << 40
        self.dirs: list[str] = []

    def probe(self, path: str) -> tuple[int, int]:
        index = self.dirs.index(path)
        return self.total, self.available.get(index, self.total // 2)


@pytest.fixture
def fake_disk(monkeypatch: pytest.MonkeyPatch) -> FakeDisk:
    """Make every store opened afterwards ask ``FakeDisk.probe`` for free space."""
    import trunkstore.store

    disk = FakeDisk()

    def guard(store_dirs: list[str], reserved_bytes: Callable[[int], int]) -> SpaceGuard:
        disk.dirs = list(store_dirs)
        return SpaceGuard(store_dirs, reserved_bytes, probe=disk.probe)

    monkeypatch.setattr(trunkstore.store, "SpaceGuard", guard)
    return disk
