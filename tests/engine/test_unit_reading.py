"""The reading module: slot checks a trunk ID must pass, reads off the fast path, read_into, locate and stat."""

from __future__ import annotations

import dataclasses
import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from trunkstore import CorruptData, FileKind, FileNotFound, FileStat, Store, parse_file_id
from trunkstore import reading as rd
from trunkstore.fileid import FileId
from trunkstore.plainfiles import CHUNK
from trunkstore.slot import HEADER, HEADER_SIZE

PLAIN = 300_000  # above the tiny store's slot_max_size: a plain file


def poke(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def moved(parsed: FileId, **trunk: int) -> FileId:
    """``parsed`` with fields of its TrunkLocation replaced (its name, and so ``str()``, is unchanged)."""
    assert parsed.trunk is not None
    return dataclasses.replace(parsed, trunk=dataclasses.replace(parsed.trunk, **trunk))


# ---- what a trunk ID must match -----------------------------------------------------------------------
def test_expected_header_is_the_one_written_before_the_data(tiny_store: Store) -> None:
    file_id = tiny_store.put(b"payload", "jpg")
    parsed = parse_file_id(file_id)
    path, offset, _size = tiny_store.locate(file_id)
    with open(path, "rb") as handle:
        handle.seek(offset - HEADER_SIZE)
        on_disk = handle.read(HEADER_SIZE)
    assert rd.expected_header(parsed) == on_disk
    assert parsed.trunk is not None
    assert HEADER.unpack(on_disk) == (
        b"F",
        parsed.trunk.alloc_size,
        7,
        zlib.crc32(b"payload"),
        parsed.timestamp,
        parsed.tail.encode(),
    )


def test_container_must_be_in_the_directory_the_id_names(tiny_store: Store) -> None:
    parsed = parse_file_id(tiny_store.put(b"x"))
    rd.check_container_dir(tiny_store, parsed)  # the right directory: no error
    for other in (dataclasses.replace(parsed, sub_low=parsed.sub_low + 1), moved(parsed, trunk_id=99)):
        with pytest.raises(FileNotFound, match="no file"):
            rd.check_container_dir(tiny_store, other)


def test_check_slot_gives_the_size_of_the_file_that_is_there(tiny_store: Store) -> None:
    first = parse_file_id(tiny_store.put(b"a" * 100))
    second = parse_file_id(tiny_store.put(b"b" * 100))
    assert rd.check_slot(tiny_store, first) == 100
    assert first.trunk is not None and second.trunk is not None
    wrong = [
        moved(first, offset=second.trunk.offset),  # another file's slot: its header differs
        moved(first, offset=first.trunk.offset + HEADER_SIZE),  # inside the file: no slot starts there
        moved(first, alloc_size=first.trunk.alloc_size + 1),
        dataclasses.replace(first, timestamp=first.timestamp + 1),
    ]
    for parsed in wrong:
        with pytest.raises(FileNotFound):
            rd.check_slot(tiny_store, parsed)


def test_a_shared_slot_answers_only_for_its_registered_holders(open_store: Callable[..., Store]) -> None:
    store = open_store(dedup=True, sync_mode="none")
    holders = [parse_file_id(store.put(b"same" * 50, ext)) for ext in ("a", "b")]
    trunk = holders[0].trunk
    assert trunk is not None
    on_disk = store._pool.slot_header(trunk.trunk_id, trunk.offset)
    assert on_disk[:1] == b"S"
    assert [rd.shared_slot_matches(store, holder, on_disk) for holder in holders] == [True, True]
    assert [rd.check_slot(store, holder) for holder in holders] == [200, 200]
    stranger = dataclasses.replace(holders[0], name=holders[0].name[:-1] + "9")  # same fields, not registered
    assert rd.shared_slot_matches(store, stranger, on_disk) is False
    resized = dataclasses.replace(holders[0], size_field=holders[0].size_field + 1)
    assert rd.shared_slot_matches(store, resized, on_disk) is False
    with pytest.raises(FileNotFound):
        rd.check_slot(store, stranger)


# ---- read ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("verify", [True, False])
def test_a_trunk_range_is_checked_against_the_whole_files_crc(open_store: Callable[..., Store], verify: bool) -> None:
    store = open_store(verify_crc_on_read=verify, sync_mode="none")
    file_id = store.put(b"0123456789" * 10)
    path, offset, _size = store.locate(file_id)
    poke(path, offset + 90, b"X")  # far from the range read below
    if verify:
        with pytest.raises(CorruptData, match="fail their crc32 check"):
            rd.read(store, file_id, 0, 5)
    else:
        assert rd.read(store, file_id, 0, 5) == b"01234"
        assert rd.read(store, file_id, 88, None) == b"89X123456789"


def test_a_plain_file_is_crc_checked_only_when_read_whole(tiny_store: Store) -> None:
    data = b"p" * PLAIN
    file_id = tiny_store.put(data)
    path, _offset, _size = tiny_store.locate(file_id)
    poke(path, 10, b"X")
    with pytest.raises(CorruptData):
        rd.read(tiny_store, file_id, 0, None)
    with pytest.raises(CorruptData):
        rd.read(tiny_store, file_id, 0, PLAIN + 5)  # clipped to the whole file
    assert rd.read(tiny_store, file_id, 5, 10) == b"ppppp" + b"X" + b"pppp"


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("on_disk", [PLAIN - 1000, PLAIN + 3])
def test_a_normal_plain_file_of_another_size_than_its_id_is_corrupt(
    open_store: Callable[..., Store], verify: bool, on_disk: int
) -> None:
    # The size is checked on every read, whatever verify_crc_on_read says: fstat has given it already.
    store = open_store(verify_crc_on_read=verify, slot_max_size=64 * 1024, sync_mode="none")
    file_id = store.put(b"p" * PLAIN)
    os.truncate(store.locate(file_id)[0], on_disk)
    message = f"{file_id}: {on_disk} bytes on disk, its ID says {PLAIN}"
    for offset, length in ((0, None), (10, 5)):
        with pytest.raises(CorruptData, match=message):
            rd.read(store, file_id, offset, length)
        out = io.BytesIO()
        with pytest.raises(CorruptData, match=message):
            rd.read_into(store, file_id, out, offset, length)
        assert out.getvalue() == b""  # found before a byte is written


def test_appender_files_have_no_crc_to_check(tiny_store: Store) -> None:
    file_id = tiny_store.put_appender(b"log line")
    path, _offset, _size = tiny_store.locate(file_id)
    poke(path, 0, b"L")
    assert rd.read(tiny_store, file_id, 0, None) == b"Log line"


def test_read_of_a_missing_plain_file_is_not_found(tiny_store: Store) -> None:
    file_id = tiny_store.put(b"p" * PLAIN)
    os.unlink(tiny_store.locate(file_id)[0])
    with pytest.raises(FileNotFound):
        rd.read(tiny_store, file_id, 0, None)


# ---- read_into ----------------------------------------------------------------------------------------
def test_read_into_streams_a_plain_range_and_counts_one_download(tiny_store: Store) -> None:
    data = os.urandom(PLAIN)
    file_id = tiny_store.put(data)
    out = io.BytesIO()
    assert rd.read_into(tiny_store, file_id, out, 1000, 5000) == 5000
    assert out.getvalue() == data[1000:6000]
    counters = tiny_store.counters.snapshot()
    assert (counters["download_total"], counters["download_ok"], counters["download_bytes"]) == (1, 1, 5000)


def test_read_into_past_the_end_writes_nothing(tiny_store: Store) -> None:
    file_id = tiny_store.put(b"p" * PLAIN)
    out = io.BytesIO()
    assert rd.read_into(tiny_store, file_id, out, PLAIN + 1, None) == 0
    assert out.getvalue() == b""


def test_read_into_of_a_trunk_file_is_a_checked_get(tiny_store: Store) -> None:
    file_id = tiny_store.put(b"0123456789")
    out = io.BytesIO()
    assert rd.read_into(tiny_store, file_id, out, 3, 4) == 4
    assert out.getvalue() == b"3456"
    counters = tiny_store.counters.snapshot()
    assert (counters["download_total"], counters["download_ok"], counters["download_bytes"]) == (1, 1, 4)
    tiny_store.delete(file_id)
    with pytest.raises(FileNotFound):
        rd.read_into(tiny_store, file_id, out, 0, None)
    assert out.getvalue() == b"3456"


def test_read_into_checks_a_whole_plain_files_crc_after_writing_it(tiny_store: Store) -> None:
    data = os.urandom(3 * CHUNK + 5)  # several chunks: the crc is carried from one to the next
    file_id = tiny_store.put(data)
    path = tiny_store.locate(file_id)[0]
    out = io.BytesIO()
    assert rd.read_into(tiny_store, file_id, out, 0, None) == len(data)
    assert out.getvalue() == data
    poke(path, 2 * CHUNK + 1, bytes([data[2 * CHUNK + 1] ^ 1]))
    out = io.BytesIO()
    with pytest.raises(CorruptData, match=f"{file_id}: stored bytes fail their crc32 check"):
        rd.read_into(tiny_store, file_id, out, 0, len(data) + 9)  # clipped to the whole file
    assert len(out.getvalue()) == len(data)  # written already when the check fails at the end
    counters = tiny_store.counters.snapshot()
    assert (counters["download_total"], counters["download_ok"]) == (2, 1)
    out = io.BytesIO()
    assert rd.read_into(tiny_store, file_id, out, 1, None) == len(data) - 1  # a range has no crc to check
    assert out.getvalue()[2 * CHUNK] == data[2 * CHUNK + 1] ^ 1


def test_read_into_does_not_check_the_crc_when_reads_are_not_verified(open_store: Callable[..., Store]) -> None:
    store = open_store(verify_crc_on_read=False, slot_max_size=64 * 1024, sync_mode="none")
    file_id = store.put(b"p" * PLAIN)
    poke(store.locate(file_id)[0], 7, b"X")
    out = io.BytesIO()
    assert rd.read_into(store, file_id, out, 0, None) == PLAIN
    assert out.getvalue()[7:8] == b"X"


def test_read_into_of_a_missing_plain_file_counts_the_attempt_only(tiny_store: Store) -> None:
    file_id = tiny_store.put(b"p" * PLAIN)
    os.unlink(tiny_store.locate(file_id)[0])
    out = io.BytesIO()
    with pytest.raises(FileNotFound):
        rd.read_into(tiny_store, file_id, out, 0, None)
    counters = tiny_store.counters.snapshot()
    assert (counters["download_total"], counters["download_ok"]) == (1, 0)


# ---- locate and stat ----------------------------------------------------------------------------------
def test_locate_gives_the_container_and_the_offset_after_the_header(tiny_store: Store) -> None:
    tiny_store.put(b"first")
    file_id = tiny_store.put(b"second")
    trunk = parse_file_id(file_id).trunk
    assert trunk is not None
    container = tiny_store._pool.containers[trunk.trunk_id]
    assert rd.locate(tiny_store, file_id) == (container.path, trunk.offset + HEADER_SIZE, 6)


def test_locate_of_a_plain_file_is_its_whole_file(tiny_store: Store) -> None:
    file_id = tiny_store.put(b"p" * PLAIN)
    path = tiny_store.layout.file_path(parse_file_id(file_id))
    assert rd.locate(tiny_store, file_id) == (path, 0, PLAIN)
    os.unlink(path)
    with pytest.raises(FileNotFound):
        rd.locate(tiny_store, file_id)


def test_stat_of_a_trunk_file_reports_every_field(open_store: Callable[..., Store]) -> None:
    store = open_store(storage_ip="10.1.2.3", sync_mode="none")
    file_id = store.put(b"stat me", "txt")
    parsed = parse_file_id(file_id)
    assert rd.stat(store, file_id) == FileStat(
        file_id=file_id,
        size=7,
        crc32=zlib.crc32(b"stat me"),
        create_time=parsed.timestamp,
        kind=FileKind.TRUNK,
        source_ip="10.1.2.3",
        source=0x0A010203,
    )


def test_a_hard_link_is_a_link_only_when_dedup_registered_it(
    tiny_store: Store, open_store: Callable[..., Store], tmp_path: Path
) -> None:
    # A second name made behind the store's back does not make a normal file a dedup link.
    file_id = tiny_store.put(b"p" * PLAIN)
    path = tiny_store.locate(file_id)[0]
    os.link(path, path + ".extra")
    assert os.stat(path).st_nlink == 2
    assert rd.stat(tiny_store, file_id).kind == FileKind.NORMAL
    dedup = open_store(root=tmp_path / "dedup", dedup=True, slot_max_size=64 * 1024, sync_mode="none")
    first, second = dedup.put(b"d" * PLAIN), dedup.put(b"d" * PLAIN)
    assert [rd.stat(dedup, f).kind for f in (first, second)] == [FileKind.LINK, FileKind.LINK]
    dedup.delete(first)
    assert rd.stat(dedup, second).kind == FileKind.NORMAL


def test_stat_of_a_missing_plain_file_is_not_found(tiny_store: Store) -> None:
    file_id = tiny_store.put_appender(b"a")
    os.unlink(tiny_store.locate(file_id)[0])
    with pytest.raises(FileNotFound, match="no file"):
        rd.stat(tiny_store, file_id)
