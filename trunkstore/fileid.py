"""FastDFS file IDs: parsing, validation and construction.  Pure functions, no I/O.

Layout (FastDFS 6)::

    file_id = group "/" "M" HEX2(store_path) "/" HEX2(sub_high) "/" HEX2(sub_low) "/" name
    name    = B64(20 bytes) [B64(12 bytes) if trunk] tail

* B64 is RFC 4648 base64url without padding: 20 bytes -> 27 characters, 12 bytes -> 16.
* The 20 bytes: ``source[4] timestamp[4] size_field[8] crc32[4]`` (big-endian).  ``source`` is the
  storage's IPv4 address as four octets, or its numeric storage id.
* ``size_field`` for a file under 4 GiB is ``((rand23 | 0x80000000) << 32) | size``; a trunk file also
  sets bit 59 and an appender file sets bit 58 with a zero low word.  A file of 4 GiB or more stores
  its plain size.
* The 12 trunk bytes: ``trunk_id[4] offset[4] alloc_size[4]``: where the file's slot lives.
* ``tail`` is the 7-character extension part (``6 - len(ext)`` random digits, ``.``, ext; or 7 random
  digits without an extension).  A slave file's name is its master's name without ``.ext``, then the
  slave prefix, then ``.ext``: every other name that is longer than its kind allows is a slave.
"""

from __future__ import annotations

import binascii
import enum
import random
import re
import struct
from dataclasses import dataclass

from trunkstore.errors import InvalidArgument, InvalidFileId

INFO = struct.Struct(">IIQI")
TRUNK_INFO = struct.Struct(">III")
# A trunk file's name bytes with the size field as two words (high: flags and random bits; low: size).
_TRUNK_NAME = struct.Struct(">IIIIIxIII")

SIZE_MARK = 1 << 63
TRUNK_FLAG = 1 << 59
APPENDER_FLAG = 1 << 58
LOW_WORD = 0xFFFFFFFF
_TRUNK_HIGH_FLAGS = (SIZE_MARK | TRUNK_FLAG) >> 32

INFO_CHARS = 27  # base64 of the 20 info bytes
TRUNK_CHARS = 16  # base64 of the 12 trunk bytes
TAIL_CHARS = 7
MAX_EXT = 6
MAX_GROUP = 16
MAX_PREFIX = 16
# "M00/00/00/" + 27 + 7, and + 16 more for trunk files: what FastDFS calls the logic file name length.
NORMAL_REMOTE_LEN = 44
TRUNK_REMOTE_LEN = 60
MAX_FILE_ID_LEN = 128

_EXT_RE = re.compile(r"[A-Za-z0-9._-]{0,6}")
_PREFIX_RE = re.compile(r"[A-Za-z0-9._-]{1,16}")
_GROUP_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_ID_RE = re.compile(
    r"([A-Za-z0-9_-]{1,16})/M([0-9A-F]{2})/([0-9A-F]{2})/([0-9A-F]{2})/"
    r"([A-Za-z0-9_-]{27})([A-Za-z0-9_.-]{7,90})"
)
_TO_STD = str.maketrans("-_", "+/")
_TO_URL = bytes.maketrans(b"+/", b"-_")
# Last character of a 27-char encoding carries 4 significant bits: the low 2 must be zero, else two
# spellings would name the same bytes.
_CANONICAL_LAST = frozenset("AEIMQUYcgkosw048")

_rng = random.Random()


class FileKind(enum.StrEnum):
    NORMAL = "normal"
    TRUNK = "trunk"
    APPENDER = "appender"
    SLAVE = "slave"
    LINK = "link"


@dataclass(frozen=True, slots=True)
class TrunkLocation:
    """Where a merged small file's slot lives: container ``trunk_id`` at ``offset``."""

    trunk_id: int
    offset: int
    alloc_size: int


