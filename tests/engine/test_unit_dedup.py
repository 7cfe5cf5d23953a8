"""The dedup module: content signatures, byte-for-byte confirmation, and sharing a holder's slot or inode."""

from __future__ import annotations

import errno
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from trunkstore import FileNotFound, Store, parse_file_id
from trunkstore import dedup as dd
from trunkstore.plainfiles import Spooled
from trunkstore.slot import TYPE_FILE, TYPE_SHARED

MIB = 1 << 20
DEDUP = {"dedup": True, "slot_max_size": 64 * 1024, "trunk_file_size": 4 * MIB, "sync_mode": "none"}


@pytest.fixture
def dedup_store(open_store: Callable[..., Store]) -> Store:
    return open_store(**DEDUP)


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def put_direct(store: Store, data: bytes, ext: str = "") -> str:
    """``put_deduplicated`` as the store calls it: under the dedup lock, no space admitted yet."""
    with store._dedup_lock:
        return dd.put_deduplicated(store, data, len(data), zlib.crc32(data), ext, -1)


def slot_type(store: Store, file_id: str) -> bytes:
    trunk = parse_file_id(file_id).trunk
    assert trunk is not None
    return store._pool.read(trunk.trunk_id, trunk.offset, 1)


# ---- signatures ---------------------------------------------------------------------------------------
def test_digest_is_xxh3_128_then_the_length_big_endian() -> None:
    digest = dd.content_digest(b"abc")
    assert digest == xxhash.xxh3_128_digest(b"abc") + b"\0\0\0\0\0\0\0\x03"
    assert len(digest) == 24
    assert dd.content_digest(bytearray(b"abc")) == dd.content_digest(memoryview(b"xabc")[1:]) == digest


def test_digests_of_different_lengths_differ_even_for_empty_input() -> None:
    assert dd.content_digest(b"") == xxhash.xxh3_128_digest(b"") + bytes(8)
    assert dd.content_digest(b"\0") != dd.content_digest(b"\0\0")


@given(st.lists(st.binary(max_size=300), max_size=6))
def test_hashing_in_pieces_gives_the_digest_of_the_whole(pieces: list[bytes]) -> None:
    hasher = dd.ContentHasher()
    for piece in pieces:
        hasher.update(memoryview(piece))
    assert hasher.digest() == dd.content_digest(b"".join(pieces))


# ---- byte-for-byte confirmation -----------------------------------------------------------------------
def test_same_bytes_compares_a_range_with_a_whole_file(tmp_path: Path) -> None:
    container = write(tmp_path / "a", b"head" + b"payload" + b"tail")
    assert dd.same_bytes(container, 4, 7, write(tmp_path / "same", b"payload")) is True
    assert dd.same_bytes(container, 4, 7, write(tmp_path / "other", b"paylOad")) is False
    assert dd.same_bytes(container, 4, 6, write(tmp_path / "longer", b"payload")) is False  # sizes differ
    assert dd.same_bytes(container, 0, 0, write(tmp_path / "empty", b"")) is True


def test_same_bytes_is_false_when_the_range_runs_past_the_end(tmp_path: Path) -> None:
    short = write(tmp_path / "a", b"pay")
    assert dd.same_bytes(short, 0, 7, write(tmp_path / "b", b"payload")) is False


def test_same_bytes_finds_a_difference_past_the_first_chunk(tmp_path: Path) -> None:
    data = os.urandom(2 * MIB + 100)
    changed = bytearray(data)
    changed[-1] ^= 1
    path_a = write(tmp_path / "a", data)
    assert dd.same_bytes(path_a, 0, len(data), write(tmp_path / "b", data)) is True
    assert dd.same_bytes(path_a, 0, len(data), write(tmp_path / "c", bytes(changed))) is False


def test_same_bytes_of_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        dd.same_bytes(write(tmp_path / "a", b"x"), 0, 1, str(tmp_path / "missing"))


