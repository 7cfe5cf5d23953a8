"""Store-level behaviour of ordinary files: round trips, IDs, ranges, stat, delete, layout, lifecycle."""

from __future__ import annotations

import errno
import io
import os
import random
import re
import time
import zlib
from pathlib import Path

import pytest

from trunkstore import (
    CorruptData,
    FileKind,
    FileNotFound,
    FormatMismatch,
    InvalidArgument,
    Store,
    StoreClosed,
    StoreConfig,
    TrunkstoreError,
    parse_file_id,
)

MIB = 1 << 20
ID_RE = re.compile(r"group1/M[0-9A-F]{2}/[0-9A-F]{2}/[0-9A-F]{2}/[A-Za-z0-9_-]{27}([A-Za-z0-9_-]{16})?[0-9]*\.?\w*")


def remote_len(file_id: str) -> int:
    return len(file_id.split("/", 1)[1])


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# ---- round trips and IDs --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 232, 233, 4096, 64 * 1024])
@pytest.mark.parametrize("ext", ["", "txt", "abcdef"])
def test_small_files_round_trip_as_trunk_files(store, check_store, size, ext):
    data = blob(size, size)
    file_id = store.put(data, ext)
    parsed = parse_file_id(file_id)
    assert ID_RE.fullmatch(file_id), file_id
    assert remote_len(file_id) == 60
    assert parsed.kind == FileKind.TRUNK
    assert parsed.group == "group1" and parsed.store_path == 0
    assert parsed.declared_size == size
    assert parsed.crc32 == zlib.crc32(data)
    assert parsed.ext == ext
    assert len(parsed.tail) == 7 and (parsed.tail.endswith("." + ext) if ext else parsed.tail.isdigit())
    assert parsed.trunk is not None
    # FastDFS's sizing rule: slot_min_size when the slot fits, else exactly size + 24 (no alignment).
    assert parsed.trunk.alloc_size == max(256, size + 24)
    assert store.get(file_id) == data
    assert store.get(file_id, 0, None) == data
    st = store.stat(file_id)
    assert (st.size, st.crc32, st.kind) == (size, zlib.crc32(data), FileKind.TRUNK)
    check_store(store)


def test_slot_max_boundary_decides_trunk_or_plain(open_store, check_store):
    slot_max = 64 * 1024
    store = open_store(trunk_file_size=4 * MIB, slot_max_size=slot_max, sync_mode="none")
    fits = blob(1, slot_max - 24)
    over = blob(2, slot_max - 23)
    trunk_id = store.put(fits)
    plain_id = store.put(over)
    assert remote_len(trunk_id) == 60 and store.stat(trunk_id).kind == FileKind.TRUNK
    assert remote_len(plain_id) == 44 and store.stat(plain_id).kind == FileKind.NORMAL
    assert parse_file_id(trunk_id).trunk.alloc_size == slot_max
    assert store.get(trunk_id) == fits
    assert store.get(plain_id) == over
    # put_file and put_many draw the same line.
    assert remote_len(store.put_file(io.BytesIO(fits))) == 60
    assert remote_len(store.put_file(io.BytesIO(over))) == 44
    many = store.put_many([fits, over])
    assert [remote_len(i) for i in many] == [60, 44]
    check_store(store)


