"""Content dedup (``dedup=True``): identical uploads share one trunk slot or one inode.

Content is found by its signature, xxh3-128 of the bytes plus their length, in the metadata database;
a match is confirmed byte for byte before two IDs share content, so a hash collision can never merge
different files.  A shared trunk slot is marked ``S`` and answers for each of its registered holders;
a shared plain file is hard-linked.  Every operation here runs under the store's dedup lock, which
deletions take too, so a holder cannot vanish between being found and being shared.

A holder that cannot be shared (gone, failing its checksum, or an inode at its file system's link
limit) never fails an upload: the upload stores a copy of its own, and the index names that copy for
later uploads (:meth:`MetaDB.retire_named_holder`).  A corrupt holder is left as it is, for scrub.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from typing import TYPE_CHECKING

import xxhash

from trunkstore import fileid as fid
from trunkstore.buffers import Bytes
from trunkstore.diskio import fsync_dir
from trunkstore.plainfiles import Spooled
from trunkstore.slot import HEADER_SIZE, slot_size

if TYPE_CHECKING:
    from trunkstore.store import Store


_CHUNK = 1 << 20

#: ``os.link`` refusals that say "no more names for this inode here", not that the disk is failing:
#: the link limit (EMLINK; 65,000 on ext4), another file system (EXDEV), or no hard links (EPERM, ENOTSUP).
_LINK_REFUSALS = frozenset({errno.EMLINK, errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})


def content_digest(data: Bytes) -> bytes:
    return xxhash.xxh3_128_digest(data) + len(data).to_bytes(8, "big")


class ContentHasher:
    """:func:`content_digest` of bytes that arrive piece by piece."""

    __slots__ = ("_hasher", "_size")

    def __init__(self) -> None:
        self._hasher = xxhash.xxh3_128()
        self._size = 0

    def update(self, data: Bytes) -> None:
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
def put_deduplicated(store: Store, data: Bytes, size: int, crc: int, ext: str, store_path: int) -> str:
    """Store bytes held in memory, as a new ID for identical stored bytes when there are some.

    ``store_path`` >= 0: a trunk slot's space was admitted there already (given back if not needed).
    """
    digest = content_digest(data)
    alias = _alias(store, digest, data, size, crc, ext)
    if alias is not None:
        if store_path >= 0:
            store._guard.release(store_path, slot_size(size, store._slot_min, store._align))
        return alias
    if size + HEADER_SIZE <= store._slot_max:
        file_id, ticket = store._write_trunk(data, size, crc, ext, store_path)
        store._pool.wait(ticket)
    else:
        file_id = store._put_plain_bytes(data, ext)
    store._meta.add_holder(digest, file_id)
    return file_id


def _alias(store: Store, digest: bytes, data: Bytes, size: int, crc: int, ext: str) -> str | None:
    """A new ID sharing the bytes of an identical stored file, or ``None`` if there is none to share."""
    holder = store._meta.find_content(digest)
    if holder is None:
        return None
    if not _holds(store, holder, data):
        store._meta.retire_named_holder(digest)
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
        if not link_to_holder(store, digest, store.layout.file_path(parsed), os.path.join(directory, name)):
            return None
        if store._durable:
            fsync_dir(directory)
        alias = store._format(parsed.store_path, high, low, name)
    store._meta.add_holder(digest, alias)
    return alias


def _holds(store: Store, holder: str, data: Bytes) -> bool:
    """Whether the stored file ``holder`` reads back whole, passing its checks, as exactly ``data``."""
    try:
        return store.get(holder) == bytes(data)
    except OSError:  # FileNotFound, CorruptData, or a read error: this copy cannot be shared
        return False


def link_to_holder(store: Store, digest: bytes, holder_path: str, path: str) -> bool:
    """Make ``path`` one more name of the named holder of ``digest``, at ``holder_path``.

    ``False`` if the file system refuses another link to it (:data:`_LINK_REFUSALS`): the holder is
    then retired, so that the copy the caller stores instead is the one later uploads link to.
    """
    try:
        os.link(holder_path, path)
    except OSError as exc:
        if exc.errno not in _LINK_REFUSALS:
            raise
        store._meta.retire_named_holder(digest)
        return False
    return True


def plain_holder_path(store: Store, digest: bytes, spooled: Spooled) -> str | None:
    """The path of a stored plain file with exactly the spooled bytes that can take one more link
    beside the spool, if the index knows one.

    A named holder that is gone, differs, or is at its link limit is retired (see
    :meth:`MetaDB.retire_named_holder`); one on another file system than the spool is only passed over,
    since uploads to its own store path can still link to it.
    """
    holder = store._meta.find_content(digest)
    if holder is None:
        return None
    parsed = store._parse(holder)
    if parsed.trunk is not None:
        return None
    path = store.layout.file_path(parsed)
    try:
        holder_stat = os.stat(path)
        usable = holder_stat.st_size == spooled.size and same_bytes(path, 0, spooled.size, spooled.path)
    except OSError:
        usable = False
    if not usable or holder_stat.st_nlink >= _link_max(path):
        store._meta.retire_named_holder(digest)
        return None
    if holder_stat.st_dev != os.stat(spooled.path).st_dev:
        return None
    return path


def _link_max(path: str) -> int:
    """How many links the file system of ``path`` allows one inode (65,000 on ext4)."""
    try:
        limit = os.pathconf(path, "PC_LINK_MAX")
    except (OSError, ValueError):
        limit = -1
    # Not reported: no limit known, and only a refused link will tell.
    return limit if limit > 0 else sys.maxsize