# ---- put_deduplicated and aliases ---------------------------------------------------------------------
def test_first_copy_is_stored_and_registered_as_the_holder(dedup_store: Store) -> None:
    file_id = put_direct(dedup_store, b"content" * 10, "txt")
    assert dedup_store._meta.find_content(dd.content_digest(b"content" * 10)) == file_id
    assert dedup_store._meta.is_holder(file_id)
    assert slot_type(dedup_store, file_id) == TYPE_FILE  # not shared until a second ID holds it
    assert dedup_store.get(file_id) == b"content" * 10


def test_second_copy_shares_the_slot_which_is_marked_shared_on_disk(dedup_store: Store) -> None:
    data = b"content" * 10
    first = put_direct(dedup_store, data, "txt")
    second = put_direct(dedup_store, data, "png")
    one, two = parse_file_id(first), parse_file_id(second)
    assert second != first and two.trunk == one.trunk
    assert (two.ext, two.declared_size, two.crc32) == ("png", len(data), zlib.crc32(data))
    assert slot_type(dedup_store, first) == TYPE_SHARED
    assert dedup_store._meta.holder_count() == 2
    assert dedup_store.get(second) == data


def test_a_holder_with_other_bytes_is_never_shared(dedup_store: Store) -> None:
    # As if two contents had the same signature: the index names a file whose bytes differ.
    decoy = dedup_store.put(b"d" * 500)
    dedup_store._meta._db.execute(
        "INSERT INTO content (digest, file_id, refs) VALUES (?, ?, 1)", (dd.content_digest(b"e" * 500), decoy)
    )
    stored = put_direct(dedup_store, b"e" * 500)
    assert parse_file_id(stored).trunk != parse_file_id(decoy).trunk
    assert slot_type(dedup_store, decoy) == TYPE_FILE
    assert dedup_store.get(stored) == b"e" * 500 and dedup_store.get(decoy) == b"d" * 500


def test_a_holder_whose_file_is_gone_is_not_shared(dedup_store: Store) -> None:
    data = os.urandom(100_000)
    holder = put_direct(dedup_store, data)
    os.unlink(dedup_store.locate(holder)[0])  # lost behind the store's back; the index still names it
    stored = put_direct(dedup_store, data)
    assert dedup_store.get(stored) == data
    assert os.stat(dedup_store.locate(stored)[0]).st_nlink == 1
    with pytest.raises(FileNotFound):
        dedup_store.get(holder)
    assert dedup_store._meta.find_content(dd.content_digest(data)) == stored  # later uploads share the copy


