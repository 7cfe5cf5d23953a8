"""Staged: what the next group commit writes, how it is handed over, and the order it reaches the disk in."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trunkstore import diskio, journal
from trunkstore.freespace import Extent
from trunkstore.journal import Journal, Record
from trunkstore.staging import Staged
from trunkstore.trunk import TrunkContainer

CAPACITY = 1 << 20


@pytest.fixture
def container(tmp_path: Path) -> Iterator[TrunkContainer]:
    opened = TrunkContainer.create(str(tmp_path / "000001"), 1, 0, 0, 0, CAPACITY)
    yield opened
    opened.close()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Journal]:
    """A durable journal, loaded and open for appending."""
    opened = Journal(str(tmp_path / "journal"), durable=True)
    _snapshot, records = opened.load()
    assert list(records) == []  # replaying to the end opens the newest generation for appending
    yield opened
    opened.close()


def journaled(log: Journal) -> list[Record]:
    return journal.read_journal(log.directory)[1]


def alloc(trunk_id: int, offset: int, size: int) -> bytes:
    return journal.encode_record(journal.ALLOC, trunk_id, offset, size)


def test_nothing_is_waiting_in_a_new_stage() -> None:
    staged = Staged()
    assert not staged.waiting
    assert (bytes(staged.records), staged.dirty, staged.new_dirs, staged.frees, staged.unlinks) == (
        b"",
        set(),
        set(),
        [],
        [],
    )


@pytest.mark.parametrize("part", ["records", "frees", "unlinks"])
def test_records_and_work_waiting_for_records_count_as_waiting(part: str, container: TrunkContainer) -> None:
    staged = Staged()
    if part == "records":
        staged.records += alloc(1, 0, 256)
    elif part == "frees":
        staged.frees.append(Extent(1, 0, 256))
    else:
        staged.unlinks.append(container)
    assert staged.waiting


def test_containers_and_directories_to_sync_alone_are_not_waiting(container: TrunkContainer, tmp_path: Path) -> None:
    # They are synced with the next records; with no record staged there is nothing to commit.
    staged = Staged()
    staged.dirty.add(container)
    staged.new_dirs.add(str(tmp_path))
    assert not staged.waiting


def test_take_moves_everything_and_leaves_the_stage_empty(container: TrunkContainer, tmp_path: Path) -> None:
    staged = Staged()
    record = alloc(1, 0, 256)
    staged.records += record
    staged.dirty.add(container)
    staged.new_dirs.add(str(tmp_path))
    staged.frees.append(Extent(1, 256, 512))
    staged.unlinks.append(container)
    records, dirty = staged.records, staged.dirty
    taken = staged.take()
    assert taken.records is records and taken.dirty is dirty
    assert bytes(taken.records) == record
    assert taken.dirty == {container}
    assert taken.new_dirs == {str(tmp_path)}
    assert taken.frees == [Extent(1, 256, 512)]
    assert taken.unlinks == [container]
    assert not staged.waiting
    assert (bytes(staged.records), staged.dirty, staged.new_dirs, staged.frees, staged.unlinks) == (
        b"",
        set(),
        set(),
        [],
        [],
    )
    # What is staged afterwards goes to the stage, not to the batch taken.
    staged.records += alloc(1, 512, 256)
    assert bytes(taken.records) == record


def test_write_durably_appends_the_staged_records_to_the_journal(container: TrunkContainer, log: Journal) -> None:
    container.write(0, b"slot bytes")
    staged = Staged()
    staged.records += alloc(1, 0, 256) + journal.encode_record(journal.FREE, 1, 256, 512)
    staged.dirty.add(container)
    staged.write_durably(log)
    assert journaled(log) == [Record(journal.ALLOC, 1, 0, 256), Record(journal.FREE, 1, 256, 512)]
    assert log.records_in_gen == 2
    assert container.read(0, 10) == b"slot bytes"


def test_write_durably_without_records_leaves_the_journal_alone(container: TrunkContainer, tmp_path: Path) -> None:
    # A journal never loaded has no file open: appending to it would fail.
    unopened = Journal(str(tmp_path / "journal"), durable=True)
    staged = Staged()
    staged.dirty.add(container)
    staged.new_dirs.add(str(tmp_path))
    staged.write_durably(unopened)
    assert os.listdir(unopened.directory) == []


def test_write_durably_skips_containers_closed_meanwhile(container: TrunkContainer, log: Journal) -> None:
    # A container removed after it was written is closed: there is nothing of it left to sync.
    container.close()
    staged = Staged()
    staged.dirty.add(container)
    staged.records += alloc(1, 0, 256)
    staged.write_durably(log)
    assert journaled(log) == [Record(journal.ALLOC, 1, 0, 256)]


def test_a_missing_new_directory_fails_before_any_record_is_written(
    container: TrunkContainer, log: Journal, tmp_path: Path
) -> None:
    staged = Staged()
    staged.new_dirs.add(str(tmp_path / "gone"))
    staged.dirty.add(container)
    staged.records += alloc(1, 0, 256)
    with pytest.raises(FileNotFoundError):
        staged.write_durably(log)
    assert journaled(log) == []


def test_a_failed_data_sync_publishes_no_record(
    container: TrunkContainer, log: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(self: TrunkContainer) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))  # what fdatasync reports when the disk fails

    monkeypatch.setattr(TrunkContainer, "datasync", failing)
    staged = Staged()
    staged.dirty.add(container)
    staged.records += alloc(1, 0, 256)
    with pytest.raises(OSError) as info:
        staged.write_durably(log)
    monkeypatch.undo()
    assert info.value.errno == errno.EIO
    assert journaled(log) == []
    assert os.path.getsize(os.path.join(log.directory, "0000000000.log")) == 0


def test_write_durably_syncs_directories_then_data_then_records(
    container: TrunkContainer, log: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The order is what makes a crash safe (data before the record that publishes it); it cannot be
    # seen in the files afterwards, so the calls are watched on their way through.
    calls: list[str] = []
    fsync_dir, datasync = diskio.fsync_dir, TrunkContainer.datasync
    append, sync = Journal.append, Journal.sync

    def watched_fsync_dir(path: str) -> None:
        calls.append(f"dir {os.path.basename(path)}")
        fsync_dir(path)

    def watched_datasync(self: TrunkContainer) -> None:
        calls.append(f"data {self.trunk_id}")
        datasync(self)

    def watched_append(self: Journal, payload: bytes) -> None:
        calls.append(f"append {len(payload)}")
        append(self, payload)

    def watched_sync(self: Journal) -> None:
        calls.append("sync journal")
        sync(self)

    monkeypatch.setattr(diskio, "fsync_dir", watched_fsync_dir)
    monkeypatch.setattr(TrunkContainer, "datasync", watched_datasync)
    monkeypatch.setattr(Journal, "append", watched_append)
    monkeypatch.setattr(Journal, "sync", watched_sync)
    new_dir = tmp_path / "data" / "00" / "00"
    new_dir.mkdir(parents=True)
    staged = Staged()
    staged.records += alloc(1, 0, 256) * 3
    staged.dirty.add(container)
    staged.new_dirs.add(str(new_dir))
    staged.write_durably(log)
    assert calls == ["dir 00", "data 1", f"append {3 * journal.RECORD_SIZE}", "sync journal"]
    assert len(journaled(log)) == 3
