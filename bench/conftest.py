"""Fixtures of the engine benchmarks: scratch directories on a real disk, and the machine's description.

Scratch data goes under ``$TRUNKSTORE_BENCH_DIR`` when set, else the system temporary directory; a
RAM-backed one (tmpfs) would measure memory instead of the disk, so it is refused.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

_RAM_FILE_SYSTEMS = {"tmpfs", "ramfs"}
# Other processes on the machine disturb the figures; the load average at start and end shows whether
# they did.
_LOAD_AT_START = os.getloadavg()


def filesystem_of(path: str) -> str:
    """The type of the file system holding ``path``, from the longest matching mount point."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount_point = fields[1].replace("\\040", " ")
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, kind = mount_point, f"{fields[2]} ({fields[0]} on {mount_point})"
    except OSError:
        pass
    return kind


def scratch_base() -> str:
    base = os.environ.get("TRUNKSTORE_BENCH_DIR") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    if filesystem_of(base).split()[0] in _RAM_FILE_SYSTEMS:
        raise pytest.UsageError(
            f"{base} is RAM-backed; set TRUNKSTORE_BENCH_DIR to a directory on the disk under test"
        )
    return base


@pytest.fixture(scope="session")
def scratch_root() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="trunkstore-bench-", dir=scratch_base())
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workdir(scratch_root: str) -> Iterator[str]:
    """An empty directory for one benchmark, removed afterwards so that the disk does not fill up.

    Dirty pages left by the previous benchmark are written back first (untimed): otherwise their
    writeback, up to gigabytes after the 64 KiB runs, would be charged to whichever backend runs next.
    """
    os.sync()
    path = tempfile.mkdtemp(dir=scratch_root)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _first_line(path: str, prefix: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine_facts() -> dict[str, Any]:
    mem_kib = _first_line("/proc/meminfo", "MemTotal").split()[0]
    return {
        "nproc": os.cpu_count(),
        "mem_gib": round(int(mem_kib) / (1 << 20), 1) if mem_kib.isdigit() else None,
        "cpu_model": _first_line("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "scratch_filesystem": filesystem_of(scratch_base()),
        "workdir_filesystem": filesystem_of(os.getcwd()),
        "loadavg_at_start": [round(x, 2) for x in _LOAD_AT_START],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["bench"] = machine_facts()
