"""Streaming uploads: ``Store.open_upload`` / ``open_slave_upload`` and the ``Upload`` they return."""

from __future__ import annotations

import errno
import gc
import io
import os
import random
import threading
import zlib

import pytest

from trunkstore import (
    FileExists,
    FileKind,
    FileNotFound,
    InvalidArgument,
    Store,
    StoreClosed,
    StoreFull,
    Upload,
    parse_file_id,
)

MIB = 1 << 20
SLOT_MAX = 64 * 1024
SETTINGS = {"slot_max_size": SLOT_MAX, "trunk_file_size": 4 * MIB, "sync_mode": "none"}


@pytest.fixture
def small_store(open_store) -> Store:
    return open_store(**SETTINGS)


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def upload_in_pieces(upload: Upload, data: bytes, seed: int = 0, largest: int = 100_000) -> None:
    """Write ``data`` in pieces of random sizes (empty ones included), as bytes, bytearray and memoryview."""
    rng = random.Random(seed)
    position = 0
    kinds = [bytes, bytearray, memoryview]
    while position < len(data):
        step = rng.randint(0, largest)
        piece = data[position : position + step]
        upload.write(kinds[rng.randrange(3)](piece))
        position += len(piece)
        assert upload.written == position
    upload.write(b"")


def tmp_files(store: Store) -> list[str]:
    found = []
    for index in range(store.config.store_path_count):
        tmp_dir = store.layout.tmp_dir(index)
        if os.path.isdir(tmp_dir):
            found += os.listdir(tmp_dir)
    return found


# ---- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kind"),
    [
        (0, FileKind.TRUNK),
        (1, FileKind.TRUNK),
        (5000, FileKind.TRUNK),
        (SLOT_MAX - 24, FileKind.TRUNK),  # the largest that fits a slot
        (SLOT_MAX - 23, FileKind.NORMAL),
        (3 * MIB + 7, FileKind.NORMAL),
    ],
)
@pytest.mark.parametrize("ext", ["", "jpg"])
def test_round_trip_in_random_pieces(small_store, check_store, size, kind, ext):
    data = blob(size, size)
    with small_store.open_upload(size, ext) as upload:
        assert (upload.size, upload.written) == (size, 0)
        upload_in_pieces(upload, data, seed=size)
        file_id = upload.commit()
    parsed = parse_file_id(file_id)
    assert parsed.kind == kind and parsed.ext == ext
    assert parsed.declared_size == size and parsed.crc32 == zlib.crc32(data)
    assert small_store.get(file_id) == data
    st = small_store.stat(file_id)
    assert (st.size, st.crc32, st.kind) == (size, zlib.crc32(data), kind)
    assert tmp_files(small_store) == []
    check_store(small_store)


def test_upload_ids_are_like_put_ids(small_store):
    for size in (100, SLOT_MAX):
        data = blob(1, size)
        put_id = small_store.put(data, "txt")
        with small_store.open_upload(size, "txt") as upload:
            upload.write(data)
            upload_id = upload.commit()
        put, up = parse_file_id(put_id), parse_file_id(upload_id)
        assert (put.kind, put.declared_size, put.crc32, put.ext) == (up.kind, up.declared_size, up.crc32, up.ext)
        assert len(put_id) == len(upload_id)


def test_counters_as_for_put(small_store):
    for size in (10, 100_000):
        with small_store.open_upload(size) as upload:
            upload.write(b"c" * size)
            upload.commit()
    with small_store.open_upload(5) as upload:
        upload.write(b"x")  # aborted: counted as tried, not as stored
    counters = small_store.stats().counters
    assert counters["upload_total"] == 3
    assert counters["upload_ok"] == 2
    assert counters["upload_bytes"] == 100_010


def test_trunks_disabled_spools_even_small_files(open_store, check_store):
    store = open_store(use_trunk_file=False, sync_mode="none")
    with store.open_upload(10, "txt") as upload:
        upload.write(b"0123456789")
        file_id = upload.commit()
    assert parse_file_id(file_id).kind == FileKind.NORMAL
    assert store.get(file_id) == b"0123456789"
    check_store(store)


