"""Content dedup (``dedup=True``): identical uploads share one slot or one inode, safely."""

from __future__ import annotations

import errno
import io
import os
import threading

import pytest

from trunkstore import CorruptData, FileKind, FileNotFound, Store, parse_file_id

MIB = 1 << 20
SETTINGS = {"dedup": True, "slot_max_size": 64 * 1024, "trunk_file_size": 4 * MIB, "sync_mode": "none"}


@pytest.fixture
def dedup_store(open_store) -> Store:
    return open_store(**SETTINGS)


def slot(file_id: str) -> tuple[int, int]:
    trunk = parse_file_id(file_id).trunk
    assert trunk is not None
    return trunk.trunk_id, trunk.offset


def free_bytes(store: Store) -> int:
    return store.stats().trunk_free_bytes


@pytest.mark.parametrize("order", ["first-deleted-first", "second-deleted-first"])
def test_identical_small_files_share_a_slot(dedup_store, check_store, order):
    data = b"same bytes" * 100
    base = dedup_store.put(b"unrelated")
    free_start = free_bytes(dedup_store)
    first = dedup_store.put(data, "txt")
    free_one = free_bytes(dedup_store)
    assert free_one == free_start - 1024
    second = dedup_store.put(data, "txt")
    assert second != first
    assert free_bytes(dedup_store) == free_one
    assert slot(first) == slot(second)
    assert dedup_store.get(first) == data and dedup_store.get(second) == data
    assert dedup_store.stat(first).kind == FileKind.TRUNK and dedup_store.stat(second).kind == FileKind.TRUNK
    assert dedup_store.stats().dedup_holders == 3
    check_store(dedup_store)
    gone, kept = (first, second) if order == "first-deleted-first" else (second, first)
    dedup_store.delete(gone)
    with pytest.raises(FileNotFound):
        dedup_store.get(gone)
    with pytest.raises(FileNotFound):
        dedup_store.delete(gone)
    assert dedup_store.get(kept) == data
    assert dedup_store.get(kept, 10, 10) == data[10:20]
    assert free_bytes(dedup_store) == free_one
    check_store(dedup_store)
    dedup_store.delete(kept)
    for file_id in (first, second):
        with pytest.raises(FileNotFound):
            dedup_store.get(file_id)
    assert free_bytes(dedup_store) == free_start
    assert dedup_store.get(base) == b"unrelated"
    check_store(dedup_store)


def test_many_holders_and_different_extensions(dedup_store, check_store):
    data = b"x" * 3000
    ids = [dedup_store.put(data, ext) for ext in ("", "a", "jpg", "tar.gz", "", "png")]
    assert len(set(ids)) == 6 and len({slot(i) for i in ids}) == 1
    for file_id in ids[1::2]:
        dedup_store.delete(file_id)
    for file_id in ids[0::2]:
        assert dedup_store.get(file_id) == data
    check_store(dedup_store)
    # A new identical upload after some holders went joins the remaining ones.
    later = dedup_store.put(data)
    assert slot(later) == slot(ids[0])
    for file_id in [*ids[0::2], later]:
        dedup_store.delete(file_id)
    assert dedup_store.stats().dedup_holders == 0
    check_store(dedup_store)


def test_same_size_different_content_is_not_merged(dedup_store, check_store):
    dedup_store.put(b"first container")
    free_start = free_bytes(dedup_store)
    one = dedup_store.put(b"a" * 1000)
    two = dedup_store.put(b"b" * 1000)
    three = dedup_store.put(b"a" * 999 + b"b")
    assert len({slot(one), slot(two), slot(three)}) == 3
    assert free_start - free_bytes(dedup_store) == 3 * 1024
    assert dedup_store.get(one) == b"a" * 1000
    assert dedup_store.get(two) == b"b" * 1000
    assert dedup_store.get(three) == b"a" * 999 + b"b"
    check_store(dedup_store)


def test_empty_files_dedup(dedup_store, check_store):
    ids = [dedup_store.put(b"") for _ in range(3)]
    assert all(dedup_store.get(i) == b"" for i in ids)
    for file_id in ids:
        dedup_store.delete(file_id)
    check_store(dedup_store)


@pytest.mark.parametrize("how", ["put", "put_file"])
def test_identical_large_files_are_hard_linked(dedup_store, check_store, how):
    data = os.urandom(3 * MIB)

    def upload() -> str:
        return dedup_store.put(data, "bin") if how == "put" else dedup_store.put_file(io.BytesIO(data), "bin")

    first = upload()
    second = upload()
    assert first != second
    path_one, _, _ = dedup_store.locate(first)
    path_two, _, _ = dedup_store.locate(second)
    assert path_one != path_two
    assert os.path.samefile(path_one, path_two) and os.stat(path_one).st_nlink == 2
    assert dedup_store.get(first) == data and dedup_store.get(second) == data
    assert {dedup_store.stat(first).kind, dedup_store.stat(second).kind} <= {FileKind.LINK, FileKind.NORMAL}
    assert dedup_store.stat(second).kind == FileKind.LINK
    dedup_store.delete(first)
    assert dedup_store.get(second) == data
    assert os.stat(path_two).st_nlink == 1
    assert dedup_store.stat(second).kind == FileKind.NORMAL
    dedup_store.delete(second)
    with pytest.raises(FileNotFound):
        dedup_store.get(second)
    assert dedup_store.stats().dedup_holders == 0
    check_store(dedup_store)


