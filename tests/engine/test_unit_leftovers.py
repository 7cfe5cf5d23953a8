"""The leftovers module: what a change cut short leaves besides the files, reported and removed by check().

Each leftover is made the way a crash makes it: the change is stopped right after one of its steps (an
exception nothing catches stands for the process dying there), and the store is closed and reopened.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from trunkstore import FileNotFound, Store, leftovers, parse_file_id, verify
from trunkstore import appender as ap

MIB = 1 << 20
SETTINGS: dict[str, Any] = {"slot_max_size": 64 * 1024, "trunk_file_size": 4 * MIB, "sync_mode": "always"}


class Crash(BaseException):
    """Stands for the process dying at the point where it is raised."""


@contextmanager
def crash_in(
    target: Any, name: str, *, after: bool = True, when: Callable[..., bool] = lambda *a: True
) -> Iterator[None]:
    """Make ``target.name`` raise :class:`Crash` (after doing its work if ``after``) when ``when(*args)``."""
    original = getattr(target, name)

    def crashing(*args: Any, **kwargs: Any) -> Any:
        if not when(*args):
            return original(*args, **kwargs)
        if after:
            original(*args, **kwargs)
        raise Crash(name)

    setattr(target, name, crashing)
    try:
        with pytest.raises(Crash):
            yield
    finally:
        setattr(target, name, original)


class OSView:
    """The appender module's view of ``os``: the real module, but for what a test sets on it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.fixture
def appender_os(monkeypatch: pytest.MonkeyPatch) -> OSView:
    view = OSView()
    monkeypatch.setattr(ap, "os", view)
    return view


@pytest.fixture
def reopen(open_store: Callable[..., Store], store_root: Path) -> Callable[[Store], Store]:
    def again(store: Store) -> Store:
        store.close()
        return open_store(root=store_root, **SETTINGS)

    return again


def assert_fixed_for_good(store: Store, expected: list[str]) -> None:
    """``check()`` lists exactly the ``expected`` leftovers and no problem; ``check(fix=True)`` removes them."""
    report = store.check()
    assert report.ok, report.problems
    assert len(report.leftovers) == len(expected), report.leftovers
    for leftover, fragment in zip(sorted(report.leftovers), sorted(expected), strict=True):
        assert fragment in leftover, report.leftovers
    assert store.check().leftovers == report.leftovers  # reporting changes nothing
    fixed = store.check(fix=True)
    assert len(fixed.fixed) == len(expected), fixed.fixed
    after = store.check()
    assert (after.problems, after.leftovers, after.fixed) == ([], [], [])


def test_a_clean_store_with_every_kind_of_file_has_no_leftovers(open_store: Callable[..., Store]) -> None:
    store = open_store(dedup=True, **SETTINGS)
    small = store.put(b"same")
    store.put(b"same")  # shares the slot
    large = store.put(b"L" * (80 * 1024))
    store.put(b"L" * (80 * 1024))  # a second name of the same inode, registered as a holder
    appender = store.put_appender(b"abc")
    store.set_meta(small, {"k": "v"})
    store.set_meta(large, {"k": "v"})
    store.set_meta(appender, {"k": "v"})
    assert os.stat(store.layout.file_path(parse_file_id(large))).st_nlink == 2
    report = store.check(fix=True)
    assert report.ok and not report.fixed and not report.leftovers, report


def test_metadata_of_a_file_whose_delete_was_cut_short(
    open_store: Callable[..., Store], reopen: Callable[[Store], Store]
) -> None:
    store = open_store(**SETTINGS)
    kept = store.put(b"kept")
    gone = store.put(b"gone")
    store.set_meta(kept, {"k": "1"})
    store.set_meta(gone, {"k": "2"})
    with crash_in(store._meta, "delete_meta", after=False):
        store.delete(gone)
    store = reopen(store)
    assert not store.exists(gone) and store.stats().metadata_entries == 2
    assert_fixed_for_good(store, [f"{gone}: metadata of a file that does not exist"])
    assert store.stats().metadata_entries == 1
    assert store.get_meta(kept) == {"k": "1"}