@pytest.mark.parametrize("sync_mode", ["always", "none"])
def test_commit_in_each_sync_mode_survives_reopen(open_store, store_root, check_store, sync_mode):
    store = open_store(**{**SETTINGS, "sync_mode": sync_mode})
    stored = {}
    for size in (0, 700, SLOT_MAX - 24, 200_000):
        data = blob(size, size)
        with store.open_upload(size, "bin") as upload:
            upload_in_pieces(upload, data, seed=size, largest=50_000)
            stored[upload.commit()] = data
    with store.open_upload(6, appender=True) as upload:
        upload.write(b"append")
        stored[upload.commit()] = b"append"
    store.close()
    reopened = open_store(**{**SETTINGS, "sync_mode": sync_mode})
    for file_id, data in stored.items():
        assert reopened.get(file_id) == data
    check_store(reopened)


# ---- appender and slave files ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, 300_000])
def test_appender_upload(small_store, check_store, size):
    data = blob(size, size)
    with small_store.open_upload(size, "log", appender=True) as upload:
        upload_in_pieces(upload, data, seed=size)
        file_id = upload.commit()
    parsed = parse_file_id(file_id)
    assert parsed.kind == FileKind.APPENDER and parsed.trunk is None
    assert small_store.get(file_id) == data
    assert small_store.append(file_id, b"more") == size + 4
    assert small_store.get(file_id) == data + b"more"
    check_store(small_store)


@pytest.mark.parametrize("size", [0, 100, 200_000])
def test_slave_upload(small_store, check_store, size):
    master = small_store.put(b"master" * 100, "jpg")
    data = blob(size, size)
    with small_store.open_slave_upload(master, "_150x150", size, "jpg") as upload:
        upload_in_pieces(upload, data, seed=size)
        slave = upload.commit()
    parsed = parse_file_id(slave)
    assert parsed.is_slave and slave.endswith("_150x150.jpg")
    master_parsed = parse_file_id(master)
    assert slave == master.removesuffix(".jpg") + "_150x150.jpg"  # the name put_slave gives
    assert (parsed.store_path, parsed.sub_high, parsed.sub_low) == (
        master_parsed.store_path,
        master_parsed.sub_high,
        master_parsed.sub_low,
    )
    assert small_store.get(slave) == data
    check_store(small_store)


def test_slave_upload_refused_at_open_as_put_slave_refuses(small_store, fs, tmp_path):
    master = small_store.put(b"master", "jpg")
    small_store.put_slave(master, "_s", b"taken", "jpg")
    before = fs.walk_files(tmp_path)
    with pytest.raises(FileExists):
        small_store.open_slave_upload(master, "_s", 3, "jpg")
    missing = small_store.put(b"gone", "jpg")
    small_store.delete(missing)
    with pytest.raises(FileNotFound):
        small_store.open_slave_upload(missing, "_s", 3, "jpg")
    slave = small_store.put_slave(master, "_t", b"slave", "jpg")
    with pytest.raises(InvalidArgument):
        small_store.open_slave_upload(slave, "_u", 3, "jpg")  # a slave's master must not be a slave
    for prefix in ("", "a/b", "x" * 17):
        with pytest.raises(InvalidArgument):
            small_store.open_slave_upload(master, prefix, 3, "jpg")
    with pytest.raises(InvalidArgument):
        small_store.open_slave_upload(master, "_v", -1, "jpg")
    assert fs.walk_files(tmp_path) - before == {os.path.relpath(small_store.locate(slave)[0], tmp_path)}


