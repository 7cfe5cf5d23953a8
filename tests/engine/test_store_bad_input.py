"""Hostile and broken input at the store's surface: IDs, extensions, prefixes, metadata, a full disk."""

from __future__ import annotations

import array
import errno
import io
import os
import time
import zlib

import pytest

import trunkstore.plainfiles
import trunkstore.trunk
from trunkstore import (
    FileNotFound,
    InvalidArgument,
    InvalidFileId,
    StoreFull,
    TrunkstoreError,
    parse_file_id,
)
from trunkstore import fileid as fid
from trunkstore.slot import HEADER

MIB = 1 << 20
SETTINGS = {"subdir_count_per_path": 16, "slot_max_size": 64 * 1024, "trunk_file_size": 4 * MIB, "sync_mode": "none"}


def with_name(file_id: str, name: str) -> str:
    return file_id.rsplit("/", 1)[0] + "/" + name


def forged_trunk_id(store, template: str, trunk_id: int, offset: int, alloc: int, size: int = 10) -> str:
    """A well-formed trunk ID naming an arbitrary slot."""
    parsed = parse_file_id(template)
    name = fid.encode_name(
        parsed.source,
        parsed.timestamp,
        fid.make_size_field(size, trunk=True),
        parsed.crc32,
        fid.TrunkLocation(trunk_id, offset, alloc),
        parsed.tail,
    )
    return with_name(template, name)


def bad_ids(store, trunk: str, plain: str) -> list[str]:
    rest = trunk.split("/", 1)[1]
    name = trunk.rsplit("/", 1)[1]
    plain_name = plain.rsplit("/", 1)[1]
    return [
        "",
        "group1",
        "group1/",
        "group1/M00/00/00/",
        "/" + trunk,
        trunk.replace("group1/", "group1//", 1),
        "group2/" + rest,
        "GROUP1/" + rest,
        "group1/M05/" + rest.split("/", 1)[1],
        "group1/M0G/" + rest.split("/", 1)[1],
        trunk.replace("/M00/", "/m00/"),
        trunk.replace("/M00/00/", "/M00/1F/"),  # sub-directory beyond subdir_count_per_path
        trunk.replace("/M00/00/00/", "/M00/00/10/"),
        trunk.replace("/M00/00/00/", "/M00/0/000/"),
        with_name(trunk, name[:26] + "+" + name[27:]),
        with_name(trunk, name[:26] + "=" + name[27:]),
        with_name(trunk, name[:26] + "!" + name[27:]),
        with_name(trunk, name[:26] + "B" + name[27:]),  # non-canonical base64
        with_name(plain, plain_name[:26] + "B" + plain_name[27:]),
        "group1/M00/../../../etc/passwd",
        "group1/M00/00/00/../../../../../../etc/passwd",
        "group1/M00/00/00/../" + name,
        with_name(trunk, "../" + name[3:]),
        with_name(trunk, ".." + name[2:]),
        with_name(trunk, "." * len(name)),
        trunk + "/",
        trunk.replace("/00/00/", "/00/00//"),
        trunk[:-1],
        plain[:-1],
        trunk[:-8],
        trunk + "x" * 80,
        plain + "y" * 100,
        "group1/M00/00/00/" + "A" * 200,
        trunk[:-1] + "\x00",
        plain[:-1] + "\n",
        " " + trunk,
        trunk[:-1] + "é",
        trunk.replace("M00", "M\uff100"),  # a full-width digit
        forged_trunk_id(store, trunk, 99_999, 0, 256),  # no such container
        forged_trunk_id(store, trunk, 1, 4 * MIB - 10, 256),  # past the container's end
        forged_trunk_id(store, trunk, 1, 2**32 - 1, 2**32 - 1),
        forged_trunk_id(store, trunk, 1, 0, 0),
        forged_trunk_id(store, trunk, 1, 1000, 256),  # inside a free range
        with_name(plain, fid.encode_name(0x7F000001, int(time.time()), fid.make_size_field(5), 0, None, "1234567")),
    ]


