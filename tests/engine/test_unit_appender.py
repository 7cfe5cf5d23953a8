"""The appender module: finding an appender file, append / modify / truncate, and renaming it to normal."""

from __future__ import annotations

import errno
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trunkstore import FileKind, FileNotFound, InvalidArgument, NotAppender, Store, StoreFull, parse_file_id, plainfiles
from trunkstore import appender as ap


class PatchedOS:
    """The appender module's view of ``os``, with some functions replaced."""

    def __init__(self, **replaced: Callable[..., Any]) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def read_disk(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def test_appender_path_gives_the_parsed_id_and_its_file(tiny_store: Store) -> None:
    file_id = tiny_store.put_appender(b"start", "log")
    parsed, path = ap.appender_path(tiny_store, file_id)
    assert str(parsed) == file_id and parsed.is_appender
    assert path == tiny_store.layout.file_path(parsed)
    assert read_disk(path) == b"start"


def test_appender_path_takes_a_trunk_id_for_no_file(tiny_store: Store) -> None:
    trunk = tiny_store.put(b"small")
    with pytest.raises(FileNotFound, match="is a trunk file, not an appender file"):
        ap.appender_path(tiny_store, trunk)


def test_appender_path_reports_a_missing_file_before_its_kind(tiny_store: Store) -> None:
    # A deleted normal file is "not found", not "not an appender": existence is checked first.
    normal = tiny_store.put(b"n" * 300_000)
    with pytest.raises(NotAppender):
        ap.appender_path(tiny_store, normal)
    tiny_store.delete(normal)
    with pytest.raises(FileNotFound, match="no file"):
        ap.appender_path(tiny_store, normal)


def test_append_returns_the_new_size_and_counts_the_bytes(tiny_store: Store) -> None:
    file_id = tiny_store.put_appender(b"ab")
    assert ap.append(tiny_store, file_id, b"cd") == 4
    assert ap.append(tiny_store, file_id, b"") == 4
    assert ap.append(tiny_store, file_id, b"efg") == 7
    assert read_disk(ap.appender_path(tiny_store, file_id)[1]) == b"abcdefg"
    counters = tiny_store.counters.snapshot()
    assert (counters["append_total"], counters["append_ok"], counters["append_bytes"]) == (3, 3, 5)


def test_modify_counts_the_bytes_written_not_the_growth(tiny_store: Store) -> None:
    file_id = tiny_store.put_appender(b"0123456789")
    assert ap.modify(tiny_store, file_id, 8, b"ABCD") == 12
    assert read_disk(ap.appender_path(tiny_store, file_id)[1]) == b"01234567ABCD"
    counters = tiny_store.counters.snapshot()
    assert (counters["modify_total"], counters["modify_ok"], counters["modify_bytes"]) == (1, 1, 4)


def test_failed_operations_count_the_attempt_but_not_a_success(tiny_store: Store) -> None:
    normal = tiny_store.put(b"n" * 300_000)
    file_id = tiny_store.put_appender(b"0123")
    with pytest.raises(NotAppender):
        ap.append(tiny_store, normal, b"x")
    with pytest.raises(InvalidArgument, match="modify offset 5 outside the file's 4 bytes"):
        ap.modify(tiny_store, file_id, 5, b"x")
    with pytest.raises(InvalidArgument, match=r"truncate size 5 outside 0\.\.4"):
        ap.truncate(tiny_store, file_id, 5)
    counters = tiny_store.counters.snapshot()
    attempts = {op: (counters[f"{op}_total"], counters[f"{op}_ok"]) for op in ("append", "modify", "truncate")}
    assert attempts == {"append": (1, 0), "modify": (1, 0), "truncate": (1, 0)}
    assert read_disk(ap.appender_path(tiny_store, file_id)[1]) == b"0123"


def test_truncate_with_a_stale_expected_size_refuses_before_checking_the_size(tiny_store: Store) -> None:
    file_id = tiny_store.put_appender(b"0123")
    # The size is out of range too, but the file is not the one the caller expected: just "no".
    assert ap.truncate(tiny_store, file_id, 99, expected_size=3) is False
    assert ap.truncate(tiny_store, file_id, 4, expected_size=4) is True  # its own size: a no-op that succeeds
    assert read_disk(ap.appender_path(tiny_store, file_id)[1]) == b"0123"
    counters = tiny_store.counters.snapshot()
    assert (counters["truncate_total"], counters["truncate_ok"]) == (2, 1)


def test_only_growth_is_admitted_against_the_reserved_space(fake_disk: Any, open_store: Callable[..., Store]) -> None:
    settings = {"sync_mode": "none", "reserved_storage_space": "1G"}
    store = open_store(**settings)
    file_id = store.put_appender(b"0123456789")
    store.close()
    fake_disk.available = {0: 1 << 30}  # exactly the reserve: no byte to spare
    store = open_store(**settings)
    assert ap.modify(store, file_id, 2, b"XY") == 10  # overwrites in place: no new space
    assert ap.modify(store, file_id, 8, b"ZZ") == 10  # up to the end exactly
    assert ap.append(store, file_id, b"") == 10
    assert ap.truncate(store, file_id, 9) is True
    with pytest.raises(StoreFull):
        ap.modify(store, file_id, 8, b"ZZ")  # one byte past the end now
    with pytest.raises(StoreFull):
        ap.append(store, file_id, b"!")
    assert store.get(file_id) == b"01XY4567Z"


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_regenerated_name_is_the_same_inode_under_a_normal_id(open_store: Callable[..., Store], sync_mode: str) -> None:
    store = open_store(sync_mode=sync_mode)
    file_id = store.put_appender(b"abc", "tar.gz")
    ap.append(store, file_id, b"def")
    old_parsed, old_path = ap.appender_path(store, file_id)
    inode = os.stat(old_path).st_ino
    before = int(time.time())
    new_id = ap.regenerate_name(store, file_id)
    after = int(time.time())
    parsed = parse_file_id(new_id)
    new_path = store.layout.file_path(parsed)
    assert not os.path.exists(old_path)
    assert os.stat(new_path).st_ino == inode and read_disk(new_path) == b"abcdef"
    assert parsed.kind == FileKind.NORMAL and parsed.ext == "tar.gz"
    assert (parsed.declared_size, parsed.crc32) == (6, zlib.crc32(b"abcdef"))
    assert before <= parsed.timestamp <= after
    assert parsed.source == old_parsed.source == store._source
    assert (parsed.store_path, parsed.sub_high, parsed.sub_low) == (
        old_parsed.store_path,
        old_parsed.sub_high,
        old_parsed.sub_low,
    )


def test_regenerating_a_file_without_metadata_adds_none(tiny_store: Store) -> None:
    other = tiny_store.put(b"x")
    tiny_store.set_meta(other, {"k": "v"})
    new_id = ap.regenerate_name(tiny_store, tiny_store.put_appender(b"a"))
    assert tiny_store.get_meta(new_id) == {}
    assert tiny_store.get_meta(other) == {"k": "v"}
    assert tiny_store.stats().metadata_entries == 1


def test_a_failed_append_gives_back_the_space_it_was_admitted(
    fake_disk: Any, open_store: Callable[..., Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"sync_mode": "none", "reserved_storage_space": "1G"}
    store = open_store(**settings)
    file_id = store.put_appender(b"0123456789")
    store.close()
    fake_disk.available = {0: (1 << 30) + 6}  # room for six bytes above the reserve
    store = open_store(**settings)

    class FullDiskOS:
        def write(self, fd: int, data: memoryview) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

    monkeypatch.setattr(plainfiles, "os", FullDiskOS())
    with pytest.raises(StoreFull, match="file system full"):
        ap.append(store, file_id, b"abcdef")
    monkeypatch.undo()
    assert ap.append(store, file_id, b"abcdef") == 16  # the six bytes are still there to be admitted
    assert store.get(file_id) == b"0123456789abcdef"


class Crash(BaseException):
    """Stands for the process dying right after a step that changes what is on disk."""


def test_a_crash_anywhere_in_regenerating_leaves_the_old_or_the_new_id_with_its_metadata(
    open_store: Callable[..., Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = {"owner": "alice"}
    outcomes = []
    for crash_after in range(10):
        root = tmp_path / f"crash-after-{crash_after}"
        store = open_store(root=root, sync_mode="always")
        file_id = store.put_appender(b"abc")
        store.append(file_id, b"def")
        store.set_meta(file_id, meta)
        steps = []

        def step(name: str, call: Callable[..., Any], steps: list[str] = steps, limit: int = crash_after) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                result = call(*args, **kwargs)
                steps.append(name)
                if len(steps) > limit:
                    raise Crash(name)
                return result

            return run

        monkeypatch.setattr(ap, "os", PatchedOS(link=step("link", os.link), unlink=step("unlink", os.unlink)))
        for method in ("set_meta", "delete_meta", "rename_meta"):
            monkeypatch.setattr(store._meta, method, step(method, getattr(store._meta, method)))
        try:
            new_id = ap.regenerate_name(store, file_id)
        except Crash:
            new_id = None
        monkeypatch.undo()
        store.close()
        store = open_store(root=root, sync_mode="always")
        if store.exists(file_id):
            assert (store.get(file_id), store.get_meta(file_id)) == (b"abcdef", meta), steps
            outcomes.append("old")
        else:
            directory = os.path.dirname(store.layout.file_path(parse_file_id(file_id)))
            (name,) = os.listdir(directory)
            new = file_id.rsplit("/", 1)[0] + "/" + name
            assert new_id in (None, new)
            assert (store.get(new), store.get_meta(new)) == (b"abcdef", meta), steps
            outcomes.append("new")
        if new_id is not None:
            break
    assert new_id is not None  # a run with no crash was reached
    assert outcomes[0] == "old" and outcomes[-1] == "new"
