"""Metadata records: encoding, normalisation, truncation and refusal of malformed bodies."""

from __future__ import annotations

import pytest

from cluster.protocol import ProtocolError, decode_metadata, encode_metadata, normalize_metadata
from cluster.protocol.metadata import NAME_MAX, VALUE_MAX


def test_encoding_is_sorted_and_separated() -> None:
    assert encode_metadata({"width": "1024", "height": "768", "author": ""}) == (
        b"author\x02\x01height\x02768\x01width\x021024"
    )
    assert encode_metadata({}) == b""
    assert decode_metadata(b"") == ()


def test_round_trip_and_duplicates() -> None:
    meta = normalize_metadata([("b", "1"), ("a", "2"), ("b", "3")])
    assert meta == (("a", "2"), ("b", "3"))
    assert decode_metadata(encode_metadata(meta)) == meta
    assert decode_metadata(b"b\x021\x01a\x022\x01b\x023") == meta


def test_long_names_and_values_are_truncated_on_a_character_boundary() -> None:
    name = "n" * 63 + "é"  # 65 bytes: the é does not fit
    value = "v" * 255 + "€"  # 258 bytes
    ((got_name, got_value),) = normalize_metadata({name: value})
    assert got_name == "n" * 63 and got_value == "v" * 255
    raw = name.encode() + b"\x02" + value.encode()
    assert decode_metadata(raw) == ((got_name, got_value),)
    assert len(got_name.encode()) <= NAME_MAX and len(got_value.encode()) <= VALUE_MAX


@pytest.mark.parametrize(
    "raw",
    [b"novalue", b"a\x02b\x02c", b"\x02v", b"a\x021\x01", b"\x01", b"a\x02\xff", b"\xc3\x02v"],
)
def test_malformed(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_metadata(raw)


@pytest.mark.parametrize("pair", [("", "v"), ("a\x01", "v"), ("a", "v\x02"), ("a", "\x00")])
def test_unencodable(pair: tuple[str, str]) -> None:
    with pytest.raises(ProtocolError):
        encode_metadata([pair])
