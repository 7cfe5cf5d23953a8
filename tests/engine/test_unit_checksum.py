"""trunkstore.checksum: the crc32 every ID and slot header carries must be zlib's, as FastDFS's is."""

from __future__ import annotations

import random
import zlib

import pytest

from trunkstore import checksum


@pytest.mark.parametrize("size", [0, 1, 7, 63, 64, 65, 1023, 4096, 4097, 65536, 1 << 20])
def test_crc32_matches_zlib(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert checksum.crc32(data) == zlib.crc32(data)


def test_crc32_continues_a_running_value_like_zlib() -> None:
    # Streaming uploads checksum piece by piece.
    data = random.Random(1).randbytes(300_000)
    running = 0
    for start in range(0, len(data), 65_537):
        running = checksum.crc32(data[start : start + 65_537], running)
    assert running == zlib.crc32(data)


def test_crc32_takes_any_buffer() -> None:
    data = bytearray(b"trunkstore" * 100)
    assert checksum.crc32(memoryview(data)[3:500]) == zlib.crc32(bytes(data[3:500]))


def test_crc32_is_zlib_ngs() -> None:
    # The fallback to zlib exists for a broken install; the declared dependency must be what is used.
    from zlib_ng import zlib_ng

    assert checksum.crc32 is zlib_ng.crc32
