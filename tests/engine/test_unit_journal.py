"""The allocation journal: record and snapshot codecs, torn tails, damage, generations."""

from __future__ import annotations

import errno
import os
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkstore import journal as jn
from trunkstore.errors import CorruptData
from trunkstore.journal import ContainerState, Journal, Record, Snapshot

KINDS = [jn.ALLOC, jn.FREE, jn.NEW_CONTAINER, jn.REMOVE_CONTAINER]
u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)

records_st = st.builds(
    Record,
    kind=st.sampled_from(KINDS),
    trunk_id=u32,
    offset=u32,
    size=u32,
    store_path=u8,
    sub_high=u8,
    sub_low=u8,
)


def encode(record: Record) -> bytes:
    return jn.encode_record(
        record.kind, record.trunk_id, record.offset, record.size, record.store_path, record.sub_high, record.sub_low
    )


def sample_records(n: int, start: int = 0) -> list[Record]:
    return [
        Record(KINDS[i % 4], i + 1, 256 * i, 100 + i, i % 3, i % 256, (7 * i) % 256) for i in range(start, start + n)
    ]


def log_path(directory: str, gen: int) -> str:
    return os.path.join(directory, f"{gen:010d}.log")


def write_log(directory: str, gen: int, data: bytes) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(log_path(directory, gen), "wb") as handle:
        handle.write(data)


def load_all(directory: str) -> tuple[Journal, Snapshot | None, list[Record]]:
    journal = Journal(directory, durable=False)
    snapshot, records = journal.load()
    return journal, snapshot, records


# ---- records -----------------------------------------------------------------------------------------
def test_record_layout() -> None:
    raw = jn.encode_record(jn.ALLOC, 7, 1024, 300, 1, 0xAB, 0xCD)
    assert len(raw) == jn.RECORD_SIZE == 20
    assert raw[:16] == b"A\x01\xab\xcd" + struct.pack(">III", 7, 1024, 300)
    assert raw[16:] == struct.pack(">I", zlib.crc32(raw[:16]))


@given(st.lists(records_st, max_size=20))
def test_record_round_trip(records: list[Record]) -> None:
    data = b"".join(encode(r) for r in records)
    decoded, valid = jn.decode_records(data)
    assert decoded == records
    assert valid == len(data)


@given(st.lists(records_st, min_size=1, max_size=8), st.data())
def test_decode_stops_at_first_bad_record(records: list[Record], data: st.DataObject) -> None:
    raw = bytearray(b"".join(encode(r) for r in records))
    index = data.draw(st.integers(0, len(records) - 1))
    byte = data.draw(st.integers(index * 20, index * 20 + 19))
    raw[byte] ^= data.draw(st.integers(1, 255))
    decoded, valid = jn.decode_records(bytes(raw))
    assert decoded == records[:index]
    assert valid == index * 20


def test_decode_refuses_unknown_kind_even_with_good_crc() -> None:
    body = struct.pack(">cBBBIII", b"X", 0, 0, 0, 1, 2, 3)
    raw = encode(sample_records(1)[0]) + body + struct.pack(">I", zlib.crc32(body))
    decoded, valid = jn.decode_records(raw)
    assert decoded == sample_records(1) and valid == 20


@pytest.mark.parametrize("extra", range(1, 20))
def test_decode_ignores_partial_trailing_record(extra: int) -> None:
    whole = b"".join(encode(r) for r in sample_records(3))
    decoded, valid = jn.decode_records(whole + encode(sample_records(1, 3)[0])[:extra])
    assert decoded == sample_records(3) and valid == 60


