"""Damage and failures seen through the Store's API: what scrub finds, what reads refuse, what failed changes leave."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trunkstore import CorruptData, Store, StoreFull, plainfiles

LARGE = 100_000  # above the slot_max_size below: a plain file
PLAIN_FILES: dict[str, Any] = {"slot_max_size": 64 * 1024, "sync_mode": "none"}


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


# ---- scrub and reads of damaged plain files -----------------------------------------------------------
def test_scrub_checks_deduplicated_plain_files_under_each_id(open_store: Callable[..., Store]) -> None:
    store = open_store(dedup=True, **PLAIN_FILES)
    data = os.urandom(LARGE)
    first, second = store.put(data), store.put(data)
    assert store.locate(first)[0] != store.locate(second)[0]
    assert os.path.samefile(store.locate(first)[0], store.locate(second)[0])
    assert store.scrub().ok
    flip_byte(store.locate(first)[0], LARGE // 2)
    for file_id in (first, second):
        with pytest.raises(CorruptData):
            store.get(file_id)
    report = store.scrub()
    assert report.files_checked == 2
    assert sorted(report.corrupt) == sorted(f"{f}: stored bytes fail their crc32 check" for f in (first, second))


def test_a_normal_plain_file_cut_short_is_corrupt_to_get_locate_and_scrub(open_store: Callable[..., Store]) -> None:
    store = open_store(**PLAIN_FILES)
    file_id = store.put(os.urandom(LARGE))
    path = store.locate(file_id)[0]
    os.truncate(path, LARGE - 10)
    problem = f"{file_id}: {LARGE - 10} bytes on disk, its ID says {LARGE}"
    with pytest.raises(CorruptData, match=problem):
        store.get(file_id)
    with pytest.raises(CorruptData, match=problem):
        store.get(file_id, 0, 5)
    with pytest.raises(CorruptData, match=problem):
        store.locate(file_id)  # what a server sends a download from
    assert store.scrub().corrupt == [problem]


def test_read_into_refuses_a_damaged_plain_file_once_streamed(open_store: Callable[..., Store]) -> None:
    store = open_store(**PLAIN_FILES)
    data = os.urandom(LARGE)
    file_id = store.put(data)
    flip_byte(store.locate(file_id)[0], 0)
    out = io.BytesIO()
    with pytest.raises(CorruptData, match="fail their crc32 check"):
        store.read_into(file_id, out)
    assert out.getvalue()[1:] == data[1:]  # streamed before the check at the end could fail


# ---- failed changes of appender files ------------------------------------------------------------------
class FullDiskOS:
    """plainfiles' view of ``os`` on a disk that fills up: the first write (or pwrite) writes 3 bytes, the
    next one fails with ENOSPC, later ones work (overwriting bytes a file has needs no new space)."""

    def __init__(self) -> None:
        self.writes = 0

    def _allowed(self, data: memoryview) -> memoryview:
        self.writes += 1
        if self.writes == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return data[:3] if self.writes == 1 else data

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, self._allowed(data))

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, self._allowed(data), offset)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.mark.parametrize("sync_mode", ["always", "none"])
def test_a_failed_append_leaves_the_file_as_it_was_and_a_retry_appends_once(
    open_store: Callable[..., Store], monkeypatch: pytest.MonkeyPatch, sync_mode: str
) -> None:
    store = open_store(sync_mode=sync_mode)
    file_id = store.put_appender(b"start")
    monkeypatch.setattr(plainfiles, "os", FullDiskOS())
    with pytest.raises(StoreFull):
        store.append(file_id, b"123456")
    monkeypatch.undo()
    assert store.get(file_id) == b"start"
    assert store.append(file_id, b"123456") == 11
    assert store.get(file_id) == b"start123456"


@pytest.mark.parametrize("offset", [2, 4])
def test_a_failed_modify_puts_back_the_size_and_the_bytes_it_overwrote(
    open_store: Callable[..., Store], monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    store = open_store(sync_mode="always")
    file_id = store.put_appender(b"start")
    monkeypatch.setattr(plainfiles, "os", FullDiskOS())
    with pytest.raises(StoreFull):
        store.modify(file_id, offset, b"ABCDEF")
    monkeypatch.undo()
    assert store.get(file_id) == b"start"
    counters = store.counters.snapshot()
    assert (counters["modify_total"], counters["modify_ok"]) == (1, 0)


# ---- opening ------------------------------------------------------------------------------------------
def test_a_store_opens_with_directories_left_in_its_tmp(store_root: Path, open_store: Callable[..., Store]) -> None:
    store = open_store(**PLAIN_FILES)
    file_id = store.put(b"kept" * LARGE)
    store.close()
    stray = store_root / "M00" / "tmp" / "x"
    os.makedirs(stray / "deeper")
    (stray / "deeper" / "file").write_bytes(b"stray")
    store = open_store(**PLAIN_FILES)
    assert store.get(file_id) == b"kept" * LARGE
    assert os.listdir(store_root / "M00" / "tmp") == []
