"""Content dedup (``dedup=True``): identical uploads share one trunk slot or one inode.

Content is found by its signature, xxh3-128 of the bytes plus their length, in the metadata database;
a match is confirmed byte for byte before two IDs share content, so a hash collision can never merge
different files.  A shared trunk slot is marked ``S`` and answers for each of its registered holders;
a shared plain file is hard-linked.  Every operation here runs under the store's dedup lock, which
deletions take too, so a holder cannot vanish between being found and being shared.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import xxhash

from trunkstore import fileid as fid
from trunkstore.errors import FileNotFound
from trunkstore.plainfiles import Spooled
from trunkstore.slot import HEADER_SIZE, slot_size

if TYPE_CHECKING:
    from trunkstore.store import Store

Buffer = bytes | bytearray | memoryview

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


# ---- store operations (the dedup lock is held) ---------------------------------------------------
def put_deduplicated(store: Store, data: Buffer, size: int, crc: int, ext: str, store_path: int) -> str:
    """Store bytes held in memory, as a new ID for identical stored bytes when there are some.

    ``store_path`` >= 0: a trunk slot's space was admitted there already (given back if not needed).
    """
    alias = _alias(store, data, size, crc, ext)
    if alias is not None:
        if store_path >= 0:
            store._guard.release(store_path, slot_size(size, store._slot_min, store._align))
        return alias
    if size + HEADER_SIZE <= store._slot_max:
        file_id, ticket = store._write_trunk(data, size, crc, ext, store_path)
        store._pool.wait(ticket)
    else:
        file_id = store._put_plain_bytes(data, ext)
    store._meta.add_holder(content_digest(data), file_id)
    return file_id


def _alias(store: Store, data: Buffer, size: int, crc: int, ext: str) -> str | None:
    """A new ID sharing the bytes of an identical stored file, or ``None`` if there is none."""
    holder = store._meta.find_content(content_digest(data))
    if holder is None:
        return None
    try:
        if store.get(holder) != bytes(data):
            return None
    except FileNotFound:
        return None
    parsed = store._parse(holder)
    timestamp = int(time.time())
    tail = fid.make_tail(ext)
    if parsed.trunk is not None:
        store._pool.mark_shared(parsed.trunk.trunk_id, parsed.trunk.offset)
        size_field = fid.make_size_field(size, trunk=True)
        name = fid.encode_name(store._source, timestamp, size_field, crc, parsed.trunk, tail)
        alias = store._format(parsed.store_path, parsed.sub_high, parsed.sub_low, name)
    else:
        name = fid.encode_name(store._source, timestamp, fid.make_size_field(size), crc, None, tail)
        high, low = store.layout.next_subdir(parsed.store_path, name)
        directory = store.layout.ensure_data_dir(parsed.store_path, high, low)
        os.link(store.layout.file_path(parsed), os.path.join(directory, name))
        alias = store._format(parsed.store_path, high, low, name)
    store._meta.add_holder(content_digest(data), alias)
    return alias


def plain_holder_path(store: Store, digest: bytes, spooled: Spooled) -> str | None:
    """The path of a stored plain file with exactly the spooled bytes, if the index knows one."""
    holder = store._meta.find_content(digest)
    if holder is None:
        return None
    parsed = store._parse(holder)
    if parsed.trunk is not None:
        return None
    path = store.layout.file_path(parsed)
    try:
        if os.path.getsize(path) == spooled.size and same_bytes(path, 0, spooled.size, spooled.path):
            return path
    except FileNotFoundError:
        pass
    return None