def test_slave_checks_are_repeated_at_commit(small_store, check_store):
    master = small_store.put(b"master", "jpg")
    racing = small_store.open_slave_upload(master, "_s", 5, "jpg")
    racing.write(b"first")
    winner = small_store.put_slave(master, "_s", b"other", "jpg")  # takes the name meanwhile
    with pytest.raises(FileExists):
        racing.commit()
    racing.abort()  # harmless after a failed commit
    assert small_store.get(winner) == b"other"

    orphan = small_store.open_slave_upload(master, "_o", 3, "jpg")
    orphan.write(b"abc")
    small_store.delete(master)
    with pytest.raises(FileNotFound):
        orphan.commit()
    orphan.abort()
    assert tmp_files(small_store) == []
    check_store(small_store)


# ---- size errors, abort ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 100_000])
def test_writing_past_the_announced_size_is_refused(small_store, check_store, size):
    data = blob(size, size)
    with small_store.open_upload(size) as upload:
        upload.write(data[:-3])
        with pytest.raises(InvalidArgument) as info:
            upload.write(b"four")
        assert info.value.status == errno.EINVAL
        assert upload.written == size - 3  # nothing of the refused write was taken
        with pytest.raises(InvalidArgument):
            upload.commit()  # short: the upload stays open
        upload.write(data[-3:])
        file_id = upload.commit()
    assert small_store.get(file_id) == data
    check_store(small_store)


@pytest.mark.parametrize("size", [-1, True, 1.5, "3", None])
def test_bad_sizes_and_extensions_are_invalid(small_store, size):
    with pytest.raises(InvalidArgument):
        small_store.open_upload(size)
    with pytest.raises(InvalidArgument):
        small_store.open_upload(3, "bad/ext")
    assert tmp_files(small_store) == []