def test_large_files_that_differ_are_separate(dedup_store):
    one = os.urandom(MIB)
    two = bytearray(one)
    two[-1] ^= 1
    first = dedup_store.put(one)
    second = dedup_store.put(bytes(two))
    assert not os.path.samefile(dedup_store.locate(first)[0], dedup_store.locate(second)[0])
    assert dedup_store.get(second) == bytes(two)


def test_dedup_index_survives_reopen(store_root, check_store):
    data = b"persist" * 100
    with Store(store_root, **SETTINGS) as store:
        first = store.put(data)
    with Store(store_root, **SETTINGS) as store:
        second = store.put(data)
        assert slot(second) == slot(first)
        store.delete(first)
        assert store.get(second) == data
        check_store(store)
    with Store(store_root, **SETTINGS) as store:
        assert store.get(second) == data
        store.delete(second)
        check_store(store)


def test_freed_shared_slot_never_answers_for_old_ids(dedup_store, check_store):
    data = b"shared" * 100
    ids = [dedup_store.put(data) for _ in range(3)]
    for file_id in ids:
        dedup_store.delete(file_id)
    fresh = dedup_store.put(b"fresh" * 120)
    assert slot(fresh) == slot(ids[0])
    for file_id in ids:
        with pytest.raises(FileNotFound):
            dedup_store.get(file_id)
        with pytest.raises(FileNotFound):
            dedup_store.delete(file_id)
    assert dedup_store.get(fresh) == b"fresh" * 120
    check_store(dedup_store)


def test_scrub_counts_shared_slots_once(dedup_store):
    for _ in range(4):
        dedup_store.put(b"z" * 500)
    report = dedup_store.scrub()
    assert report.ok and report.files_checked == 1


# ---- holders that cannot be shared ----------------------------------------------------------------
UPLOADS = {
    "put": lambda store, data: store.put(data),
    "put_many": lambda store, data: store.put_many([data])[0],
    "put_file": lambda store, data: store.put_file(io.BytesIO(data)),
}


def corrupt(store: Store, file_id: str) -> None:
    """Flip one byte of the file's stored bytes on disk, behind the store's back."""
    path, offset, size = store.locate(file_id)
    with open(path, "r+b") as handle:
        handle.seek(offset + size // 2)
        byte = handle.read(1)
        handle.seek(offset + size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))


def same_copy(store: Store, one: str, two: str) -> bool:
    """Whether two IDs share stored bytes (one slot, or one inode)."""
    path_one, offset_one, _ = store.locate(one)
    path_two, offset_two, _ = store.locate(two)
    return os.path.samefile(path_one, path_two) and offset_one == offset_two


@pytest.mark.parametrize("size", [1000, 3 * MIB], ids=["trunk", "plain"])
@pytest.mark.parametrize("how", sorted(UPLOADS))
def test_a_corrupt_copy_never_fails_an_upload_of_its_content(dedup_store, check_store, how, size):
    data = os.urandom(size)
    upload = UPLOADS[how]
    corrupted = dedup_store.put(data)
    corrupt(dedup_store, corrupted)
    fresh = upload(dedup_store, data)
    assert dedup_store.get(fresh) == data
    assert not same_copy(dedup_store, fresh, corrupted)
    later = upload(dedup_store, data)  # shares the good copy: the index names it now
    assert same_copy(dedup_store, later, fresh)
    assert dedup_store.get(later) == data
    with pytest.raises(CorruptData):  # left as it is, for scrub to report
        dedup_store.get(corrupted)
    assert len(dedup_store.scrub().corrupt) == 1
    check_store(dedup_store)
    for file_id in (corrupted, fresh, later):
        dedup_store.delete(file_id)
    assert dedup_store.stats().dedup_holders == 0
    check_store(dedup_store)


LINK_LIMIT = 2


@pytest.fixture
def link_limit(monkeypatch):
    """A file system that allows LINK_LIMIT links per inode (ext4's 65,000 are too many to reach here):
    ``os.link`` refuses one more with EMLINK, and ``os.pathconf`` reports the limit."""
    real_link, real_pathconf = os.link, os.pathconf

    def link(src, dst, *args, **kwargs):
        if os.stat(src).st_nlink >= LINK_LIMIT:
            raise OSError(errno.EMLINK, os.strerror(errno.EMLINK), src)
        real_link(src, dst, *args, **kwargs)

    def pathconf(path, name):
        return LINK_LIMIT if name == "PC_LINK_MAX" else real_pathconf(path, name)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "pathconf", pathconf)