def test_a_holder_row_of_a_file_whose_delete_was_cut_short(
    open_store: Callable[..., Store], reopen: Callable[[Store], Store]
) -> None:
    store = open_store(dedup=True, **SETTINGS)
    gone = store.put(b"only copy")
    with crash_in(store._meta, "drop_holder", after=False):
        store.delete(gone)
    store = reopen(store)
    assert not store.exists(gone) and store.stats().dedup_holders == 1
    assert_fixed_for_good(store, [f"{gone}: registered as a dedup holder but does not exist"])
    assert store.stats().dedup_holders == 0
    again = store.put(b"only copy")  # the content is stored afresh, not shared with a file that is gone
    assert store.get(again) == b"only copy"


def test_a_shared_slot_whose_last_holder_was_dropped_before_the_slot_was_freed(
    open_store: Callable[..., Store], reopen: Callable[[Store], Store]
) -> None:
    store = open_store(dedup=True, **SETTINGS)
    store.put(b"keeps the container")
    first, second = store.put(b"twice"), store.put(b"twice")
    trunk = parse_file_id(first).trunk
    assert trunk is not None
    store.delete(first)
    free_before = store.stats().trunk_free_bytes
    # The last holder's row goes, then the slot is freed with its shared header as the expected one.
    with crash_in(store._pool, "free", after=False, when=lambda *args: args[3] is not None and args[3][:1] == b"S"):
        store.delete(second)
    store = reopen(store)
    with pytest.raises(FileNotFound):
        store.get(second)
    assert_fixed_for_good(store, [f"trunk {trunk.trunk_id} slot at {trunk.offset}: shared, but no holder names it"])
    assert store.stats().trunk_free_bytes == free_before + trunk.alloc_size


@pytest.mark.parametrize("crash_after", ["link", "set_meta"])
def test_a_second_name_left_by_a_regenerate_cut_short(
    open_store: Callable[..., Store], reopen: Callable[[Store], Store], appender_os: OSView, crash_after: str
) -> None:
    store = open_store(**SETTINGS)
    file_id = store.put_appender(b"abc")
    store.set_meta(file_id, {"owner": "alice"})
    directory = os.path.dirname(store.layout.file_path(parse_file_id(file_id)))
    target, name = (appender_os, "link") if crash_after == "link" else (store._meta, "set_meta")
    with crash_in(target, name):
        ap.regenerate_name(store, file_id)
    store = reopen(store)
    (second,) = [n for n in os.listdir(directory) if n != os.path.basename(file_id)]
    second_id = f"{file_id.rsplit('/', 1)[0]}/{second}"
    assert store.get(second_id) == b"abc"  # a valid ID nobody was given
    assert store.stats().metadata_entries == (2 if crash_after == "set_meta" else 1)
    assert_fixed_for_good(store, [f"{second_id}: a second name of appender file {file_id} (an interrupted regenerate)"])
    assert os.listdir(directory) == [os.path.basename(file_id)]
    assert store.get(file_id) == b"abc" and store.get_meta(file_id) == {"owner": "alice"}
    assert store.stats().metadata_entries == 1
    store.append(file_id, b"def")  # still an appender file
    assert store.get(file_id) == b"abcdef"


def test_removing_a_second_name_looks_again_under_the_appender_lock(
    open_store: Callable[..., Store], appender_os: OSView
) -> None:
    """A regenerate that finishes between the scan and the fix leaves its new ID alone."""
    store = open_store(**SETTINGS)
    file_id = store.put_appender(b"abc")
    with crash_in(appender_os, "link"):
        ap.regenerate_name(store, file_id)
    files = list(verify.plain_files(store))
    # The appender's own name goes (the regenerate's switch) after the files were listed.
    os.unlink(store.layout.file_path(parse_file_id(file_id)))
    findings = leftovers.check_leftovers(store, files, [], fix=True)
    assert findings.found and not findings.removed
    (survivor,) = [f for f in files if f[0] != file_id]
    assert store.get(survivor[0]) == b"abc"