OPERATIONS = {
    "get": lambda s, f: s.get(f),
    "get_range": lambda s, f: s.get(f, 1, 5),
    "read_into": lambda s, f: s.read_into(f, io.BytesIO()),
    "locate": lambda s, f: s.locate(f),
    "stat": lambda s, f: s.stat(f),
    "delete": lambda s, f: s.delete(f),
    "set_meta": lambda s, f: s.set_meta(f, {"a": "b"}),
    "merge_meta": lambda s, f: s.set_meta(f, {"a": "b"}, merge=True),
    "get_meta": lambda s, f: s.get_meta(f),
    "append": lambda s, f: s.append(f, b"more"),
    "modify": lambda s, f: s.modify(f, 0, b"x"),
    "truncate": lambda s, f: s.truncate(f, 0),
    "regenerate": lambda s, f: s.regenerate_appender_name(f),
    "put_slave": lambda s, f: s.put_slave(f, "_x", b"slave", "txt"),
}


def test_malformed_and_foreign_ids_raise_only_engine_errors(open_store, tmp_path, store_root, check_store, fs):
    store = open_store(**SETTINGS)
    trunk = store.put(b"trunk data", "txt")
    plain = store.put(b"p" * 100_000, "bin")
    appender = store.put_appender(b"appender")
    store.set_meta(trunk, {"keep": "1"})
    (tmp_path / "outside.txt").write_bytes(b"secret")
    before = fs.walk_files(tmp_path)
    ids = bad_ids(store, trunk, plain)
    for bad in ids:
        assert not store.exists(bad), bad
        for name, operation in OPERATIONS.items():
            try:
                operation(store, bad)
            except TrunkstoreError as exc:
                assert isinstance(exc, (ValueError, FileNotFoundError)), (name, bad, exc)
            except BaseException as exc:
                pytest.fail(f"{name}({bad!r}) raised {type(exc).__name__}: {exc}")
            else:
                pytest.fail(f"{name}({bad!r}) succeeded")
    assert fs.walk_files(tmp_path) == before
    assert (tmp_path / "outside.txt").read_bytes() == b"secret"
    assert store.get(trunk) == b"trunk data"
    assert store.get(plain) == b"p" * 100_000
    assert store.get(appender) == b"appender"
    assert store.get_meta(trunk) == {"keep": "1"}
    check_store(store)


def test_foreign_ids_are_invalid_file_ids(open_store):
    store = open_store(**SETTINGS)
    trunk = store.put(b"x")
    rest = trunk.split("/", 1)[1]
    for bad in ("group2/" + rest, "group1/M05/" + rest.split("/", 1)[1], trunk.replace("/M00/00/", "/M00/1F/")):
        for call in (store.get, store.stat, store.delete, lambda f: store.set_meta(f, {"a": "b"})):
            with pytest.raises(InvalidFileId) as info:
                call(bad)
            assert isinstance(info.value, ValueError) and info.value.status == errno.EINVAL
        with pytest.raises(InvalidFileId):
            store.append(bad, b"x")


def test_non_string_ids_are_invalid_file_ids(store):
    for bad in (None, 5, b"group1/M00/00/00/x", ["group1"]):
        for name, operation in OPERATIONS.items():
            try:
                operation(store, bad)
            except InvalidFileId:
                pass
            except BaseException as exc:
                pytest.fail(f"{name}({bad!r}) raised {type(exc).__name__}: {exc}")


def test_trunk_id_with_another_directory_is_not_found(open_store, check_store):
    store = open_store(store_path_count=2, sync_mode="none")
    real = store.put(b"real file", "txt")
    store.set_meta(real, {"owner": "me"})
    aliases = [real.replace("/00/00/", "/00/01/"), real.replace("/M00/", "/M01/")]
    assert all(parse_file_id(a).trunk == parse_file_id(real).trunk for a in aliases)
    for alias in aliases:
        for call in (store.get, store.stat, store.delete):
            with pytest.raises(FileNotFound):
                call(alias)
                pytest.fail(f"{call.__name__}({alias}) answered for {real}")
    assert store.get(real) == b"real file"
    assert store.get_meta(real) == {"owner": "me"}
    check_store(store)