# ---- torn tails and damage -----------------------------------------------------------------------------
@pytest.mark.parametrize("cut", range(jn.RECORD_SIZE))
def test_torn_tail_is_cut_on_load(tmp_path: object, cut: int) -> None:
    directory = str(tmp_path)
    whole = sample_records(3)
    last = encode(sample_records(1, 3)[0])
    write_log(directory, 0, b"".join(encode(r) for r in whole) + last[:cut])
    journal, snapshot, records = load_all(directory)
    assert snapshot is None
    assert records == whole
    assert os.path.getsize(log_path(directory, 0)) == 60
    # The journal appends after the cut; a reload sees the whole records only.
    extra = sample_records(2, 10)
    journal.append(b"".join(encode(r) for r in extra))
    assert journal.records_in_gen == 5
    journal.close()
    assert load_all(directory)[2] == whole + extra


@pytest.mark.parametrize("byte", range(jn.RECORD_SIZE))
def test_damaged_last_record_is_cut_on_load(tmp_path: object, byte: int) -> None:
    directory = str(tmp_path)
    raw = bytearray(b"".join(encode(r) for r in sample_records(4)))
    raw[60 + byte] ^= 0x40
    write_log(directory, 0, bytes(raw))
    journal, _, records = load_all(directory)
    journal.close()
    assert records == sample_records(3)
    assert os.path.getsize(log_path(directory, 0)) == 60


def test_torn_tail_only_in_newest_generation_of_several(tmp_path: object) -> None:
    directory = str(tmp_path)
    write_log(directory, 0, b"".join(encode(r) for r in sample_records(2)))
    write_log(directory, 1, b"".join(encode(r) for r in sample_records(2, 2)) + b"\x01\x02\x03")
    journal, _, records = load_all(directory)
    assert records == sample_records(4)
    assert journal.gen == 1
    assert os.path.getsize(log_path(directory, 0)) == 40
    assert os.path.getsize(log_path(directory, 1)) == 40
    journal.append(encode(sample_records(1, 9)[0]))
    journal.close()
    assert os.path.getsize(log_path(directory, 1)) == 60


@pytest.mark.parametrize("damage", ["flipped", "torn", "garbage-tail"])
def test_damage_in_older_generation_raises(tmp_path: object, damage: str) -> None:
    directory = str(tmp_path)
    raw = bytearray(b"".join(encode(r) for r in sample_records(3)))
    if damage == "flipped":
        raw[25] ^= 0x01
    elif damage == "torn":
        del raw[-5:]
    else:
        raw += b"\0" * 20
    write_log(directory, 0, bytes(raw))
    write_log(directory, 1, b"".join(encode(r) for r in sample_records(2, 3)))
    journal = Journal(directory, durable=False)
    with pytest.raises(CorruptData) as info:
        journal.load()
    journal.close()
    assert isinstance(info.value, OSError) and info.value.errno == errno.EIO
    assert os.path.getsize(log_path(directory, 0)) == len(raw)  # the damaged file is left as it was


@pytest.mark.parametrize("snapshot_gen", [None, 1])
def test_the_journal_is_open_for_appending_once_load_returns(tmp_path: object, snapshot_gen: int | None) -> None:
    directory = str(tmp_path)
    write_log(directory, 0, b"".join(encode(r) for r in sample_records(2)))
    write_log(directory, 1, b"".join(encode(r) for r in sample_records(2, 2)) + b"torn")
    if snapshot_gen is not None:
        with open(os.path.join(directory, "snapshot"), "wb") as handle:
            handle.write(jn.encode_snapshot(Snapshot(gen=snapshot_gen, next_trunk_id=1)))
    journal = Journal(directory, durable=True)
    _, records = journal.load()
    extra = sample_records(1, 9)
    journal.append(encode(extra[0]))  # the records are not looked at first
    journal.sync()
    journal.close()
    kept = sample_records(4) if snapshot_gen is None else sample_records(2, 2)
    assert records == kept
    assert load_all(directory)[2] == kept + extra


def test_fresh_directory(tmp_path: object) -> None:
    directory = os.path.join(str(tmp_path), "journal")
    journal, snapshot, records = load_all(directory)
    assert (snapshot, records, journal.gen) == (None, [], 0)
    assert os.listdir(directory) == ["0000000000.log"]
    journal.append(encode(sample_records(1)[0]))
    journal.sync()
    journal.close()
    assert load_all(directory)[2] == sample_records(1)