@dataclass(frozen=True, slots=True)
class FileId:
    """A parsed, validated file ID."""

    group: str
    store_path: int
    sub_high: int
    sub_low: int
    name: str
    source: int
    timestamp: int
    size_field: int
    crc32: int
    trunk: TrunkLocation | None
    tail: str
    is_slave: bool

    def __str__(self) -> str:
        return f"{self.group}/{self.remote_filename}"

    @property
    def remote_filename(self) -> str:
        """The ID without its group: ``M00/HH/HH/name``, what FastDFS puts on the wire."""
        return f"M{self.store_path:02X}/{self.sub_high:02X}/{self.sub_low:02X}/{self.name}"

    @property
    def declared_size(self) -> int:
        """The size recorded in the ID (0 for appender files, whose size changes)."""
        if self.size_field & SIZE_MARK:
            return 0 if self.size_field & APPENDER_FLAG else self.size_field & LOW_WORD
        return self.size_field

    @property
    def is_appender(self) -> bool:
        return bool(self.size_field & SIZE_MARK and self.size_field & APPENDER_FLAG) and not self.is_slave

    @property
    def kind(self) -> FileKind:
        if self.is_slave:
            return FileKind.SLAVE
        if self.trunk is not None:
            return FileKind.TRUNK
        if self.is_appender:
            return FileKind.APPENDER
        return FileKind.NORMAL

    @property
    def ext(self) -> str:
        """The extension (which may itself contain dots, as ``tar.gz``); a slave's is after its last dot."""
        if self.is_slave:
            dot = self.tail.rfind(".")
            return self.tail[dot + 1 :] if dot >= 0 else ""
        dot = self.tail.find(".")
        return self.tail[dot + 1 :] if dot >= 0 else ""

    @property
    def ext7(self) -> bytes:
        """The 7-byte extension part that a trunk slot header repeats."""
        return self.tail[-TAIL_CHARS:].encode("ascii")


def check_ext(ext: str) -> str:
    """Validate a file extension as FastDFS does: at most 6 of ``[A-Za-z0-9._-]``."""
    if not isinstance(ext, str) or not _EXT_RE.fullmatch(ext):
        raise InvalidArgument(f"bad file extension {ext!r}: at most 6 characters of [A-Za-z0-9._-]")
    return ext


