"""File metadata on the wire: ``name\\x02value`` records joined by ``\\x01``.

There is no trailing separator and an empty body means no metadata.  Names are at most 64 bytes and
values at most 256 (FastDFS truncates longer ones rather than refusing them, and so does this
module, on a UTF-8 character boundary).  Records are kept sorted by name, one per name (the last one
wins), so that equal metadata always has one encoding.

Metadata is held as a tuple of ``(name, value)`` pairs: immutable, hashable, ordered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from .errors import ProtocolError

RECORD_SEP = b"\x01"
FIELD_SEP = b"\x02"
NAME_MAX = 64
VALUE_MAX = 256

Metadata = tuple[tuple[str, str], ...]

# Characters a name or value cannot contain: the two separators, and NUL, which ends a C string.
_FORBIDDEN = frozenset("\x00\x01\x02")


class MetadataFlag(StrEnum):
    """SET_METADATA's flag byte."""

    OVERWRITE = "O"  # replace all metadata; with no records, delete it
    MERGE = "M"  # insert or update the given names, keep the others


def _truncate(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    # A prefix of valid UTF-8 can only be broken at its end: "ignore" drops exactly that partial char.
    return raw[:limit].decode("utf-8", "ignore")


def normalize_metadata(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> Metadata:
    """Truncated, de-duplicated (last wins) and sorted by name; refuses separators and empty names."""
    pairs = items.items() if isinstance(items, Mapping) else items
    merged: dict[str, str] = {}
    for name, value in pairs:
        if not name or not _FORBIDDEN.isdisjoint(name) or not _FORBIDDEN.isdisjoint(value):
            raise ProtocolError(f"bad metadata record {name!r}={value!r}")
        merged[_truncate(name, NAME_MAX)] = _truncate(value, VALUE_MAX)
    return tuple(sorted(merged.items()))


def encode_metadata(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    return RECORD_SEP.join(
        name.encode("utf-8") + FIELD_SEP + value.encode("utf-8")
        for name, value in normalize_metadata(items)
    )


def decode_metadata(raw: bytes) -> Metadata:
    """Inverse of :func:`encode_metadata`; over-long names and values are truncated, as FastDFS does."""
    if not raw:
        return ()
    pairs: list[tuple[str, str]] = []
    for record in raw.split(RECORD_SEP):
        fields = record.split(FIELD_SEP)
        if len(fields) != 2:
            raise ProtocolError(f"metadata record without exactly one name/value separator: {record!r}")
        try:
            name, value = fields[0].decode("utf-8"), fields[1].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"metadata record is not UTF-8: {record!r}") from None
        pairs.append((name, value))
    return normalize_metadata(pairs)
