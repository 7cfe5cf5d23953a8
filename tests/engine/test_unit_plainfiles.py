"""plainfiles: spooling new files under tmp/, linking them into place, and changing plain files in place."""

from __future__ import annotations

import errno
import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trunkstore import plainfiles
from trunkstore.errors import FileExists, FileNotFound, StoreFull
from trunkstore.plainfiles import CHUNK, Spooled, SpoolWriter


class PatchedOS:
    """plainfiles' view of the ``os`` module, with some calls replaced (a failure, a short write)."""

    def __init__(self, **replaced: Callable[..., Any]) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def failing(code: int) -> Callable[..., int]:
    def fail(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    return fail


def part_then_failing(code: int, part: int = 3) -> tuple[Callable[..., int], Callable[..., int]]:
    """``write`` and ``pwrite`` that write ``part`` bytes, then fail once with ``code`` (as a disk filling up),
    then work again (overwriting bytes the file has takes no new space)."""
    calls = {"count": 0}

    def first_part(data: memoryview) -> memoryview:
        calls["count"] += 1
        if calls["count"] == 2:
            raise OSError(code, os.strerror(code))
        return data[:part] if calls["count"] == 1 else data

    def write(fd: int, data: memoryview) -> int:
        return os.write(fd, first_part(data))

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, first_part(data), offset)

    return write, pwrite


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def tmp_dir(tmp_path: Path) -> str:
    return str(tmp_path / "M00" / "tmp")


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    """A plain file of 10 bytes."""
    path = tmp_path / "plain"
    path.write_bytes(b"0123456789")
    return path


# ---- spooling ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("durable", [True, False])
def test_a_spooled_file_holds_every_piece_with_its_size_and_crc(tmp_dir: str, durable: bool) -> None:
    writer = SpoolWriter(tmp_dir)  # makes the missing tmp/ directory
    pieces: list[bytes | bytearray | memoryview] = [b"first ", bytearray(b"second "), memoryview(b"third"), b""]
    for piece in pieces:
        writer.write(piece)
    spooled = writer.finish(durable=durable)
    assert spooled == Spooled(writer.path, 18, zlib.crc32(b"first second third"))
    assert os.path.dirname(spooled.path) == tmp_dir
    assert Path(spooled.path).read_bytes() == b"first second third"
    assert writer.fd == -1


def test_each_writer_gets_a_file_of_its_own(tmp_dir: str) -> None:
    writers = [SpoolWriter(tmp_dir) for _ in range(3)]
    for index, writer in enumerate(writers):
        writer.write(b"%d" % index)
        writer.finish(durable=False)
    assert len({writer.path for writer in writers}) == 3
    assert sorted(Path(writer.path).read_bytes() for writer in writers) == [b"0", b"1", b"2"]


def test_an_empty_spool_is_an_empty_file(tmp_dir: str) -> None:
    spooled = SpoolWriter(tmp_dir).finish(durable=True)
    assert (spooled.size, spooled.crc32, os.path.getsize(spooled.path)) == (0, 0, 0)


