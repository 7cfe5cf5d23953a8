"""The replication binlog: records written by several threads, read back in order, across files."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import threading
from pathlib import Path

import pytest

from cluster.storage.binlog import (
    Binlog,
    BinlogError,
    BinlogPosition,
    BinlogReader,
    BinlogRecord,
    binlog_path,
    parse_record,
)
from cluster.storage.binlog_sync import BinlogSync, BinlogSyncFailed
from cluster.storage.sync_apply import source_key

NAME = "M00/00/00/fwAAAWsBkruIJDOEAAAD6FGgLgEAAAAAQAAAAAAAAQA420.txt"


def test_records_round_trip(tmp_path: Path) -> None:
    binlog = Binlog(str(tmp_path))
    binlog.record("C", NAME, timestamp=100)
    binlog.record("A", NAME, 10, 20, timestamp=101)
    binlog.record("r", "M00/00/00/new.txt", "M00/00/00/old.txt", timestamp=102)
    binlog.record("T", NAME, 30, 5, timestamp=103)
    reader = BinlogReader(str(tmp_path), BinlogPosition())
    records = reader.read()
    assert [(r.timestamp, r.op, r.filename, r.extra) for r in records] == [
        (100, "C", NAME, ()),
        (101, "A", NAME, ("10", "20")),
        (102, "r", "M00/00/00/new.txt", ("M00/00/00/old.txt",)),
        (103, "T", NAME, ("30", "5")),
    ]
    assert records[1].ints() == (10, 20)
    assert records[0].from_source and not records[2].from_source
    assert reader.position == binlog.end == records[-1].end
    assert reader.read() == []
    binlog.close()


def test_reader_resumes_from_a_position_and_a_limit(tmp_path: Path) -> None:
    binlog = Binlog(str(tmp_path))
    for number in range(10):
        binlog.record("D", f"M00/00/00/f{number}", timestamp=number)
    reader = BinlogReader(str(tmp_path), BinlogPosition())
    first = reader.read(limit=3)
    assert [r.filename for r in first] == ["M00/00/00/f0", "M00/00/00/f1", "M00/00/00/f2"]
    resumed = BinlogReader(str(tmp_path), first[-1].end).read()
    assert [r.timestamp for r in resumed] == list(range(3, 10))
    binlog.close()


def test_a_partial_last_line_waits_for_its_end(tmp_path: Path) -> None:
    binlog = Binlog(str(tmp_path))
    binlog.record("C", NAME, timestamp=1)
    binlog.close()
    with open(binlog_path(str(tmp_path), 0), "ab") as handle:
        handle.write(b"2 D M00/00/00/x")  # a record being written: no newline yet
    reader = BinlogReader(str(tmp_path), BinlogPosition())
    assert [r.timestamp for r in reader.read()] == [1]
    with open(binlog_path(str(tmp_path), 0), "ab") as handle:
        handle.write(b"yz\n")
    assert [(r.timestamp, r.filename) for r in reader.read()] == [(2, "M00/00/00/xyz")]


def test_rotation_and_reopening_continue_the_newest_file(tmp_path: Path) -> None:
    binlog = Binlog(str(tmp_path), rotate_size=200)
    for number in range(20):
        binlog.record("C", f"{NAME}{number}", timestamp=number)
    binlog.close()
    files = sorted(os.listdir(tmp_path))
    assert len(files) > 2 and files[0] == "binlog.000"
    again = Binlog(str(tmp_path), rotate_size=200)
    assert again.end.index == len(files) - 1
    again.record("D", NAME, timestamp=99)
    again.close()
    records = BinlogReader(str(tmp_path), BinlogPosition()).read(limit=1000)
    assert [r.timestamp for r in records] == [*range(20), 99]


def test_a_cut_line_at_the_end_of_a_rotated_file_is_passed_over(tmp_path: Path) -> None:
    Path(binlog_path(str(tmp_path), 0)).write_bytes(b"1 C M00/a\n2 C M00/b")
    Path(binlog_path(str(tmp_path), 1)).write_bytes(b"3 C M00/c\n")
    records = BinlogReader(str(tmp_path), BinlogPosition()).read()
    assert [r.timestamp for r in records] == [1, 3]


def test_bad_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    Path(binlog_path(str(tmp_path), 0)).write_bytes(
        b"1 C M00/a\nnot a record\n2 X M00/b\n3 A M00/c 1\n4 A M00/c x y\n\xff\xfe\n5 D M00/d\n"
    )
    reader = BinlogReader(str(tmp_path), BinlogPosition())
    assert [r.timestamp for r in reader.read()] == [1, 5]
    assert reader.skipped == 5


@pytest.mark.parametrize(
    "line",
    [b"", b"12", b"x C M00/a", b"1 CC M00/a", b"1 C ", b"1 Q M00/a", b"1 M M00/a 1", b"1 R M00/a", b"1 D M00/a b"],
    ids=lambda line: line.decode("ascii", "replace") or "empty",
)
def test_parse_refuses_malformed_lines(line: bytes) -> None:
    with pytest.raises(BinlogError):
        parse_record(line, BinlogPosition())


def test_concurrent_writers_never_interleave_records(tmp_path: Path) -> None:
    binlog = Binlog(str(tmp_path))
    notified = []
    binlog.on_append = lambda: notified.append(1)

    def write(worker: int) -> None:
        for number in range(500):
            binlog.record("C", f"M00/00/00/w{worker}-{number}", timestamp=number)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    binlog.sync()
    records = BinlogReader(str(tmp_path), BinlogPosition()).read(limit=5000)
    assert len(records) == 2000 == len(notified)
    for worker in range(4):
        mine = [r.timestamp for r in records if r.filename.startswith(f"M00/00/00/w{worker}-")]
        assert mine == list(range(500))
    binlog.close()


def test_a_short_write_leaves_no_half_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binlog = Binlog(str(tmp_path))
    binlog.record("C", NAME, timestamp=1)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:5]))
    with pytest.raises(OSError, match="short write"):
        binlog.record("D", NAME, timestamp=2)
    monkeypatch.setattr(os, "write", real_write)
    binlog.record("D", NAME, timestamp=3)
    binlog.close()
    assert [r.timestamp for r in BinlogReader(str(tmp_path), BinlogPosition()).read()] == [1, 3]


def test_record_encoding() -> None:
    record = BinlogRecord(7, "M", NAME, ("1", "2"))
    assert record.encode() == f"7 M {NAME} 1 2\n".encode()


def test_source_key_reads_the_storage_from_a_file_name() -> None:
    assert source_key(NAME) == "127.0.0.1"
    # 100001 = 0x000186a1 -> base64url "AAGGoQ"
    assert source_key("M00/00/00/AAGGoWsBkruIJDOEAAAD6FGgLgEAAAAAQAAAAAAAAQA420.txt") == "100001"
    assert source_key("M00/00/00/!!") == ""


def test_reopening_drops_a_record_cut_by_a_crash(tmp_path: Path) -> None:
    binlog = Binlog(str(tmp_path))
    binlog.record("C", NAME, timestamp=1)
    binlog.close()
    with open(binlog_path(str(tmp_path), 0), "ab") as handle:
        handle.write(b"2 D M00/00/00/cut-sh")
    again = Binlog(str(tmp_path))
    assert again.end.offset == len(f"1 C {NAME}\n")
    again.record("D", NAME, timestamp=3)
    again.close()
    records = BinlogReader(str(tmp_path), BinlogPosition()).read()
    assert [(r.timestamp, r.op) for r in records] == [(1, "C"), (3, "D")]


def test_synced_is_where_the_last_sync_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binlog = Binlog(str(tmp_path), rotate_size=200)
    assert binlog.synced == binlog.end == BinlogPosition()
    binlog.record("C", NAME, timestamp=1)
    written = binlog.end
    assert binlog.synced < written
    binlog.sync()
    assert binlog.synced == written
    binlog.record("D", NAME, timestamp=2)
    real_fdatasync = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError):
        binlog.sync()
    assert binlog.synced == written  # not covered: the next sync tries again
    monkeypatch.setattr(os, "fdatasync", real_fdatasync)
    binlog.sync()
    assert binlog.synced == binlog.end
    for number in range(3):  # past rotate_size: the full file is synced as the next one starts
        binlog.record("C", f"{NAME}{number}", timestamp=3)
    assert binlog.end.index == 1 and binlog.synced == BinlogPosition(1, 0)
    binlog.close()
    assert binlog.synced == binlog.end
    binlog.sync()  # nothing left to sync: no use of the closed descriptor
    # Reopened: what the last run wrote is not known to be on disk.
    again = Binlog(str(tmp_path), rotate_size=200)
    assert again.synced == BinlogPosition(1, 0) < again.end
    again.close()


def test_written_by_tells_where_the_calling_threads_records_end(tmp_path: Path) -> None:
    binlog = Binlog(str(tmp_path))
    other_wrote = threading.Event()

    def other() -> None:
        binlog.record("D", "M00/00/00/other", timestamp=2)
        other_wrote.set()

    def work() -> str:
        binlog.record("C", NAME, timestamp=1)
        threading.Thread(target=other).start()
        assert other_wrote.wait(10)
        return "done"

    result, end = binlog.written_by(work)
    mine, others = BinlogReader(str(tmp_path), BinlogPosition()).read()
    assert (result, end) == ("done", mine.end)  # the other thread's record, written later, is not work's
    assert others.filename == "M00/00/00/other" and others.end == binlog.end
    assert binlog.written_by(lambda: None) == (None, None)
    binlog.close()


def test_binlog_sync_shares_syncs_and_fails_only_their_waiters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binlog = Binlog(str(tmp_path))
    calls: list[BinlogPosition] = []
    release = threading.Event()
    failures = [OSError(errno.EIO, "injected")]
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        calls.append(binlog.end)
        assert release.wait(10)
        if failures:
            raise failures.pop()
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)

    async def main() -> None:
        with concurrent.futures.ThreadPoolExecutor(2) as executor:
            syncs = BinlogSync(binlog, executor)
            binlog.record("C", NAME, timestamp=1)
            first = asyncio.ensure_future(syncs.durable(binlog.end))
            while not calls:
                await asyncio.sleep(0.01)
            # Written while that sync runs: these wait for the next one, all together.
            waiters = []
            for number in range(5):
                binlog.record("C", f"{NAME}{number}", timestamp=2)
                waiters.append(asyncio.ensure_future(syncs.durable(binlog.end)))
            await asyncio.sleep(0)
            waiters[0].cancel()  # a client gone: the others still get their sync
            release.set()
            with pytest.raises(BinlogSyncFailed):
                await first  # the injected failure
            for waiter in waiters[1:]:
                with pytest.raises(BinlogSyncFailed):  # they waited on the failed sync too
                    await waiter
            assert waiters[0].cancelled() and not syncs.covers(binlog.end)
            # The next sync succeeds, one for all the waiters that arrive together.
            binlog.record("C", NAME, timestamp=3)
            await asyncio.gather(*(syncs.durable(binlog.end) for _ in range(5)))
            assert syncs.covers(binlog.end)
            await syncs.durable(binlog.end)  # nothing new to sync
        assert len(calls) == 2

    asyncio.run(main())
    binlog.close()
