"""The read fast path for trunk file IDs: ID text to slot location and expected header, in ~1 µs.

:func:`trunkstore.fileid.parse_file_id` builds a full :class:`~trunkstore.fileid.FileId`; reading a
small file needs only where its slot is and what header it must carry, so this decodes exactly that
from the ID's fixed positions.  It accepts only what the full parser accepts as a trunk ID of this
store; anything else returns ``None`` and takes the full parser's path, which reports errors.
"""

from __future__ import annotations

import binascii
import re
import struct

from trunkstore.fileid import _CANONICAL_LAST, SIZE_MARK, TRUNK_FLAG

_TO_STD = bytes.maketrans(b"-_", b"+/")
_TRUNK = struct.Struct(">III")
_SIZE = struct.Struct(">Q")
_FLAGS = SIZE_MARK | TRUNK_FLAG
_CANONICAL = frozenset(c.encode()[0] for c in _CANONICAL_LAST)


class TrunkIdReader:
    """Decodes the trunk IDs of one store (its group, store path count and sub-directory count)."""

    __slots__ = ("_prefix", "_re", "_start")

    def __init__(self, group: str, store_path_count: int, subdir_count: int) -> None:
        self._prefix = group + "/M"
        self._start = len(group) + 1
        last_path = store_path_count - 1
        last_dir = subdir_count - 1
        self._re = re.compile(
            rb"M" + _hex_range(last_path) + rb"/" + _hex_range(last_dir) + rb"/" + _hex_range(last_dir)
            + rb"/[A-Za-z0-9_-]{43}[A-Za-z0-9_.-]{7}"
        )

    def locate(self, file_id: str) -> tuple[int, int, bytes, int] | None:
        """``(trunk_id, slot_offset, expected_header, size)`` of a well-formed trunk ID, else ``None``."""
        if len(file_id) != self._start + 60 or not file_id.startswith(self._prefix):
            return None
        raw = file_id.encode("ascii", "replace")
        start = self._start
        if self._re.fullmatch(raw, start) is None or raw[start + 36] not in _CANONICAL:
            return None
        try:
            info = binascii.a2b_base64(raw[start + 10 : start + 37].translate(_TO_STD) + b"=", strict_mode=True)
            trunk = binascii.a2b_base64(raw[start + 37 : start + 53].translate(_TO_STD), strict_mode=True)
        except binascii.Error:
            return None
        if _SIZE.unpack_from(info, 8)[0] & _FLAGS != _FLAGS or b"." in raw[start + 37 : start + 53]:
            return None
        trunk_id, offset, _alloc = _TRUNK.unpack(trunk)
        # type, alloc_size, file_size (low word of the size field), crc32, mtime (timestamp), ext7
        header = b"F" + trunk[8:12] + info[12:16] + info[16:20] + info[4:8] + raw[start + 53 :]
        return trunk_id, offset, header, int.from_bytes(info[12:16], "big")


def _hex_range(last: int) -> bytes:
    """A regex matching the upper-case two-digit hex numbers 00 .. ``last``."""
    if last == 255:
        return rb"[0-9A-F]{2}"
    return b"(?:" + b"|".join(f"{i:02X}".encode() for i in range(last + 1)) + b")"
