"""The demo (``python -m trunkstore.demo [DIR]``): what it prints, and the store it leaves behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from trunkstore import FileKind, FormatMismatch, Store, demo, parse_file_id

MIB = 1 << 20

#: Every line the demo prints, as patterns; timings vary, counts and layout do not.
EXPECTED_LINES = [
    r"store at (?P<root>.+)",
    r"put 4 KiB thumbnail  -> (?P<thumb>group1/M00/\S+\.jpg)",
    r"  kind trunk, trunk (?P<trunk>TrunkLocation\(trunk_id=1, offset=0, alloc_size=4120\)), "
    r"crc32 0x(?P<crc>[0-9a-f]{8})",
    r"put_many 20000 x 1 KiB \(one durable commit\) in \d+\.\d\d s: [\d,]+ files/s",
    r"read them back byte-exact in \d+\.\d\d s: [\d,]+ files/s",
    r"put 20 MiB file      -> (?P<big>group1/M00/\S+\.bin) \(plain file, normal\)",
    r"put slave            -> (?P<slave>group1/M00/\S+_150x150\.jpg)",
    r"metadata             -> \{'height': '768', 'width': '1024'\}",
    r"appender file        -> (?P<appender>group1/M00/\S+\.log): b'log line 1\\nlog line 2\\n'",
    # 10,000 holes between the files kept, and the free tail of the container.
    r"deleted half: 1 container\(s\), 10001 free extent\(s\) after merging",
    r"check\(\): ok \(10001 slots verified\)",  # the thumbnail and the 10,000 files kept
    r"scrub\(\): 10002 files, 0 corrupt",  # those and the 20 MiB file (slave and appender have no crc)
    r"",
    r"Use it from Python:",
    r"    from trunkstore import Store",
    r"    with Store\('/data/photos'\) as store:",
    r"        file_id = store\.put\(jpeg_bytes, ext='jpg'\)",
    r"        data = store\.get\(file_id\)",
]


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    lines: list[str]
    stderr: str
    temp_dir: Path
    found: dict[str, str]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    # Run once for the whole module, as ``make``-style users do: with no DIR, in a fresh temporary
    # directory (TMPDIR points it into pytest's). Its 10,000 deletes are each synced: seconds, not less.
    temp_dir = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "trunkstore.demo"],
        env={**os.environ, "TMPDIR": str(temp_dir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = result.stdout.splitlines()
    found: dict[str, str] = {}
    for pattern, line in zip(EXPECTED_LINES, lines, strict=False):
        match = re.fullmatch(pattern, line)
        if match:
            found.update(match.groupdict())
    return DemoRun(result.returncode, lines, result.stderr, temp_dir, found)


@pytest.fixture(scope="module")
def demo_store(demo_run: DemoRun) -> Iterator[Store]:
    store = Store(demo_run.found["root"], group_name="group1", storage_ip="127.0.0.1", sync_mode="none")
    yield store
    store.close()


def test_demo_exits_cleanly_and_prints_no_error(demo_run: DemoRun) -> None:
    assert demo_run.stderr == ""
    assert demo_run.returncode == 0


def test_demo_prints_every_step_in_order(demo_run: DemoRun) -> None:
    assert len(demo_run.lines) == len(EXPECTED_LINES), demo_run.lines
    mismatched = [
        (pattern, line)
        for pattern, line in zip(EXPECTED_LINES, demo_run.lines, strict=True)
        if not re.fullmatch(pattern, line)
    ]
    assert mismatched == []


def test_demo_without_a_directory_makes_a_new_temporary_one(demo_run: DemoRun) -> None:
    root = Path(demo_run.found["root"])
    assert root.parent == demo_run.temp_dir
    assert root.name.startswith("trunkstore-demo-")
    assert (root / "store.json").is_file()


def test_the_thumbnail_line_describes_the_thumbnails_id(demo_run: DemoRun) -> None:
    parsed = parse_file_id(demo_run.found["thumb"])
    assert repr(parsed.trunk) == demo_run.found["trunk"]
    assert int(demo_run.found["crc"], 16) == parsed.crc32
    assert demo_run.found["slave"] == demo_run.found["thumb"].removesuffix(".jpg") + "_150x150.jpg"


def test_the_store_left_behind_holds_what_the_demo_printed(demo_run: DemoRun, demo_store: Store) -> None:
    thumb, found = demo_run.found["thumb"], demo_run.found
    thumb_stat = demo_store.stat(thumb)
    assert (thumb_stat.size, thumb_stat.kind) == (4096, FileKind.TRUNK)
    assert demo_store.get_meta(thumb) == {"width": "1024", "height": "768"}
    big = demo_store.stat(found["big"])
    assert (big.size, big.kind) == (20 * MIB, FileKind.NORMAL)
    slave = demo_store.stat(found["slave"])
    assert (slave.size, slave.kind) == (512, FileKind.SLAVE)
    assert demo_store.get(found["appender"]) == b"log line 1\nlog line 2\n"
    assert demo_store.stat(found["appender"]).kind == FileKind.APPENDER


def test_the_store_left_behind_checks_and_scrubs_clean(demo_store: Store) -> None:
    stats = demo_store.stats()
    assert (stats.trunk_containers, stats.trunk_free_extents, stats.metadata_entries) == (1, 10001, 1)
    check = demo_store.check()
    assert (check.problems, check.slots_checked) == ([], 10001)
    scrub = demo_store.scrub()
    assert (scrub.files_checked, scrub.corrupt) == (10002, [])


def test_demo_opens_the_directory_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A store made there with another trunk size is refused at once: proof that the demo opened it.
    with Store(tmp_path, trunk_file_size=128 * MIB, sync_mode="none"):
        pass
    with pytest.raises(FormatMismatch, match="trunk_file_size"):
        demo.main([str(tmp_path)])
    assert capsys.readouterr().out == f"store at {tmp_path}\n"
