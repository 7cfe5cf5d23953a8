"""An unmodified FastDFS client from PyPI (py3Fdfs 2.2.0, installed by the test extra) against the
bundled cluster started with ``trunkstore cluster up --detach`` and stopped with ``cluster down``.

py3Fdfs parses the tracker's listings in FastDFS <= 6.10's layout, so the cluster is started with
``--stat-layout 6.10``.  Its own bugs are worked around here, not in the servers: a download with a
non-zero offset fails inside the client (``file_offset`` is only set when the offset is 0), so only
whole-file downloads are driven through it; it takes file IDs and group names as ``bytes`` (as it
returns them); its metadata calls mix ``str`` and ``bytes`` and fail inside the client, so metadata is
not driven through it; and ``list_servers`` must be given the storage address as ``bytes``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUERY_STORE_WITHOUT_GROUP_ONE
from procs import WireClient, wait_for

fdfs_client = pytest.importorskip("fdfs_client.client", reason="py3Fdfs is installed by the test extra")
from fdfs_client.exceptions import DataError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tracker_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    directory = tmp_path_factory.mktemp("bundle")
    started = cli(
        "cluster", "up", "--dir", str(directory), "--detach", "--tracker-port", "0", "--storage-port", "0",
        "--stat-layout", "6.10", "--sync-mode", "none",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "cluster ready" in started.stdout
    line = next(x for x in started.stdout.splitlines() if x.startswith("trackers: "))
    host, _, port = line.split()[1].split(",")[0].rpartition(":")
    address = (host, int(port))

    def writable() -> bool:
        with WireClient(address) as wire:
            return wire.call(QUERY_STORE_WITHOUT_GROUP_ONE)[0] == 0

    try:
        wait_for(writable, timeout=30, message="the storage to be offered for uploads")
        yield address
    finally:
        stopped = cli("cluster", "down", "--dir", str(directory))
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped 2 server(s)" in stopped.stdout


@pytest.fixture
def client(tracker_address: tuple[str, int]) -> Any:
    host, port = tracker_address
    return fdfs_client.Fdfs_client({"host_tuple": (host,), "port": port, "timeout": 30, "name": "Tracker Pool"})


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_upload_by_buffer_download_delete_then_enoent(client: Any) -> None:
    data = os.urandom(5000)
    result = client.upload_by_buffer(data, "txt")
    file_id = result["Remote file_id"]
    assert as_text(file_id).startswith("group1/M00/") and as_text(file_id).endswith(".txt")
    assert client.download_to_buffer(file_id)["Content"] == data
    client.delete_file(file_id)
    with pytest.raises(DataError, match="2"):
        client.delete_file(file_id)
    with pytest.raises(DataError):
        client.download_to_buffer(file_id)


def test_upload_by_filename_and_download_to_file(client: Any, tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    data = os.urandom(300_000)
    source.write_bytes(data)
    result = client.upload_by_filename(str(source))
    file_id = result["Remote file_id"]
    assert as_text(file_id).endswith(".jpg")
    dest = tmp_path / "copy.jpg"
    client.download_to_file(str(dest), file_id)
    assert dest.read_bytes() == data


def test_large_plain_file_round_trip(client: Any) -> None:
    data = os.urandom(20 << 20)  # above slot_max_size: a plain file, downloaded with sendfile
    file_id = client.upload_by_buffer(data, "bin")["Remote file_id"]
    assert client.download_to_buffer(file_id)["Content"] == data
    client.delete_file(file_id)


def test_appender_append_and_truncate(client: Any) -> None:
    file_id = client.upload_appender_by_buffer(b"first part;", "log")["Remote file_id"]
    client.append_by_buffer(b"second part", file_id)
    assert client.download_to_buffer(file_id)["Content"] == b"first part;second part"
    client.truncate_file(5, file_id)
    assert client.download_to_buffer(file_id)["Content"] == b"first"
    client.delete_file(file_id)


def test_listings_in_the_old_layout(client: Any) -> None:
    groups = client.list_all_groups()
    assert groups["Groups count"] == 1
    one = client.list_one_group(b"group1")
    assert "group1" in str(one)
    servers = client.list_servers(b"group1", b"127.0.0.1")
    assert len(servers["Servers"]) == 1
    assert "ACTIVE" in str(servers["Servers"][0])
