"""TrunkContainer: one container file on disk, its slot writes, reads, slot walk, clearing and closing."""

from __future__ import annotations

import array
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from trunkstore import diskio, trunk
from trunkstore.slot import HEADER_SIZE, TYPE_FILE, TYPE_SHARED, pack_header
from trunkstore.trunk import TrunkContainer

MIB = 1 << 20
CAPACITY = 4 * MIB
PAGE = diskio.PAGE


class PatchedOS:
    """The ``os`` module with some functions replaced (a short write, a failing call)."""

    def __init__(self, **replaced: Callable[..., Any]) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def header(alloc: int, size: int, kind: bytes = TYPE_FILE, crc: int = 0x1234ABCD) -> bytes:
    return pack_header(kind, alloc, size, crc, 1_700_000_000, b"jpg\0\0\0\0")


def make(tmp_path: Path, name: str = "000007", size: int = CAPACITY) -> TrunkContainer:
    return TrunkContainer.create(str(tmp_path / name), 7, 1, 0x0A, 0x0B, size)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[TrunkContainer]:
    opened = make(tmp_path)
    yield opened
    opened.close()


def file_bytes(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def container_is_zero(container: TrunkContainer, offset: int, length: int) -> bool:
    return container.read(offset, length) == bytes(length)


# ---- creating and opening ------------------------------------------------------------------------------
def test_create_makes_a_sparse_all_zero_file_of_the_capacity(container: TrunkContainer) -> None:
    assert os.path.getsize(container.path) == CAPACITY
    assert container.disk_usage() < CAPACITY // 4  # sparse: nothing written yet
    assert container.read(0, 64) == bytes(64)
    assert container.read(CAPACITY - 64, 64) == bytes(64)
    assert (container.trunk_id, container.store_path, container.sub_high, container.sub_low) == (7, 1, 0x0A, 0x0B)
    assert container.id_prefix == ""
    assert container.map is not None


def test_create_resets_a_stray_file_left_at_the_path(tmp_path: Path) -> None:
    # A file left by a crash before its creation was journaled holds nothing anyone was promised.
    path = tmp_path / "000007"
    path.write_bytes(b"\xff" * (CAPACITY + 100))
    created = make(tmp_path)
    try:
        assert os.path.getsize(path) == CAPACITY
        assert container_is_zero(created, 0, 200)
    finally:
        created.close()


def test_create_in_a_missing_directory_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TrunkContainer.create(str(tmp_path / "no" / "000001"), 1, 0, 0, 0, CAPACITY)
    assert not (tmp_path / "no").exists()


def test_open_of_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TrunkContainer.open(str(tmp_path / "000001"), 1, 0, 0, 0, CAPACITY)
    assert list(tmp_path.iterdir()) == []


def test_open_keeps_the_bytes_written_before(tmp_path: Path) -> None:
    first = make(tmp_path)
    first.write_slot(4096, header(1024, 5), b"hello")
    first.datasync()
    first.close()
    reopened = TrunkContainer.open(first.path, 7, 1, 0x0A, 0x0B, CAPACITY)
    try:
        assert reopened.read(4096, HEADER_SIZE + 5) == header(1024, 5) + b"hello"
        assert reopened.slots(4096, 5120) == ([(4096, 1024, 5, 0x1234ABCD)], 5120)
    finally:
        reopened.close()


def test_open_extends_a_short_file_to_the_capacity_and_never_shrinks_one(tmp_path: Path) -> None:
    short = tmp_path / "000001"
    short.write_bytes(b"abc")
    opened = TrunkContainer.open(str(short), 1, 0, 0, 0, CAPACITY)
    try:
        assert os.path.getsize(short) == CAPACITY
        assert opened.read(0, 6) == b"abc\0\0\0"
    finally:
        opened.close()
    long = tmp_path / "000002"
    long.write_bytes(b"x" * (CAPACITY + 10))
    opened = TrunkContainer.open(str(long), 2, 0, 0, 0, CAPACITY)
    try:
        assert os.path.getsize(long) == CAPACITY + 10
        assert opened.read(CAPACITY - 2, 2) == b"xx"
    finally:
        opened.close()


# ---- writing and reading -------------------------------------------------------------------------------
def test_write_reads_back_through_the_map_and_the_file(container: TrunkContainer) -> None:
    container.write(10_000, b"0123456789")
    container.write(10_005, memoryview(b"abc"))
    assert container.read(10_000, 10) == b"01234abc89"
    assert file_bytes(container.path, 10_000, 10) == b"01234abc89"


def test_reads_use_pread_where_the_file_cannot_be_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> object:
        raise OSError(errno.ENODEV, "no mmap here")

    monkeypatch.setattr(trunk, "mmap", SimpleNamespace(mmap=refuse, MAP_SHARED=0, PROT_READ=0))
    unmapped = make(tmp_path)
    try:
        assert unmapped.map is None
        unmapped.write_slot(512, header(256, 3), b"xyz")
        assert unmapped.read(512, HEADER_SIZE + 3) == header(256, 3) + b"xyz"
        assert unmapped.slots(0, 1024) == ([], 0)
        assert unmapped.slots(512, 768) == ([(512, 256, 3, 0x1234ABCD)], 768)
    finally:
        unmapped.close()


def test_write_finishes_after_short_writes(container: TrunkContainer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def short_pwrite(fd: int, data: memoryview, offset: int) -> int:
        calls.append(offset)
        return os.pwrite(fd, data[:7], offset)

    monkeypatch.setattr(trunk, "os", PatchedOS(pwrite=short_pwrite))
    data = bytes(range(50))
    container.write(3000, data)
    assert container.read(3000, 50) == data
    assert calls == list(range(3000, 3050, 7))


@pytest.mark.parametrize("data", [b"payload-bytes", bytearray(b"payload-bytes"), memoryview(b"payload-bytes")])
def test_write_slot_puts_header_and_data_back_to_back(
    container: TrunkContainer, data: bytes | bytearray | memoryview
) -> None:
    container.write_slot(8192, header(256, 13), data)
    assert container.read(8192, HEADER_SIZE + 14) == header(256, 13) + b"payload-bytes\0"
    assert container_is_zero(container, 8000, 192)


@pytest.mark.parametrize("first_write", [1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 5])
def test_write_slot_finishes_a_short_vectored_write(
    container: TrunkContainer, monkeypatch: pytest.MonkeyPatch, first_write: int
) -> None:
    # pwritev may stop anywhere, in the header or in the data: the rest must follow.
    def short_pwritev(fd: int, buffers: tuple[bytes, ...], offset: int) -> int:
        return os.pwrite(fd, b"".join(bytes(b) for b in buffers)[:first_write], offset)

    monkeypatch.setattr(trunk, "os", PatchedOS(pwritev=short_pwritev))
    data = b"d" * 40
    container.write_slot(1024, header(256, 40), data)
    assert container.read(1024, HEADER_SIZE + 40) == header(256, 40) + data


def test_a_memoryview_of_wide_items_is_written_whole_after_short_writes(
    container: TrunkContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # len() of such a view counts its items, not its bytes: short writes must be measured in bytes.
    wide = memoryview(array.array("i", range(16)))
    assert (len(wide), wide.nbytes) == (16, 64)

    def pwritev_one_byte_per_item(fd: int, buffers: tuple[Any, ...], offset: int) -> int:
        return os.pwrite(fd, b"".join(bytes(b) for b in buffers)[: HEADER_SIZE + len(wide)], offset)

    def short_pwrite(fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, data[:7], offset)

    monkeypatch.setattr(trunk, "os", PatchedOS(pwritev=pwritev_one_byte_per_item, pwrite=short_pwrite))
    container.write_slot(1024, header(256, 64), wide)
    container.write(4096, wide)
    monkeypatch.undo()
    assert container.read(1024, HEADER_SIZE + 64) == header(256, 64) + wide.tobytes()
    assert container.read(4096, 64) == wide.tobytes()


def test_write_errors_reach_the_caller(container: TrunkContainer, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(trunk, "os", PatchedOS(pwritev=full, pwrite=full))
    with pytest.raises(OSError) as slot_error:
        container.write_slot(0, header(256, 1), b"x")
    with pytest.raises(OSError) as write_error:
        container.write(0, b"x")
    assert slot_error.value.errno == write_error.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert container_is_zero(container, 0, 256)


# ---- writing a slot from a file ------------------------------------------------------------------------
@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """A source file larger than one 1 MiB fallback piece, and its bytes."""
    data = bytes(range(256)) * (10 * 1024 + 3)  # 2.5 MiB and a bit
    path = tmp_path / "source"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def test_write_slot_from_copies_count_bytes_from_the_start_of_the_source(
    container: TrunkContainer, source: tuple[int, bytes]
) -> None:
    fd, data = source
    count = len(data) - 1000  # the rest of the source is not part of the slot
    container.write_slot_from(4096, header(count + HEADER_SIZE, count), fd, count)
    assert container.read(4096, HEADER_SIZE) == header(count + HEADER_SIZE, count)
    assert container.read(4096 + HEADER_SIZE, count + 1) == data[:count] + b"\0"


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP])
def test_write_slot_from_falls_back_to_copying_in_pieces(
    container: TrunkContainer, source: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # The kernel copies the first piece, then refuses: the rest is copied by reading and writing.
    fd, data = source
    calls: list[int] = []

    def copy_once(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        calls.append(offset_src)
        if calls[1:]:
            raise OSError(code, os.strerror(code))
        return os.copy_file_range(src, dst, min(count, 1000), offset_src, offset_dst)

    monkeypatch.setattr(trunk, "os", PatchedOS(copy_file_range=copy_once))
    container.write_slot_from(0, header(len(data) + HEADER_SIZE, len(data)), fd, len(data))
    assert calls == [0, 1000]
    assert container.read(HEADER_SIZE, len(data)) == data


def test_write_slot_from_a_short_source_fails_with_eio(
    container: TrunkContainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"s" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as kernel_copy:
            container.write_slot_from(0, header(256, 200), fd, 200)

        def unsupported(*args: object) -> int:
            raise OSError(errno.ENOSYS, "no copy_file_range")

        monkeypatch.setattr(trunk, "os", PatchedOS(copy_file_range=unsupported))
        with pytest.raises(OSError) as piecewise:
            container.write_slot_from(1024, header(256, 200), fd, 200)
    finally:
        os.close(fd)
    assert kernel_copy.value.errno == piecewise.value.errno == errno.EIO
    assert "after 100 of 200 bytes" in str(kernel_copy.value)
    assert "after 100 of 200 bytes" in str(piecewise.value)


def test_write_slot_from_passes_other_copy_errors_on(
    container: TrunkContainer, source: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fd, _data = source
    fallback: list[int] = []

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def pread(fd: int, length: int, offset: int) -> bytes:
        fallback.append(offset)
        return os.pread(fd, length, offset)

    monkeypatch.setattr(trunk, "os", PatchedOS(copy_file_range=full, pread=pread))
    with pytest.raises(OSError) as info:
        container.write_slot_from(0, header(512, 100), fd, 100)
    assert info.value.errno == errno.ENOSPC
    assert fallback == []  # a full disk is not worked around by copying another way


# ---- walking slots -------------------------------------------------------------------------------------
def test_slots_lists_the_slots_tiling_a_range(container: TrunkContainer) -> None:
    container.write_slot(0, header(256, 10, crc=1), b"a" * 10)
    container.write_slot(256, header(1024, 1000, kind=TYPE_SHARED, crc=2), b"b" * 1000)
    container.write_slot(1280, header(HEADER_SIZE, 0, crc=3), b"")  # an empty file: a bare header
    assert container.slots(0, 1304) == ([(0, 256, 10, 1), (256, 1024, 1000, 2), (1280, HEADER_SIZE, 0, 3)], 1304)
    assert container.slots(256, 1280) == ([(256, 1024, 1000, 2)], 1280)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (pack_header(b"X", 256, 10, 0, 0, bytes(7)), "unknown kind"),
        (bytes(HEADER_SIZE), "free (zeroed) space"),
        (header(HEADER_SIZE + 9, 10), "alloc smaller than header and data"),
        (header(0, 0), "alloc of zero"),
        (header(1024, 10), "alloc past the end of the range"),
    ],
)
def test_slots_stop_at_the_first_invalid_header(container: TrunkContainer, bad: bytes, why: str) -> None:
    container.write_slot(0, header(256, 10), b"a" * 10)
    container.write(256, bad)
    container.write_slot(512, header(256, 10), b"c" * 10)
    assert container.slots(0, 768) == ([(0, 256, 10, 0x1234ABCD)], 256), why


def test_a_slot_ending_one_byte_past_the_range_is_not_in_it(container: TrunkContainer) -> None:
    container.write_slot(0, header(256, 10), b"a" * 10)
    assert container.slots(0, 256) == ([(0, 256, 10, 0x1234ABCD)], 256)
    assert container.slots(0, 255) == ([], 0)


def test_slots_stop_where_too_little_is_left_for_a_header(container: TrunkContainer) -> None:
    container.write_slot(0, header(256, 10), b"a" * 10)
    assert container.slots(0, 256 + HEADER_SIZE - 1) == ([(0, 256, 10, 0x1234ABCD)], 256)
    assert container.slots(100, 100) == ([], 100)


# ---- clearing, syncing, closing ------------------------------------------------------------------------
def test_cleared_range_reads_back_as_zeros_and_neighbours_stay(container: TrunkContainer) -> None:
    container.write(0, b"\xaa" * (4 * PAGE))
    container.clear(100, 2 * PAGE, 100, 100 + 2 * PAGE)
    assert container.read(0, 100) == b"\xaa" * 100
    assert container_is_zero(container, 100, 2 * PAGE)
    assert container.read(100 + 2 * PAGE, 2 * PAGE - 100) == b"\xaa" * (2 * PAGE - 100)


def test_clearing_whole_pages_returns_them_to_the_file_system(container: TrunkContainer) -> None:
    container.write(0, b"\xaa" * (16 * PAGE))
    container.datasync()
    before = container.disk_usage()
    if not diskio._PunchSupport.available or before < 16 * PAGE:
        pytest.skip("file system cannot punch holes")
    container.clear(0, 8 * PAGE, 0, 8 * PAGE)
    container.datasync()
    assert before - container.disk_usage() == 8 * PAGE
    assert container_is_zero(container, 0, 8 * PAGE)


def test_close_releases_the_file_and_map_once(container: TrunkContainer) -> None:
    fd = container.fd
    container.close()
    assert (container.fd, container.map) == (-1, None)
    container.close()  # a second close changes nothing
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    with pytest.raises(ValueError, match="negative"):  # hence the commit skips closed containers
        container.datasync()
