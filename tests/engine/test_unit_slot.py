"""Trunk slot sizing and the 24-byte slot header."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkstore.slot import HEADER_SIZE, TYPE_FILE, TYPE_FREE, TYPE_SHARED, pack_header, slot_size, unpack_header


def test_header_size() -> None:
    assert HEADER_SIZE == 24


@pytest.mark.parametrize(
    ("file_size", "min_size", "alignment", "want"),
    [
        # the FastDFS 6.16.1 vectors (alignment 256)
        (1000, 256, 256, 1024),
        (16_777_192, 256, 256, 16_777_216),
        (5000, 256, 256, 5120),
        # fits the minimum slot, boundary included
        (0, 256, 0, 256),
        (1, 256, 0, 256),
        (232, 256, 0, 256),
        (232, 256, 256, 256),
        # just over the minimum
        (233, 256, 0, 257),
        (233, 256, 256, 512),
        (233, 256, 1, 257),
        # exact (alignment 0 or 1)
        (1000, 256, 0, 1024),
        (1001, 256, 0, 1025),
        (1001, 256, 1, 1025),
        # already aligned stays as it is
        (1000, 256, 512, 1024),
        (1000, 256, 1024, 1024),
        (1001, 256, 1024, 2048),
        (100, 64, 100, 200),
    ],
)
def test_slot_size(file_size: int, min_size: int, alignment: int, want: int) -> None:
    assert slot_size(file_size, min_size, alignment) == want


@given(
    file_size=st.integers(0, 1 << 24),
    min_size=st.integers(25, 64 * 1024),
    alignment=st.integers(0, 64 * 1024),
)
def test_slot_size_rule(file_size: int, min_size: int, alignment: int) -> None:
    got = slot_size(file_size, min_size, alignment)
    need = file_size + HEADER_SIZE
    if need <= min_size:
        assert got == min_size
    elif alignment > 1:
        assert got % alignment == 0
        assert need <= got < need + alignment
    else:
        assert got == need
    assert got >= need and got >= min_size


def test_pack_header_layout() -> None:
    raw = pack_header(TYPE_FILE, 1024, 1000, 0x51A02E01, 1795265211, b"420.txt")
    assert raw == b"F" + struct.pack(">IIII", 1024, 1000, 0x51A02E01, 1795265211) + b"420.txt"
    assert len(raw) == HEADER_SIZE
    assert unpack_header(raw) == (TYPE_FILE, 1024, 1000, 0x51A02E01, 1795265211, b"420.txt")


def test_free_header_is_zeros() -> None:
    assert unpack_header(bytes(HEADER_SIZE)) == (TYPE_FREE, 0, 0, 0, 0, bytes(7))


@given(
    kind=st.sampled_from([TYPE_FILE, TYPE_SHARED, TYPE_FREE]),
    alloc=st.integers(0, 2**32 - 1),
    size=st.integers(0, 2**32 - 1),
    crc=st.integers(0, 2**32 - 1),
    mtime=st.integers(0, 2**32 - 1),
    ext7=st.binary(min_size=7, max_size=7),
)
def test_header_round_trip(kind: bytes, alloc: int, size: int, crc: int, mtime: int, ext7: bytes) -> None:
    raw = pack_header(kind, alloc, size, crc, mtime, ext7)
    assert len(raw) == HEADER_SIZE
    assert unpack_header(raw) == (kind, alloc, size, crc, mtime, ext7)


def test_unpack_wrong_length_raises() -> None:
    with pytest.raises(struct.error):
        unpack_header(bytes(23))
