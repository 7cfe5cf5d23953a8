"""The report records: FileStat, StoreStats, CheckReport and ScrubReport are frozen values with defaults."""

from __future__ import annotations

import dataclasses

import pytest

from trunkstore import FileKind, Store
from trunkstore.reports import CheckReport, FileStat, ScrubReport, StoreStats


def file_stat() -> FileStat:
    return FileStat("group1/M00/00/00/x", 5, 0xDEADBEEF, 1_700_000_000, FileKind.TRUNK, "127.0.0.1", 0x7F000001)


def test_check_report_is_ok_exactly_when_no_problem_was_found() -> None:
    assert CheckReport().ok is True
    assert CheckReport(fixed=["trunk 1: freed 24 leaked bytes at 0"]).ok is True  # repairs alone are no problem
    assert CheckReport(problems=["container 1 is missing"]).ok is False


def test_scrub_report_is_ok_exactly_when_nothing_is_corrupt() -> None:
    assert ScrubReport(files_checked=3, bytes_checked=100).ok is True
    assert ScrubReport(files_checked=3, bytes_checked=100, corrupt=["trunk 1 slot at 0 (5 bytes)"]).ok is False


def test_defaults_are_empty_and_never_shared_between_reports() -> None:
    one, two = CheckReport(), CheckReport()
    assert (one.problems, one.fixed, one.slots_checked) == ([], [], 0)
    one.problems.append("a problem")
    assert two.problems == [] and two.ok
    scrub_one, scrub_two = ScrubReport(), ScrubReport()
    scrub_one.corrupt.append("x")
    assert (scrub_two.files_checked, scrub_two.bytes_checked, scrub_two.corrupt) == (0, 0, [])


@pytest.mark.parametrize(
    ("record", "field"),
    [(file_stat(), "size"), (CheckReport(), "slots_checked"), (ScrubReport(), "files_checked")],
)
def test_reports_are_frozen(record: object, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, field, 1)


def test_reports_have_slots_not_a_dict() -> None:
    for record in (file_stat(), CheckReport(), ScrubReport()):
        assert not hasattr(record, "__dict__")


def test_equal_fields_make_equal_reports() -> None:
    assert file_stat() == file_stat()
    assert dataclasses.replace(file_stat(), kind=FileKind.NORMAL) != file_stat()
    assert CheckReport(["p"], [], 2) == CheckReport(problems=["p"], fixed=[], slots_checked=2)


def test_store_stats_of_a_store_add_up(tiny_store: Store) -> None:
    tiny_store.put(b"x" * 1000)
    tiny_store.set_meta(tiny_store.put(b"y"), {"k": "v"})
    stats = tiny_store.stats()
    assert isinstance(stats, StoreStats)
    capacity = 4 << 20
    assert (stats.trunk_containers, stats.trunk_capacity_bytes) == (1, capacity)
    assert stats.trunk_free_bytes == stats.trunk_own_free_bytes == capacity - 1024 - 256
    assert (stats.trunk_free_extents, stats.metadata_entries, stats.dedup_holders) == (1, 1, 0)
    assert stats.counters["upload_ok"] == 2
    assert 0 < stats.disk_free_bytes <= stats.disk_total_bytes
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.trunk_containers = 2  # type: ignore[misc]
