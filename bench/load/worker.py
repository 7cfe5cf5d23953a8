"""One connection's share of the load: a warm-up, then each phase, every request timed.

A worker holds one tracker connection and one connection per storage it is sent to.  Its files are
numbered: the first 8 bytes of each upload carry the file's number (the rest is a fixed pattern), so
every download is checked to be *its* file, and every ``verify_every``-th one byte for byte.

Timing: ``time.perf_counter_ns()`` around each request, from just before the frame is sent to the
last byte of the reply, kept in an ``array('q')``.  Anything that is not a round trip (decoding file
IDs, building the download frames) is done before or after the timed loop.  In ``each`` query mode a
file's tracker query and its storage request are timed separately, so the storage's own rate and
the tracker's can both be read off the same run.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cluster.protocol import (
    DeleteFileRequest,
    DownloadFileRequest,
    FetchTargetReply,
    FileIdReply,
    ProtocolError,
    QueryFetchOneRequest,
    QueryStoreOneRequest,
    QueryUpdateRequest,
    StoreTargetReply,
    UploadFileRequest,
)

from .wire import ReplyError, Wire

PHASES = ("upload", "download", "delete")
QUERY_MODES = ("each", "once")
#: The tracker query each phase makes for a file.
QUERY_OP = {"upload": "query-store", "download": "query-fetch", "delete": "query-update"}
#: Bytes at the start of each file holding its number.
NUMBER_BYTES = 8

Address = tuple[str, int]
#: A tracker's answer: a storage's address and the store path index to upload to.
Target = tuple[Address, int]


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What to run: ``count`` files of ``size`` bytes over ``connections`` connections."""

    tracker: Address
    count: int
    size: int
    connections: int = 1
    #: Upload to this group (QUERY_STORE_WITH_GROUP_ONE); None lets the tracker choose.
    group: str | None = None
    phases: tuple[str, ...] = ("upload", "download")
    #: "each": a tracker query per file; "once": one query, then every request to that storage.
    query: str = "each"
    #: Files uploaded and downloaded (untimed) before the first phase.
    warmup: int = 0
    #: Socket timeout, seconds.
    timeout: float = 30.0
    #: Compare every n-th download byte for byte (0: never); all are checked by size and number.
    verify_every: int = 16
    ext: str = "bin"
    #: Server processes on this machine whose CPU time to report per request, by role ("tracker",
    #: "storage"); ``--spawn`` fills it in.
    server_pids: tuple[tuple[str, int], ...] = ()

    def share(self, index: int) -> int:
        """Files that worker ``index`` handles: ``count`` split as evenly as possible."""
        return self.count // self.connections + (1 if index < self.count % self.connections else 0)


@dataclass
class OpRecord:
    """One kind of request on one connection during one phase."""

    op: str
    latencies: array[int] = field(default_factory=lambda: array("q"))
    errors: int = 0
    #: The first few error messages, for the report.
    messages: list[str] = field(default_factory=list)

    def failed(self, message: str) -> None:
        self.errors += 1
        if len(self.messages) < 5:
            self.messages.append(message)


@dataclass
class PhaseRecord:
    """One phase on one connection: its window on the shared monotonic clock and its requests."""

    phase: str
    start_ns: int = 0
    end_ns: int = 0
    #: CPU time this client process used during the phase (user and system).
    cpu_ns: int = 0
    #: CPU time each server process used during the phase, by role (measured by the first worker).
    server_cpu_ns: dict[str, int] = field(default_factory=dict)
    ops: dict[str, OpRecord] = field(default_factory=dict)

    def op(self, name: str) -> OpRecord:
        record = self.ops.get(name)
        if record is None:
            record = self.ops[name] = OpRecord(name)
        return record


@dataclass
class WorkerResult:
    """Everything a worker measured, sent back to the coordinating process."""

    index: int
    warmup: PhaseRecord
    phases: list[PhaseRecord]


