"""File IDs: FastDFS 6.16.1 vectors, round trips, slave names, and refusal of malformed IDs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkstore import fileid as fid
from trunkstore.errors import InvalidArgument, InvalidFileId
from trunkstore.fileid import FileKind, TrunkLocation, encode_name, format_file_id, parse_file_id

# ---- FastDFS 6.16.1 vectors (storage 127.0.0.1, trunk alignment 256) ---------------------------------
VECTORS = [
    pytest.param(
        "group1/M00/00/00/fwAAAWsBkruIJDOEAAAD6FGgLgEAAAAAQAAAAAAAAQA420.txt",
        dict(
            info="7f0000016b0192bb88243384000003e851a02e01",
            ip="127.0.0.1",
            timestamp=1795265211,
            size=1000,
            crc32=0x51A02E01,
            trunk=TrunkLocation(1, 0, 1024),
            kind=FileKind.TRUNK,
            tail="420.txt",
            ext="txt",
        ),
        id="trunk-1000",
    ),
    pytest.param(
        "group1/M00/00/00/fwAAAWsBkruIKLKtAP__6Gj14u8AAAAAQABpgABAAAA426.dat",
        dict(
            info=None,
            ip="127.0.0.1",
            timestamp=1795265211,
            size=16_777_192,
            crc32=None,
            trunk=TrunkLocation(1, 108_032, 16_777_216),
            kind=FileKind.TRUNK,
            tail="426.dat",
            ext="dat",
        ),
        id="trunk-16M",
    ),
    pytest.param(
        "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
        dict(
            info="7f0000016b0192bc8001376b014000002c98eff8",
            ip="127.0.0.1",
            timestamp=1795265212,
            size=20_971_520,
            crc32=0x2C98EFF8,
            trunk=None,
            kind=FileKind.NORMAL,
            tail="137.bin",
            ext="bin",
        ),
        id="normal-20M",
    ),
    pytest.param(
        "group1/M00/00/00/fwAAAWsBku2EAwqbAAAAAA_-AcM017.txt",
        dict(
            info="7f0000016b0192ed84030a9b000000000ffe01c3",
            ip="127.0.0.1",
            timestamp=1795265261,
            size=0,
            crc32=0x0FFE01C3,
            trunk=None,
            kind=FileKind.APPENDER,
            tail="017.txt",
            ext="txt",
        ),
        id="appender",
    ),
]


@pytest.mark.parametrize(("file_id", "want"), VECTORS)
def test_fastdfs_vector_decodes(file_id: str, want: dict[str, object]) -> None:
    parsed = parse_file_id(file_id, group="group1")
    assert parsed.group == "group1"
    assert (parsed.store_path, parsed.sub_high, parsed.sub_low) == (0, 0, 0)
    if want["info"] is not None:
        info = fid.INFO.pack(parsed.source, parsed.timestamp, parsed.size_field, parsed.crc32)
        assert info.hex() == want["info"]
    if want["crc32"] is not None:
        assert parsed.crc32 == want["crc32"]
    assert fid.source_to_ip(parsed.source) == want["ip"]
    assert parsed.timestamp == want["timestamp"]
    assert parsed.declared_size == want["size"]
    assert parsed.trunk == want["trunk"]
    assert parsed.kind == want["kind"]
    assert parsed.tail == want["tail"]
    assert parsed.ext == want["ext"]
    assert parsed.ext7 == str(want["tail"]).encode()
    assert not parsed.is_slave
    assert parsed.is_appender == (want["kind"] == FileKind.APPENDER)
    assert parsed.remote_filename == file_id.removeprefix("group1/")
    assert str(parsed) == file_id


@pytest.mark.parametrize(("file_id", "want"), VECTORS)
def test_fastdfs_vector_reencodes_byte_identical(file_id: str, want: dict[str, object]) -> None:
    parsed = parse_file_id(file_id)
    name = encode_name(parsed.source, parsed.timestamp, parsed.size_field, parsed.crc32, parsed.trunk, parsed.tail)
    assert name == parsed.name
    assert format_file_id("group1", 0, 0, 0, name) == file_id


def test_vector_size_fields_carry_fastdfs_flags() -> None:
    trunk = parse_file_id(VECTORS[0].values[0])
    normal = parse_file_id(VECTORS[2].values[0])
    appender = parse_file_id(VECTORS[3].values[0])
    for parsed in (trunk, normal, appender):
        assert parsed.size_field & fid.SIZE_MARK
    assert trunk.size_field & fid.TRUNK_FLAG and not trunk.size_field & fid.APPENDER_FLAG
    assert not normal.size_field & (fid.TRUNK_FLAG | fid.APPENDER_FLAG)
    assert appender.size_field & fid.APPENDER_FLAG and appender.size_field & fid.LOW_WORD == 0


def test_wire_example_upload_id() -> None:
    parsed = parse_file_id("group1/M00/00/00/fwAAAWsBk1eIBbpcAAATiEgSesEAAAAAQAAKQAAABQA736.txt")
    assert parsed.declared_size == 5000
    assert parsed.trunk == TrunkLocation(1, 10496, 5120)
    assert parsed.kind == FileKind.TRUNK


# ---- round trips -------------------------------------------------------------------------------------
EXT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
exts = st.text(alphabet=EXT_CHARS + ".", max_size=6)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def id_parts(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["normal", "big", "appender", "trunk"]))
    if kind == "big":
        size = draw(st.integers(2**32, 2**63 - 1))
    elif kind == "appender":
        size = 0
    else:
        size = draw(u32)
    trunk = TrunkLocation(draw(u32), draw(u32), draw(u32)) if kind == "trunk" else None
    return dict(
        kind=kind,
        group=draw(st.text(alphabet=EXT_CHARS, min_size=1, max_size=16)),
        store_path=draw(st.integers(0, 255)),
        sub_high=draw(st.integers(0, 255)),
        sub_low=draw(st.integers(0, 255)),
        source=draw(u32),
        timestamp=draw(u32),
        size=size,
        size_field=fid.make_size_field(size, trunk=kind == "trunk", appender=kind == "appender"),
        crc32=draw(u32),
        trunk=trunk,
        ext=draw(exts),
    )


def build(parts: dict[str, object]) -> str:
    tail = fid.make_tail(parts["ext"])  # type: ignore[arg-type]
    name = encode_name(
        parts["source"],  # type: ignore[arg-type]
        parts["timestamp"],  # type: ignore[arg-type]
        parts["size_field"],  # type: ignore[arg-type]
        parts["crc32"],  # type: ignore[arg-type]
        parts["trunk"],  # type: ignore[arg-type]
        tail,
    )
    return format_file_id(parts["group"], parts["store_path"], parts["sub_high"], parts["sub_low"], name)  # type: ignore[arg-type]


@given(id_parts())
def test_round_trip(parts: dict[str, object]) -> None:
    file_id = build(parts)
    parsed = parse_file_id(file_id, group=str(parts["group"]))
    assert str(parsed) == file_id
    assert len(parsed.name) == (fid.TRUNK_REMOTE_LEN if parts["trunk"] else fid.NORMAL_REMOTE_LEN) - 10
    for key in ("group", "store_path", "sub_high", "sub_low", "source", "timestamp", "size_field", "crc32", "trunk"):
        assert getattr(parsed, key) == parts[key], key
    assert parsed.declared_size == parts["size"]
    assert parsed.ext == parts["ext"]
    assert not parsed.is_slave
    want_kind = {"normal": FileKind.NORMAL, "big": FileKind.NORMAL, "appender": FileKind.APPENDER}
    assert parsed.kind == want_kind.get(str(parts["kind"]), FileKind.TRUNK)
    assert parsed.is_appender == (parts["kind"] == "appender")
    again = encode_name(parsed.source, parsed.timestamp, parsed.size_field, parsed.crc32, parsed.trunk, parsed.tail)
    assert again == parsed.name


@given(
    source=u32,
    timestamp=u32,
    size=st.integers(0, 2**32 - 1),
    crc=u32,
    trunk=st.tuples(u32, u32, u32),
    ext=exts,
)
def test_encode_trunk_name_matches_encode_name(
    source: int, timestamp: int, size: int, crc: int, trunk: tuple[int, int, int], ext: str
) -> None:
    tail = fid.make_tail(ext)
    name = fid.encode_trunk_name(source, timestamp, size, crc, *trunk, tail)
    assert len(name) == fid.TRUNK_REMOTE_LEN - 10
    parsed = parse_file_id(format_file_id("group1", 0, 0, 0, name))
    assert parsed.kind == FileKind.TRUNK
    assert (parsed.source, parsed.timestamp, parsed.declared_size, parsed.crc32) == (source, timestamp, size, crc)
    assert parsed.trunk == TrunkLocation(*trunk)
    assert parsed.tail == tail
    assert encode_name(source, timestamp, parsed.size_field, crc, TrunkLocation(*trunk), tail) == name


@given(size=u32, trunk=st.booleans())
def test_make_size_field_small(size: int, trunk: bool) -> None:
    field = fid.make_size_field(size, trunk=trunk)
    assert field & fid.SIZE_MARK
    assert field & fid.LOW_WORD == size
    assert bool(field & fid.TRUNK_FLAG) == trunk
    assert not field & fid.APPENDER_FLAG


@given(size=st.integers(2**32, 2**63 - 1))
def test_make_size_field_large_is_plain(size: int) -> None:
    assert fid.make_size_field(size) == size
    assert fid.make_size_field(size, trunk=True) == size


def test_make_size_field_appender() -> None:
    field = fid.make_size_field(12345, appender=True)
    assert field & fid.SIZE_MARK and field & fid.APPENDER_FLAG and field & fid.LOW_WORD == 0


@given(exts)
def test_make_tail(ext: str) -> None:
    tail = fid.make_tail(ext)
    assert len(tail) == fid.TAIL_CHARS
    if ext:
        digits = 6 - len(ext)
        assert tail[:digits].isdigit() or digits == 0
        assert tail[digits] == "."
        assert tail[digits + 1 :] == ext
    else:
        assert re.fullmatch(r"[0-9]{7}", tail)


def test_make_tail_examples() -> None:
    assert re.fullmatch(r"[0-9]{3}\.txt", fid.make_tail("txt"))
    assert fid.make_tail("abcdef") == ".abcdef"
    assert re.fullmatch(r"[0-9]{5}\.a", fid.make_tail("a"))


@pytest.mark.parametrize("ext", ["tar.gz", "a.b", ".gz"])
def test_ext_with_dot_round_trips(ext: str) -> None:
    parts_id = format_file_id("group1", 0, 0, 0, encode_name(1, 2, fid.make_size_field(3), 4, None, fid.make_tail(ext)))
    assert parse_file_id(parts_id).ext == ext


@given(st.integers(0, 2**32 - 1))
def test_source_ip_round_trip(source: int) -> None:
    assert fid.source_from_ip(fid.source_to_ip(source)) == source


@pytest.mark.parametrize("ip", ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "a.b.c.d", "1.2.3.-4", "1..2.3", " 1.2.3.4"])
def test_source_from_ip_refuses(ip: str) -> None:
    with pytest.raises(InvalidArgument):
        fid.source_from_ip(ip)


@pytest.mark.parametrize("ip", ["1.2.3.\u00b2", "\u0661\u0662\u0667.0.0.1"])
def test_source_from_ip_refuses_non_ascii_digits(ip: str) -> None:
    with pytest.raises(InvalidArgument):
        fid.source_from_ip(ip)


# ---- slave names -------------------------------------------------------------------------------------
NORMAL = "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin"
TRUNK = "group1/M00/00/00/fwAAAWsBkruIJDOEAAAD6FGgLgEAAAAAQAAAAAAAAQA420.txt"


@pytest.mark.parametrize(
    ("master", "prefix", "ext", "want"),
    [
        (NORMAL, "_150x150", "bin", "fwAAAWsBkryAATdrAUAAACyY7_g137_150x150.bin"),
        (NORMAL, "-m", "jpg", "fwAAAWsBkryAATdrAUAAACyY7_g137-m.jpg"),
        (NORMAL, "_small", "", "fwAAAWsBkryAATdrAUAAACyY7_g137_small"),
        (TRUNK, "_s", "txt", "fwAAAWsBkruIJDOEAAAD6FGgLgEAAAAAQAAAAAAAAQA420_s.txt"),
    ],
)
def test_slave_name(master: str, prefix: str, ext: str, want: str) -> None:
    parsed_master = parse_file_id(master)
    name = fid.slave_name(parsed_master, prefix, ext)
    assert name == want
    slave = parse_file_id(format_file_id("group1", 0, 0, 0, name))
    assert slave.is_slave and slave.kind == FileKind.SLAVE
    assert slave.name[: fid.INFO_CHARS] == parsed_master.name[: fid.INFO_CHARS]
    assert slave.trunk is None and not slave.is_appender
    assert (slave.source, slave.timestamp, slave.size_field, slave.crc32) == (
        parsed_master.source,
        parsed_master.timestamp,
        parsed_master.size_field,
        parsed_master.crc32,
    )


def test_slave_name_of_master_without_extension() -> None:
    name = encode_name(0x7F000001, 5, fid.make_size_field(10), 6, None, "1234567")
    master = parse_file_id(format_file_id("group1", 0, 0, 0, name))
    assert master.ext == ""
    assert fid.slave_name(master, "_s", "jpg") == name + "_s.jpg"


def test_slave_of_appender_master_is_a_slave() -> None:
    master = parse_file_id("group1/M00/00/00/fwAAAWsBku2EAwqbAAAAAA_-AcM017.txt")
    slave = parse_file_id("group1/M00/00/00/" + fid.slave_name(master, "_x", "txt"))
    assert slave.kind == FileKind.SLAVE and not slave.is_appender


@pytest.mark.parametrize(
    ("master_ext", "prefix", "ext", "want_suffix"),
    [
        # FastDFS cuts the master's name at the first '.' of its last 7 characters (strchr).
        ("tar.gz", "_s", "tar.gz", "_s.tar.gz"),
        ("a.b", "_s", "a.b", "_s.a.b"),
        # and keeps an ext that already starts with '.' as it is.
        ("txt", "_s", ".gz", "_s.gz"),
    ],
)
def test_slave_name_like_fastdfs_for_dotted_exts(master_ext: str, prefix: str, ext: str, want_suffix: str) -> None:
    info = encode_name(0x7F000001, 5, fid.make_size_field(10), 6, None, "")
    tail = fid.make_tail(master_ext)
    master = parse_file_id(format_file_id("group1", 0, 0, 0, info + tail))
    digits = tail[: tail.index(".")]
    assert fid.slave_name(master, prefix, ext) == info + digits + want_suffix


# ---- check_ext / check_prefix / check_group ----------------------------------------------------------
@pytest.mark.parametrize("ext", ["", "jpg", "JPEG", "tar.gz", "a-b_c", "123456", "."])
def test_check_ext_accepts(ext: str) -> None:
    assert fid.check_ext(ext) == ext


@pytest.mark.parametrize("ext", ["jpeg123", "j/g", "a b", "\u00e9", "a\0", "x\n", None, b"jpg", 3])
def test_check_ext_refuses(ext: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        fid.check_ext(ext)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("prefix", ["_s", "-m", "_150x150", "a" * 16, ".", "x"])
def test_check_prefix_accepts(prefix: str) -> None:
    assert fid.check_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "a" * 17, "a/b", "..\0", " s", None, b"_s"])
def test_check_prefix_refuses(prefix: object) -> None:
    with pytest.raises(InvalidArgument):
        fid.check_prefix(prefix)  # type: ignore[arg-type]


@pytest.mark.parametrize("group", ["", "g" * 17, "group.1", "group/1", "gr oup", None])
def test_check_group_refuses(group: object) -> None:
    with pytest.raises(InvalidArgument):
        fid.check_group(group)  # type: ignore[arg-type]


# ---- malformed IDs -----------------------------------------------------------------------------------
GOOD = NORMAL  # 44-character remote name
INFO = "fwAAAWsBkryAATdrAUAAACyY7_g"


def _trunk_flagged_info() -> str:
    # A fixed size field (not make_size_field's random bits): parametrized IDs must be the same in
    # every process that collects them.
    return encode_name(0x7F000001, 5, (0x80000000 << 32) | fid.TRUNK_FLAG | 10, 6, None, "")


MALFORMED = [
    # wrong length
    GOOD[:-1],
    GOOD[:-8],
    "group1/M00/00/00/" + INFO,
    "group1/M00/00/00/" + INFO[:-1] + "137.bin",
    "group1/M00/00/00/",
    "",
    # characters that base64url does not have, or padding
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACy+7_g137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACy/7_g137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACy=7_g137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACy*7_g137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACy.7_g137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACy\u00e97_g137.bin",
    # non-canonical last character of the 27 (low bits set)
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_h137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_f137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7__137.bin",
    # lower-case or malformed directories
    "group1/m00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M0a/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M00/0a/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M00/00/ff/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M0/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M000/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M00/00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1//M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1_is_far_too_long/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "gr.up1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    # path tricks
    "group1/M00/../../etc/passwd",
    "group1/M00/00/00/../x",
    "group1/M00/00/00/../../../../../../../../etc/passwd",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin/../../../x",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g/../../x.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137/bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137\\..\\x",
    "../group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "/group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin/",
    # NUL bytes and other control characters
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bi\0",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin\0",
    "group1\0/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    "group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin\n",
    " group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin",
    # overlong
    "group1/M00/00/00/" + INFO + "137" + "_" * 79 + ".bin",
    "group1/M00/00/00/" + INFO + "x" * 500,
    # trunk-flagged IDs of the wrong length
    "group1/M00/00/00/" + _trunk_flagged_info() + "137.bin",
    "group1/M00/00/00/" + _trunk_flagged_info() + "AAAAAAAA" + "137.bin",
    "group1/M00/00/00/" + _trunk_flagged_info() + "AAAAAAAAAAAAAAA" + "137.bin",
    # a trunk location that is not base64
    "group1/M00/00/00/fwAAAWsBkruIJDOEAAAD6FGgLgEAAAAAQAAAAAAAAQ.420.txt",
]


@pytest.mark.parametrize("file_id", MALFORMED)
def test_malformed_id_raises(file_id: str) -> None:
    with pytest.raises(InvalidFileId) as info:
        parse_file_id(file_id)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [None, b"group1/M00/00/00/fwAAAWsBkryAATdrAUAAACyY7_g137.bin", 42, ["x"]])
def test_non_str_raises(value: object) -> None:
    with pytest.raises(InvalidFileId):
        parse_file_id(value)  # type: ignore[arg-type]


def test_other_group_raises() -> None:
    assert parse_file_id(GOOD, group="group1").group == "group1"
    for other in ("group2", "Group1", "group", ""):
        with pytest.raises(InvalidFileId):
            parse_file_id(GOOD, group=other)


def test_overlong_boundary() -> None:
    fits = "group1/M00/00/00/" + INFO + "137" + "_" * (fid.MAX_FILE_ID_LEN - len(GOOD) - 1) + "x.bin"
    assert len(fits) == fid.MAX_FILE_ID_LEN
    assert parse_file_id(fits).is_slave
    with pytest.raises(InvalidFileId):
        parse_file_id(fits[:-4] + "_.bin")


def test_invalid_file_id_is_value_error() -> None:
    assert issubclass(InvalidFileId, ValueError)
    assert issubclass(InvalidFileId, InvalidArgument)


def test_slave_lengths() -> None:
    """Longer than its kind allows -> slave; a trunk-flagged name between 44 and 60 is refused."""
    assert parse_file_id(GOOD[:-4] + "_.bin").is_slave  # 45 characters, not trunk-flagged
    trunk_slave = TRUNK[:-4] + "x.txt"  # 61 characters
    assert parse_file_id(trunk_slave).kind == FileKind.SLAVE


# ---- fuzz --------------------------------------------------------------------------------------------
def _check_parsed(text: str) -> None:
    try:
        parsed = parse_file_id(text)
    except InvalidFileId:
        return
    # Whatever parses is canonical and safe to join onto a directory.
    assert str(parsed) == text
    assert "/" not in parsed.name and "\0" not in parsed.name and parsed.name.strip(".")
    again = encode_name(parsed.source, parsed.timestamp, parsed.size_field, parsed.crc32, parsed.trunk, parsed.tail)
    assert again == parsed.name
    assert parsed.kind in FileKind


ID_ALPHABET = st.sampled_from(list(EXT_CHARS + "./=+\\\0 \u00e9M"))


@given(st.text(max_size=150))
def test_fuzz_arbitrary_text(text: str) -> None:
    _check_parsed(text)


@given(st.text(alphabet=ID_ALPHABET, max_size=150))
def test_fuzz_id_alphabet_text(text: str) -> None:
    _check_parsed(text)


@given(
    st.sampled_from([v.values[0] for v in VECTORS] + [GOOD[:-4] + "_s.bin"]),
    st.lists(st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, 200), ID_ALPHABET), max_size=4),
)
def test_fuzz_mutated_valid_ids(base: str, mutations: list[tuple[str, int, str]]) -> None:
    text = base
    for op, position, char in mutations:
        i = position % (len(text) + 1)
        if op == "set" and i < len(text):
            text = text[:i] + char + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + char + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 :]
    _check_parsed(text)
