"""The read fast path for whole small files: ID text to bytes in a few microseconds.

:func:`trunkstore.fileid.parse_file_id` builds a full :class:`~trunkstore.fileid.FileId`; reading a
whole trunk file needs only where its slot is and the header the slot must carry, so this decodes
exactly that from the ID's fixed positions and compares it with the bytes on disk:

* both base64 parts are decoded in one call (a pad character aligns the trunk part on a byte);
* the directory part ``Mxx/HH/HH/`` is checked by comparing it with the directory of the container the
  ID names, and the extension part by comparing it with the slot header, which repeats it; so nothing
  this path accepts could be refused by the full parser, and a stale or forged ID fails the header;
* the offset must be the start of a live slot (a set lookup), so bytes inside a file's data that
  imitate a header are never taken for a slot.

Anything it does not handle (another kind of file, a range, a mismatch, a checksum failure) returns
``None``; the caller then takes the full path, which reports the precise error.

Decoding the ID is a large part of the cost of a read (4 KiB reads: 248,574/s cached, 151,023/s not),
and what it yields depends on the ID's text alone, so the reader keeps the decoded IDs of recent reads
(:class:`DecodedIds`): a file read again skips the decoding but not one of the checks against the
container, so a cached ID of a deleted or reused slot still reads as not found.
"""

from __future__ import annotations

import binascii
import mmap
import struct
from collections.abc import Callable
from typing import Protocol, TypeAlias

from trunkstore.fileid import _CANONICAL_LAST
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE

# '-' and '_' become the standard alphabet; a literal '+' or '/' becomes '!', which the strict decoder
# refuses, so only the URL-safe spelling is accepted.
_TO_STD = bytes.maketrans(b"-_+/", b"+/!!")
# The 33 bytes of a trunk file's name (info, the pad byte, trunk location): source, mtime, the size
# field's high and low words, crc32, trunk_id, offset, alloc_size.
_NAME = struct.Struct(">IIIIIxIII")
TrunkName: TypeAlias = tuple[int, int, int, int, int, int, int, int]
_CANONICAL = frozenset(c.encode()[0] for c in _CANONICAL_LAST)
_FLAGS = 0x88000000  # of the size field's high word: SIZE_MARK | TRUNK_FLAG
_NO_LIMIT = 1 << 32


class SlotMap:
    """``trunk_id -> (memory map, b"Mxx/HH/HH/", offsets of the live slots)`` of open containers.

    Kept by the pool, which adds a container once it knows where each of its slots starts and updates
    that set (the same object) under its lock as slots are allocated and freed.
    """

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[int, tuple[mmap.mmap, bytes, set[int]]] = {}

    def add(
        self, trunk_id: int, mapped: mmap.mmap | None, store_path: int, sub_high: int, sub_low: int, starts: set[int]
    ) -> None:
        if mapped is not None:
            directory = f"M{store_path:02X}/{sub_high:02X}/{sub_low:02X}/".encode()
            self.entries[trunk_id] = (mapped, directory, starts)

    def remove(self, trunk_id: int) -> None:
        self.entries.pop(trunk_id, None)


def make_decoder(group: str) -> Callable[[str], tuple[bytes, TrunkName] | None]:
    """A function decoding a trunk file ID of ``group`` from its fixed positions, else ``None``.

    It returns the ID's ASCII bytes and ``(source, mtime, size_high, size, crc32, trunk_id, offset,
    alloc_size)``, having checked the length, the group, the base64 (strict, URL-safe, canonical) and
    the trunk flags.  The caller checks the directory part against the container the ID names and the
    extension part (the last 7 bytes) against the slot header; then every ID it accepts is one the full
    parser accepts, with the same meaning.
    """
    prefix = group + "/"
    start = len(prefix)
    id_length = start + 60
    a2b = binascii.a2b_base64
    unpack_name = _NAME.unpack
    canonical = _CANONICAL
    flags = _FLAGS

    def decode(file_id: str) -> tuple[bytes, TrunkName] | None:
        if file_id.__class__ is not str or len(file_id) != id_length or not file_id.startswith(prefix):
            return None
        raw = file_id.encode("ascii", "replace")
        try:
            fields: TrunkName = unpack_name(
                a2b(
                    (raw[start + 10 : start + 37] + b"A" + raw[start + 37 : start + 53]).translate(_TO_STD),
                    strict_mode=True,
                )
            )
        except (binascii.Error, struct.error):  # not base64, or padded to another length
            return None
        if fields[2] & flags != flags or raw[start + 36] not in canonical:
            return None
        return raw, fields

    return decode


