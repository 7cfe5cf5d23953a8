"""Layout: sub-directory rotation and hashing, lazy creation, paths."""

from __future__ import annotations

import collections
import os
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkstore.fileid import parse_file_id
from trunkstore.layout import Layout


def make(tmp_path: object, count: int = 256, mode: int = 0, rotate: int = 100, paths: int = 1) -> Layout:
    root = str(tmp_path)
    return Layout(root, [os.path.join(root, f"M{i:02X}") for i in range(paths)], count, mode, rotate)


def expected_rotation(n: int, count: int, rotate: int) -> tuple[int, int]:
    slot = n // rotate
    return (slot // count) % count, slot % count


@pytest.mark.parametrize(("count", "rotate"), [(4, 3), (3, 1), (256, 100), (1, 5), (2, 2)])
def test_rotation_sequence(tmp_path: object, count: int, rotate: int) -> None:
    layout = make(tmp_path, count=count, rotate=rotate)
    total = count * count * rotate + 3 * rotate + 1 if count <= 4 else 2000
    for n in range(total):
        assert layout.next_subdir(0) == expected_rotation(n, count, rotate), n


def test_rotation_every_rotate_count_files(tmp_path: object) -> None:
    layout = make(tmp_path, count=256, rotate=100)
    got = [layout.next_subdir(0) for _ in range(301)]
    assert got[:100] == [(0, 0)] * 100
    assert got[100:200] == [(0, 1)] * 100
    assert got[200:300] == [(0, 2)] * 100
    assert got[300] == (0, 3)


def test_rotation_low_wraps_to_next_high_and_high_wraps(tmp_path: object) -> None:
    layout = make(tmp_path, count=3, rotate=1)
    got = [layout.next_subdir(0) for _ in range(10)]
    assert got == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (0, 0)]


def test_rotation_is_per_store_path(tmp_path: object) -> None:
    layout = make(tmp_path, count=4, rotate=2, paths=2)
    a = [layout.next_subdir(0) for _ in range(6)]
    b = [layout.next_subdir(1) for _ in range(3)]
    assert a == [(0, 0), (0, 0), (0, 1), (0, 1), (0, 2), (0, 2)]
    assert b == [(0, 0), (0, 0), (0, 1)]
    assert layout.next_subdir(0) == (0, 3)


def test_rotation_under_threads_hands_out_each_position_rotate_count_times(tmp_path: object) -> None:
    layout = make(tmp_path, count=8, rotate=5)
    got: list[tuple[int, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [layout.next_subdir(0) for _ in range(400)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    want = collections.Counter(expected_rotation(n, 8, 5) for n in range(3200))
    assert collections.Counter(got) == want


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=60)


@given(name=NAMES, count=st.integers(1, 256))
def test_hash_mode_deterministic_and_in_range(name: str, count: int) -> None:
    layout = Layout("/nonexistent", ["/nonexistent/M00"], count, 1, 100)
    high, low = layout.next_subdir(0, name)
    assert 0 <= high < count and 0 <= low < count
    assert layout.next_subdir(0, name) == (high, low)
    other = Layout("/elsewhere", ["/elsewhere/M00"], count, 1, 7)
    assert other.next_subdir(0, name) == (high, low)


def test_hash_mode_spreads_names(tmp_path: object) -> None:
    layout = make(tmp_path, count=256, mode=1)
    seen = {layout.next_subdir(0, f"file{i:05d}.jpg") for i in range(500)}
    assert len({high for high, _ in seen}) > 50
    assert len({low for _, low in seen}) > 50
    assert not os.path.exists(os.path.join(str(tmp_path), "M00"))


def test_hash_mode_without_name_rotates(tmp_path: object) -> None:
    layout = make(tmp_path, count=4, mode=1, rotate=1)
    assert [layout.next_subdir(0) for _ in range(3)] == [(0, 0), (0, 1), (0, 2)]


def _leaf_dirs(root: str) -> list[str]:
    return sorted(os.path.relpath(path, root) for path, dirs, _files in os.walk(root) if not dirs and path != root)


def test_dirs_created_lazily(tmp_path: object) -> None:
    layout = make(tmp_path, paths=2)
    root = str(tmp_path)
    assert os.listdir(root) == []
    assert layout.created_subdirs(0) == 0
    path = layout.data_dir(0, 0x1A, 0x2B)
    assert path == os.path.join(root, "M00", "data", "1A", "2B")
    assert not os.path.exists(path)  # naming a directory does not make it
    assert layout.ensure_data_dir(0, 0x1A, 0x2B) == path
    assert os.path.isdir(path)
    layout.ensure_data_dir(0, 0x1A, 0x2B)
    layout.ensure_data_dir(0, 0x1A, 0x00)
    layout.ensure_data_dir(1, 0xFF, 0xFF)
    assert _leaf_dirs(root) == [
        os.path.join("M00", "data", "1A", "00"),
        os.path.join("M00", "data", "1A", "2B"),
        os.path.join("M01", "data", "FF", "FF"),
    ]
    assert layout.created_subdirs(0) == 2
    assert layout.created_subdirs(1) == 1


def test_only_used_rotation_dirs_exist(tmp_path: object) -> None:
    layout = make(tmp_path, count=256, rotate=10)
    for _ in range(35):
        layout.ensure_data_dir(0, *layout.next_subdir(0))
    assert layout.created_subdirs(0) == 4
    assert sorted(os.listdir(os.path.join(str(tmp_path), "M00", "data", "00"))) == ["00", "01", "02", "03"]


def test_ensure_recreates_a_removed_dir_of_a_new_layout(tmp_path: object) -> None:
    layout = make(tmp_path)
    path = layout.ensure_data_dir(0, 1, 2)
    os.rmdir(path)
    assert os.path.isdir(make(tmp_path).ensure_data_dir(0, 1, 2))


def test_paths(tmp_path: object) -> None:
    root = str(tmp_path)
    layout = make(tmp_path, paths=2)
    assert layout.journal_dir == os.path.join(root, "journal")
    assert layout.meta_db == os.path.join(root, "meta.db")
    assert layout.format_file == os.path.join(root, "store.json")
    assert layout.tmp_dir(1) == os.path.join(root, "M01", "tmp")
    assert layout.container_path(0, 0, 0x0A, 42) == os.path.join(root, "M00", "data", "00", "0A", "000042")
    parsed = parse_file_id("group1/M01/0A/FF/fwAAAWsBkryAATdrAUAAACyY7_g137.bin")
    assert layout.file_path(parsed) == os.path.join(
        root, "M01", "data", "0A", "FF", "fwAAAWsBkryAATdrAUAAACyY7_g137.bin"
    )
