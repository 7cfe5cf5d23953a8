"""Trunk slot format and slot sizing.  Pure functions, no I/O.

A slot is a 24-byte header followed by the file's bytes, at ``offset`` in a trunk container::

    type[1] alloc_size[4] file_size[4] crc32[4] mtime[4] ext7[7]      (big-endian)

``type`` is ``F`` for a file, ``S`` for a file whose content is shared by several IDs (dedup), and NUL
for free space (a freed slot is zeroed).  A read rebuilds the header it expects from the file ID and
compares it with the bytes on disk, so a deleted or reused slot never returns another file's bytes.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">cIIII7s")
HEADER_SIZE = HEADER.size  # 24

TYPE_FILE = b"F"
TYPE_SHARED = b"S"
TYPE_FREE = b"\0"


def slot_size(file_size: int, slot_min_size: int, alignment: int) -> int:
    """The allocation size for a file of ``file_size`` bytes (FastDFS's rule).

    ``slot_min_size`` if the slot fits in it, else ``file_size + 24`` rounded up to ``alignment``
    (0: exact).
    """
    need = file_size + HEADER_SIZE
    if need <= slot_min_size:
        return slot_min_size
    if alignment > 1:
        return -(-need // alignment) * alignment
    return need


def pack_header(kind: bytes, alloc_size: int, file_size: int, crc32: int, mtime: int, ext7: bytes) -> bytes:
    return HEADER.pack(kind, alloc_size, file_size, crc32, mtime, ext7)


def unpack_header(raw: bytes) -> tuple[bytes, int, int, int, int, bytes]:
    kind, alloc_size, file_size, crc32, mtime, ext7 = HEADER.unpack(raw)
    return kind, alloc_size, file_size, crc32, mtime, ext7
