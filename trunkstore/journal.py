"""The allocation journal and its snapshots.

The journal records every change to trunk allocation as a fixed 20-byte record::

    kind[1] store_path[1] sub_high[1] sub_low[1] trunk_id[4] offset[4] size[4] crc32[4]

``kind``: ``A`` range allocated, ``F`` range freed, ``N`` container created (size = capacity, with its
directory), ``R`` container removed.  The crc32 covers the first 16 bytes, so a record torn by a crash
is recognised and the journal is cut there.

Journal files are numbered generations (``<gen>.log``).  A snapshot (``snapshot``) holds the whole
allocation state as of the start of generation ``gen``: every container and its free extents.  Opening
a store loads the snapshot and replays generations ``>= gen``; taking a snapshot starts a new
generation and deletes the older ones.  Snapshot layout::

    magic[8] "TSSNAP01" gen[8] next_trunk_id[8] container_count[4]
    per container: trunk_id[4] capacity[4] store_path[1] sub_high[1] sub_low[1] extent_count[4]
                   extent_count x (offset[4] size[4])
    crc32[4] of everything before it
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field

from trunkstore import diskio
from trunkstore.errors import CorruptData

RECORD = struct.Struct(">cBBBIII")
RECORD_SIZE = RECORD.size + 4
_CRC = struct.Struct(">I")

ALLOC = b"A"
FREE = b"F"
NEW_CONTAINER = b"N"
REMOVE_CONTAINER = b"R"
_KINDS = frozenset((ALLOC, FREE, NEW_CONTAINER, REMOVE_CONTAINER))

_SNAP_MAGIC = b"TSSNAP01"
_SNAP_HEAD = struct.Struct(">8sQQI")
_SNAP_CONTAINER = struct.Struct(">IIBBBI")
_SNAP_EXTENT = struct.Struct(">II")
_LOG_RE = re.compile(r"(\d{10})\.log")


@dataclass(frozen=True, slots=True)
class Record:
    kind: bytes
    trunk_id: int
    offset: int = 0
    size: int = 0
    store_path: int = 0
    sub_high: int = 0
    sub_low: int = 0


def encode_record(
    kind: bytes, trunk_id: int, offset: int, size: int, store_path: int = 0, sub_high: int = 0, sub_low: int = 0
) -> bytes:
    body = RECORD.pack(kind, store_path, sub_high, sub_low, trunk_id, offset, size)
    return body + _CRC.pack(zlib.crc32(body))


def decode_records(data: bytes) -> tuple[list[Record], int]:
    """Decode whole records from ``data``; returns them and the length of the valid prefix."""
    records: list[Record] = []
    end = len(data) - len(data) % RECORD_SIZE
    position = 0
    while position < end:
        body = data[position : position + RECORD.size]
        (crc,) = _CRC.unpack_from(data, position + RECORD.size)
        if zlib.crc32(body) != crc:
            break
        kind, store_path, sub_high, sub_low, trunk_id, offset, size = RECORD.unpack(body)
        if kind not in _KINDS:
            break
        records.append(Record(kind, trunk_id, offset, size, store_path, sub_high, sub_low))
        position += RECORD_SIZE
    return records, position


@dataclass(frozen=True, slots=True)
class ContainerState:
    trunk_id: int
    capacity: int
    store_path: int
    sub_high: int
    sub_low: int
    free: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    gen: int
    next_trunk_id: int
    containers: tuple[ContainerState, ...] = field(default=())


def encode_snapshot(snapshot: Snapshot) -> bytes:
    parts = [_SNAP_HEAD.pack(_SNAP_MAGIC, snapshot.gen, snapshot.next_trunk_id, len(snapshot.containers))]
    for c in snapshot.containers:
        parts.append(_SNAP_CONTAINER.pack(c.trunk_id, c.capacity, c.store_path, c.sub_high, c.sub_low, len(c.free)))
        parts.extend(_SNAP_EXTENT.pack(offset, size) for offset, size in c.free)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def decode_snapshot(data: bytes) -> Snapshot:
    if len(data) < _SNAP_HEAD.size + 4 or zlib.crc32(data[:-4]) != _CRC.unpack_from(data, len(data) - 4)[0]:
        raise CorruptData("allocation snapshot is damaged (checksum mismatch)")
    magic, gen, next_trunk_id, count = _SNAP_HEAD.unpack_from(data, 0)
    if magic != _SNAP_MAGIC:
        raise CorruptData("allocation snapshot has an unknown format")
    end = len(data) - 4
    position = _SNAP_HEAD.size
    containers = []
    for _ in range(count):
        if position + _SNAP_CONTAINER.size > end:
            raise CorruptData("allocation snapshot is shorter than its container count says")
        trunk_id, capacity, store_path, high, low, n = _SNAP_CONTAINER.unpack_from(data, position)
        position += _SNAP_CONTAINER.size
        if position + n * _SNAP_EXTENT.size > end:
            raise CorruptData("allocation snapshot is shorter than its extent counts say")
        free = tuple(_SNAP_EXTENT.iter_unpack(data[position : position + n * _SNAP_EXTENT.size]))
        position += n * _SNAP_EXTENT.size
        containers.append(ContainerState(trunk_id, capacity, store_path, high, low, free))
    if position != end:
        raise CorruptData("allocation snapshot has bytes its counts do not account for")
    return Snapshot(gen, next_trunk_id, tuple(containers))


def read_journal(directory: str) -> tuple[Snapshot | None, list[Record]]:
    """Read a journal without changing it (for verification): the snapshot and the records after it."""
    snapshot = None
    try:
        with open(os.path.join(directory, "snapshot"), "rb") as handle:
            snapshot = decode_snapshot(handle.read())
    except FileNotFoundError:
        pass
    start = snapshot.gen if snapshot is not None else 0
    records: list[Record] = []
    gens = sorted(int(m.group(1)) for n in os.listdir(directory) if (m := _LOG_RE.fullmatch(n)))
    for gen in gens:
        if gen >= start:
            with open(os.path.join(directory, f"{gen:010d}.log"), "rb") as handle:
                records += decode_records(handle.read())[0]
    return snapshot, records


class Journal:
    """The journal files of one store.  Not thread-safe: the allocator serialises calls."""

    def __init__(self, directory: str, *, durable: bool) -> None:
        self.directory = directory
        self.durable = durable
        os.makedirs(directory, exist_ok=True)
        self.gen = 0
        self.fd = -1
        self.records_in_gen = 0

    # ---- loading ----------------------------------------------------------------------------------
    def load(self) -> tuple[Snapshot | None, list[Record]]:
        """The last snapshot (if any) and every record after it, in order.

        A torn record at the end of the newest generation is cut off; one anywhere else is damage
        (:class:`CorruptData`).  Every record is read before this returns (usually one generation's,
        as taking a snapshot deletes the older ones), so damage is found here, and once it returns the
        journal is open for appending to the newest generation.
        """
        snapshot = self._read_snapshot()
        start = snapshot.gen if snapshot is not None else 0
        gens = sorted(g for g in self._generations() if g >= start)
        if snapshot is not None and start not in gens:
            gens.insert(0, start)
            self._create_gen(start)
        self.gen = gens[-1] if gens else start
        records: list[Record] = []
        for gen in gens:
            records += self._read_gen(gen, newest=gen == self.gen)
        if not gens:
            self._create_gen(self.gen)
        self._open_append(self.gen)
        return snapshot, records

    def _read_gen(self, gen: int, *, newest: bool) -> list[Record]:
        """The records of one generation; a torn tail of the newest is cut off, of any other is damage."""
        path = self._path(gen)
        with open(path, "rb") as handle:
            data = handle.read()
        records, valid = decode_records(data)
        if valid != len(data):
            if not newest:
                raise CorruptData(f"allocation journal {path} is damaged at byte {valid}")
            with open(path, "r+b") as handle:
                handle.truncate(valid)
                os.fsync(handle.fileno())
        return records

    def _read_snapshot(self) -> Snapshot | None:
        path = os.path.join(self.directory, "snapshot")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return decode_snapshot(data)

    # ---- appending --------------------------------------------------------------------------------
    def append(self, payload: bytes) -> None:
        written = os.write(self.fd, payload)
        if written < len(payload):
            view = memoryview(payload)[written:]
            while view:
                view = view[os.write(self.fd, view) :]
        self.records_in_gen += len(payload) // RECORD_SIZE

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def write_snapshot(self, build: Snapshot) -> None:
        """Start generation ``build.gen`` and make ``build`` (the state as of its start) the snapshot.

        Order: the new generation exists (and its directory entry is durable) before the snapshot that
        points at it; the older generations are deleted only after the snapshot is durable.
        """
        old_gens = [g for g in self._generations() if g < build.gen]
        self._create_gen(build.gen)
        diskio.write_file_atomic(os.path.join(self.directory, "snapshot"), encode_snapshot(build), durable=self.durable)
        self._close_fd()
        self.gen = build.gen
        self._open_append(build.gen)
        for gen in old_gens:
            os.unlink(self._path(gen))

    def close(self) -> None:
        self._close_fd()

    # ---- helpers ----------------------------------------------------------------------------------
    def _path(self, gen: int) -> str:
        return os.path.join(self.directory, f"{gen:010d}.log")

    def _generations(self) -> list[int]:
        found = []
        for name in os.listdir(self.directory):
            match = _LOG_RE.fullmatch(name)
            if match:
                found.append(int(match.group(1)))
        return found

    def _create_gen(self, gen: int) -> None:
        fd = os.open(self._path(gen), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.close(fd)
        if self.durable:
            diskio.fsync_dir(self.directory)

    def _open_append(self, gen: int) -> None:
        self.fd = os.open(self._path(gen), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self.records_in_gen = os.fstat(self.fd).st_size // RECORD_SIZE

    def _close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
