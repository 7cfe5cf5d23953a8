"""With sync_mode = always, a reply waits until the binlog records its request wrote are on disk.

Durability against a power cut cannot be tested here; the order can.  The storage runs in-process
and ``os.fdatasync`` is watched on the binlog's files (the store's own syncs pass through): each
reply must find the binlog synced past the request's records, concurrent requests must share
syncs, and a failing sync (the one thing mocked: the system call) must be an error reply while
the server goes on.  The server's once-a-second binlog sync is put off, so that every binlog sync
seen is one a reply asked for.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from group_helpers import GROUP, THIRD_MEMBER, member_conf
from inprocess import InProcessStorage
from procs import WireClient, start_tracker, wait_for
from storage_wire import (
    append,
    delete,
    download,
    filename_of,
    modify,
    regenerate,
    set_meta,
    truncate,
    upload,
    upload_slave,
    upload_status,
)

from cluster.protocol import (
    Request,
    SyncCreateFileRequest,
    SyncDeleteFileRequest,
    SyncUpdateFileRequest,
    UploadFileRequest,
)
from cluster.storage import replication
from cluster.storage.binlog import Binlog, BinlogPosition, BinlogReader
from trunkstore import Store

T = TypeVar("T")


class BinlogFdatasync:
    """``os.fdatasync`` as the binlog meets it: its calls counted, held back or failed on demand."""

    def __init__(self, real: Callable[[int], None]) -> None:
        self._real = real
        self._lock = threading.Lock()
        self.calls = 0
        #: How many of the next binlog syncs fail (EIO).
        self.failures = 0
        self.entered = threading.Event()
        self._released = threading.Event()
        self._released.set()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Binlog syncs that start inside the block wait for its end."""
        self.entered.clear()
        self._released.clear()
        try:
            yield
        finally:
            self._released.set()

    def __call__(self, fd: int) -> None:
        if not os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith("binlog."):
            self._real(fd)
            return
        with self._lock:
            self.calls += 1
            fail = self.failures > 0
            self.failures -= fail
        self.entered.set()
        assert self._released.wait(30), "a binlog sync held for 30 s"
        if fail:
            raise OSError(errno.EIO, "the disk failed the binlog's fdatasync (injected)")
        self._real(fd)


@pytest.fixture
def binlog_syncs(monkeypatch: pytest.MonkeyPatch) -> BinlogFdatasync:
    watcher = BinlogFdatasync(os.fdatasync)
    monkeypatch.setattr(os, "fdatasync", watcher)
    monkeypatch.setattr(replication, "BINLOG_SYNC_EVERY", 3600.0)
    return watcher


def binlog_of(storage: InProcessStorage) -> Binlog:
    assert storage.server.replication is not None
    return storage.server.replication.binlog


def records_in(storage: InProcessStorage) -> int:
    return len(BinlogReader(binlog_of(storage).directory, BinlogPosition()).read(limit=100_000))


def durably(storage: InProcessStorage, request: Callable[[], T]) -> T:
    """``request()``, which must write a binlog record and find it on disk when its reply arrives."""
    binlog = binlog_of(storage)
    before = binlog.end
    result = request()
    end = binlog.end
    assert end > before, "the request wrote no binlog record"
    assert binlog.synced >= end, "the reply came before the request's binlog record was on disk"
    return result


def test_every_change_is_answered_once_its_binlog_record_is_on_disk(
    tmp_path: Path, binlog_syncs: BinlogFdatasync
) -> None:
    with Store(tmp_path / "third", sync_mode="none", **THIRD_MEMBER) as third:
        theirs = {third.put(os.urandom(300 + n)).split("/", 1)[1]: n for n in range(40)}
        replicas = {name: third.get(f"{GROUP}/{name}") for name in theirs}
    # A tracker lists the storage, at 127.0.0.1, as a member of the group: the test's connections,
    # from 127.0.0.1 too, may then send SYNC_* requests as a peer would.
    with (
        start_tracker(tmp_path) as tracker,
        InProcessStorage(tmp_path, [tracker], sync_mode="always", **member_conf(1)) as s,
    ):
        wait_for(lambda: s.server.accepts_sync_from("127.0.0.1"), message="the storage listed by the tracker")
        with WireClient(s.address) as wire:
            small = durably(s, lambda: upload(wire, b"small"))
            durably(s, lambda: upload(wire, os.urandom(200_000), "bin"))
            appender = durably(s, lambda: upload(wire, b"0123456789", appender=True))
            assert durably(s, lambda: append(wire, appender, b"abc"))[0] == 0
            assert durably(s, lambda: modify(wire, appender, 1, b"XY"))[0] == 0
            assert durably(s, lambda: truncate(wire, appender, 8))[0] == 0
            assert durably(s, lambda: set_meta(wire, small, {"k": "v"}))[0] == 0
            assert durably(s, lambda: upload_slave(wire, small, "_s", b"slave"))[0] == 0
            status, body = durably(s, lambda: regenerate(wire, appender))
            assert status == 0
            assert durably(s, lambda: delete(wire, small))[0] == 0
            assert download(wire, filename_of(body)) == (0, b"0XY34567")

        # A peer's changes: replica creates pipelined (stored side by side), then a delete and metadata.
        with WireClient(s.address) as wire:
            before = binlog_syncs.calls
            for name, data in replicas.items():
                wire.send(SyncCreateFileRequest(theirs[name] + 1, GROUP, name, len(data)).encode(data))
            assert [wire.reply()[0] for _ in replicas] == [0] * len(replicas)
            assert binlog_of(s).synced >= binlog_of(s).end
            assert binlog_syncs.calls > before
            first, second = list(replicas)[:2]
            assert durably(s, lambda: ask(wire, SyncDeleteFileRequest(1, GROUP, first))) == 0
            assert durably(s, lambda: ask(wire, SyncUpdateFileRequest(2, GROUP, second, (("w", "1"),)))) == 0