# ---- snapshots -------------------------------------------------------------------------------------------
containers_st = st.builds(
    ContainerState,
    trunk_id=u32,
    capacity=u32,
    store_path=u8,
    sub_high=u8,
    sub_low=u8,
    free=st.lists(st.tuples(u32, u32), max_size=6).map(tuple),
)
snapshots_st = st.builds(
    Snapshot,
    gen=st.integers(0, 2**64 - 1),
    next_trunk_id=st.integers(0, 2**64 - 1),
    containers=st.lists(containers_st, max_size=5).map(tuple),
)


@given(snapshots_st)
def test_snapshot_round_trip(snapshot: Snapshot) -> None:
    assert jn.decode_snapshot(jn.encode_snapshot(snapshot)) == snapshot


SAMPLE_SNAPSHOT = Snapshot(
    gen=3,
    next_trunk_id=9,
    containers=(
        ContainerState(1, 64 << 20, 0, 0, 0, ((0, 256), (4096, 1 << 20))),
        ContainerState(4, 4 << 20, 1, 0xFF, 0x10, ()),
    ),
)


def test_snapshot_layout() -> None:
    raw = jn.encode_snapshot(SAMPLE_SNAPSHOT)
    assert raw[:8] == b"TSSNAP01"
    assert struct.unpack_from(">QQI", raw, 8) == (3, 9, 2)
    assert len(raw) == 28 + 2 * 15 + 2 * 8 + 4
    assert raw[-4:] == struct.pack(">I", zlib.crc32(raw[:-4]))


def test_corrupt_snapshot_every_byte_raises() -> None:
    raw = jn.encode_snapshot(SAMPLE_SNAPSHOT)
    for position in range(len(raw)):
        damaged = bytearray(raw)
        damaged[position] ^= 0x10
        with pytest.raises(CorruptData):
            jn.decode_snapshot(bytes(damaged))


def test_truncated_snapshot_raises() -> None:
    raw = jn.encode_snapshot(SAMPLE_SNAPSHOT)
    for length in range(len(raw)):
        with pytest.raises(CorruptData):
            jn.decode_snapshot(raw[:length])


def test_snapshot_with_unknown_magic_raises() -> None:
    body = jn.encode_snapshot(SAMPLE_SNAPSHOT)[:-4].replace(b"TSSNAP01", b"TSSNAP99")
    with pytest.raises(CorruptData):
        jn.decode_snapshot(body + struct.pack(">I", zlib.crc32(body)))


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize("case", ["count-too-large", "extents-too-many", "trailing-bytes"])
def test_snapshot_with_good_crc_but_wrong_counts_raises(case: str) -> None:
    head = struct.pack(">8sQQI", b"TSSNAP01", 1, 2, 1)
    container = struct.pack(">IIBBBI", 1, 4096, 0, 0, 0, 1) + struct.pack(">II", 0, 4096)
    if case == "count-too-large":
        body = struct.pack(">8sQQI", b"TSSNAP01", 1, 2, 5) + container
    elif case == "extents-too-many":
        body = head + struct.pack(">IIBBBI", 1, 4096, 0, 0, 0, 1000) + struct.pack(">II", 0, 4096)
    else:
        body = head + container + b"\0" * 8
    with pytest.raises(CorruptData):
        jn.decode_snapshot(_with_crc(body))


