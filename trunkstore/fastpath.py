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
"""

from __future__ import annotations

import binascii
import mmap
import struct
from collections.abc import Callable

from trunkstore.fileid import _CANONICAL_LAST

# '-' and '_' become the standard alphabet; a literal '+' or '/' becomes '!', which the strict decoder
# refuses, so only the URL-safe spelling is accepted.
_TO_STD = bytes.maketrans(b"-_+/", b"+/!!")
_LOCATION = struct.Struct(">II")
_CANONICAL = frozenset(c.encode()[0] for c in _CANONICAL_LAST)
_FLAGS = 0x88  # top byte of the size field: SIZE_MARK | TRUNK_FLAG


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


def make_reader(group: str, slots: SlotMap, crc32: Callable[[bytes], int] | None) -> Callable[[str], bytes | None]:
    """A function returning a whole trunk file's bytes for a valid ID of ``group``, else ``None``.

    With ``crc32``, the bytes are verified against the crc32 in the slot header (and so in the ID).
    """
    prefix = group + "/"
    start = len(prefix)
    id_length = start + 60
    entries = slots.entries
    a2b = binascii.a2b_base64
    unpack_location = _LOCATION.unpack_from
    canonical = _CANONICAL

    def read_whole(file_id: str) -> bytes | None:
        if file_id.__class__ is not str or len(file_id) != id_length or not file_id.startswith(prefix):
            return None
        raw = file_id.encode("ascii", "replace")
        try:
            decoded = a2b(
                (raw[start + 10 : start + 37] + b"A" + raw[start + 37 : start + 53]).translate(_TO_STD),
                strict_mode=True,
            )
        except binascii.Error:
            return None
        # decoded: info[0:20] (source, timestamp, size field, crc32), pad byte, trunk[21:33]
        if decoded[8] & _FLAGS != _FLAGS or raw[start + 36] not in canonical:
            return None
        trunk_id, offset = unpack_location(decoded, 21)
        entry = entries.get(trunk_id)
        # The offset must be where a live slot starts: a header-like run of bytes inside another
        # file's data names nothing.
        if entry is None or raw[start : start + 10] != entry[1] or offset not in entry[2]:
            return None
        mapped = entry[0]
        size = int.from_bytes(decoded[12:16], "big")
        try:
            # type, alloc_size, file_size, crc32, mtime, ext7
            if (
                mapped[offset : offset + 24]
                != b"F" + decoded[29:33] + decoded[12:20] + decoded[4:8] + raw[start + 53 :]
            ):
                return None
            data = mapped[offset + 24 : offset + 24 + size]
        except ValueError:  # the container was closed meanwhile
            return None
        if crc32 is not None and crc32(data) != int.from_bytes(decoded[16:20], "big"):
            return None
        return data

    return read_whole