@pytest.mark.parametrize("reopen", [False, True])  # after reopening, the slots are learnt from the headers
def test_forged_id_cannot_free_or_read_a_range_inside_another_file(open_store, check_store, reopen):
    store = open_store(**SETTINGS)
    now = int(time.time())
    inner = b"x" * 100
    alloc = 24 + len(inner) + 1000  # reaches past the uploader's own slot into the next file
    header = HEADER.pack(b"F", alloc, len(inner), zlib.crc32(inner), now, b"0000000")
    attacker = store.put(header + inner + bytes(8))
    victim_data = b"V" * 900
    victim = store.put(victim_data)
    if reopen:
        store.close()
        store = open_store(**SETTINGS)
    parsed = parse_file_id(attacker)
    name = fid.encode_name(
        parsed.source,
        now,
        fid.make_size_field(len(inner), trunk=True),
        zlib.crc32(inner),
        fid.TrunkLocation(parsed.trunk.trunk_id, parsed.trunk.offset + 24, alloc),
        "0000000",
    )
    forged = with_name(attacker, name)
    for call in (
        store.get,
        lambda f: store.get(f, 1, 10),
        store.stat,
        store.locate,
        lambda f: store.read_into(f, io.BytesIO()),
        store.delete,
    ):
        with pytest.raises(FileNotFound):
            call(forged)
            pytest.fail("a forged ID inside another file's data was taken for a file")
    assert store.get(victim) == victim_data
    assert store.get(attacker) == header + inner + bytes(8)
    check_store(store)


def test_slots_are_learnt_past_a_reservation_not_yet_written(open_store, check_store):
    store = open_store(**SETTINGS)
    ids = [store.put(bytes([i]) * 1000) for i in range(5)]
    store.delete(ids[1])
    store.close()
    store = open_store(**SETTINGS)
    pool = store._pool
    reservation = pool.reserve(0, 1024)  # best fit: the hole ids[1] left, its header zeroed
    assert (reservation.container.trunk_id, reservation.offset) == (
        parse_file_id(ids[1]).trunk.trunk_id,
        parse_file_id(ids[1]).trunk.offset,
    )
    for i in (0, 2, 3, 4):  # the first access walks the container's headers, stepping over the hole
        assert store.get(ids[i]) == bytes([i]) * 1000
    with pytest.raises(FileNotFound):
        store.get(ids[1])
    pool.release(reservation)
    check_store(store)


def test_check_compares_the_known_slot_starts_with_the_headers(open_store):
    store = open_store(**SETTINGS)
    ids = [store.put(bytes([i]) * 1000) for i in range(3)]
    trunk = parse_file_id(ids[1]).trunk
    assert store.check().ok
    starts = store._pool._starts.known(trunk.trunk_id)
    assert starts is not None
    starts.add(trunk.offset + 24)  # as if a slot started inside a file's data
    problems = store.check().problems
    assert any("slot starts" in problem for problem in problems), problems
    starts.discard(trunk.offset + 24)
    starts.discard(trunk.offset)  # as if a live slot were forgotten
    assert not store.check().ok
    starts.add(trunk.offset)
    assert store.check().ok


# ---- extensions, prefixes, metadata -----------------------------------------------------------------

BAD_EXTS = ["toolong7", "a/b", "x y", "é", "a\x00", "/", "\\x", "a*", None, b"txt"]