#: What a trunk file's ID says about its slot: ``(trunk_id, offset, b"Mxx/HH/HH/", expected header)``,
#: the header as :data:`trunkstore.slot.HEADER` unpacks it.
SlotClaim: TypeAlias = tuple[int, int, bytes, tuple[bytes, int, int, int, int, bytes]]


class DecodedIds:
    """The :data:`SlotClaim` of recently read IDs, at most ``capacity`` of them.

    Two generations of ``capacity / 2`` entries: new entries go into the young one; when it is full it
    becomes the old one and the previous old one is dropped, so an ID read at least once per
    ``capacity / 2`` new IDs stays.  A hit in the old generation moves the entry to the young one.
    Cheaper per read than an exact LRU, and safe without a lock: a race between threads can only drop
    or duplicate an entry, and every entry is correct for its key whoever wrote it.
    """

    __slots__ = ("_half", "old", "young")

    def __init__(self, capacity: int) -> None:
        self._half = capacity // 2
        self.young: dict[str, SlotClaim] = {}
        self.old: dict[str, SlotClaim] = {}

    def get(self, file_id: str) -> SlotClaim | None:
        claim = self.young.get(file_id)
        if claim is None:
            claim = self.old.get(file_id)
            if claim is not None:
                self.add(file_id, claim)
        return claim

    def add(self, file_id: str, claim: SlotClaim) -> None:
        if self._half <= 0:
            return
        young = self.young
        if len(young) >= self._half:
            self.old = young
            young = self.young = {}
        young[file_id] = claim

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class WholeReader(Protocol):
    """``reader(file_id, limit=...)``: a whole trunk file's bytes, or ``None``."""

    def __call__(self, file_id: str, limit: int = ..., /) -> bytes | None: ...


def make_reader(
    group: str, slots: SlotMap, crc32: Callable[[bytes], int] | None, cache_entries: int = 0
) -> WholeReader:
    """A function returning a whole trunk file's bytes for a valid ID of ``group``, else ``None``.

    Its second argument, if given, is the largest size to read: a larger file is ``None`` too.

    With ``crc32``, the bytes are verified against the crc32 in the slot header (and so in the ID).
    ``cache_entries`` > 0 keeps the decoded form of that many recently read IDs (:class:`DecodedIds`).
    """
    start = len(group) + 1
    decode = make_decoder(group)
    entries = slots.entries
    unpack_header = HEADER.unpack_from
    decoded_ids = DecodedIds(cache_entries)
    lookup = decoded_ids.get
    remember = decoded_ids.add

    def claim_of(file_id: str) -> SlotClaim | None:
        decoded = decode(file_id)
        if decoded is None:
            return None
        raw, (_source, mtime, _high, size, crc, trunk_id, offset, alloc) = decoded
        claim = (trunk_id, offset, raw[start : start + 10], (TYPE_FILE, alloc, size, crc, mtime, raw[start + 53 :]))
        remember(file_id, claim)
        return claim

    def read_whole(file_id: str, limit: int = _NO_LIMIT, /) -> bytes | None:
        if file_id.__class__ is not str:
            return None
        # The young generation looked up directly: the common hit costs one dict lookup.
        claim = decoded_ids.young.get(file_id)
        if claim is None:
            claim = lookup(file_id) or claim_of(file_id)
            if claim is None:
                return None
        trunk_id, offset, directory, expected = claim
        size = expected[2]
        if size > limit:
            return None
        entry = entries.get(trunk_id)
        # The offset must be where a live slot starts: a header-like run of bytes inside another
        # file's data names nothing.
        if entry is None or directory != entry[1] or offset not in entry[2]:
            return None
        mapped = entry[0]
        try:
            if unpack_header(mapped, offset) != expected:
                return None
            data = mapped[offset + HEADER_SIZE : offset + HEADER_SIZE + size]
        except (ValueError, struct.error):  # the container was closed meanwhile
            return None
        if crc32 is not None and crc32(data) != expected[3]:
            return None
        return data

    return read_whole