def test_trunk_alignment_rounds_slots_up(open_store, check_store):
    store = open_store(trunk_alloc_alignment_size=512, sync_mode="none")
    for size in (0, 100, 488, 489, 1000, 5000):
        file_id = store.put(b"a" * size)
        alloc = parse_file_id(file_id).trunk.alloc_size
        # slot_min_size when the slot fits in it, else size + 24 rounded up to the alignment.
        assert alloc == (256 if size + 24 <= 256 else -(-(size + 24) // 512) * 512), (size, alloc)
        assert store.get(file_id) == b"a" * size
    check_store(store)


def test_use_trunk_file_off_makes_every_file_plain(open_store, check_store):
    store = open_store(use_trunk_file=False, sync_mode="none")
    file_id = store.put(b"small")
    assert remote_len(file_id) == 44 and store.stat(file_id).kind == FileKind.NORMAL
    assert store.get(file_id) == b"small"
    check_store(store)


def test_id_carries_source_ip_time_and_group(open_store):
    store = open_store(storage_ip="10.1.2.3", group_name="photos", sync_mode="none")
    before = int(time.time())
    ids = [store.put(b"x" * 10, "jpg"), store.put(b"y" * 300_000 * 60, "jpg")]
    after = int(time.time())
    for file_id in ids:
        assert file_id.startswith("photos/M00/")
        st = store.stat(file_id)
        assert st.source_ip == "10.1.2.3"
        assert st.source == 0x0A010203
        assert before <= st.create_time <= after
        assert st.file_id == file_id
        assert parse_file_id(file_id, "photos").source == 0x0A010203


def test_ids_are_unique(store):
    ids = store.put_many([b"same"] * 300)
    ids += [store.put(b"same") for _ in range(100)]
    assert len(set(ids)) == len(ids)


def test_plain_file_sizes_round_trip(store, check_store):
    store_plain = 17 * MIB
    data = blob(5, store_plain)
    file_id = store.put(data, "bin")
    assert remote_len(file_id) == 44
    parsed = parse_file_id(file_id)
    assert parsed.declared_size == store_plain and parsed.crc32 == zlib.crc32(data)
    assert store.get(file_id) == data
    st = store.stat(file_id)
    assert (st.size, st.crc32, st.kind) == (store_plain, zlib.crc32(data), FileKind.NORMAL)
    check_store(store)


# ---- ranges ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1000, 300_000])
def test_ranges_clip_like_slices(open_store, size):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    data = blob(size, size)
    file_id = store.put(data)
    cuts = [0, 1, size // 3, size - 1, size, size + 1, size + 10_000]
    for offset in cuts:
        for length in [None, 0, 1, 7, size // 2, size, size + 5]:
            offset = max(offset, 0)
            want = data[offset:] if length is None else data[offset : offset + length]
            assert store.get(file_id, offset, length) == want, (offset, length)
            out = io.BytesIO()
            assert store.read_into(file_id, out, offset, length) == len(want)
            assert out.getvalue() == want


@pytest.mark.parametrize("size", [1000, 300_000])
def test_negative_ranges_are_invalid(open_store, size):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    file_id = store.put(blob(size, size))
    for offset, length in [(-1, None), (0, -1), (-5, 3), (3, -5)]:
        with pytest.raises(InvalidArgument) as info:
            store.get(file_id, offset, length)
        assert isinstance(info.value, ValueError) and info.value.status == errno.EINVAL


def test_read_into_negative_range_is_invalid_for_plain_files(open_store):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    file_id = store.put(blob(1, 300_000))
    for offset, length in [(-1, None), (0, -1)]:
        with pytest.raises(InvalidArgument):
            store.read_into(file_id, io.BytesIO(), offset, length)


def test_read_into_streams_large_files(store):
    data = blob(9, 20 * MIB + 123)
    file_id = store.put(data)
    out = io.BytesIO()
    assert store.read_into(file_id, out) == len(data)
    assert out.getvalue() == data
    out = io.BytesIO()
    assert store.read_into(file_id, out, 5 * MIB, 3 * MIB + 7) == 3 * MIB + 7
    assert out.getvalue() == data[5 * MIB : 8 * MIB + 7]


def test_locate_points_at_the_bytes(open_store):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    for data in (b"", b"tiny", blob(3, 50_000), blob(4, 100_000)):
        file_id = store.put(data)
        path, offset, size = store.locate(file_id)
        assert size == len(data)
        with open(path, "rb") as handle:
            handle.seek(offset)
            assert handle.read(size) == data


# ---- stat, exists, delete -------------------------------------------------------------------------


def test_stat_kinds(open_store):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    trunk = store.put(b"t" * 100, "txt")
    normal = store.put(b"n" * 100_000, "bin")
    appender = store.put_appender(b"a" * 10, "log")
    slave = store.put_slave(normal, "_small", b"s" * 20, "bin")
    kinds = {fid: store.stat(fid).kind for fid in (trunk, normal, appender, slave)}
    assert kinds == {
        trunk: FileKind.TRUNK,
        normal: FileKind.NORMAL,
        appender: FileKind.APPENDER,
        slave: FileKind.SLAVE,
    }
    assert store.stat(trunk).crc32 == zlib.crc32(b"t" * 100)
    assert store.stat(normal).crc32 == zlib.crc32(b"n" * 100_000)
    assert store.stat(slave).size == 20
    assert store.stat(appender).size == 10


def test_exists(store):
    file_id = store.put(b"here")
    assert store.exists(file_id)
    store.delete(file_id)
    assert not store.exists(file_id)
    assert not store.exists("group1/M00/00/00/not-an-id")


@pytest.mark.parametrize("size", [10, 20 * MIB])
def test_delete_then_everything_answers_not_found(store, check_store, size):
    file_id = store.put(b"d" * size)
    store.set_meta(file_id, {"k": "v"})
    store.delete(file_id)
    calls = [
        lambda: store.get(file_id),
        lambda: store.get(file_id, 1, 2),
        lambda: store.read_into(file_id, io.BytesIO()),
        lambda: store.stat(file_id),
        lambda: store.locate(file_id),
        lambda: store.get_meta(file_id),
        lambda: store.set_meta(file_id, {"a": "b"}),
        lambda: store.delete(file_id),
    ]
    for call in calls:
        with pytest.raises(FileNotFound) as info:
            call()
        assert isinstance(info.value, FileNotFoundError) and info.value.errno == errno.ENOENT
    assert not store.exists(file_id)
    assert store.stats().metadata_entries == 0
    check_store(store)


def test_reused_slot_never_answers_for_the_old_id(open_store, check_store):
    store = open_store(trunk_file_size=4 * MIB, slot_max_size=64 * 1024, sync_mode="none")
    rng = random.Random(7)
    old = {store.put(rng.randbytes(1000)): None for _ in range(200)}
    old_slots = {(p.trunk.trunk_id, p.trunk.offset) for p in map(parse_file_id, old)}
    for file_id in old:
        store.get(file_id)  # the read fast path now holds the ID decoded: that must not outlive the file
        store.delete(file_id)
    new = {}
    for _ in range(200):
        data = rng.randbytes(1000)
        new[store.put(data)] = data
    new_slots = {(p.trunk.trunk_id, p.trunk.offset) for p in map(parse_file_id, new)}
    assert len(old_slots & new_slots) > 150, "slots were expected to be reused"
    for file_id in old:
        for call in (store.get, store.stat, store.delete, lambda f: store.get(f, 10, 10)):
            with pytest.raises(FileNotFound):
                call(file_id)
        assert not store.exists(file_id)
    for file_id, data in new.items():
        assert store.get(file_id) == data
    check_store(store)


def test_slot_reused_by_different_sizes(open_store, check_store):
    """A freed slot split between smaller files: the old ID still answers FileNotFound."""
    store = open_store(trunk_file_size=4 * MIB, slot_max_size=64 * 1024, sync_mode="none")
    big = store.put(b"B" * 10_000)
    store.delete(big)
    small = [store.put(bytes([i]) * 300) for i in range(20)]
    assert any(parse_file_id(f).trunk.offset == parse_file_id(big).trunk.offset for f in small)
    with pytest.raises(FileNotFound):
        store.get(big)
    with pytest.raises(FileNotFound):
        store.delete(big)
    for i, file_id in enumerate(small):
        assert store.get(file_id) == bytes([i]) * 300
    check_store(store)


# ---- put_file, put_many ---------------------------------------------------------------------------


class GeneratedStream:
    """A binary reader producing ``total`` pseudo-random bytes without holding them.

    ``max_read`` makes reads short, as reads from pipes, sockets and raw streams may be.
    """

    def __init__(self, total: int, max_read: int | None = None) -> None:
        self.left = total
        self.crc = 0
        self.max_read = max_read

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.left
        n = min(n, self.left, self.max_read or n)
        chunk = os.urandom(n)  # one allocation of n bytes, so the reader adds nothing to the peak
        self.left -= n
        self.crc = zlib.crc32(chunk, self.crc)
        return chunk


def test_put_file_from_path_file_object_and_stream(store, tmp_path, check_store):
    small = blob(1, 5000)
    large = blob(2, 17 * MIB)
    path = tmp_path / "input.bin"
    path.write_bytes(small)
    ids = [store.put_file(path, "bin"), store.put_file(str(path))]
    with open(path, "rb") as handle:
        ids.append(store.put_file(handle))
    ids.append(store.put_file(io.BytesIO(small)))
    for file_id in ids:
        assert store.get(file_id) == small and remote_len(file_id) == 60
    path.write_bytes(large)
    with open(path, "rb") as handle:
        large_id = store.put_file(handle, "bin")
    assert remote_len(large_id) == 44
    assert store.get(large_id) == large
    assert store.stat(large_id).crc32 == zlib.crc32(large)
    assert store.put_file(io.BytesIO(b"")) and store.get(store.put_file(io.BytesIO(b""))) == b""
    check_store(store)


def test_put_file_streams_with_bounded_memory(open_store, measure_peak):
    store = open_store(slot_max_size=1 * MIB, trunk_file_size=4 * MIB, sync_mode="none")
    stream = GeneratedStream(64 * MIB)
    file_id, peak = measure_peak(lambda: store.put_file(stream, "bin"))
    assert peak < 8 * MIB
    st = store.stat(file_id)
    assert (st.size, st.crc32, st.kind) == (64 * MIB, stream.crc, FileKind.NORMAL)
    crc = 0
    out = io.BytesIO()
    for offset in range(0, 64 * MIB, 8 * MIB):
        out.seek(0)
        out.truncate()
        store.read_into(file_id, out, offset, 8 * MIB)
        crc = zlib.crc32(out.getvalue(), crc)
    assert crc == stream.crc


def test_put_file_of_a_regular_file_streams_with_bounded_memory_default_settings(store, tmp_path, measure_peak):
    # Default settings: a slot holds up to 16 MiB, so only a known size lets put_file stream at once.
    path = tmp_path / "large.bin"
    stream = GeneratedStream(64 * MIB)
    with open(path, "wb") as out:
        while chunk := stream.read(MIB):
            out.write(chunk)
    with open(path, "rb") as handle:
        handle.read(5)  # from the current position on
        file_id, peak = measure_peak(lambda: store.put_file(handle, "bin"))
    assert peak < 8 * MIB
    st = store.stat(file_id)
    assert st.size == 64 * MIB - 5 and st.kind == FileKind.NORMAL
    with open(path, "rb") as handle:
        handle.seek(5)
        assert st.crc32 == zlib.crc32(handle.read())


def test_put_file_of_a_stream_of_unknown_length_streams_with_bounded_memory_default_settings(store, measure_peak):
    # Default settings: a slot holds up to 16 MiB; a stream that goes on past the first chunk is spooled.
    stream = GeneratedStream(64 * MIB)
    file_id, peak = measure_peak(lambda: store.put_file(stream, "bin"))
    assert peak < 8 * MIB
    st = store.stat(file_id)
    assert (st.size, st.crc32, st.kind) == (64 * MIB, stream.crc, FileKind.NORMAL)


@pytest.mark.parametrize("extra", [-1, 0, 1])
@pytest.mark.parametrize("around", ["chunk", "slot"])
def test_put_file_of_a_stream_of_unknown_length_is_stored_by_its_size(open_store, check_store, around, extra):
    store = open_store(slot_max_size=4 * MIB, trunk_file_size=16 * MIB, sync_mode="none")
    total = (MIB if around == "chunk" else 4 * MIB - 24) + extra  # 1 MiB: what is read before spooling
    stream = GeneratedStream(total, max_read=100_000)
    file_id = store.put_file(stream, "bin")
    st = store.stat(file_id)
    assert (st.size, st.crc32) == (total, stream.crc)
    assert st.kind == (FileKind.TRUNK if total <= 4 * MIB - 24 else FileKind.NORMAL)
    counters = store.stats().counters
    assert (counters["upload_total"], counters["upload_ok"], counters["upload_bytes"]) == (1, 1, total)
    tmp_dir = store.layout.tmp_dir(0)
    assert not os.path.isdir(tmp_dir) or not os.listdir(tmp_dir)
    check_store(store)


@pytest.mark.parametrize("total", [100_000, 3 * MIB])
def test_put_file_with_short_reads_stores_everything(open_store, total):
    store = open_store(slot_max_size=256 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    stream = GeneratedStream(total, max_read=64 * 1024)
    file_id = store.put_file(stream)
    st = store.stat(file_id)
    assert (st.size, st.crc32) == (total, stream.crc)


def test_put_many_keeps_order_and_extensions(open_store, check_store):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB)  # durable: one shared commit
    items = [b"a", (b"bb", "txt"), (blob(3, 100_000), "big"), b"", (b"c" * 5000, "")]
    ids = store.put_many(items)
    assert len(ids) == len(items)
    for file_id, item in zip(ids, items, strict=True):
        data, ext = (item, "") if isinstance(item, bytes) else item
        assert store.get(file_id) == data
        assert parse_file_id(file_id).ext == ext
    assert store.put_many([]) == []
    check_store(store)


# ---- store paths and sub-directories -------------------------------------------------------------


def test_two_store_paths_round_robin(open_store, store_root, check_store):
    store = open_store(store_path_count=2, slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    ids = [store.put(bytes([i]) * (100 if i % 3 else 100_000)) for i in range(12)]
    paths = [parse_file_id(i).store_path for i in ids]
    assert paths == [0, 1] * 6
    for i, file_id in enumerate(ids):
        assert store.get(file_id) == bytes([i]) * (100 if i % 3 else 100_000)
        path, _offset, _size = store.locate(file_id)
        assert Path(path).is_relative_to(store_root / f"M{paths[i]:02d}")
    check_store(store)
    store.close()
    reopened = open_store(store_path_count=2, slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    for i, file_id in enumerate(ids):
        assert reopened.get(file_id) == bytes([i]) * (100 if i % 3 else 100_000)
    with pytest.raises(TrunkstoreError):
        reopened.get(ids[1].replace("/M01/", "/M02/"))
    check_store(reopened)


def test_store_path_mode_2_picks_the_freest_path(fake_disk, open_store, check_store):
    fake_disk.available = {0: 10 << 30, 1: 20 << 30}
    store = open_store(store_path_count=2, store_path_mode=2, reserved_storage_space="1G", sync_mode="none")
    ids = [store.put(b"x" * 100) for _ in range(5)] + [store.put(b"y" * 17 * MIB)]
    assert {parse_file_id(i).store_path for i in ids} == {1}
    store.close()
    fake_disk.available = {0: 30 << 30, 1: 20 << 30}
    store = open_store(store_path_count=2, store_path_mode=2, reserved_storage_space="1G", sync_mode="none")
    more = [store.put(b"z" * 100) for _ in range(5)]
    assert {parse_file_id(i).store_path for i in more} == {0}
    for file_id in ids[:5]:
        assert store.get(file_id) == b"x" * 100
    check_store(store)


def test_rotation_fills_each_subdirectory_in_turn(open_store, store_root):
    store = open_store(
        use_trunk_file=False,
        subdir_count_per_path=4,
        file_distribute_rotate_count=3,
        file_distribute_path_mode=0,
        sync_mode="none",
    )
    ids = [store.put(bytes([i])) for i in range(14)]
    dirs = [(p.sub_high, p.sub_low) for p in map(parse_file_id, ids)]
    expected = [(0, 0)] * 3 + [(0, 1)] * 3 + [(0, 2)] * 3 + [(0, 3)] * 3 + [(1, 0)] * 2
    assert dirs == expected
    for (high, low), file_id in zip(dirs, ids, strict=True):
        name = file_id.rsplit("/", 1)[1]
        assert (store_root / "M00" / "data" / f"{high:02X}" / f"{low:02X}" / name).is_file()


def test_hash_distribution_spreads_files(open_store, store_root):
    store = open_store(use_trunk_file=False, file_distribute_path_mode=1, sync_mode="none")
    ids = [store.put(bytes([i % 256]) * 3) for i in range(60)]
    dirs = {(p.sub_high, p.sub_low) for p in map(parse_file_id, ids)}
    # Rotation would have put all 60 into 00/00; a hash of the name spreads them.
    assert len(dirs) > 30
    for file_id in ids:
        parsed = parse_file_id(file_id)
        assert (
            store_root / "M00" / "data" / f"{parsed.sub_high:02X}" / f"{parsed.sub_low:02X}" / parsed.name
        ).is_file()
        assert store.get(file_id) == bytes([ids.index(file_id) % 256]) * 3


def test_trunk_file_directory_is_its_containers(tiny_store, store_root, fs):
    ids = [tiny_store.put(b"x" * 100_000) for _ in range(100)]  # about 2.5 containers
    containers = {p.trunk.trunk_id: (p.sub_high, p.sub_low) for p in map(parse_file_id, ids)}
    assert len(containers) >= 2
    for trunk_id, (high, low) in containers.items():
        assert (store_root / "M00" / "data" / f"{high:02X}" / f"{low:02X}" / f"{trunk_id:06d}").is_file()
    assert len(fs.container_files(store_root)) == len(containers)


def test_subdirectories_are_made_lazily(open_store, store_root, fs):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    assert len(fs.leaf_dirs(store_root / "M00")) <= 1
    for i in range(20):
        store.put(bytes([i]) * (100 if i % 2 else 100_000))
    made = fs.leaf_dirs(store_root / "M00")
    assert 1 <= len(made) <= 4, made
    assert len(fs.walk_all(store_root)) < 50
    assert store.layout.created_subdirs(0) == len(made)


# ---- check and scrub --------------------------------------------------------------------------------


def _poke(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_check_finds_and_repairs_a_damaged_slot(open_store, check_store):
    store = open_store(trunk_file_size=4 * MIB, slot_max_size=64 * 1024, sync_mode="none")
    before, damaged, after = (store.put(bytes([i]) * 3000) for i in (1, 2, 3))
    path, data_offset, _size = store.locate(damaged)
    _poke(path, data_offset - 24, bytes(24))  # the slot header wiped behind the store's back
    free = store.stats().trunk_free_bytes
    report = store.check()
    print(report.problems)
    assert not report.ok and any("no valid slot" in p for p in report.problems)
    with pytest.raises(FileNotFound):
        store.get(damaged)
    repaired = store.check(fix=True)
    assert repaired.fixed
    check_store(store)
    assert store.stats().trunk_free_bytes == free + parse_file_id(damaged).trunk.alloc_size
    assert store.get(before) == bytes([1]) * 3000 and store.get(after) == bytes([3]) * 3000


def test_files_after_a_damaged_slot_stay_readable_when_the_store_is_opened_again(open_store, check_store):
    settings = {"trunk_file_size": 4 * MIB, "slot_max_size": 64 * 1024, "sync_mode": "none"}
    store = open_store(**settings)
    ids = [store.put(bytes([i]) * 3000) for i in range(1, 5)]
    path, data_offset, _size = store.locate(ids[1])
    root = store.root
    store.close()
    _poke(path, data_offset - 24, bytes(24))  # the header wiped while the store was closed
    reopened = open_store(root=root, **settings)
    # The slots after the damage are found again from the next intact header on.
    assert [reopened.get(ids[i]) for i in (0, 2, 3)] == [bytes([i + 1]) * 3000 for i in (0, 2, 3)]
    with pytest.raises(FileNotFound):
        reopened.get(ids[1])
    report = reopened.check()
    assert report.problems == [f"trunk 1: bytes {3024}..{6048} are allocated but hold no valid slot"]
    assert reopened.check(fix=True).fixed == ["trunk 1: freed 3024 leaked bytes at 3024"]
    check_store(reopened)
    assert [reopened.get(ids[i]) for i in (0, 2, 3)] == [bytes([i + 1]) * 3000 for i in (0, 2, 3)]


def test_scrub_and_reads_catch_flipped_bits(open_store):
    store = open_store(trunk_file_size=4 * MIB, slot_max_size=64 * 1024, sync_mode="none")
    healthy = [store.put(bytes([i]) * 5000) for i in range(5)] + [store.put(b"p" * 100_000)]
    assert store.scrub().ok and store.scrub().files_checked == 6
    trunk_bad = store.put(b"t" * 5000)
    plain_bad = store.put(b"q" * 100_000)
    for file_id in (trunk_bad, plain_bad):
        path, offset, _size = store.locate(file_id)
        _poke(path, offset + 100, b"X")
    report = store.scrub()
    print(report.corrupt)
    assert report.files_checked == 8 and len(report.corrupt) == 2
    for file_id in (trunk_bad, plain_bad):
        with pytest.raises(CorruptData) as info:
            store.get(file_id)
        assert isinstance(info.value, OSError) and info.value.errno == errno.EIO
    for file_id in healthy:
        store.get(file_id)


@pytest.mark.parametrize("sync_mode", ["always", "interval", "none"])
def test_every_sync_mode_round_trips_and_reopens(store_root, check_store, sync_mode):
    settings = {"sync_mode": sync_mode, "sync_interval": 0.05, "trunk_file_size": 4 * MIB, "slot_max_size": 64 * 1024}
    with Store(store_root, **settings) as store:
        ids = {store.put(bytes([i]) * (i * 1500)): bytes([i]) * (i * 1500) for i in range(60)}
        for file_id in list(ids)[::3]:
            store.delete(file_id)
            del ids[file_id]
        time.sleep(0.12)  # let the interval syncer run a few rounds
        store.sync()
        check_store(store)
    with Store(store_root, **settings) as store:
        assert store._pool.replayed_records == 0
        for file_id, data in ids.items():
            assert store.get(file_id) == data
        check_store(store)


# ---- lifecycle -------------------------------------------------------------------------------------


def test_context_manager_closes_and_reopen_reads_everything(store_root, check_store):
    data = {}
    with Store(store_root, sync_mode="none") as store:
        for i in range(50):
            content = blob(i, i * 997)
            data[store.put(content)] = content
        big = blob(99, 17 * MIB)
        data[store.put(big)] = big
    assert store._closed
    with Store(store_root, sync_mode="none") as store:
        for file_id, content in data.items():
            assert store.get(file_id) == content
        check_store(store)


def test_every_operation_after_close_raises_store_closed(store_root):
    store = Store(store_root, sync_mode="none")
    trunk = store.put(b"t")
    appender = store.put_appender(b"a")
    store.close()
    store.close()  # closing twice is harmless
    calls = {
        "put": lambda: store.put(b"x"),
        "put_file": lambda: store.put_file(io.BytesIO(b"x")),
        "put_many": lambda: store.put_many([b"x"]),
        "get": lambda: store.get(trunk),
        "get_range": lambda: store.get(trunk, 0, 1),
        "read_into": lambda: store.read_into(trunk, io.BytesIO()),
        "locate": lambda: store.locate(trunk),
        "stat": lambda: store.stat(trunk),
        "exists": lambda: store.exists(trunk),
        "delete": lambda: store.delete(trunk),
        "put_appender": lambda: store.put_appender(b"x"),
        "append": lambda: store.append(appender, b"x"),
        "modify": lambda: store.modify(appender, 0, b"x"),
        "truncate": lambda: store.truncate(appender, 0),
        "regenerate": lambda: store.regenerate_appender_name(appender),
        "put_slave": lambda: store.put_slave(appender, "_s", b"x"),
        "set_meta": lambda: store.set_meta(trunk, {"a": "b"}),
        "get_meta": lambda: store.get_meta(trunk),
        "check": lambda: store.check(),
        "scrub": lambda: store.scrub(),
    }
    for name, call in calls.items():
        with pytest.raises(StoreClosed):
            call()
            pytest.fail(f"{name} succeeded on a closed store")
    # Nothing was changed by the refused calls.
    with Store(store_root, sync_mode="none") as again:
        assert again.get(trunk) == b"t"
        assert again.get(appender) == b"a"


@pytest.mark.parametrize("sync_mode", ["none", "interval", "always"])
def test_sync_after_close_raises_store_closed(store_root, sync_mode):
    store = Store(store_root, sync_mode=sync_mode)
    store.put(b"x")
    store.close()
    with pytest.raises(StoreClosed):
        store.sync()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("trunk_file_size", 128 * MIB),
        ("subdir_count_per_path", 16),
        ("group_name", "group2"),
        ("store_path_count", 2),
    ],
)
def test_reopen_with_other_format_settings_is_refused(store_root, setting, value):
    with Store(store_root, sync_mode="none") as store:
        file_id = store.put(b"keep")
    with pytest.raises(FormatMismatch) as info:
        Store(store_root, sync_mode="none", **{setting: value})
    assert isinstance(info.value, ValueError)
    assert setting in str(info.value)
    # The refused open changed nothing.
    with Store(store_root, sync_mode="none") as store:
        assert store.get(file_id) == b"keep"


def test_a_moved_store_opens(tmp_path, check_store):
    with Store(tmp_path / "before", sync_mode="none") as store:
        file_id = store.put(b"portable")
    (tmp_path / "before").rename(tmp_path / "after")
    with Store(tmp_path / "after", sync_mode="none") as store:
        assert store.get(file_id) == b"portable"
        check_store(store)


def test_settings_that_do_not_define_the_format_may_change(store_root, check_store):
    with Store(store_root, sync_mode="none") as store:
        file_id = store.put(b"keep" * 1000)
    config = StoreConfig(sync_mode="always", slot_max_size=1 * MIB, slot_min_size=512, dedup=True)
    with Store(store_root, config) as store:
        assert store.get(file_id) == b"keep" * 1000
        store.put(b"new")
        check_store(store)


def test_stats_counters(open_store, check_store):
    store = open_store(slot_max_size=64 * 1024, trunk_file_size=4 * MIB, sync_mode="none")
    empty = store.stats()
    assert empty.counters["upload_total"] == 0 and empty.trunk_containers == 0
    assert empty.disk_total_bytes > 0 and empty.disk_free_bytes > 0
    small = store.put(b"s" * 1000)
    after_one = store.stats()
    assert after_one.trunk_containers == 1
    assert after_one.trunk_capacity_bytes == 4 * MIB
    assert after_one.trunk_free_bytes == after_one.trunk_own_free_bytes == 4 * MIB - 1024
    big = store.put(b"b" * 100_000)
    gone = store.put(b"g" * 10)
    store.delete(gone)
    store.get(small)
    store.get(big, 10, 10)
    with pytest.raises(FileNotFound):
        store.get(gone)
    store.set_meta(small, {"a": "1"})
    store.get_meta(small)
    store.delete(big)
    with pytest.raises(FileNotFound):
        store.delete(big)
    counters = store.stats().counters
    assert counters["upload_total"] == 3 and counters["upload_ok"] == 3
    assert counters["upload_bytes"] == 101_010
    assert counters["download_ok"] == 2 and counters["download_total"] == 3
    assert counters["download_bytes"] == 1010
    assert counters["delete_total"] == 3 and counters["delete_ok"] == 2
    assert counters["set_meta_ok"] == 1 and counters["get_meta_ok"] == 1
    assert store.stats().metadata_entries == 1
    store.delete(small)
    assert store.stats().trunk_free_bytes == 4 * MIB
    check_store(store)


def test_read_small_reads_whole_small_trunk_files_only(open_store):
    store = open_store(sync_mode="none")
    small = store.put(b"x" * 1000, "txt")
    large = store.put(b"y" * 5000, "txt")
    empty = store.put(b"", "txt")
    served = store.counters.download_ok
    assert store.read_small(small, 4096) == b"x" * 1000
    assert store.counters.download_ok == served + 1  # counted as a download, like get
    assert store.read_small(large, 4096) is None  # over the limit: the caller reads it otherwise
    assert store.read_small(large, 5000) == b"y" * 5000
    assert store.read_small(empty, 4096) == b""
    store.delete(small)
    assert store.read_small(small, 4096) is None  # a stale ID: get() says why
    with pytest.raises(FileNotFound):
        store.get(small)