# ---- link_to_holder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("refusal", [errno.EMLINK, errno.EXDEV, errno.EPERM, errno.ENOTSUP], ids=errno.errorcode.get)
def test_a_refused_link_retires_the_holder(
    dedup_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    data = os.urandom(100_000)
    holder_path = dedup_store.locate(dedup_store.put(data))[0]

    def refuse(src: str, dst: str) -> None:
        raise OSError(refusal, os.strerror(refusal), src)

    monkeypatch.setattr(os, "link", refuse)  # only a file system's refusal: cannot be made real cheaply
    digest = dd.content_digest(data)
    assert dd.link_to_holder(dedup_store, digest, holder_path, str(tmp_path / "alias")) is False
    assert dedup_store._meta.find_content(digest) is None
    assert not (tmp_path / "alias").exists()


def test_a_link_failing_otherwise_raises_and_keeps_the_holder(
    dedup_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(100_000)
    holder = dedup_store.put(data)

    def fail(src: str, dst: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), src)

    monkeypatch.setattr(os, "link", fail)
    digest = dd.content_digest(data)
    with pytest.raises(OSError) as info:
        dd.link_to_holder(dedup_store, digest, dedup_store.locate(holder)[0], str(tmp_path / "alias"))
    assert info.value.errno == errno.EIO
    assert dedup_store._meta.find_content(digest) == holder


def test_a_link_makes_one_more_name_of_the_holder(dedup_store: Store, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    holder_path = dedup_store.locate(dedup_store.put(data))[0]
    assert dd.link_to_holder(dedup_store, dd.content_digest(data), holder_path, str(tmp_path / "alias")) is True
    assert os.path.samefile(holder_path, tmp_path / "alias")


# ---- plain_holder_path --------------------------------------------------------------------------------
def spooled(tmp_path: Path, data: bytes) -> Spooled:
    return Spooled(write(tmp_path / "spool", data), len(data), zlib.crc32(data))


def test_plain_holder_path_finds_a_plain_file_with_the_same_bytes(dedup_store: Store, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    holder = dedup_store.put(data)
    found = dd.plain_holder_path(dedup_store, dd.content_digest(data), spooled(tmp_path, data))
    assert found == dedup_store.locate(holder)[0]


def test_plain_holder_path_is_none_without_a_plain_holder_of_those_bytes(dedup_store: Store, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    assert dd.plain_holder_path(dedup_store, dd.content_digest(data), spooled(tmp_path, data)) is None
    dedup_store.put(data)
    other = bytearray(data)
    other[50_000] ^= 1
    # The index is asked for the holder's signature, but the spooled bytes differ (same size, then shorter).
    assert dd.plain_holder_path(dedup_store, dd.content_digest(data), spooled(tmp_path, bytes(other))) is None
    assert dd.plain_holder_path(dedup_store, dd.content_digest(data), spooled(tmp_path, data[:-1])) is None


def test_plain_holder_path_ignores_trunk_holders(dedup_store: Store, tmp_path: Path) -> None:
    dedup_store.put(b"small")
    assert dd.plain_holder_path(dedup_store, dd.content_digest(b"small"), spooled(tmp_path, b"small")) is None


def test_plain_holder_path_of_a_vanished_holder_is_none(dedup_store: Store, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    os.unlink(dedup_store.locate(dedup_store.put(data))[0])
    assert dd.plain_holder_path(dedup_store, dd.content_digest(data), spooled(tmp_path, data)) is None


def test_plain_holder_path_retires_a_holder_with_other_bytes(dedup_store: Store, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    path = dedup_store.locate(dedup_store.put(data))[0]
    with open(path, "r+b") as handle:  # corrupt behind the store's back
        handle.write(b"\0" * 10)
    digest = dd.content_digest(data)
    assert dd.plain_holder_path(dedup_store, digest, spooled(tmp_path, data)) is None
    assert dedup_store._meta.find_content(digest) is None


def test_plain_holder_path_retires_a_holder_at_its_link_limit(
    dedup_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(100_000)
    first = dedup_store.put(data)
    dedup_store.put(data)  # two links now
    real_pathconf = os.pathconf
    # A file system allowing two links per inode (ext4's 65,000 are too many to reach here).
    monkeypatch.setattr(os, "pathconf", lambda p, name: 2 if name == "PC_LINK_MAX" else real_pathconf(p, name))
    digest = dd.content_digest(data)
    assert dd.plain_holder_path(dedup_store, digest, spooled(tmp_path, data)) is None
    assert dedup_store._meta.find_content(digest) is None
    assert dedup_store._meta.is_holder(first)  # still a holder: only no longer shared by new uploads


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a second file system (tmpfs at /dev/shm)")
def test_plain_holder_path_passes_over_a_holder_on_another_file_system(dedup_store: Store) -> None:
    data = os.urandom(100_000)
    holder = dedup_store.put(data)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:
        if os.stat(elsewhere).st_dev == os.stat(dedup_store.locate(holder)[0]).st_dev:
            pytest.skip("/dev/shm is on the store's file system here")
        digest = dd.content_digest(data)
        assert dd.plain_holder_path(dedup_store, digest, spooled(Path(elsewhere), data)) is None
        # Not retired: uploads to the holder's own file system still link to it.
        assert dedup_store._meta.find_content(digest) == holder
