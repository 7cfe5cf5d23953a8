"""The replication binlog: every change this storage made, in order, for its peers to copy.

Files ``<base_path>/data/sync/binlog.000``, ``binlog.001`` ... (a new one past ``rotate_size``
bytes), one record per line, as FastDFS writes them::

    <unix_ts> <op> <remote filename>[ <extra>]\\n

``op`` is upper case when a client's request changed the file here (this storage is the source)
and lower case when the change came from a peer (a replica applied):

    C create      D delete      U metadata     A append ``offset length``    M modify ``offset length``
    T truncate ``old_size new_size``            R rename (appender regenerated) ``old_filename``

A record is written after the change it describes is done, with one ``write`` to a file opened
``O_APPEND``, so it survives the process being killed; ``sync()`` makes records durable against
power loss, and :attr:`Binlog.synced` says up to where they are (with ``sync_mode = always`` a
reply waits for that, see :mod:`cluster.storage.binlog_sync`; otherwise the server syncs every
second).  A record naming a file that no longer exists is harmless: the sender skips it.

Readers follow the files by ``(index, offset)`` positions (:class:`BinlogPosition`), which the
senders keep in their mark files.  Reading is safe while records are appended: a line without its
newline yet is left for the next read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from trunkstore.diskio import fsync_dir

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Start a new binlog file past this size (FastDFS's 1 GiB).
ROTATE_SIZE = 1 << 30
#: Ops a client's request makes on the source storage.
SOURCE_OPS = frozenset("CDUAMTR")
#: Ops with their extra fields: how many integers follow the filename.
_EXTRA_INTS = {"A": 2, "M": 2, "T": 2}
_READ_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True, order=True)
class BinlogPosition:
    """Where a reader is: the binlog file's number and the byte offset in it."""

    index: int = 0
    offset: int = 0


@dataclass(frozen=True, slots=True)
class BinlogRecord:
    """One change.  ``extra`` holds the op's fields after the filename (see the module docstring)."""

    timestamp: int
    op: str
    filename: str
    extra: tuple[str, ...] = ()
    #: The position just after this record (where a reader resumes once it is applied).
    end: BinlogPosition = BinlogPosition()

    @property
    def from_source(self) -> bool:
        """Made by a client's request here (upper case), not copied from a peer."""
        return self.op.isupper()

    def ints(self) -> tuple[int, int]:
        """The two integers of an A, M or T record."""
        return int(self.extra[0]), int(self.extra[1])

    def encode(self) -> bytes:
        fields = [str(self.timestamp), self.op, self.filename, *self.extra]
        return (" ".join(fields) + "\n").encode("ascii")


class BinlogError(ValueError):
    """A binlog line that does not parse."""


def parse_record(line: bytes, end: BinlogPosition) -> BinlogRecord:
    """A record from one line (without its newline)."""
    try:
        fields = line.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise BinlogError(f"binlog line is not ASCII: {line[:80]!r}") from None
    if len(fields) < 3 or not fields[0].isdigit() or len(fields[1]) != 1 or not fields[2]:
        raise BinlogError(f"malformed binlog line {line[:80]!r}")
    op = fields[1]
    if op.upper() not in SOURCE_OPS:
        raise BinlogError(f"unknown binlog op {op!r}")
    extra = tuple(fields[3:])
    want = _EXTRA_INTS.get(op.upper(), 1 if op.upper() == "R" else 0)
    if len(extra) != want or (op.upper() in _EXTRA_INTS and not all(x.isdigit() for x in extra)):
        raise BinlogError(f"binlog {op} record with extra fields {extra!r}")
    return BinlogRecord(int(fields[0]), op, fields[2], extra, end)


def binlog_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"binlog.{index:03d}")