def check_prefix(prefix: str) -> str:
    """Validate a slave prefix: 1 to 16 of ``[A-Za-z0-9._-]``."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InvalidArgument(f"bad slave prefix {prefix!r}: 1 to 16 characters of [A-Za-z0-9._-]")
    return prefix


def check_group(group: str) -> str:
    if not isinstance(group, str) or not _GROUP_RE.fullmatch(group):
        raise InvalidArgument(f"bad group name {group!r}: 1 to 16 characters of [A-Za-z0-9_-]")
    return group


def make_tail(ext: str) -> str:
    """The random 7-character extension part for ``ext`` (already validated)."""
    if not ext:  # the common case, on every upload's path, where %-formatting costs 40% less than f"{n:07d}"
        return "%07d" % (_rng.getrandbits(30) % 10_000_000)  # noqa: UP031
    digits = TAIL_CHARS - 1 - len(ext)
    number = f"{_rng.getrandbits(30) % _POWERS[digits]:0{digits}d}" if digits else ""
    return number + "." + ext


_POWERS = [10**n for n in range(TAIL_CHARS + 1)]


def make_size_field(size: int, *, trunk: bool = False, appender: bool = False) -> int:
    """The ID's 8-byte size field, with FastDFS's random high bits and kind flags."""
    if appender:
        return ((_rng.getrandbits(23) | 0x80000000) << 32) | APPENDER_FLAG
    if size > LOW_WORD:
        return size
    field = ((_rng.getrandbits(23) | 0x80000000) << 32) | size
    return field | TRUNK_FLAG if trunk else field


def encode_name(
    source: int, timestamp: int, size_field: int, crc32: int, trunk: TrunkLocation | None, tail: str
) -> str:
    """The file name part of an ID (no group, no directories)."""
    info = binascii.b2a_base64(INFO.pack(source, timestamp, size_field, crc32), newline=False)
    name = info[:INFO_CHARS].translate(_TO_URL).decode("ascii")
    if trunk is not None:
        packed = TRUNK_INFO.pack(trunk.trunk_id, trunk.offset, trunk.alloc_size)
        name += binascii.b2a_base64(packed, newline=False).translate(_TO_URL).decode("ascii")
    return name + tail


def encode_trunk_name(
    source: int,
    timestamp: int,
    size: int,
    crc32: int,
    trunk_id: int,
    offset: int,
    alloc_size: int,
    tail: str,
    prefix: str = "",
) -> str:
    """The name of a new trunk file: :func:`encode_name` in one base64 call, for the upload hot path.

    A zero byte after the 20 info bytes aligns the trunk part on a character boundary: the first 27
    characters are then exactly the info part's encoding, the 28th is dropped.  ``prefix`` (the
    ``group/Mxx/HH/HH/`` part) is put in front, giving the whole file ID.
    """
    high = _rng.getrandbits(23) | _TRUNK_HIGH_FLAGS
    raw = _TRUNK_NAME.pack(source, timestamp, high, size, crc32, trunk_id, offset, alloc_size)
    text = binascii.b2a_base64(raw, newline=False).translate(_TO_URL).decode("ascii")
    return f"{prefix}{text[:INFO_CHARS]}{text[INFO_CHARS + 1 :]}{tail}"


def format_file_id(group: str, store_path: int, sub_high: int, sub_low: int, name: str) -> str:
    return f"{group}/M{store_path:02X}/{sub_high:02X}/{sub_low:02X}/{name}"


def _b64decode(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.translate(_TO_STD) + "=" * (-len(text) % 4), strict_mode=True)
    except binascii.Error as exc:
        raise InvalidFileId(f"bad base64 in file ID: {text!r}") from exc


def parse_file_id(file_id: str, group: str | None = None) -> FileId:
    """Parse and validate ``file_id``; with ``group``, also require that group.

    Raises :class:`InvalidFileId` for anything that is not a well-formed FastDFS file ID.  The result's
    directory and name parts are safe to join onto a store path: the grammar admits no ``/``, no
    NUL and no name made only of dots.
    """
    if not isinstance(file_id, str):
        raise InvalidFileId(f"a file ID is a str, not {type(file_id).__name__}")
    if len(file_id) > MAX_FILE_ID_LEN:
        raise InvalidFileId(f"file ID too long ({len(file_id)} characters)")
    match = _ID_RE.fullmatch(file_id)
    if match is None:
        raise InvalidFileId(f"malformed file ID {file_id!r}")
    id_group, sp_hex, high_hex, low_hex, info_text, rest = match.groups()
    if group is not None and id_group != group:
        raise InvalidFileId(f"file ID {file_id!r} belongs to group {id_group!r}, not {group!r}")
    if info_text[-1] not in _CANONICAL_LAST:
        raise InvalidFileId(f"non-canonical base64 in file ID {file_id!r}")
    source, timestamp, size_field, crc32 = INFO.unpack(_b64decode(info_text))
    name = info_text + rest
    remote_len = 10 + len(name)
    trunk_flag = bool(size_field & SIZE_MARK and size_field & TRUNK_FLAG)
    is_slave = remote_len > TRUNK_REMOTE_LEN or (remote_len > NORMAL_REMOTE_LEN and not trunk_flag)
    trunk: TrunkLocation | None = None
    tail = rest
    if trunk_flag and not is_slave:
        if remote_len != TRUNK_REMOTE_LEN:
            raise InvalidFileId(f"trunk file ID of wrong length: {file_id!r}")
        trunk_text, tail = rest[:TRUNK_CHARS], rest[TRUNK_CHARS:]
        if "." in trunk_text:
            raise InvalidFileId(f"bad trunk location in file ID {file_id!r}")
        trunk = TrunkLocation(*TRUNK_INFO.unpack(_b64decode(trunk_text)))
    if not is_slave and len(tail) != TAIL_CHARS:
        raise InvalidFileId(f"bad extension part in file ID {file_id!r}")
    return FileId(
        group=id_group,
        store_path=int(sp_hex, 16),
        sub_high=int(high_hex, 16),
        sub_low=int(low_hex, 16),
        name=name,
        source=source,
        timestamp=timestamp,
        size_field=size_field,
        crc32=crc32,
        trunk=trunk,
        tail=tail,
        is_slave=is_slave,
    )


def slave_name(master: FileId, prefix: str, ext: str) -> str:
    """FastDFS's slave naming (``fdfs_gen_slave_filename``).

    The master's name is cut at the first ``.`` of its last 7 characters (if any), then the prefix and
    ``.ext`` follow; an ``ext`` that starts with ``.`` is used as it is.
    """
    base = master.name
    dot = base.find(".", len(base) - TAIL_CHARS)
    if dot >= 0:
        base = base[:dot]
    suffix = "" if not ext else ext if ext.startswith(".") else "." + ext
    return base + prefix + suffix


def source_from_ip(ip: str) -> int:
    """The 4 source bytes of an ID for a storage at IPv4 address ``ip``."""
    parts = ip.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and int(p) < 256 for p in parts):
        raise InvalidArgument(f"not an IPv4 address: {ip!r}")
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def source_to_ip(source: int) -> str:
    return ".".join(str(b) for b in source.to_bytes(4, "big"))
