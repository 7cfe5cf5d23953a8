"""The verify module: check_store and scrub_store against on-disk state damaged behind the store's back."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trunkstore import CheckReport, FileNotFound, ScrubReport, Store, plainfiles
from trunkstore import journal as jn
from trunkstore import verify as vf
from trunkstore.checksum import crc32
from trunkstore.slot import HEADER_SIZE, TYPE_FILE, TYPE_SHARED, pack_header
from trunkstore.slotstarts import next_valid_slot
from trunkstore.trunk import TrunkContainer

MIB = 1 << 20
CAPACITY = 4 * MIB  # the tiny store's trunk_file_size
SLOT = 3024  # a 3000-byte file's slot in the tiny store: 3000 + 24, no alignment
PLAIN = 300_000  # above the tiny store's slot_max_size: a plain file
#: The tiny store's settings, for reopening one.
TINY = {"trunk_file_size": CAPACITY, "slot_max_size": 256 * 1024, "slot_min_size": 256, "sync_mode": "none"}


def poke(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def slot_image(data: bytes, alloc: int, kind: bytes = TYPE_FILE, crc: int | None = None) -> bytes:
    """A slot as it lies in a container: header, data, then zeros up to ``alloc``."""
    header = pack_header(kind, alloc, len(data), crc32(data) if crc is None else crc, 0, b"0000000")
    return (header + data).ljust(alloc, b"\0")


def three_files(store: Store) -> list[str]:
    """Three 3000-byte trunk files, in slots at 0, 3024 and 6048 of container 1."""
    return [store.put(bytes([i]) * 3000) for i in (1, 2, 3)]


def append_records(store: Store, *records: bytes) -> None:
    """Add records to the newest journal generation on disk, as if the store had written them."""
    directory = store._pool.journal_dir
    newest = max(name for name in os.listdir(directory) if name.endswith(".log"))
    with open(os.path.join(directory, newest), "ab") as handle:
        handle.write(b"".join(records))


def live_state(store: Store) -> dict[int, list[tuple[int, int]]]:
    with store._pool.quiesced():
        return store._pool.free_extents_by_container()


# ---- finding the next valid slot ------------------------------------------------------------------------
@pytest.fixture
def container(tmp_path: Path) -> Iterator[TrunkContainer]:
    made = TrunkContainer.create(str(tmp_path / "000001"), 1, 0, 0, 0, 64 * 1024)
    yield made
    made.close()


def test_next_valid_slot_skips_junk_to_a_slot_whose_crc_matches(container: TrunkContainer) -> None:
    container.write(0, b"junk with an F in it")
    container.write(300, slot_image(b"stale", 256, crc=12345))  # header-like, but the data fails its crc
    container.write(600, slot_image(b"valid", 256))
    assert next_valid_slot(container, 0, 4096) == 600
    assert next_valid_slot(container, 300, 4096) == 600


def test_next_valid_slot_finds_shared_slots(container: TrunkContainer) -> None:
    container.write(512, slot_image(b"shared", 256, kind=TYPE_SHARED))
    assert next_valid_slot(container, 0, 4096) == 512


def test_next_valid_slot_gives_the_end_when_no_slot_fits(container: TrunkContainer) -> None:
    container.write(600, slot_image(b"valid", 256))
    assert next_valid_slot(container, 0, 600 + 255) == 600 + 255  # the slot reaches past the end
    assert next_valid_slot(container, 600, 4096) == 4096  # the search starts after ``start``
    container.write(1000, slot_image(b"x" * 20, 30))  # alloc 30 cannot hold 24 + 20 bytes
    assert next_valid_slot(container, 700, 4096) == 4096


# ---- the journal on disk ------------------------------------------------------------------------------
def test_journal_state_is_the_free_space_the_journal_describes(tiny_store: Store) -> None:
    ids = three_files(tiny_store)
    tiny_store.delete(ids[1])
    expected = {1: [(SLOT, SLOT), (3 * SLOT, CAPACITY - 3 * SLOT)]}
    assert vf._journal_state(tiny_store._pool) == expected == live_state(tiny_store)


def test_journal_state_starts_from_the_snapshot(open_store: Callable[..., Store]) -> None:
    store = open_store(**TINY)
    three_files(store)
    store.close()  # writes a snapshot and starts a new generation
    store = open_store(**TINY)
    store.put(b"x" * 3000)
    snapshot, records = jn.read_journal(store._pool.journal_dir)
    assert snapshot is not None and [r.kind for r in records] == [jn.ALLOC]
    assert vf._journal_state(store._pool) == {1: [(4 * SLOT, CAPACITY - 4 * SLOT)]} == live_state(store)


def test_journal_state_drops_removed_containers(tiny_store: Store) -> None:
    # 16 slots of 250,024 bytes fill container 1; the 17th file opens container 2.
    ids = [tiny_store.put(bytes([i]) * 250_000) for i in range(17)]
    assert sorted(vf._journal_state(tiny_store._pool)) == [1, 2]
    tiny_store.delete(ids[-1])  # container 2 is empty and not the last one: removed
    assert sorted(vf._journal_state(tiny_store._pool)) == [1]
    assert vf._journal_state(tiny_store._pool) == live_state(tiny_store)


# ---- check_store --------------------------------------------------------------------------------------
def test_a_sound_store_checks_clean_and_counts_its_slots(tiny_store: Store) -> None:
    three_files(tiny_store)
    tiny_store.put(b"p" * PLAIN)  # a plain file has no slot
    tiny_store.put_appender(b"a")
    assert vf.check_store(tiny_store, tiny_store._pool, fix=False) == CheckReport([], [], 3)


@pytest.mark.parametrize("damaged", [0, 1, 2])
def test_a_wiped_slot_header_is_reported_and_freed_by_fix(
    open_store: Callable[..., Store], tiny_store: Store, damaged: int
) -> None:
    ids = three_files(tiny_store)
    path, data_offset, _size = tiny_store.locate(ids[damaged])
    poke(path, data_offset - HEADER_SIZE, bytes(HEADER_SIZE))
    start, end = damaged * SLOT, (damaged + 1) * SLOT
    problems = [
        "container 1: the known slot starts differ from the slot headers",
        f"trunk 1: bytes {start}..{end} are allocated but hold no valid slot",
    ]
    assert vf.check_store(tiny_store, tiny_store._pool, fix=False) == CheckReport(problems, [], 2)
    free_before = tiny_store.stats().trunk_free_bytes
    repaired = vf.check_store(tiny_store, tiny_store._pool, fix=True)
    assert repaired == CheckReport(problems, [f"trunk 1: freed {SLOT} leaked bytes at {start}"], 2)
    assert tiny_store.stats().trunk_free_bytes == free_before + SLOT
    assert vf.check_store(tiny_store, tiny_store._pool, fix=False) == CheckReport([], [], 2)
    kept = [(file_id, bytes([i + 1]) * 3000) for i, file_id in enumerate(ids) if i != damaged]
    assert [tiny_store.get(file_id) for file_id, _ in kept] == [data for _, data in kept]
    with pytest.raises(FileNotFound):
        tiny_store.get(ids[damaged])
    root = tiny_store.root
    tiny_store.close()
    reopened = open_store(root=root, **TINY)
    assert vf.check_store(reopened, reopened._pool, fix=False) == CheckReport([], [], 2)
    assert [reopened.get(file_id) for file_id, _ in kept] == [data for _, data in kept]


def test_damaged_data_under_an_intact_header_is_not_checks_business(tiny_store: Store) -> None:
    ids = three_files(tiny_store)
    path, data_offset, _size = tiny_store.locate(ids[1])
    poke(path, data_offset + 10, b"X")
    assert vf.check_store(tiny_store, tiny_store._pool, fix=True) == CheckReport([], [], 3)


@pytest.mark.parametrize(
    ("record", "containers"),
    [
        (jn.encode_record(jn.FREE, 1, SLOT, SLOT), [1]),  # a file freed that the store holds
        (jn.encode_record(jn.NEW_CONTAINER, 7, 0, CAPACITY), [7]),  # a container the store does not have
    ],
)
def test_a_journal_that_disagrees_is_reported_and_not_fixed(
    tiny_store: Store, record: bytes, containers: list[int]
) -> None:
    three_files(tiny_store)
    append_records(tiny_store, record)
    problem = f"journal on disk disagrees with the live allocation state (containers {containers})"
    assert vf.check_store(tiny_store, tiny_store._pool, fix=True) == CheckReport([problem], [], 3)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (jn.encode_record(jn.ALLOC, 42, 0, 256), "42"),  # a container the journal never created
        (jn.encode_record(jn.ALLOC, 1, 0, SLOT), f"range 1:0+{SLOT} is not free"),  # allocated twice
        (jn.encode_record(jn.FREE, 1, 3 * SLOT, 256), f"range 1:{3 * SLOT}+256 is already free"),
    ],
)
def test_a_journal_that_cannot_be_replayed_is_reported(tiny_store: Store, record: bytes, reason: str) -> None:
    three_files(tiny_store)
    append_records(tiny_store, record)
    report = vf.check_store(tiny_store, tiny_store._pool, fix=True)
    assert report == CheckReport([f"journal cannot be replayed: {reason}"], [], 3)


def test_a_damaged_snapshot_is_reported(open_store: Callable[..., Store]) -> None:
    store = open_store(**TINY)
    three_files(store)
    store.close()
    store = open_store(**TINY)
    snapshot = os.path.join(store._pool.journal_dir, "snapshot")
    poke(snapshot, 20, b"\xff")
    report = vf.check_store(store, store._pool, fix=False)
    assert report == CheckReport(
        ["journal cannot be replayed: allocation snapshot is damaged (checksum mismatch)"], [], 3
    )


def test_a_missing_container_file_is_reported(tiny_store: Store) -> None:
    ids = three_files(tiny_store)
    path = tiny_store.locate(ids[0])[0]
    os.unlink(path)
    report = vf.check_store(tiny_store, tiny_store._pool, fix=True)
    assert report == CheckReport([f"container 1 file {path} is missing"], [], 3)


# ---- scrub_store --------------------------------------------------------------------------------------
def test_scrub_reads_trunk_and_normal_files_only(tiny_store: Store) -> None:
    three_files(tiny_store)
    plain = tiny_store.put(b"p" * PLAIN)
    appender = tiny_store.put_appender(b"appender bytes")
    tiny_store.put_slave(plain, "_s", b"slave bytes")
    # A stray file that is no file ID, in a data directory: not the store's, passed over.
    with open(os.path.join(os.path.dirname(tiny_store.locate(appender)[0]), "notes.txt"), "wb") as handle:
        handle.write(b"not a file of the store")
    assert vf.scrub_store(tiny_store, tiny_store._pool) == ScrubReport(4, 3 * 3000 + PLAIN, [])


def test_scrub_names_each_corrupt_file(tiny_store: Store) -> None:
    ids = three_files(tiny_store)
    plain = tiny_store.put(b"p" * PLAIN)
    for file_id in (ids[2], plain):
        path, offset, _size = tiny_store.locate(file_id)
        poke(path, offset + 100, b"X")
    report = vf.scrub_store(tiny_store, tiny_store._pool)
    assert (report.files_checked, report.bytes_checked, len(report.corrupt)) == (4, 3 * 3000 + PLAIN, 2)
    assert report.corrupt[0] == f"trunk 1 slot at {2 * SLOT} (3000 bytes)"
    assert report.corrupt[1] == f"{plain}: stored bytes fail their crc32 check"


def test_scrub_names_plain_files_of_the_second_store_path(open_store: Callable[..., Store]) -> None:
    store = open_store(store_path_count=2, slot_max_size=64 * 1024, sync_mode="none")
    first, second = store.put(b"1" * PLAIN), store.put(b"2" * PLAIN)  # store paths take turns
    assert second.startswith("group1/M01/")
    path, _offset, _size = store.locate(second)
    poke(path, 0, b"X")
    report = vf.scrub_store(store, store._pool)
    assert (report.files_checked, report.bytes_checked) == (2, 2 * PLAIN)
    assert [entry.split(": ", 1)[0] for entry in report.corrupt] == [second]
    assert store.get(first) == b"1" * PLAIN


def test_scrub_reads_each_inode_once_and_names_every_id_of_a_damaged_one(open_store: Callable[..., Store]) -> None:
    store = open_store(dedup=True, **TINY)
    first, second = store.put(b"d" * PLAIN), store.put(b"d" * PLAIN)  # one inode, two names
    other = store.put(b"o" * PLAIN)
    assert vf.scrub_store(store, store._pool) == ScrubReport(3, 2 * PLAIN, [])
    poke(store.locate(second)[0], 100, b"X")
    report = vf.scrub_store(store, store._pool)
    assert sorted(report.corrupt) == sorted(f"{f}: stored bytes fail their crc32 check" for f in (first, second))
    assert (report.files_checked, report.bytes_checked) == (3, 2 * PLAIN)
    assert store.get(other) == b"o" * PLAIN


@pytest.mark.parametrize("on_disk", [PLAIN - 1, PLAIN + 1, 0])
def test_scrub_reports_a_normal_file_of_another_size_than_its_id(tiny_store: Store, on_disk: int) -> None:
    plain = tiny_store.put(b"p" * PLAIN)
    os.truncate(tiny_store.locate(plain)[0], on_disk)
    report = vf.scrub_store(tiny_store, tiny_store._pool)
    assert report == ScrubReport(1, on_disk, [f"{plain}: {on_disk} bytes on disk, its ID says {PLAIN}"])


def test_scrub_checks_crcs_even_when_reads_do_not(open_store: Callable[..., Store]) -> None:
    store = open_store(verify_crc_on_read=False, **TINY)
    plain = store.put(b"p" * PLAIN)
    poke(store.locate(plain)[0], 0, b"X")
    report = vf.scrub_store(store, store._pool)
    assert report.corrupt == [f"{plain}: stored bytes fail their crc32 check"]


def test_scrub_reports_a_plain_file_it_cannot_read(tiny_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tiny_store.put(b"p" * PLAIN)

    def unreadable(path: str) -> tuple[int, int]:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(plainfiles, "crc32_of", unreadable)  # a failing disk cannot be made real here
    report = vf.scrub_store(tiny_store, tiny_store._pool)
    assert report == ScrubReport(1, 0, [f"{plain}: cannot be read: {os.strerror(errno.EIO)}"])