def test_a_spool_finishes_after_short_writes(tmp_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def short_write(fd: int, data: memoryview) -> int:
        return os.write(fd, data[:3])

    writer = SpoolWriter(tmp_dir)
    monkeypatch.setattr(plainfiles, "os", PatchedOS(write=short_write))
    writer.write(b"a somewhat longer piece")
    monkeypatch.undo()
    assert Path(writer.finish(durable=False).path).read_bytes() == b"a somewhat longer piece"


@pytest.mark.parametrize(
    ("code", "message"), [(errno.ENOSPC, "file system full while writing"), (errno.EIO, os.strerror(errno.EIO))]
)
def test_a_full_disk_while_spooling_is_store_full_and_other_errors_pass_unchanged(
    tmp_dir: str, monkeypatch: pytest.MonkeyPatch, code: int, message: str
) -> None:
    writer = SpoolWriter(tmp_dir)
    monkeypatch.setattr(plainfiles, "os", PatchedOS(write=failing(code)))
    with pytest.raises(OSError, match=message) as info:
        writer.write(b"data")
    monkeypatch.undo()
    assert info.value.errno == code
    assert isinstance(info.value, StoreFull) == (code == errno.ENOSPC)
    writer.discard()
    assert os.listdir(tmp_dir) == []


def test_a_failed_spool_write_counts_only_the_bytes_written(tmp_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = SpoolWriter(tmp_dir)
    writer.write(b"head-")
    write, _pwrite = part_then_failing(errno.ENOSPC)
    monkeypatch.setattr(plainfiles, "os", PatchedOS(write=write))
    with pytest.raises(StoreFull):
        writer.write(b"abcdef")
    monkeypatch.undo()
    assert (writer.size, writer.crc32) == (8, zlib.crc32(b"head-abc"))
    spooled = writer.finish(durable=False)
    assert Path(spooled.path).read_bytes() == b"head-abc"
    assert (spooled.size, spooled.crc32) == (8, zlib.crc32(b"head-abc"))


def test_discard_removes_the_spool_and_can_be_repeated(tmp_dir: str) -> None:
    writer = SpoolWriter(tmp_dir)
    writer.write(b"unwanted")
    fds = open_fds()
    writer.discard()
    assert open_fds() == fds - 1
    assert (writer.fd, os.listdir(tmp_dir)) == (-1, [])
    writer.discard()
    finished = SpoolWriter(tmp_dir)
    finished.finish(durable=False)
    finished.discard()  # after finish too: the file goes
    assert os.listdir(tmp_dir) == []


def test_writing_after_finish_fails(tmp_dir: str) -> None:
    writer = SpoolWriter(tmp_dir)
    writer.finish(durable=False)
    with pytest.raises(OSError) as info:
        writer.write(b"late")
    assert info.value.errno == errno.EBADF  # the descriptor is gone (-1)
    assert os.path.getsize(writer.path) == 0


# ---- publishing ----------------------------------------------------------------------------------------
def spool(tmp_dir: str, data: bytes) -> Spooled:
    writer = SpoolWriter(tmp_dir)
    writer.write(data)
    return writer.finish(durable=False)


@pytest.mark.parametrize("durable", [True, False])
def test_publish_links_the_spool_into_place(tmp_dir: str, tmp_path: Path, durable: bool) -> None:
    spooled = spool(tmp_dir, b"content")
    final = tmp_path / "final"
    plainfiles.publish(spooled, str(final), durable=durable)
    assert final.read_bytes() == b"content"
    assert os.listdir(tmp_dir) == []


def test_publish_never_replaces_a_taken_name(tmp_dir: str, plain: Path) -> None:
    spooled = spool(tmp_dir, b"newcomer")
    with pytest.raises(FileExists, match="plain exists already") as info:
        plainfiles.publish(spooled, str(plain), durable=True)
    assert info.value.errno == errno.EEXIST
    assert plain.read_bytes() == b"0123456789"
    assert os.listdir(tmp_dir) == []  # the spool is not left behind


def test_publish_into_a_missing_directory_fails_and_removes_the_spool(tmp_dir: str, tmp_path: Path) -> None:
    spooled = spool(tmp_dir, b"content")
    with pytest.raises(FileNotFoundError):
        plainfiles.publish(spooled, str(tmp_path / "missing" / "final"), durable=True)
    assert os.listdir(tmp_dir) == []
    assert not (tmp_path / "missing").exists()


def test_discarding_a_spooled_file_removes_it_once(tmp_dir: str) -> None:
    spooled = spool(tmp_dir, b"content")
    plainfiles.discard(spooled)
    assert os.listdir(tmp_dir) == []
    plainfiles.discard(spooled)  # gone already: nothing to do
    assert os.listdir(tmp_dir) == []


# ---- reading chunks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "limit", "sizes"),
    [
        (2 * CHUNK + 5, None, [CHUNK, CHUNK, 5]),
        (2 * CHUNK + 5, CHUNK + 7, [CHUNK, 7]),
        (100, 40, [40]),
        (100, 1000, [100]),
        (100, 0, []),
        (0, None, []),
    ],
)
def test_read_chunks_yields_at_most_the_limit_in_chunks_of_at_most_a_mib(
    length: int, limit: int | None, sizes: list[int]
) -> None:
    data = os.urandom(length)
    chunks = list(plainfiles.read_chunks(io.BytesIO(data), limit))
    assert [len(chunk) for chunk in chunks] == sizes
    assert b"".join(chunks) == data[: sum(sizes)]


def test_read_chunks_leaves_the_rest_of_the_source_unread() -> None:
    source = io.BytesIO(b"headbody")
    assert list(plainfiles.read_chunks(source, 4)) == [b"head"]
    assert source.read() == b"body"


# ---- plain files in place ------------------------------------------------------------------------------
def test_open_existing_of_a_missing_file_is_file_not_found(tmp_path: Path, plain: Path) -> None:
    with pytest.raises(FileNotFound, match="no file nothing") as info:
        plainfiles.open_existing(str(tmp_path / "nothing"))
    assert isinstance(info.value, FileNotFoundError) and info.value.errno == errno.ENOENT
    fd = plainfiles.open_existing(str(plain))
    try:
        assert os.read(fd, 100) == b"0123456789"
    finally:
        os.close(fd)


@pytest.mark.parametrize("durable", [True, False])
def test_write_at_appends_or_overwrites_and_returns_the_new_size(plain: Path, durable: bool) -> None:
    assert plainfiles.write_at(str(plain), None, b"abc", durable=durable) == 13
    assert plainfiles.write_at(str(plain), 2, b"XY", durable=durable) == 13
    assert plainfiles.write_at(str(plain), 12, b"-end", durable=durable) == 16
    assert plain.read_bytes() == b"01XY456789ab-end"


def test_write_at_past_the_end_leaves_zeros_between(plain: Path) -> None:
    assert plainfiles.write_at(str(plain), 15, b"!", durable=False) == 16
    assert plain.read_bytes() == b"0123456789" + bytes(5) + b"!"


def test_write_at_finishes_after_short_writes(plain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def short_pwrite(fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, data[:2], offset)

    def short_write(fd: int, data: memoryview) -> int:
        return os.write(fd, data[:2])

    monkeypatch.setattr(plainfiles, "os", PatchedOS(pwrite=short_pwrite, write=short_write))
    assert plainfiles.write_at(str(plain), 3, b"abcde", durable=False) == 10
    assert plainfiles.write_at(str(plain), None, b"vwxyz", durable=False) == 15
    monkeypatch.undo()
    assert plain.read_bytes() == b"012abcde89vwxyz"


def test_write_at_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFound):
        plainfiles.write_at(str(tmp_path / "gone"), None, b"x", durable=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("code", "raised"), [(errno.ENOSPC, StoreFull), (errno.EIO, OSError)])
@pytest.mark.parametrize("offset", [None, 4])
def test_write_at_errors_close_the_file_and_a_full_disk_is_store_full(
    plain: Path, monkeypatch: pytest.MonkeyPatch, code: int, raised: type[OSError], offset: int | None
) -> None:
    fds = open_fds()
    monkeypatch.setattr(plainfiles, "os", PatchedOS(write=failing(code), pwrite=failing(code)))
    with pytest.raises(raised) as info:
        plainfiles.write_at(str(plain), offset, b"data", durable=True)
    monkeypatch.undo()
    assert info.value.errno == code
    assert isinstance(info.value, StoreFull) == (code == errno.ENOSPC)
    assert open_fds() == fds
    assert plain.read_bytes() == b"0123456789"


@pytest.mark.parametrize("durable", [True, False])
@pytest.mark.parametrize(
    ("offset", "data"),
    [(None, b"abcdef"), (7, b"abcdef"), (2, b"abcdef"), (10, b"abcdef"), (12, b"abcdef")],
    ids=["append", "modify-past-the-end", "modify-within", "modify-at-the-end", "modify-after-a-gap"],
)
def test_a_write_cut_short_by_a_full_disk_leaves_the_file_as_it_was(
    plain: Path, monkeypatch: pytest.MonkeyPatch, offset: int | None, data: bytes, durable: bool
) -> None:
    write, pwrite = part_then_failing(errno.ENOSPC)
    monkeypatch.setattr(plainfiles, "os", PatchedOS(write=write, pwrite=pwrite))
    with pytest.raises(StoreFull):
        plainfiles.write_at(str(plain), offset, data, durable=durable)
    monkeypatch.undo()
    assert plain.read_bytes() == b"0123456789"
    # Retried, the write gives what it would have given the first time.
    at = 10 if offset is None else offset
    before = b"0123456789".ljust(at, b"\0")
    expected = before[:at] + data + before[at + len(data) :]
    assert plainfiles.write_at(str(plain), offset, data, durable=durable) == len(expected)
    assert plain.read_bytes() == expected


@pytest.mark.parametrize("offset", [None, 4])
def test_a_write_whose_sync_fails_is_undone(plain: Path, monkeypatch: pytest.MonkeyPatch, offset: int | None) -> None:
    syncs = {"count": 0}

    def fdatasync_failing_once(fd: int) -> None:
        syncs["count"] += 1
        if syncs["count"] == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fdatasync(fd)

    monkeypatch.setattr(plainfiles, "os", PatchedOS(fdatasync=fdatasync_failing_once))
    with pytest.raises(OSError) as info:
        plainfiles.write_at(str(plain), offset, b"abcdefghijkl", durable=True)
    monkeypatch.undo()
    assert info.value.errno == errno.EIO and not getattr(info.value, "__notes__", None)
    assert syncs["count"] == 2  # the undoing is synced too
    assert plain.read_bytes() == b"0123456789"


def test_a_write_that_cannot_be_undone_says_so(plain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write, _pwrite = part_then_failing(errno.ENOSPC)
    monkeypatch.setattr(plainfiles, "os", PatchedOS(write=write, ftruncate=failing(errno.EIO)))
    with pytest.raises(StoreFull) as info:
        plainfiles.write_at(str(plain), None, b"abcdef", durable=False)
    monkeypatch.undo()
    assert info.value.__notes__ == [
        "the file could not be put back as it was, and may hold part of the new bytes: "
        f"[Errno {errno.EIO}] {os.strerror(errno.EIO)}"
    ]
    assert plain.read_bytes() == b"0123456789abc"


@pytest.mark.parametrize(("size", "content"), [(4, b"0123"), (0, b""), (12, b"0123456789\0\0"), (10, b"0123456789")])
def test_truncate_sets_the_size(plain: Path, size: int, content: bytes) -> None:
    plainfiles.truncate(str(plain), size, durable=True)
    assert plain.read_bytes() == content


def test_truncate_of_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFound):
        plainfiles.truncate(str(tmp_path / "gone"), 0, durable=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("length", [0, 1, CHUNK, 2 * CHUNK + 17])
def test_crc32_of_reads_the_whole_file(tmp_path: Path, length: int) -> None:
    data = os.urandom(length)
    path = tmp_path / "file"
    path.write_bytes(data)
    assert plainfiles.crc32_of(str(path)) == (length, zlib.crc32(data))


def test_crc32_of_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFound, match="no file gone"):
        plainfiles.crc32_of(str(tmp_path / "gone"))


# ---- stale temporary files -----------------------------------------------------------------------------
def test_stale_temporary_files_are_removed_and_counted(tmp_dir: str) -> None:
    writers = [SpoolWriter(tmp_dir) for _ in range(3)]  # never finished: as a crash leaves them
    for writer in writers:
        writer.write(b"left by a crash")
    assert plainfiles.remove_stale_tmp(tmp_dir) == 3
    assert os.listdir(tmp_dir) == []
    assert plainfiles.remove_stale_tmp(tmp_dir) == 0
    for writer in writers:
        writer.discard()


def test_a_missing_tmp_directory_has_nothing_stale(tmp_dir: str) -> None:
    assert plainfiles.remove_stale_tmp(tmp_dir) == 0
    assert not os.path.exists(tmp_dir)


def test_stale_directories_are_removed_and_links_go_without_their_targets(tmp_dir: str, tmp_path: Path) -> None:
    os.makedirs(os.path.join(tmp_dir, "x", "y"))
    Path(tmp_dir, "x", "y", "file").write_bytes(b"inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_bytes(b"not the store's")
    os.symlink(outside, os.path.join(tmp_dir, "link"))
    writer = SpoolWriter(tmp_dir)  # never finished: as a crash leaves it
    writer.write(b"left by a crash")
    assert plainfiles.remove_stale_tmp(tmp_dir) == 3
    writer.discard()
    assert os.listdir(tmp_dir) == []
    assert (outside / "kept").read_bytes() == b"not the store's"


def test_what_cannot_be_removed_from_tmp_is_left_with_a_warning(tmp_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    os.makedirs(os.path.join(tmp_dir, "stuck"))
    Path(tmp_dir, "spool").write_bytes(b"left by a crash")

    def refuse(path: str) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(plainfiles.shutil, "rmtree", refuse)  # root may remove anything: refused here
    with pytest.warns(RuntimeWarning, match="cannot remove .*stuck left in the temporary directory"):
        assert plainfiles.remove_stale_tmp(tmp_dir) == 1
    assert os.listdir(tmp_dir) == ["stuck"]
