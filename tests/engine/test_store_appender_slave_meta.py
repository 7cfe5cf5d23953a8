"""Appender files (append, modify, truncate, regenerate), slave files, and metadata."""

from __future__ import annotations

import errno
import io
import os
import threading
import zlib

import pytest

from trunkstore import (
    FileExists,
    FileKind,
    FileNotFound,
    InvalidArgument,
    NotAppender,
    Store,
    parse_file_id,
)

MIB = 1 << 20
SMALL = {"slot_max_size": 64 * 1024, "trunk_file_size": 4 * MIB, "sync_mode": "none"}


@pytest.fixture
def small_store(open_store) -> Store:
    return open_store(**SMALL)


# ---- appender files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_append_modify_truncate(open_store, check_store, sync_mode):
    store = open_store(**{**SMALL, "sync_mode": sync_mode})
    file_id = store.put_appender(b"hello", "log")
    parsed = parse_file_id(file_id)
    assert parsed.kind == FileKind.APPENDER and parsed.is_appender and parsed.trunk is None
    assert len(file_id.split("/", 1)[1]) == 44 and file_id.endswith(".log")
    model = bytearray(b"hello")
    assert store.append(file_id, b" world") == 11
    model += b" world"
    assert store.get(file_id) == model
    assert store.modify(file_id, 0, b"J") == 11
    model[0:1] = b"J"
    assert store.modify(file_id, 6, b"there, friend") == 19  # overwrites the tail and grows
    model[6:] = b"there, friend"
    assert store.modify(file_id, 19, b"!") == 20  # offset == size: writes at the end
    model += b"!"
    assert store.get(file_id) == model
    assert store.get(file_id, 6, 5) == model[6:11]
    store.truncate(file_id, 7)
    del model[7:]
    assert store.get(file_id) == model and store.stat(file_id).size == 7
    store.truncate(file_id, 7)  # to its own size: no change
    store.truncate(file_id)
    assert store.get(file_id) == b"" and store.stat(file_id).size == 0
    assert store.append(file_id, b"again") == 5
    assert store.get(file_id) == b"again"
    assert store.stat(file_id).kind == FileKind.APPENDER
    counters = store.stats().counters
    assert counters["append_ok"] == 2 and counters["modify_ok"] == 3 and counters["truncate_ok"] == 3
    check_store(store)


def test_modify_and_truncate_out_of_range(small_store, check_store):
    file_id = small_store.put_appender(b"0123456789")
    for offset in (11, 100, -1):
        with pytest.raises(InvalidArgument) as info:
            small_store.modify(file_id, offset, b"x")
        assert info.value.status == errno.EINVAL
    for size in (11, -1):
        with pytest.raises(InvalidArgument):
            small_store.truncate(file_id, size)
    assert small_store.get(file_id) == b"0123456789"
    counters = small_store.stats().counters
    assert counters["modify_ok"] == 0 and counters["truncate_ok"] == 0
    check_store(small_store)


def test_empty_and_large_appenders(small_store):
    empty = small_store.put_appender()
    assert small_store.get(empty) == b"" and small_store.stat(empty).size == 0
    small_store.append(empty, b"")
    assert small_store.get(empty) == b""
    big = b"B" * (3 * MIB)
    large = small_store.put_appender(big, "bin")
    assert small_store.append(large, big) == 6 * MIB
    assert small_store.get(large, 3 * MIB - 1, 2) == b"BB"
    out = io.BytesIO()
    assert small_store.read_into(large, out) == 6 * MIB and out.getvalue() == big + big


def test_append_to_the_wrong_kind_of_file(small_store):
    trunk = small_store.put(b"small")
    normal = small_store.put(b"n" * 100_000)
    slave = small_store.put_slave(normal, "_s", b"slave")
    for file_id in (normal, slave):
        for call in (
            lambda f: small_store.append(f, b"x"),
            lambda f: small_store.modify(f, 0, b"x"),
            lambda f: small_store.truncate(f, 0),
            small_store.regenerate_appender_name,
        ):
            with pytest.raises(NotAppender) as info:
                call(file_id)
            assert isinstance(info.value, ValueError) and info.value.status == errno.EINVAL
    for call in (
        lambda f: small_store.append(f, b"x"),
        lambda f: small_store.modify(f, 0, b"x"),
        lambda f: small_store.truncate(f, 0),
        small_store.regenerate_appender_name,
    ):
        with pytest.raises(FileNotFound):
            call(trunk)
    assert small_store.get(trunk) == b"small"
    assert small_store.get(normal) == b"n" * 100_000
    gone = small_store.put_appender(b"x")
    small_store.delete(gone)
    with pytest.raises(FileNotFound):
        small_store.append(gone, b"y")