@pytest.mark.parametrize("size", [1000, 300_000])
@pytest.mark.parametrize("how", ["abort", "exception", "no-commit"])
def test_abort_leaves_nothing(small_store, check_store, fs, tmp_path, size, how):
    small_store.put(b"before")
    before_files = fs.walk_files(tmp_path)
    before_stats = small_store.stats()
    upload = small_store.open_upload(size, "bin")
    upload.write(b"x" * (size // 2))
    if how == "abort":
        upload.abort()
        upload.abort()  # idempotent
    elif how == "exception":
        with pytest.raises(RuntimeError), upload:
            raise RuntimeError("client went away")
    else:
        with upload:
            pass
    for call in (lambda: upload.write(b"y"), upload.commit):
        with pytest.raises(InvalidArgument):
            call()
    upload.abort()
    assert tmp_files(small_store) == []
    assert fs.walk_files(tmp_path) == before_files
    after = small_store.stats()
    assert after.trunk_free_bytes == before_stats.trunk_free_bytes
    assert after.counters["upload_ok"] == before_stats.counters["upload_ok"]
    check_store(small_store)


def test_abandoned_upload_removes_its_spool_when_collected(small_store):
    upload = small_store.open_upload(300_000)
    upload.write(b"z" * 1000)
    assert len(tmp_files(small_store)) == 1
    del upload
    gc.collect()
    assert tmp_files(small_store) == []


def test_commit_after_close_is_refused_and_cleans_up(open_store):
    store = open_store(**SETTINGS)
    upload = store.open_upload(100_000)
    upload.write(b"a" * 100_000)
    store.close()
    with pytest.raises(StoreClosed):
        upload.commit()
    assert tmp_files(store) == []
    with pytest.raises(StoreClosed):
        store.open_upload(1)


# ---- reserved space -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5000, 300_000])
def test_full_disk_is_refused_at_open(fake_disk, open_store, check_store, size):
    store = open_store(**SETTINGS, reserved_storage_space="1G")
    fake_disk.available = {0: (1 << 30) + 1000}  # 1000 bytes above the reserve
    with pytest.raises(StoreFull) as info:
        store.open_upload(size)
    assert info.value.errno == errno.ENOSPC
    assert tmp_files(store) == []
    assert store.stats().counters["upload_ok"] == 0
    check_store(store)


@pytest.mark.parametrize("size", [30_000, 300_000])
def test_abort_returns_the_admitted_space(fake_disk, open_store, check_store, size):
    store = open_store(**SETTINGS, reserved_storage_space="1G")
    fake_disk.available = {0: (1 << 30) + size + size // 2}  # room for one upload, not for two
    first = store.open_upload(size)
    with pytest.raises(StoreFull):
        store.open_upload(size)
    first.abort()
    for _ in range(3):  # each abort gives the space back
        store.open_upload(size).abort()
    with store.open_upload(size) as upload:
        upload.write(b"s" * size)
        file_id = upload.commit()
    assert store.get(file_id) == b"s" * size
    check_store(store)


# ---- dedup ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 300_000])
def test_uploads_are_deduplicated_like_put(open_store, check_store, size):
    store = open_store(**SETTINGS, dedup=True)
    data = blob(size, size)
    first = store.put(data)
    with store.open_upload(size) as upload:
        upload_in_pieces(upload, data, seed=size)
        second = upload.commit()
    assert first != second and store.get(second) == data
    if size + 24 <= SLOT_MAX:
        assert parse_file_id(first).trunk == parse_file_id(second).trunk  # one slot
    else:
        assert os.path.samefile(store.locate(first)[0], store.locate(second)[0])  # one inode
        assert store.stat(second).kind == FileKind.LINK
    assert store.stats().dedup_holders == 2
    store.delete(first)
    assert store.get(second) == data
    store.delete(second)
    assert store.stats().dedup_holders == 0
    check_store(store)


# ---- concurrency and memory -----------------------------------------------------------------------


@pytest.mark.parametrize("sync_mode", ["always", "none"])
def test_concurrent_uploads_from_threads(open_store, check_store, sync_mode):
    store = open_store(**{**SETTINGS, "sync_mode": sync_mode})
    sizes = [0, 50, 4000, SLOT_MAX - 24, SLOT_MAX, 150_000]
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        try:
            for round_ in range(6):
                size = sizes[(seed + round_) % len(sizes)]
                data = blob(seed * 100 + round_, size)
                with store.open_upload(size, appender=round_ == 5) as upload:
                    upload_in_pieces(upload, data, seed=seed + round_, largest=20_000)
                    if round_ == 4:
                        upload.abort()
                        continue
                    file_id = upload.commit()
                with lock:
                    results[file_id] = data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == 8 * 5
    for file_id, data in results.items():
        assert store.get(file_id) == data
    assert tmp_files(store) == []
    check_store(store)


def test_large_upload_memory_stays_bounded(store, measure_peak):
    total = 64 * MIB
    chunk = os.urandom(MIB)
    crcs = [0]

    def upload_in_fresh_chunks() -> str:
        with store.open_upload(total, "bin") as upload:
            for index in range(total // MIB):
                piece = bytes([index % 256]) + chunk[1:]  # a fresh 1 MiB each time, as a receiver has
                crcs[0] = zlib.crc32(piece, crcs[0])
                upload.write(piece)
                del piece
            return upload.commit()

    file_id, peak = measure_peak(upload_in_fresh_chunks)
    assert peak < 8 * MIB
    st = store.stat(file_id)
    assert (st.size, st.crc32, st.kind) == (total, crcs[0], FileKind.NORMAL)


def test_uploads_take_turns_over_store_paths_like_put(open_store, check_store):
    store = open_store(**SETTINGS, store_path_count=2)
    paths = []
    for size in (10, 10, 100_000, 100_000, 10):
        with store.open_upload(size) as upload:
            upload.write(b"r" * size)
            paths.append(parse_file_id(upload.commit()).store_path)
        paths.append(parse_file_id(store.put(b"p" * size)).store_path)
    assert paths == [0, 1] * 5
    check_store(store)


def test_deduplicated_small_uploads_give_their_admitted_space_back(fake_disk, open_store, check_store):
    settings = {**SETTINGS, "dedup": True, "reserved_storage_space": "1G"}
    store = open_store(**settings)
    data = blob(9, 30_000)
    first = store.put(data)
    store.close()
    fake_disk.available = {0: (1 << 30) + 50_000}  # room for one slot of 30 kB, not for two
    store = open_store(**settings)
    with store.open_upload(len(data)) as upload:  # admits a slot, then turns out to be an alias
        upload.write(data)
        alias = upload.commit()
    assert parse_file_id(alias).trunk == parse_file_id(first).trunk
    with store.open_upload(30_000) as upload:  # fits only if the alias gave its slot back
        upload.write(blob(10, 30_000))
        assert store.get(upload.commit()) == blob(10, 30_000)
    check_store(store)


def test_put_file_of_a_file_that_shrinks_while_read_is_refused(store, tmp_path):
    path = tmp_path / "shrinking.bin"
    path.write_bytes(b"s" * 300_000)

    class Shrinking(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            os.truncate(path, 100_000)  # another writer cuts the file after its size was taken
            return super().read(size)

    with Shrinking(path, "rb") as handle, pytest.raises(InvalidArgument):
        store.put_file(handle)
    assert tmp_files(store) == []


# ---- slot-sized uploads above the memory limit: spooled, then copied into a slot -------------------
SPOOLED_SETTINGS = {"trunk_file_size": 64 * MIB, "slot_max_size": 16 * MIB}


@pytest.mark.parametrize("sync_mode", ["always", "none"])
def test_slot_sized_upload_is_spooled_then_copied_into_a_slot(open_store, check_store, sync_mode):
    from trunkstore.upload import MEMORY_LIMIT

    store = open_store(**SPOOLED_SETTINGS, sync_mode=sync_mode)
    data = blob(41, 3 * MIB + 17)
    assert len(data) > MEMORY_LIMIT
    with store.open_upload(len(data), "bin") as upload:
        upload_in_pieces(upload, data, seed=41, largest=256 * 1024)
        assert tmp_files(store), "the data should be on disk, not in memory"
        file_id = upload.commit()
    assert parse_file_id(file_id).kind == FileKind.TRUNK
    assert store.get(file_id) == data
    st = store.stat(file_id)
    assert (st.size, st.crc32, st.kind) == (len(data), zlib.crc32(data), FileKind.TRUNK)
    assert tmp_files(store) == []
    check_store(store)


def test_slot_sized_upload_memory_stays_bounded(open_store, measure_peak):
    store = open_store(**SPOOLED_SETTINGS, sync_mode="none")
    total = 15 * MIB
    chunk = os.urandom(256 * 1024)

    def upload_in_fresh_chunks() -> str:
        with store.open_upload(total, "bin") as upload:
            for index in range(total // len(chunk)):
                piece = bytes([index % 256]) + chunk[1:]
                upload.write(piece)
                del piece
            return upload.commit()

    file_id, peak = measure_peak(upload_in_fresh_chunks)
    assert peak < 4 * MIB
    assert store.stat(file_id).kind == FileKind.TRUNK


def test_copy_without_copy_file_range_falls_back_to_reads(open_store, check_store, monkeypatch):
    store = open_store(**SPOOLED_SETTINGS, sync_mode="none")

    def unsupported(*args, **kwargs):
        raise OSError(errno.EXDEV, "cross-device copy unsupported")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    data = blob(42, 2 * MIB + 5)
    with store.open_upload(len(data), "dat") as upload:
        upload.write(data)
        file_id = upload.commit()
    assert store.get(file_id) == data
    check_store(store)


def test_full_disk_during_the_copy_loses_nothing_and_frees_the_slot(open_store, check_store, monkeypatch):
    store = open_store(**SPOOLED_SETTINGS, sync_mode="none")
    kept = store.put(blob(43, 5000), "txt")
    data = blob(44, MIB)
    real_copy = os.copy_file_range

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full)
    with store.open_upload(len(data), "dat") as upload:
        upload.write(data)
        with pytest.raises(StoreFull):
            upload.commit()
    monkeypatch.setattr(os, "copy_file_range", real_copy)
    assert tmp_files(store) == []
    assert store.get(kept) == blob(43, 5000)
    check_store(store)
    again = store.put_file(io.BytesIO(data), "dat")  # the space is usable again
    assert store.get(again) == data