@pytest.mark.parametrize("ext", BAD_EXTS)
def test_bad_extension_is_invalid_argument(open_store, tmp_path, fs, ext):
    store = open_store(**SETTINGS)
    master = store.put(b"master", "txt")
    before = fs.walk_files(tmp_path)
    counters = store.stats().counters
    calls = [
        lambda: store.put(b"small", ext),
        lambda: store.put(b"L" * 100_000, ext),
        lambda: store.put_file(io.BytesIO(b"small"), ext),
        lambda: store.put_file(io.BytesIO(b"L" * 100_000), ext),
        lambda: store.put_many([(b"small", ext)]),
        lambda: store.put_appender(b"a", ext),
        lambda: store.put_slave(master, "_p", b"slave", ext),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as info:
            call()
        assert isinstance(info.value, ValueError) and info.value.status == errno.EINVAL
    assert fs.walk_files(tmp_path) == before
    assert store.stats().counters["upload_ok"] == counters["upload_ok"]


@pytest.mark.parametrize("ext", ["", "a", "jpg", "tar.gz", "abcdef", "a-b_c", "..", "."])
def test_good_extensions(store, ext):
    file_id = store.put(b"data", ext)
    tail = parse_file_id(file_id).tail
    if ext:
        assert tail.endswith("." + ext) and all(c.isdigit() for c in tail[: 6 - len(ext)])
    else:
        assert tail.isdigit()
    assert len(tail) == 7
    assert store.get(file_id) == b"data"


@pytest.mark.parametrize("prefix", ["", "a/b", "x" * 17, "x y", "é", "a\x00", None])
def test_bad_slave_prefix_is_invalid_argument(open_store, tmp_path, fs, prefix):
    store = open_store(**SETTINGS)
    master = store.put(b"m" * 100_000, "jpg")
    before = fs.walk_files(tmp_path)
    with pytest.raises(InvalidArgument):
        store.put_slave(master, prefix, b"thumb", "jpg")
    assert fs.walk_files(tmp_path) == before


@pytest.mark.parametrize(
    "meta",
    [
        {"": "v"},
        {"n" * 65: "v"},
        {"n": "v" * 257},
        {"é" * 33: "v"},  # 66 bytes
        {"a\x01b": "v"},
        {"a": "b\x02c"},
        {"a": 5},
        {5: "a"},
    ],
)
def test_bad_metadata_is_invalid_and_changes_nothing(store, meta):
    file_id = store.put(b"x")
    store.set_meta(file_id, {"keep": "me"})
    for merge in (False, True):
        with pytest.raises(InvalidArgument):
            store.set_meta(file_id, meta, merge=merge)
    assert store.get_meta(file_id) == {"keep": "me"}


def test_metadata_limits_are_inclusive(store):
    file_id = store.put(b"x")
    meta = {"n" * 64: "v" * 256, "é" * 32: "ü" * 128}
    store.set_meta(file_id, meta)
    assert store.get_meta(file_id) == meta


# ---- a full disk ------------------------------------------------------------------------------------


def test_reserved_space_refuses_uploads_and_keeps_old_files(fake_disk, open_store, store_root, check_store, fs):
    settings = {**SETTINGS, "reserved_storage_space": "1G"}
    store = open_store(**settings)
    old = {store.put(b"t" * 1000): b"t" * 1000, store.put(b"p" * 100_000): b"p" * 100_000}
    appender = store.put_appender(b"app")
    store.close()

    fake_disk.available = {0: (1 << 30) + 20_000}  # 20 kB above the reserve
    store = open_store(**settings)
    assert store.put(b"fits" * 1000)  # 4 kB
    calls = [
        lambda: store.put(b"x" * 60_000),
        lambda: store.put(b"y" * 100_000),
        lambda: store.put_file(io.BytesIO(b"z" * 200_000)),
        lambda: store.put_many([b"w" * 60_000]),
        lambda: store.put_appender(b"a" * 100_000),
        lambda: store.append(appender, b"b" * 100_000),
        lambda: store.modify(appender, 3, b"c" * 100_000),
        lambda: store.put_slave(appender, "_s", b"d" * 100_000),
    ]
    for call in calls:
        with pytest.raises(StoreFull) as info:
            call()
        assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    for file_id, data in old.items():
        assert store.get(file_id) == data
    assert store.get(appender) == b"app"
    tmp_dir = store.layout.tmp_dir(0)
    assert not os.path.isdir(tmp_dir) or os.listdir(tmp_dir) == []
    check_store(store)
    store.close()

    fake_disk.available = {0: 100 << 30}
    store = open_store(**settings)
    for data in (b"x" * 60_000, b"y" * 100_000):
        assert store.get(store.put(data)) == data
    check_store(store)


def test_real_reserve_percentage_refuses_uploads(open_store):
    store = open_store(reserved_storage_space="99.999%", sync_mode="none")
    for call in (lambda: store.put(b"x"), lambda: store.put(b"y" * 17 * MIB), lambda: store.put_appender(b"z")):
        with pytest.raises(StoreFull):
            call()


class FailingOS:
    """Stands in for the ``os`` module of one engine module, failing chosen calls with an errno."""

    def __init__(self, code: int, *names: str) -> None:
        self.code = code
        self.names = set(names)
        self.failures = 0

    def __getattr__(self, name: str):
        real = getattr(os, name)
        if name not in self.names:
            return real

        def fail(*args, **kwargs):
            self.failures += 1
            raise OSError(self.code, os.strerror(self.code))

        return fail


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_enospc_writing_a_slot_releases_it(monkeypatch, open_store, check_store, sync_mode):
    store = open_store(**{**SETTINGS, "sync_mode": sync_mode})
    kept = store.put(b"k" * 500)
    free_before = store.stats().trunk_free_bytes
    failing = FailingOS(errno.ENOSPC, "pwrite", "pwritev")
    with monkeypatch.context() as patch:
        patch.setattr(trunkstore.trunk, "os", failing)
        for size in (10, 1000, 60_000):
            with pytest.raises(StoreFull) as info:
                store.put(b"f" * size)
            assert info.value.errno == errno.ENOSPC
        with pytest.raises(StoreFull):
            store.put_many([b"g" * 100])
    assert failing.failures >= 4
    assert store.stats().trunk_free_bytes == free_before
    check_store(store)
    after = store.put(b"a" * 1000)
    assert parse_file_id(after).trunk.offset == parse_file_id(kept).trunk.alloc_size  # the released slot
    assert store.get(after) == b"a" * 1000
    assert store.get(kept) == b"k" * 500
    check_store(store)


def test_other_write_errors_release_the_slot_too(monkeypatch, open_store, check_store):
    store = open_store(**SETTINGS)
    store.put(b"k")
    free_before = store.stats().trunk_free_bytes
    with monkeypatch.context() as patch:
        patch.setattr(trunkstore.trunk, "os", FailingOS(errno.EIO, "pwrite", "pwritev"))
        with pytest.raises(OSError) as info:
            store.put(b"f" * 100)
        assert info.value.errno == errno.EIO
    assert store.stats().trunk_free_bytes == free_before
    check_store(store)
    assert store.get(store.put(b"ok")) == b"ok"


def test_enospc_writing_a_plain_file_leaves_nothing(monkeypatch, open_store, store_root, check_store, fs):
    store = open_store(**SETTINGS)
    appender = store.put_appender(b"start")
    before = fs.walk_files(store_root)
    with monkeypatch.context() as patch:
        patch.setattr(trunkstore.plainfiles, "os", FailingOS(errno.ENOSPC, "write", "pwrite"))
        for call in (
            lambda: store.put(b"p" * 100_000),
            lambda: store.put_file(io.BytesIO(b"q" * 200_000)),
            lambda: store.put_appender(b"a"),
            lambda: store.put_slave(appender, "_s", b"s"),
            lambda: store.append(appender, b"more"),
            lambda: store.modify(appender, 0, b"X"),
        ):
            with pytest.raises(StoreFull) as info:
                call()
            assert info.value.errno == errno.ENOSPC
    after = {path for path in fs.walk_files(store_root) if not path.startswith("meta.db")}
    assert after == {path for path in before if not path.startswith("meta.db")}
    assert store.get(appender) == b"start"
    check_store(store)
    assert store.get(store.put(b"p" * 100_000)) == b"p" * 100_000


# ---- what counts as a file's bytes --------------------------------------------------------------------
def test_any_contiguous_buffer_is_stored_byte_for_byte(store, check_store):
    # len() of a memoryview of wider items counts items: the ID must still record the size in bytes.
    numbers = array.array("i", range(1000))
    expected = numbers.tobytes()
    small = store.put(memoryview(numbers))
    large = store.put(memoryview(array.array("q", range(200_000))))
    many = store.put_many([memoryview(numbers), (memoryview(numbers), "bin")])
    appended = store.put_appender(memoryview(numbers))
    assert store.append(appended, memoryview(array.array("h", [1, 2]))) == len(expected) + 4
    for file_id in (small, *many):
        assert store.get(file_id) == expected and store.stat(file_id).size == 4000
    assert store.get(large) == array.array("q", range(200_000)).tobytes()
    assert store.get(appended) == expected + array.array("h", [1, 2]).tobytes()
    slave = store.put_slave(large, "_s", memoryview(numbers), "bin")
    assert store.get(slave) == expected
    check_store(store)


@pytest.mark.parametrize(
    "data", ["text", 12, memoryview(b"every other byte")[::2], None], ids=["str", "int", "strided", "none"]
)
def test_data_without_a_flat_buffer_is_invalid_and_stores_nothing(store, data):
    before = store.stats()
    for call in (
        lambda: store.put(data),
        lambda: store.put_many([data]),
        lambda: store.put_appender(data),
    ):
        with pytest.raises(InvalidArgument, match="contiguous bytes-like object"):
            call()
    with pytest.raises(InvalidArgument, match="pairs, not a 3-tuple"):
        store.put_many([(b"data", "bin", "extra")])
    after = store.stats()
    assert (after.counters, after.trunk_free_bytes) == (before.counters, before.trunk_free_bytes)
