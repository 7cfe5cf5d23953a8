"""Field helpers shared by the message modules: fixed-width NUL-padded text, names, range checks.

FastDFS writes text fields with ``strcpy`` into zeroed buffers: NUL-padded to the field width and
without a terminator when the text fills it.  A reader stops at the first NUL and ignores what
follows, as the C code does.  Every text field the protocol defines (group names, storage IDs, IP
addresses, versions, extensions, file names) is plain ASCII without spaces or control characters:
the sync binlog separates fields with spaces, so a name with a space could never be replicated.
Encoders refuse anything else, so every encoded message decodes back to itself.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from .codes import StorageStatus
from .errors import ProtocolError

GROUP_LEN = 16
STORAGE_ID_LEN = 16
#: A file ID's 4-byte source field holds a numeric storage ID (FastDFS's ``use_storage_id``) when it
#: is 1 .. this, else a storage's IPv4 address.
MAX_SERVER_ID = (1 << 24) - 1
IP_LEN = 16  # IPv4 text with room for a NUL: storage-side messages
TRACKER_IP_LEN = 15  # IPv4 text in tracker query replies: no room for a NUL
IP_TEXT_LEN = 46  # INET6_ADDRSTRLEN: the storage <-> tracker messages that allow IPv6
EXT_LEN = 6
PREFIX_LEN = 16
VERSION_LEN = 8
DOMAIN_LEN = 128

#: Longest remote file name (``M00/...``) accepted: FastDFS's ``filename[128]`` buffers.
FILENAME_MAX = 128

PORT_MAX = 0xFFFF
INT64_MAX = (1 << 63) - 1

INT64 = struct.Struct("!q")
INT32 = struct.Struct("!i")

_GRAPHIC = re.compile(rb"[\x21-\x7e]*")
_EXT = re.compile(r"[A-Za-z0-9._-]{0,6}")
_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,16}")


@dataclass(frozen=True, slots=True)
class Address:
    """A server's host (IP text) and port."""

    host: str
    port: int


def encode_text(value: str, field: str) -> bytes:
    """``value`` as ASCII, refusing characters the protocol's text fields cannot hold."""
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ProtocolError(f"{field} must be ASCII without spaces or control characters: {value!r}")
    return value.encode("ascii")


def decode_text(raw: bytes, field: str) -> str:
    """Inverse of :func:`encode_text`."""
    if _GRAPHIC.fullmatch(raw) is None:
        raise ProtocolError(f"{field} is not ASCII text: {raw!r}")
    return raw.decode("ascii")


def encode_fixed(value: str, width: int, field: str) -> bytes:
    """``value`` NUL-padded to ``width`` bytes (no terminator when it fills the field)."""
    raw = encode_text(value, field)
    if len(raw) > width:
        raise ProtocolError(f"{field} is longer than {width} bytes: {value!r}")
    return raw.ljust(width, b"\0")


def decode_fixed(raw: bytes, field: str) -> str:
    """The text of a NUL-padded field: up to the first NUL."""
    end = raw.find(b"\0")
    return decode_text(raw if end < 0 else raw[:end], field)


def encode_name(value: str, field: str, max_len: int = FILENAME_MAX) -> bytes:
    """A variable-length name (a remote file name): non-empty, at most ``max_len`` bytes."""
    raw = encode_text(value, field)
    if not 0 < len(raw) <= max_len:
        raise ProtocolError(f"{field} must be 1 to {max_len} bytes long, not {len(raw)}")
    return raw


def decode_name(raw: bytes, field: str, max_len: int = FILENAME_MAX) -> str:
    """Inverse of :func:`encode_name`."""
    if not 0 < len(raw) <= max_len:
        raise ProtocolError(f"{field} must be 1 to {max_len} bytes long, not {len(raw)}")
    return decode_text(raw, field)


def check_name_len(length: int, field: str, max_len: int = FILENAME_MAX) -> int:
    """A name length read from a length field, before the name itself has arrived."""
    if not 0 < length <= max_len:
        raise ProtocolError(f"{field} length must be 1 to {max_len}, not {length}")
    return length


def check_ext(ext: str) -> str:
    """A file extension: at most 6 characters from ``[A-Za-z0-9._-]`` (FastDFS's rule)."""
    if _EXT.fullmatch(ext) is None:
        raise ProtocolError(f"bad file extension {ext!r}")
    return ext


def check_prefix(prefix: str) -> str:
    """A slave prefix: 1 to 16 characters from ``[A-Za-z0-9._-]``."""
    if _PREFIX.fullmatch(prefix) is None:
        raise ProtocolError(f"bad slave prefix {prefix!r}")
    return prefix


def check_port(port: int, field: str = "port") -> int:
    if not 0 <= port <= PORT_MAX:
        raise ProtocolError(f"{field} out of range: {port}")
    return port


def check_size(value: int, field: str) -> int:
    """A size, offset or count: non-negative and within int64."""
    if not 0 <= value <= INT64_MAX:
        raise ProtocolError(f"{field} must be a non-negative int64, not {value}")
    return value


def check_range(value: int, low: int, high: int, field: str) -> int:
    if not low <= value <= high:
        raise ProtocolError(f"{field} must be in [{low}, {high}], not {value}")
    return value


def expect_len(body: bytes, length: int, what: str) -> None:
    if len(body) != length:
        raise ProtocolError(f"{what} body must be {length} bytes, not {len(body)}")


def expect_min_len(body: bytes, length: int, what: str) -> None:
    if len(body) < length:
        raise ProtocolError(f"{what} body must be at least {length} bytes, not {len(body)}")


def encode_group_file(group: str, filename: str) -> bytes:
    """The common ``group[16] filename`` body."""
    return encode_fixed(group, GROUP_LEN, "group") + encode_name(filename, "filename")


def decode_group_file(body: bytes, what: str) -> tuple[str, str]:
    """Inverse of :func:`encode_group_file`."""
    expect_min_len(body, GROUP_LEN + 1, what)
    return decode_fixed(body[:GROUP_LEN], "group"), decode_name(body[GROUP_LEN:], "filename")


def pack(st: struct.Struct, *values: object) -> bytes:
    """``st.pack``, refusing out-of-range values with :class:`ProtocolError`."""
    try:
        return st.pack(*values)
    except struct.error as exc:
        raise ProtocolError(f"value out of range for the wire: {exc}") from None


def check_storage_status(value: int) -> StorageStatus:
    try:
        return StorageStatus(value)
    except ValueError:
        raise ProtocolError(f"unknown storage status {value}") from None