# ---- generations -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("durable", [False, True])
def test_write_snapshot_rotates_generations(tmp_path: object, durable: bool) -> None:
    directory = str(tmp_path)
    journal = Journal(directory, durable=durable)
    snapshot, records = journal.load()
    assert snapshot is None and records == []
    first = sample_records(3)
    journal.append(b"".join(encode(r) for r in first))
    journal.sync()
    assert journal.records_in_gen == 3

    build = Snapshot(gen=1, next_trunk_id=5, containers=(ContainerState(1, 4 << 20, 0, 0, 0, ((0, 4 << 20),)),))
    journal.write_snapshot(build)
    assert journal.gen == 1 and journal.records_in_gen == 0
    assert sorted(os.listdir(directory)) == ["0000000001.log", "snapshot"]
    after = sample_records(2, 3)
    journal.append(b"".join(encode(r) for r in after))
    journal.close()
    assert os.path.getsize(log_path(directory, 1)) == 40

    journal, snapshot, records = load_all(directory)
    assert snapshot == build
    assert records == after
    assert journal.gen == 1

    build2 = Snapshot(gen=2, next_trunk_id=6)
    journal.write_snapshot(build2)
    journal.append(encode(sample_records(1, 20)[0]))
    journal.close()
    assert sorted(os.listdir(directory)) == ["0000000002.log", "snapshot"]
    _, snapshot, records = load_all(directory)
    assert snapshot == build2 and records == sample_records(1, 20)


def test_load_ignores_generations_older_than_the_snapshot(tmp_path: object) -> None:
    directory = str(tmp_path)
    write_log(directory, 0, b"garbage that would be damage")
    write_log(directory, 4, b"".join(encode(r) for r in sample_records(2)))
    with open(os.path.join(directory, "snapshot"), "wb") as handle:
        handle.write(jn.encode_snapshot(Snapshot(gen=4, next_trunk_id=1)))
    journal, snapshot, records = load_all(directory)
    journal.close()
    assert snapshot == Snapshot(gen=4, next_trunk_id=1)
    assert records == sample_records(2)


def test_load_creates_the_snapshot_generation_when_missing(tmp_path: object) -> None:
    directory = str(tmp_path)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "snapshot"), "wb") as handle:
        handle.write(jn.encode_snapshot(Snapshot(gen=7, next_trunk_id=1)))
    journal, _, records = load_all(directory)
    assert records == [] and journal.gen == 7
    journal.append(encode(sample_records(1)[0]))
    journal.close()
    assert os.path.getsize(log_path(directory, 7)) == 20


def test_corrupt_snapshot_file_raises_on_load(tmp_path: object) -> None:
    directory = str(tmp_path)
    raw = bytearray(jn.encode_snapshot(SAMPLE_SNAPSHOT))
    raw[12] ^= 1
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "snapshot"), "wb") as handle:
        handle.write(raw)
    with pytest.raises(CorruptData):
        Journal(directory, durable=False).load()
    with pytest.raises(CorruptData):
        jn.read_journal(directory)


# ---- read-only reading -----------------------------------------------------------------------------------
def _tree(directory: str) -> dict[str, tuple[bytes, int]]:
    found = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        with open(path, "rb") as handle:
            found[name] = (handle.read(), os.stat(path).st_mtime_ns)
    return found


def test_read_journal_is_read_only(tmp_path: object) -> None:
    directory = str(tmp_path)
    write_log(directory, 2, b"stale generation")
    write_log(directory, 3, b"".join(encode(r) for r in sample_records(2)))
    write_log(directory, 4, b"".join(encode(r) for r in sample_records(3, 2)) + b"torn")
    with open(os.path.join(directory, "snapshot"), "wb") as handle:
        handle.write(jn.encode_snapshot(Snapshot(gen=3, next_trunk_id=8)))
    before = _tree(directory)
    snapshot, records = jn.read_journal(directory)
    assert snapshot == Snapshot(gen=3, next_trunk_id=8)
    assert records == sample_records(5)
    assert _tree(directory) == before


def test_read_journal_without_snapshot(tmp_path: object) -> None:
    directory = str(tmp_path)
    write_log(directory, 0, b"".join(encode(r) for r in sample_records(1)) + b"\x00" * 7)
    before = _tree(directory)
    assert jn.read_journal(directory) == (None, sample_records(1))
    assert _tree(directory) == before
