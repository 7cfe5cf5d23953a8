"""Disk helpers on real files: clear_range (zero + punch), atomic replace, free-space probe."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from trunkstore import diskio
from trunkstore.diskio import PAGE

FILL = 0xAB
SIZE = 8 * PAGE


@pytest.fixture
def container(tmp_path: object) -> Iterator[int]:
    """A fully written 8-page file; yields its descriptor."""
    path = os.path.join(str(tmp_path), "000001")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, bytes([FILL]) * SIZE, 0)
    os.fsync(fd)
    yield fd
    os.close(fd)


def punch_supported(fd: int) -> bool:
    return diskio._PunchSupport.available and os.fstat(fd).st_blocks * 512 >= SIZE


def blocks(fd: int) -> int:
    os.fsync(fd)
    return os.fstat(fd).st_blocks


def content(fd: int) -> bytes:
    return os.pread(fd, SIZE + 1, 0)


def expected(zero_ranges: list[tuple[int, int]]) -> bytes:
    data = bytearray([FILL]) * SIZE
    for start, end in zero_ranges:
        data[start:end] = bytes(end - start)
    return bytes(data)


def test_clear_range_zeroes_range_and_punches_pages_inside_extent(container: int) -> None:
    fd = container
    if not punch_supported(fd):
        pytest.skip("file system cannot punch holes")
    before = blocks(fd)
    offset, length = PAGE + 100, 3 * PAGE
    free_start, free_end = PAGE + 50, 4 * PAGE + 300
    # Free space around the range already reads as zeros (freed slots are zeroed).
    os.pwrite(fd, bytes(offset - free_start), free_start)
    os.pwrite(fd, bytes(free_end - (offset + length)), offset + length)
    diskio.clear_range(fd, offset, length, free_start, free_end)
    assert content(fd) == expected([(free_start, free_end)])
    # Pages 2 and 3 lie wholly inside [free_start, free_end): exactly those go back to the file system.
    assert before - blocks(fd) == 2 * PAGE // 512
    assert os.fstat(fd).st_size == SIZE


def test_clear_range_punches_pages_straddling_an_earlier_free_neighbour(container: int) -> None:
    fd = container
    if not punch_supported(fd):
        pytest.skip("file system cannot punch holes")
    before = blocks(fd)
    diskio.clear_range(fd, 0, 6000, 0, 6000)
    assert content(fd) == expected([(0, 6000)])
    assert before - blocks(fd) == PAGE // 512  # page 0 only: page 1 is partly in use
    diskio.clear_range(fd, 6000, 3000, 0, 9000)  # merged with the free [0, 6000)
    assert content(fd) == expected([(0, 9000)])
    assert before - blocks(fd) == 2 * PAGE // 512  # page 1 is now wholly free too


def test_clear_range_inside_one_page_zero_fills_only(container: int) -> None:
    fd = container
    before = blocks(fd)
    diskio.clear_range(fd, 5000, 700, 4900, 6000)
    assert content(fd) == expected([(5000, 5700)])
    assert blocks(fd) == before


@pytest.mark.parametrize(
    ("offset", "length", "free_start", "free_end"),
    [
        (0, SIZE, 0, SIZE),
        (100, 200, 100, 200),
        (PAGE - 10, 20, PAGE - 10, PAGE + 10),
        (3 * PAGE, PAGE, 3 * PAGE, 4 * PAGE),
        (2 * PAGE + 1, 2 * PAGE - 2, 2 * PAGE + 1, 4 * PAGE - 1),
        (SIZE - 300, 300, SIZE - 300, SIZE),
    ],
)
def test_clear_range_bytes_outside_stay_intact(
    container: int, offset: int, length: int, free_start: int, free_end: int
) -> None:
    fd = container
    diskio.clear_range(fd, offset, length, free_start, free_end)
    assert content(fd) == expected([(offset, offset + length)])
    assert os.fstat(fd).st_size == SIZE


def test_clear_range_without_punch_support_zero_fills(container: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fd = container
    monkeypatch.setattr(diskio._PunchSupport, "available", False)
    before = blocks(fd)
    diskio.clear_range(fd, PAGE, 4 * PAGE, PAGE, 5 * PAGE)
    assert content(fd) == expected([(PAGE, 5 * PAGE)])
    assert blocks(fd) == before
    assert diskio.punch_hole(fd, 0, PAGE) is False


def test_punch_hole_nothing_to_do(container: int) -> None:
    assert diskio.punch_hole(container, 0, 0) is False
    assert content(container) == expected([])


def test_zero_range_larger_than_buffer(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "big")
    total = 200_000
    with open(path, "wb") as handle:
        handle.write(b"\xff" * total)
    fd = os.open(path, os.O_RDWR)
    try:
        diskio.zero_range(fd, 10, total - 20)
        data = os.pread(fd, total, 0)
    finally:
        os.close(fd)
    assert data == b"\xff" * 10 + bytes(total - 20) + b"\xff" * 10


@pytest.mark.parametrize("durable", [True, False])
def test_write_file_atomic(tmp_path: object, durable: bool) -> None:
    path = os.path.join(str(tmp_path), "store.json")
    diskio.write_file_atomic(path, b"first", durable=durable)
    diskio.write_file_atomic(path, b"second, longer", durable=durable)
    diskio.write_file_atomic(path, b"3", durable=durable)
    with open(path, "rb") as handle:
        assert handle.read() == b"3"
    assert os.listdir(str(tmp_path)) == ["store.json"]


def test_fsync_dir(tmp_path: object) -> None:
    diskio.fsync_dir(str(tmp_path))
    with pytest.raises(OSError):
        diskio.fsync_dir(os.path.join(str(tmp_path), "missing"))


def test_disk_space(tmp_path: object) -> None:
    total, available = diskio.disk_space(str(tmp_path))
    assert 0 <= available <= total and total > 0


def test_clear_range_punches_only_pages_the_range_touches(container: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pages of the free run that the range does not touch were wholly free before: punched already.
    fd = container
    punched: list[tuple[int, int]] = []
    real = diskio.punch_hole

    def spy(fd: int, offset: int, length: int) -> bool:
        punched.append((offset, length))
        return real(fd, offset, length)

    monkeypatch.setattr(diskio, "punch_hole", spy)
    os.pwrite(fd, bytes(SIZE), 0)  # the free run reads as zeros
    diskio.clear_range(fd, 4 * PAGE + 10, 100, 0, SIZE)
    diskio.clear_range(fd, 2 * PAGE - 50, PAGE + 100, 0, SIZE)
    assert punched == [(4 * PAGE, PAGE), (PAGE, 3 * PAGE)]
    assert content(fd) == bytes(SIZE)
