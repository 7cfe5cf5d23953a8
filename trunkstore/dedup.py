"""Content signatures for dedup: xxh3-128 of the bytes plus their length (a match is then confirmed
byte for byte before two IDs share content, so a hash collision can never merge different files)."""

from __future__ import annotations

import os

import xxhash

_CHUNK = 1 << 20


def content_digest(data: bytes | bytearray | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(data) + len(data).to_bytes(8, "big")


class ContentHasher:
    """:func:`content_digest` of bytes that arrive piece by piece."""

    __slots__ = ("_hasher", "_size")

    def __init__(self) -> None:
        self._hasher = xxhash.xxh3_128()
        self._size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)
        self._size += memoryview(data).nbytes

    def digest(self) -> bytes:
        return self._hasher.digest() + self._size.to_bytes(8, "big")


def file_digest(path: str) -> bytes:
    hasher = ContentHasher()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.digest()


def same_bytes(path_a: str, offset_a: int, size_a: int, path_b: str) -> bool:
    """Whether ``size_a`` bytes at ``offset_a`` of ``path_a`` equal the whole of ``path_b``."""
    if os.path.getsize(path_b) != size_a:
        return False
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        a.seek(offset_a)
        remaining = size_a
        while remaining:
            chunk = a.read(min(_CHUNK, remaining))
            if not chunk or chunk != b.read(len(chunk)):
                return False
            remaining -= len(chunk)
    return True
