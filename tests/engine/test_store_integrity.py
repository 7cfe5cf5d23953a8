"""Damage and failures seen through the Store's API: what scrub finds, what reads refuse, what failed changes leave."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import pytest

from trunkstore import CorruptData, Store

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


def test_a_normal_plain_file_cut_short_is_corrupt_to_get_and_scrub(open_store: Callable[..., Store]) -> None:
    store = open_store(**PLAIN_FILES)
    file_id = store.put(os.urandom(LARGE))
    os.truncate(store.locate(file_id)[0], LARGE - 10)
    problem = f"{file_id}: {LARGE - 10} bytes on disk, its ID says {LARGE}"
    with pytest.raises(CorruptData, match=problem):
        store.get(file_id)
    with pytest.raises(CorruptData, match=problem):
        store.get(file_id, 0, 5)
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