class Binlog:
    """The writer: appends records, thread-safe (stores happen on the event loop and in threads)."""

    def __init__(self, directory: str, rotate_size: int = ROTATE_SIZE) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.rotate_size = rotate_size
        self._lock = threading.Lock()
        index = 0
        while os.path.exists(binlog_path(directory, index + 1)):
            index += 1
        self._index = index
        self._fd = self._open(index)
        self._size = _drop_cut_line(self._fd)
        #: ``(index, size)`` as one value, so that a reader in another thread never pairs a new index
        #: with an old size (and needs no lock, which a rotation holds through an fsync).
        self._end = (index, self._size)
        #: Records before this position are on disk.  What an earlier run left in the newest file is
        #: not known to be (it may have been killed before syncing): the first sync covers it.
        self.synced = BinlogPosition(index, 0)
        #: Per thread: ``(index, offset)`` after the last record that thread wrote (see :meth:`written_by`).
        self._written = threading.local()
        #: When a client's change (upper case) and a peer's change (lower case) were last recorded.
        self.last_source_update = 0
        self.last_sync_update = 0
        #: Called (outside the lock) after each record, from whichever thread wrote it.
        self.on_append: Callable[[], None] | None = None

    def _open(self, index: int) -> int:
        return os.open(binlog_path(self.directory, index), os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    @property
    def end(self) -> BinlogPosition:
        """The position after the last record written."""
        return BinlogPosition(*self._end)

    def record(self, op: str, filename: str, *extra: object, timestamp: int | None = None) -> None:
        """Append one record (``timestamp`` defaults to now).  Called for every upload: kept lean."""
        now = int(time.time())
        fields = f"{now if timestamp is None else timestamp} {op} {filename}"
        line = (f"{fields} {' '.join(map(str, extra))}\n" if extra else fields + "\n").encode("ascii")
        with self._lock:
            if self._size >= self.rotate_size:
                self._rotate()
            written = os.write(self._fd, line)
            if written != len(line):  # a full disk: never leave half a record for the readers
                os.ftruncate(self._fd, self._size)
                raise OSError(f"short write to the binlog ({written} of {len(line)} bytes)")
            self._size += written
            self._end = end = (self._index, self._size)
            if op.isupper():
                self.last_source_update = now
            else:
                self.last_sync_update = now
        self._written.end = end  # a tuple: a BinlogPosition costs a microsecond, and is rarely asked for
        notify = self.on_append
        if notify is not None:
            notify()

    def written_by(self, fn: Callable[..., T], *args: Any) -> tuple[T, BinlogPosition | None]:
        """Call ``fn(*args)``; its result, and the position after the last record it wrote (``None``
        if it wrote none).

        The records written by the calling thread meanwhile are ``fn``'s: a request's work runs in
        one thread at a time, and this is how its reply learns which records it must wait for
        (durable, or copied by the peers), whichever of the service's operations wrote them.
        """
        written = self._written
        written.end = None
        result = fn(*args)
        end: tuple[int, int] | None = written.end
        return result, None if end is None else BinlogPosition(*end)

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._index += 1
        self._fd = self._open(self._index)
        self._size = 0
        self._end = (self._index, 0)
        fsync_dir(self.directory)
        self.synced = BinlogPosition(self._index, 0)  # every earlier file was synced whole just now

    def sync(self) -> None:
        """Make the records written so far durable (and :attr:`synced` say so).

        Safe to call from several threads at once, and while records are written: what it covers is
        the end when it starts.  An OSError leaves :attr:`synced` where it was.
        """
        with self._lock:
            end = BinlogPosition(*self._end)
            if end <= self.synced:
                return
            # A record may rotate the binlog and close its descriptor while this one syncs: a
            # descriptor of its own keeps the file open (and the number from naming another file).
            fd = os.dup(self._fd)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        with self._lock:
            if end > self.synced:
                self.synced = end

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
                self.synced = BinlogPosition(*self._end)


class BinlogReader:
    """Reads records from a position on; each call returns what is complete so far."""

    def __init__(self, directory: str, position: BinlogPosition) -> None:
        self.directory = directory
        self.position = position
        self.skipped = 0
        # The binlog file being read, kept open between reads (a caught-up reader reads after every record).
        self._file: BinaryIO | None = None
        self._file_index = -1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _chunk(self, index: int, offset: int) -> bytes:
        if self._file_index != index or self._file is None:
            self.close()
            try:
                self._file = open(binlog_path(self.directory, index), "rb", buffering=0)  # noqa: SIM115
            except FileNotFoundError:
                return b""
            self._file_index = index
        return os.pread(self._file.fileno(), _READ_CHUNK, offset)

    def read(self, limit: int = 512) -> list[BinlogRecord]:
        """Up to ``limit`` whole records after :attr:`position`, which advances past them."""
        records: list[BinlogRecord] = []
        while len(records) < limit:
            index, offset = self.position.index, self.position.offset
            path = binlog_path(self.directory, index)
            chunk = self._chunk(index, offset)
            last = chunk.rfind(b"\n")
            if last < 0:
                if os.path.exists(binlog_path(self.directory, index + 1)):
                    # The writer has moved on: whatever is left here (nothing, or a line cut by a
                    # crash) will never be completed.
                    self.position = BinlogPosition(index + 1, 0)
                    continue
                if len(chunk) == _READ_CHUNK:
                    raise BinlogError(f"{path}: a line longer than {_READ_CHUNK} bytes at {offset}")
                break
            for line in chunk[:last].split(b"\n"):
                offset += len(line) + 1
                self.position = BinlogPosition(index, offset)
                try:
                    records.append(parse_record(line, self.position))
                except BinlogError as exc:
                    # FastDFS's file_sync_skip_invalid_record: one bad line must not stop replication.
                    self.skipped += 1
                    log.warning("%s: skipped: %s", path, exc)
                if len(records) >= limit:
                    break
        return records


def _drop_cut_line(fd: int) -> int:
    """Cut a record left half-written by a crash off the end of the binlog; the size kept."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    tail = os.pread(fd, min(size, _READ_CHUNK), max(0, size - _READ_CHUNK))
    if tail.endswith(b"\n"):
        return size
    keep = size - len(tail) + tail.rfind(b"\n") + 1
    log.warning("binlog: %d bytes of a record cut by a crash dropped", size - keep)
    os.ftruncate(fd, keep)
    return keep