def test_concurrent_requests_share_one_binlog_sync(tmp_path: Path, binlog_syncs: BinlogFdatasync) -> None:
    count = 12
    with InProcessStorage(tmp_path, sync_mode="always") as storage, ExitStack() as stack:
        wires = [stack.enter_context(WireClient(storage.address)) for _ in range(count)]
        with binlog_syncs.held():
            wires[0].send(upload_frame(b"first"))
            assert binlog_syncs.entered.wait(10), "no binlog sync for the first upload"
            # While that sync runs, the others write their records and wait for the next one.
            for number, wire in enumerate(wires[1:]):
                wire.send(upload_frame(b"next %d" % number))
            wait_for(lambda: records_in(storage) == count, message="every upload's binlog record")
            for wire in wires:
                wire.sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    wire.sock.recv(1)  # no reply while the records are not on disk
                wire.sock.settimeout(10)
        assert [wire.reply()[0] for wire in wires] == [0] * count
        # One sync for the first upload, one for the eleven that came while it ran.
        assert binlog_syncs.calls == 2
        assert binlog_of(storage).synced == binlog_of(storage).end


def test_a_failed_binlog_sync_is_an_error_reply_and_the_server_goes_on(
    tmp_path: Path, binlog_syncs: BinlogFdatasync, caplog: pytest.LogCaptureFixture
) -> None:
    with InProcessStorage(tmp_path, sync_mode="always") as storage, WireClient(storage.address) as reader:
        with WireClient(storage.address) as wire:
            kept = upload(wire, b"kept")
        binlog_syncs.failures = 1
        with WireClient(storage.address) as wire:
            assert upload_status(wire, b"not acknowledged")[0] == errno.EIO
            assert wire.closed_by_peer()
        assert "binlog sync failed" in caplog.text
        # Others are served as before, and the next sync makes the records durable again.
        assert download(reader, kept) == (0, b"kept")
        with WireClient(storage.address) as wire:
            durably(storage, lambda: upload(wire, b"acknowledged"))
        assert binlog_syncs.calls == 3


def test_the_thread_that_stores_a_file_syncs_its_binlog_record(tmp_path: Path, binlog_syncs: BinlogFdatasync) -> None:
    # The reply then finds its record on disk and needs no second trip through the thread pool: the
    # event loop never starts a sync of its own.
    with InProcessStorage(tmp_path, sync_mode="always") as storage, WireClient(storage.address) as wire:
        for number in range(5):
            durably(storage, lambda: upload(wire, b"file %d" % number))  # noqa: B023 - called at once
        assert binlog_syncs.calls == 5
        assert storage.server.replication is not None
        assert storage.server.replication.binlog_sync._running is None


def test_records_written_before_a_failed_sync_ended_are_never_acknowledged(
    tmp_path: Path, binlog_syncs: BinlogFdatasync
) -> None:
    # The second upload's record is written while the first upload's sync is failing: its pages may
    # be lost with the others, and a sync of its own would not say so (the kernel reports a write
    # error once).  So it is refused too, without another sync.
    with InProcessStorage(tmp_path, sync_mode="always") as storage, ExitStack() as stack:
        first, second = (stack.enter_context(WireClient(storage.address)) for _ in range(2))
        binlog_syncs.failures = 1
        with binlog_syncs.held():
            first.send(upload_frame(b"first"))
            assert binlog_syncs.entered.wait(10), "no binlog sync for the first upload"
            second.send(upload_frame(b"second"))
            wait_for(lambda: records_in(storage) == 2, message="the second upload's binlog record")
        assert first.reply()[0] == errno.EIO
        assert second.reply()[0] == errno.EIO
        assert binlog_syncs.calls == 1
        # A record written after the failure is synced afresh and acknowledged.
        with WireClient(storage.address) as wire:
            durably(storage, lambda: upload(wire, b"third"))
        assert binlog_syncs.calls == 2


@pytest.mark.parametrize("sync_mode", ["interval", "none"])
def test_other_sync_modes_answer_without_waiting_for_the_binlog(
    tmp_path: Path, binlog_syncs: BinlogFdatasync, sync_mode: str
) -> None:
    with InProcessStorage(tmp_path, sync_mode=sync_mode) as storage, WireClient(storage.address) as wire:
        for number in range(5):
            name = upload(wire, b"file %d" % number)
            assert set_meta(wire, name, {"n": str(number)})[0] == 0
            assert delete(wire, name)[0] == 0
        binlog = binlog_of(storage)
        assert records_in(storage) == 15
        assert binlog_syncs.calls == 0 and binlog.synced < binlog.end


def upload_frame(data: bytes) -> bytes:
    return UploadFileRequest(0xFF, len(data), "txt").encode(data)


def ask(wire: WireClient, request: Request) -> int:
    """Send a request without data; the reply's status."""
    wire.send(request.encode())
    return wire.reply()[0]