def test_metadata_set_while_an_appender_file_is_renamed_is_never_lost(small_store, monkeypatch):
    file_id = small_store.put_appender(b"content")
    small_store.set_meta(file_id, {"v": "1"})
    outcome: dict[str, object] = {}
    real_link = os.link

    def set_meta_meanwhile() -> None:
        try:
            small_store.set_meta(file_id, {"v": "2"})
            outcome["set"] = True
        except FileNotFound:
            outcome["set"] = False  # after the rename: the old ID is gone

    def link_slowly(src, dst, *args, **kwargs):
        # The rename has read the metadata it moves: a change to the old name now must wait for it.
        racer = threading.Thread(target=set_meta_meanwhile)
        racer.start()
        racer.join(0.3)
        real_link(src, dst, *args, **kwargs)
        outcome["racer"] = racer

    monkeypatch.setattr(os, "link", link_slowly)
    new_id = small_store.regenerate_appender_name(file_id)
    racer = outcome["racer"]
    assert isinstance(racer, threading.Thread)
    racer.join(30)
    assert outcome["set"] is False
    assert small_store.get_meta(new_id) == {"v": "1"}


def test_regenerate_appender_name(small_store, check_store):
    file_id = small_store.put_appender(b"first", "txt")
    small_store.append(file_id, b" second")
    small_store.set_meta(file_id, {"author": "me"})
    content = b"first second"
    new_id = small_store.regenerate_appender_name(file_id)
    parsed = parse_file_id(new_id)
    old = parse_file_id(file_id)
    assert new_id != file_id
    assert parsed.kind == FileKind.NORMAL and not parsed.is_appender
    assert parsed.declared_size == len(content) and parsed.crc32 == zlib.crc32(content)
    assert (parsed.store_path, parsed.sub_high, parsed.sub_low) == (old.store_path, old.sub_high, old.sub_low)
    assert parsed.ext == "txt" and len(new_id.split("/", 1)[1]) == 44
    st = small_store.stat(new_id)
    assert (st.size, st.crc32, st.kind) == (len(content), zlib.crc32(content), FileKind.NORMAL)
    assert small_store.get(new_id) == content
    assert small_store.get_meta(new_id) == {"author": "me"}
    for call in (small_store.get, small_store.stat, small_store.get_meta, small_store.delete):
        with pytest.raises(FileNotFound):
            call(file_id)
    with pytest.raises(NotAppender):
        small_store.append(new_id, b"x")
    assert small_store.stats().metadata_entries == 1
    small_store.delete(new_id)
    assert small_store.stats().metadata_entries == 0
    check_store(small_store)


def test_regenerate_empty_appender(small_store):
    new_id = small_store.regenerate_appender_name(small_store.put_appender())
    assert small_store.get(new_id) == b"" and small_store.stat(new_id).crc32 == 0


def test_concurrent_appends_never_interleave(small_store):
    file_id = small_store.put_appender()
    chunk = 1000

    def worker(tag: int) -> None:
        for _ in range(40):
            small_store.append(file_id, bytes([tag]) * chunk)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    data = small_store.get(file_id)
    assert len(data) == 8 * 40 * chunk
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert all(piece == piece[:1] * chunk for piece in pieces)
    assert sorted(piece[0] for piece in pieces) == sorted(list(range(1, 9)) * 40)


def test_appender_survives_reopen(store_root, check_store):
    with Store(store_root, **SMALL) as store:
        file_id = store.put_appender(b"a")
        store.append(file_id, b"b")
    with Store(store_root, **SMALL) as store:
        store.append(file_id, b"c")
        assert store.get(file_id) == b"abc"
        check_store(store)