@pytest.fixture
def unreported_link_limit(monkeypatch):
    """As :func:`link_limit`, but ``os.pathconf`` does not tell: the refusal comes from ``os.link`` alone
    (as when something outside the store adds links between the check and the link)."""
    real_link = os.link

    def link(src, dst, *args, **kwargs):
        if os.stat(src).st_nlink >= LINK_LIMIT:
            raise OSError(errno.EMLINK, os.strerror(errno.EMLINK), src)
        real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)


@pytest.mark.parametrize("how", ["put", "put_file"])
@pytest.mark.parametrize("limit", ["link_limit", "unreported_link_limit"])
def test_a_holder_at_its_link_limit_is_copied_and_the_copy_is_shared_from_then_on(
    dedup_store, check_store, request, limit, how
):
    request.getfixturevalue(limit)
    data = os.urandom(MIB)
    ids = [UPLOADS[how](dedup_store, data) for _ in range(5)]
    inodes = [os.stat(dedup_store.locate(file_id)[0]).st_ino for file_id in ids]
    assert inodes[0] == inodes[1] != inodes[2] == inodes[3] != inodes[4]
    assert inodes[0] != inodes[4]
    assert all(dedup_store.get(file_id) == data for file_id in ids)
    assert dedup_store.stats().dedup_holders == 5
    check_store(dedup_store)
    for file_id in ids:
        dedup_store.delete(file_id)
    assert dedup_store.stats().dedup_holders == 0
    check_store(dedup_store)


#: How long a thread stopped inside an upload lets the racing thread try to get in before going on.
GRACE_SECONDS = 0.3
#: Upper bound for a thread to finish at all (a hang fails the test instead of stalling the run).
JOIN_SECONDS = 60


def race(target: object, method: str, when, racing_work, main_work):
    """Run ``main_work`` in this thread; when it calls ``target.method`` with arguments for which
    ``when(*args)`` is true (the first time), start ``racing_work`` in a second thread and let it run
    for up to ``GRACE_SECONDS`` before the call goes on.  Returns both results.

    The store must keep the racing thread out (it then finishes later) or cope with what it did.
    """
    real = getattr(target, method)
    reached, raced = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def stopping_in_the_middle(*args):
        if not reached.is_set() and when(*args):
            reached.set()
            raced.wait(timeout=GRACE_SECONDS)
        return real(*args)

    def racer() -> None:
        try:
            if reached.wait(timeout=JOIN_SECONDS):
                outcome["racing"] = racing_work()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            raced.set()

    thread = threading.Thread(target=racer, name="racer")
    thread.start()
    setattr(target, method, stopping_in_the_middle)
    try:
        result = main_work()
    finally:
        delattr(target, method)
        was_reached = reached.is_set()
        reached.set()
        thread.join(timeout=JOIN_SECONDS)
    assert was_reached, f"{method} was never called"
    assert not thread.is_alive(), "the racing thread hangs"
    assert "error" not in outcome, outcome.get("error")
    return result, outcome["racing"]


def test_alias_racing_a_delete_and_reuse_of_its_slot(dedup_store, check_store):
    # A second thread deletes the holder and stores other bytes (which would reuse its slot) between
    # the check of the holder and the marking of its slot as shared.
    data, other = b"x" * 1000, b"y" * 1000
    holder = dedup_store.put(data)

    def delete_and_reuse() -> str:
        dedup_store.delete(holder)
        return dedup_store.put(other)

    alias, other_id = race(
        dedup_store._pool, "mark_shared", lambda *_: True, delete_and_reuse, lambda: dedup_store.put(data)
    )
    assert dedup_store.get(other_id) == other
    try:
        assert dedup_store.get(alias) == data
    except FileNotFound:
        raise AssertionError(f"acknowledged upload {alias} is lost") from None
    with pytest.raises(FileNotFound):
        dedup_store.get(holder)
    check_store(dedup_store)


def test_alias_racing_a_delete_of_the_last_holder(dedup_store, check_store):
    # A second thread deletes the only holder between the marking of its slot as shared and the
    # registration of the new alias as a holder.
    data = b"x" * 1000
    holder = dedup_store.put(data)
    alias, _ = race(
        dedup_store._meta,
        "add_holder",
        lambda _digest, file_id: file_id != holder,
        lambda: dedup_store.delete(holder),
        lambda: dedup_store.put(data),
    )
    try:
        assert dedup_store.get(alias) == data
    except FileNotFound:
        raise AssertionError(f"acknowledged upload {alias} is lost") from None
    with pytest.raises(FileNotFound):
        dedup_store.get(holder)
    dedup_store.delete(alias)
    assert dedup_store.stats().dedup_holders == 0
    check_store(dedup_store)