def make_payload(size: int) -> bytes:
    """A fixed pattern of ``size`` bytes (not compressible runs, not all one value)."""
    pattern = bytes(range(251))  # a prime length, so the pattern does not align with pages
    return (pattern * (size // len(pattern) + 1))[:size]


class LoadWorker:
    """Uploads, downloads and deletes its own files through the tracker at ``config.tracker``."""

    def __init__(self, config: LoadConfig, index: int) -> None:
        self.config = config
        self.index = index
        self.payload = make_payload(config.size)
        self.number_width = min(NUMBER_BYTES, config.size)
        self.next_number = index << 40
        self.tracker: Wire | None = None
        self.storages: dict[Address, Wire] = {}
        #: Uploaded and not yet deleted: (number, group, filename).
        self.files: list[tuple[int, str, str]] = []
        self._upload_frames: dict[int, bytearray] = {}
        self._store_frame = QueryStoreOneRequest(config.group).encode()
        self._targets: dict[bytes, tuple[Address, int]] = {}

    # ---- connections -----------------------------------------------------------------------------
    def _tracker(self) -> Wire:
        if self.tracker is None:
            self.tracker = Wire(self.config.tracker, self.config.timeout)
        return self.tracker

    def _storage(self, address: Address) -> Wire:
        wire = self.storages.get(address)
        if wire is None:
            wire = self.storages[address] = Wire(address, self.config.timeout)
        return wire

    def _drop(self, wire: Wire | None) -> None:
        """Close a connection after an error: the server may have closed it or be out of step."""
        if wire is None:
            return
        if wire is self.tracker:
            self.tracker = None
        elif self.storages.get(wire.address) is wire:
            del self.storages[wire.address]
        wire.close()

    def close(self) -> None:
        self._drop(self.tracker)
        for wire in list(self.storages.values()):
            self._drop(wire)

    # ---- tracker queries ---------------------------------------------------------------------------
    def _query(self, frame: bytes, record: OpRecord, decode: Callable[[bytes], Target]) -> Target | None:
        """One timed tracker query: the storage (and store path) it names, or None after an error."""
        wire = None
        start = time.perf_counter_ns()
        try:
            wire = self._tracker()
            body = wire.call(frame, record.op)
            target = self._targets.get(body.tobytes())
            if target is None:
                raw = body.tobytes()
                target = self._targets[raw] = decode(raw)
        except (ReplyError, ProtocolError, OSError) as exc:
            record.failed(str(exc))
            if not isinstance(exc, ReplyError):
                self._drop(wire)
            return None
        record.latencies.append(time.perf_counter_ns() - start)
        return target

    def _query_store(self, record: OpRecord) -> Target | None:
        return self._query(self._store_frame, record, _store_target)

    # ---- phases ------------------------------------------------------------------------------------
    def run_phase(self, phase: str, count: int, record: PhaseRecord) -> None:
        """Run ``phase`` over ``count`` new files (upload) or over this worker's files."""
        if phase == "upload":
            self._upload(count, record)
        elif phase == "download":
            self._download(record)
        elif phase == "delete":
            self._delete(record)
        else:
            raise ValueError(f"unknown phase {phase!r}")

    @contextlib.contextmanager
    def _timed(self, record: PhaseRecord) -> Iterator[None]:
        """The phase's window: its requests, without the preparation before or the checks after."""
        servers = self.config.server_pids if self.index == 0 else ()
        server_start = {role: process_cpu_ns(pid) for role, pid in servers}
        cpu_start = time.process_time_ns()
        record.start_ns = time.perf_counter_ns()
        try:
            yield
        finally:
            record.end_ns = time.perf_counter_ns()
            record.cpu_ns = time.process_time_ns() - cpu_start
            for role, pid in servers:
                record.server_cpu_ns[role] = process_cpu_ns(pid) - server_start[role]

    def _upload_frame(self, store_path: int) -> bytearray:
        frame = self._upload_frames.get(store_path)
        if frame is None:
            request = UploadFileRequest(store_path, self.config.size, self.config.ext)
            frame = self._upload_frames[store_path] = bytearray(request.encode(self.payload))
        return frame

    def _upload(self, count: int, record: PhaseRecord) -> None:
        upload = record.op("upload")
        replies: list[tuple[int, bytes]] = []
        with self._timed(record):
            self._upload_loop(count, record, replies)
        # After the timed window: check each reply is a file ID.
        for number, raw in replies:
            try:
                reply = FileIdReply.decode(raw)
            except ProtocolError as exc:
                upload.failed(str(exc))
                continue
            self.files.append((number, reply.group, reply.filename))

    def _upload_loop(self, count: int, record: PhaseRecord, replies: list[tuple[int, bytes]]) -> None:
        each = self.config.query == "each"
        query = record.op(QUERY_OP["upload"])
        upload = record.op("upload")
        samples = upload.latencies
        width = self.number_width
        mask = (1 << (8 * width)) - 1
        head_size = len(self._upload_frame(0)) - self.config.size
        target = None if each else self._query_store(query)
        if target is None and not each:
            for _ in range(count):
                upload.failed("no storage to upload to: the tracker query failed")
            return
        perf_counter_ns = time.perf_counter_ns
        for _ in range(count):
            if each:
                target = self._query_store(query)
                if target is None:
                    continue  # counted as the query's error
            assert target is not None
            address, store_path = target
            number = self.next_number
            self.next_number += 1
            frame = self._upload_frame(store_path)
            frame[head_size : head_size + width] = (number & mask).to_bytes(width, "big")
            wire = None
            start = perf_counter_ns()
            try:
                wire = self._storage(address)
                body = wire.call(frame, "upload")
            except (ReplyError, ProtocolError, OSError) as exc:
                upload.failed(str(exc))
                self._drop(wire)
                continue
            samples.append(perf_counter_ns() - start)
            replies.append((number, body.tobytes()))

    def _download(self, record: PhaseRecord) -> None:
        size, width, verify_every = self.config.size, self.number_width, self.config.verify_every
        mask = (1 << (8 * width)) - 1
        rest = self.payload[width:]

        def check(body: memoryview, sequence: int, number: int) -> str | None:
            if len(body) != size or int.from_bytes(body[:width], "big") != number & mask:
                return f"download of file {number}: wrong size or wrong file ({len(body)} bytes)"
            if verify_every and sequence % verify_every == 0 and body[width:] != rest:
                return f"download of file {number}: content differs"
            return None

        jobs = [
            (number, QueryFetchOneRequest(group, name).encode(), DownloadFileRequest(group, name).encode())
            for number, group, name in self.files
        ]
        self._each_file("download", record, jobs, check)

    def _delete(self, record: PhaseRecord) -> None:
        jobs = [
            (number, QueryUpdateRequest(group, name).encode(), DeleteFileRequest(group, name).encode())
            for number, group, name in self.files
        ]
        self.files = []
        self._each_file("delete", record, jobs, None)

    def _each_file(
        self,
        phase: str,
        record: PhaseRecord,
        jobs: list[tuple[int, bytes, bytes]],
        check: Callable[[memoryview, int, int], str | None] | None,
    ) -> None:
        """Send each job's frame to the storage its tracker query names (``once``: the first's)."""
        with self._timed(record):
            each = self.config.query == "each"
            query = record.op(QUERY_OP[phase])
            op = record.op(phase)
            samples = op.latencies
            target = None
            if not each and jobs:
                target = self._query(jobs[0][1], query, _fetch_target)
                if target is None:
                    for _ in jobs:
                        op.failed(f"no storage for the {phase}: the tracker query failed")
                    return
            perf_counter_ns = time.perf_counter_ns
            for sequence, (number, query_frame, frame) in enumerate(jobs):
                if each:
                    target = self._query(query_frame, query, _fetch_target)
                    if target is None:
                        continue  # counted as the query's error
                assert target is not None
                wire = None
                start = perf_counter_ns()
                try:
                    wire = self._storage(target[0])
                    body = wire.call(frame, phase)
                except (ReplyError, ProtocolError, OSError) as exc:
                    op.failed(str(exc))
                    self._drop(wire)
                    continue
                samples.append(perf_counter_ns() - start)
                if check is not None:
                    problem = check(body, sequence, number)
                    if problem is not None:
                        op.failed(problem)

    def warm_up(self, count: int) -> PhaseRecord:
        """Upload and download ``count`` files, untimed; they are kept out of the measured phases."""
        record = PhaseRecord("warmup")
        if count:
            self.run_phase("upload", count, record)
            self.run_phase("download", 0, record)
            self.files = []
        return record


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_ns(pid: int) -> int:
    """User and system CPU time of process ``pid`` so far (clock-tick resolution, 10 ms here)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _CLOCK_TICKS


def _store_target(raw: bytes) -> Target:
    reply = StoreTargetReply.decode(raw)
    return (reply.ip, reply.port), reply.store_path_index


def _fetch_target(raw: bytes) -> Target:
    reply = FetchTargetReply.decode(raw)
    return (reply.ip, reply.port), 0


def run_worker(config: LoadConfig, index: int, barrier: threading.Barrier | None = None) -> WorkerResult:
    """Warm up, then run each phase, waiting at ``barrier`` (if any) so all workers start together."""
    worker = LoadWorker(config, index)
    try:
        warmup = worker.warm_up(config.warmup // config.connections if config.warmup else 0)
        phases = []
        for phase in config.phases:
            if barrier is not None:
                barrier.wait()
            record = PhaseRecord(phase)
            worker.run_phase(phase, config.share(index), record)
            phases.append(record)
        return WorkerResult(index, warmup, phases)
    finally:
        worker.close()