# ---- slave files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("master_size", [100, 100_000])
@pytest.mark.parametrize("master_ext", ["jpg", ""])
def test_slave_naming_and_content(small_store, check_store, master_size, master_ext):
    master = small_store.put(b"m" * master_size, master_ext)
    slave = small_store.put_slave(master, "_150x150", b"thumbnail", "jpg")
    master_dir, master_name = master.rsplit("/", 1)
    base = master_name[: -len(master_ext) - 1] if master_ext else master_name
    assert slave == f"{master_dir}/{base}_150x150.jpg"
    parsed = parse_file_id(slave)
    assert parsed.kind == FileKind.SLAVE and parsed.is_slave and parsed.trunk is None
    assert small_store.get(slave) == b"thumbnail"
    st = small_store.stat(slave)
    assert (st.size, st.kind) == (9, FileKind.SLAVE)
    no_ext = small_store.put_slave(master, "-rawdata", io.BytesIO(b"R" * 200_000))
    assert no_ext == f"{master_dir}/{base}-rawdata"
    assert small_store.stat(no_ext).kind == FileKind.SLAVE
    assert small_store.get(no_ext) == b"R" * 200_000
    with pytest.raises(FileExists) as info:
        small_store.put_slave(master, "_150x150", b"other", "jpg")
    assert isinstance(info.value, FileExistsError) and info.value.errno == errno.EEXIST
    assert small_store.get(slave) == b"thumbnail"
    with pytest.raises(InvalidArgument):
        small_store.put_slave(slave, "_again", b"x", "jpg")  # a slave of a slave
    small_store.delete(slave)
    with pytest.raises(FileNotFound):
        small_store.get(slave)
    again = small_store.put_slave(master, "_150x150", b"second", "jpg")
    assert again == slave and small_store.get(slave) == b"second"
    small_store.delete(master)
    assert small_store.get(slave) == b"second"  # slaves outlive their master, as in FastDFS
    check_store(small_store)


@pytest.mark.parametrize(("prefix", "ext"), [("-raw", ""), ("s", "gz")])
@pytest.mark.parametrize("master_size", [100, 100_000])
def test_slave_name_never_looks_like_a_master_name(small_store, prefix, ext, master_size):
    master = small_store.put(b"m" * master_size, "jpg")
    try:
        slave = small_store.put_slave(master, prefix, b"s" * master_size, ext)
    except InvalidArgument:
        return  # refusing the name is a fine answer
    assert parse_file_id(slave).is_slave
    assert small_store.stat(slave).kind == FileKind.SLAVE
    assert small_store.get(slave) == b"s" * master_size


def test_slave_needs_a_live_master(small_store, fs, store_root):
    master = small_store.put(b"m" * 100, "jpg")
    small_store.delete(master)
    before = fs.walk_files(store_root)
    with pytest.raises(FileNotFound):
        small_store.put_slave(master, "_s", b"x", "jpg")
    with pytest.raises(FileNotFound):
        small_store.put_slave(master.replace("/00/00/", "/00/07/"), "_s", b"x", "jpg")
    assert {p for p in fs.walk_files(store_root) if not p.startswith("meta.db")} == {
        p for p in before if not p.startswith("meta.db")
    }


def test_failed_slave_leaves_no_temporary_file(small_store, store_root):
    master = small_store.put(b"m" * 100_000)
    small_store.put_slave(master, "_s", b"one")
    with pytest.raises(FileExists):
        small_store.put_slave(master, "_s", io.BytesIO(b"two" * 100_000))
    tmp = store_root / "M00" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


# ---- metadata ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["trunk", "normal", "appender", "slave"])
def test_metadata_set_merge_overwrite_delete(small_store, check_store, kind):
    master = small_store.put(b"m" * 100_000)
    file_id = {
        "trunk": lambda: small_store.put(b"t"),
        "normal": lambda: master,
        "appender": lambda: small_store.put_appender(b"a"),
        "slave": lambda: small_store.put_slave(master, "_s", b"s"),
    }[kind]()
    assert small_store.get_meta(file_id) == {}
    small_store.set_meta(file_id, {"b": "2", "a": "1"})
    assert small_store.get_meta(file_id) == {"a": "1", "b": "2"}
    small_store.set_meta(file_id, {"b": "3", "c": "ünï"}, merge=True)
    assert small_store.get_meta(file_id) == {"a": "1", "b": "3", "c": "ünï"}
    small_store.set_meta(file_id, {}, merge=True)
    assert small_store.get_meta(file_id) == {"a": "1", "b": "3", "c": "ünï"}
    small_store.set_meta(file_id, {"d": ""})
    assert small_store.get_meta(file_id) == {"d": ""}
    assert small_store.stats().metadata_entries == 1
    small_store.set_meta(file_id, {})  # an empty overwrite deletes
    assert small_store.get_meta(file_id) == {}
    assert small_store.stats().metadata_entries == 0
    small_store.set_meta(file_id, {"e": "5"})
    small_store.delete(file_id)
    assert small_store.stats().metadata_entries == 0
    with pytest.raises(FileNotFound):
        small_store.get_meta(file_id)
    with pytest.raises(FileNotFound):
        small_store.set_meta(file_id, {"x": "y"})
    check_store(small_store)


@pytest.mark.parametrize("merge", [False, True])
def test_refused_metadata_changes_nothing(small_store, merge):
    file_id = small_store.put(b"f")
    with pytest.raises(InvalidArgument):
        small_store.set_meta(file_id, {"": "v"}, merge=merge)
    assert small_store.get_meta(file_id) == {}
    assert small_store.stats().metadata_entries == 0
    small_store.set_meta(file_id, {"a": "1"})
    with pytest.raises(InvalidArgument):
        small_store.set_meta(file_id, {"a": "2", "n" * 65: "v"}, merge=merge)
    assert small_store.get_meta(file_id) == {"a": "1"}
    assert small_store.stats().metadata_entries == 1
    small_store.delete(file_id)
    assert small_store.stats().metadata_entries == 0


def test_metadata_does_not_pass_to_a_file_in_a_reused_slot(small_store):
    first = small_store.put(b"1" * 500)
    small_store.set_meta(first, {"secret": "yes"})
    small_store.delete(first)
    second = small_store.put(b"2" * 500)
    assert parse_file_id(second).trunk == parse_file_id(first).trunk
    assert small_store.get_meta(second) == {}


def test_metadata_is_per_file_and_survives_reopen(store_root, check_store):
    with Store(store_root, **SMALL) as store:
        ids = [store.put(bytes([i])) for i in range(20)]
        for i, file_id in enumerate(ids):
            store.set_meta(file_id, {"n": str(i)})
    with Store(store_root, **SMALL) as store:
        assert [store.get_meta(f) for f in ids] == [{"n": str(i)} for i in range(20)]
        assert store.stats().metadata_entries == 20
        check_store(store)


def _files_with_metadata(store_root, open_store, fs, n: int) -> tuple[int, int]:
    store = open_store(root=store_root, sync_mode="none")
    ids = []
    for start in range(0, n, 5000):
        ids += store.put_many([b"%d" % i for i in range(start, min(n, start + 5000))])
    store.sync()
    before = len(fs.walk_files(store_root))
    for i, file_id in enumerate(ids):
        store.set_meta(file_id, {"width": str(i), "height": "480"})
    store.sync()
    after = len(fs.walk_files(store_root))
    assert store.stats().metadata_entries == n
    assert store.get_meta(ids[-1]) == {"width": str(n - 1), "height": "480"}
    store.close()
    return before, after


def test_metadata_costs_no_file_per_file(tmp_path, open_store, fs):
    """20,000 files with metadata add no file; the store's file count does not depend on how many."""
    few = _files_with_metadata(tmp_path / "few", open_store, fs, 500)
    many = _files_with_metadata(tmp_path / "many", open_store, fs, 20_000)
    print("files before/after metadata:", few, many)
    assert few[0] == few[1]
    assert many[0] == many[1]
    assert few[1] == many[1]


def test_metadata_operations_never_scan_the_whole_table(small_store):
    ids = small_store.put_many([b"%d" % i for i in range(200)])
    for file_id in ids[:100]:
        small_store.set_meta(file_id, {"k": "v"})
    db = small_store._meta._db
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    try:
        small_store.set_meta(ids[150], {"k": "v"})
        small_store.set_meta(ids[150], {"j": "w"}, merge=True)
        small_store.get_meta(ids[150])
        small_store.delete(ids[150])
        small_store.set_meta(ids[0], {})
    finally:
        db.set_trace_callback(None)
    scans = []
    for statement in statements:
        if statement.split(None, 1)[0].upper() not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            continue
        for row in db.execute("EXPLAIN QUERY PLAN " + statement).fetchall():
            if row[3].startswith("SCAN"):
                scans.append((statement, row[3]))
    assert scans == []


def test_truncate_only_at_an_expected_size(small_store, check_store):
    file_id = small_store.put_appender(b"0123456789")
    assert small_store.truncate(file_id, 4, expected_size=9) is False
    assert small_store.get(file_id) == b"0123456789"
    assert small_store.truncate(file_id, 4, expected_size=10) is True
    assert small_store.get(file_id) == b"0123"
    assert small_store.truncate(file_id, 2) is True
    assert small_store.get(file_id) == b"01"
    check_store(small_store)
