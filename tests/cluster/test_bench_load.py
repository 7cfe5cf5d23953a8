"""The load generator (``python -m bench.load``): counts, fields, errors and exit codes.

It runs against a small in-process fake tracker and storage (asyncio, built on the codec) whose
failures can be chosen, and against real spawned servers when they are present.  Nothing here
asserts on timings.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cluster

from bench.load import main
from bench.load.cli import _failed_worker, parse_phases, parse_size
from bench.load.report import median_lines, percentile, summarize
from bench.load.worker import LoadConfig
from cluster.protocol import (
    Command,
    DeleteFileRequest,
    DownloadFileRequest,
    EmptyReply,
    FetchTargetReply,
    FileIdReply,
    FrameDecoder,
    RequestWithData,
    Status,
    StoreTargetReply,
    encode_error,
    encode_reply,
    parse_request,
)

GROUP = "group1"


class FakeServer(asyncio.Protocol):
    """A connection of the fake cluster: each whole frame gets the reply ``reply()`` makes."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.decoder = FrameDecoder(1 << 24)
        self.transport: Any = None  # an asyncio or a uvloop transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.decoder.feed(data)
        while (frame := self.decoder.next_frame()) is not None:
            self.transport.write(self.reply(frame.cmd, frame.body))

    def reply(self, cmd: int, body: bytes) -> bytes:
        raise NotImplementedError


class FakeStorage(FakeServer):
    """Uploads, downloads and deletes kept in the cluster's dict."""

    def reply(self, cmd: int, body: bytes) -> bytes:
        return self.cluster.storage_reply(parse_request(cmd, body))


class FakeTracker(FakeServer):
    """Every query names the one fake storage."""

    def reply(self, cmd: int, body: bytes) -> bytes:
        self.cluster.queries[cmd] = self.cluster.queries.get(cmd, 0) + 1
        if cmd in (Command.QUERY_STORE_WITHOUT_GROUP_ONE, Command.QUERY_STORE_WITH_GROUP_ONE):
            return StoreTargetReply(GROUP, "127.0.0.1", self.cluster.storage_port, 0).encode()
        if cmd in (Command.QUERY_FETCH_ONE, Command.QUERY_UPDATE):
            return FetchTargetReply(GROUP, "127.0.0.1", self.cluster.storage_port).encode()
        return encode_error(Status.EINVAL)


class FakeCluster:
    """A fake tracker and storage on 127.0.0.1, served by an event loop in a thread."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.files: dict[str, bytes] = {}
        self.queries: dict[int, int] = {}
        self.uploads = 0
        self.storage_port = 0
        self.tracker_port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers: list[asyncio.AbstractServer] = []

    def storage_reply(self, request: object) -> bytes:
        if isinstance(request, RequestWithData):
            if self.fail == "enospc":
                return encode_error(Status.ENOSPC)
            self.uploads += 1
            name = f"M00/00/00/{self.uploads:027d}.bin"
            self.files[name] = request.data
            return FileIdReply(GROUP, name).encode()
        if isinstance(request, DownloadFileRequest):
            data = self.files.get(request.filename)
            if data is None:
                return encode_error(Status.ENOENT)
            if self.fail == "corrupt":
                data = bytes(len(data))
            if self.fail == "short":
                data = data[:-1]
            return encode_reply(data)
        if isinstance(request, DeleteFileRequest):
            if self.files.pop(request.filename, None) is None:
                return encode_error(Status.ENOENT)
            return EmptyReply().encode()
        return encode_error(Status.EINVAL)

    def start(self) -> FakeCluster:
        self.thread.start()
        self.storage_port = self._listen(lambda: FakeStorage(self))
        self.tracker_port = self._listen(lambda: FakeTracker(self))
        return self

    def _listen(self, factory: Any) -> int:
        server = asyncio.run_coroutine_threadsafe(self.loop.create_server(factory, "127.0.0.1", 0), self.loop).result(
            10
        )
        self.servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    @property
    def tracker(self) -> str:
        return f"127.0.0.1:{self.tracker_port}"

    def stop(self) -> None:
        async def close() -> None:
            for server in self.servers:
                server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def fake() -> Iterator[FakeCluster]:
    cluster = FakeCluster().start()
    yield cluster
    cluster.stop()


def run_load(tmp_path: Path, tracker: str, *args: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "load.json"
    code = main(["--tracker", tracker, "--warmup", "0", "--json", str(out), *args])
    return code, json.loads(out.read_text(encoding="utf-8"))


def lines_by_op(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["op"]: line for line in document["results"]}


def test_every_phase_with_a_query_per_file(tmp_path: Path, fake: FakeCluster) -> None:
    code, document = run_load(
        tmp_path, fake.tracker, "-n", "20", "-s", "1K", "--phases", "upload,download,delete", "--verify-every", "1"
    )
    assert code == 0
    lines = lines_by_op(document)
    expected = ["query-store", "upload", "upload+query", "query-fetch", "download", "download+query"]
    expected += ["query-update", "delete", "delete+query"]
    assert [line["op"] for line in document["results"]] == expected
    for line in lines.values():
        assert line["files"] == 20
        assert line["errors"] == 0
        assert line["files_per_s"] > 0
    for op in ("upload", "download", "delete", "query-store"):
        line = lines[op]
        assert 0 <= line["p50_ms"] <= line["p99_ms"] <= line["max_ms"]
    assert lines["upload"]["mb_per_s"] > 0 and lines["query-fetch"]["mb_per_s"] is None
    assert lines["upload"]["server_cpu_us"] is None  # not spawned: no server PIDs to read
    assert fake.queries == {
        Command.QUERY_STORE_WITHOUT_GROUP_ONE: 20,
        Command.QUERY_FETCH_ONE: 20,
        Command.QUERY_UPDATE: 20,
    }
    assert fake.files == {}  # all deleted
    assert document["errors"] == 0
    assert document["machine"]["nproc"] >= 1 and document["config"]["size"] == 1024


def test_one_query_then_the_storage_only(tmp_path: Path, fake: FakeCluster) -> None:
    code, document = run_load(tmp_path, fake.tracker, "-n", "12", "-s", "100", "--query", "once", "--group", GROUP)
    assert code == 0
    lines = lines_by_op(document)
    assert set(lines) == {"query-store", "upload", "query-fetch", "download"}
    assert lines["query-store"]["files"] == 1 and lines["query-fetch"]["files"] == 1
    assert lines["upload"]["files"] == lines["download"]["files"] == 12
    assert fake.queries == {Command.QUERY_STORE_WITH_GROUP_ONE: 1, Command.QUERY_FETCH_ONE: 1}
    sizes = {len(data) for data in fake.files.values()}
    assert sizes == {100} and len(fake.files) == 12
    # Each file carries its own number, so no two uploads are the same bytes.
    assert len(set(fake.files.values())) == 12


def test_warmup_files_are_not_counted(tmp_path: Path, fake: FakeCluster) -> None:
    out = tmp_path / "load.json"
    assert main(["--tracker", fake.tracker, "-n", "5", "--warmup", "7", "--json", str(out)]) == 0
    lines = lines_by_op(json.loads(out.read_text(encoding="utf-8")))
    assert lines["upload"]["files"] == 5 and lines["download"]["files"] == 5
    assert fake.uploads == 12


def test_several_connections_are_separate_processes(tmp_path: Path, fake: FakeCluster) -> None:
    code, document = run_load(tmp_path, fake.tracker, "-n", "11", "-s", "3", "-c", "3", "--query", "once")
    assert code == 0
    lines = lines_by_op(document)
    assert lines["upload"]["files"] == lines["download"]["files"] == 11
    assert lines["query-store"]["files"] == 3  # one per connection
    assert len(fake.files) == 11


def test_medians_over_repeated_runs(tmp_path: Path, fake: FakeCluster) -> None:
    code, document = run_load(tmp_path, fake.tracker, "-n", "4", "--repeat", "3")
    assert code == 0
    assert len(document["runs"]) == 3
    assert [line["op"] for line in document["results"]] == [line["op"] for line in document["runs"][0]]
    assert lines_by_op(document)["upload"]["files"] == 4
    assert fake.uploads == 12


@pytest.mark.parametrize("fail", ["enospc", "corrupt", "short"])
def test_errors_are_counted_and_fail_the_run(tmp_path: Path, fail: str, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster(fail).start()
    try:
        code, document = run_load(tmp_path, cluster.tracker, "-n", "6", "-s", "64", "--verify-every", "1")
    finally:
        cluster.stop()
    assert code == 1
    lines = lines_by_op(document)
    if fail == "enospc":
        assert lines["upload"]["errors"] == 6 and lines["upload"]["files"] == 0
        assert lines["download"]["files"] == 0
        assert "ENOSPC" in capsys.readouterr().err
    else:
        assert lines["upload"]["errors"] == 0
        assert lines["download"]["errors"] == 6
    assert document["errors"] == sum(line["errors"] for line in document["results"] if "+" not in line["op"])


def test_an_unreachable_tracker_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, document = run_load(tmp_path, f"127.0.0.1:{port}", "-n", "3", "--timeout", "2")
    assert code == 1
    lines = lines_by_op(document)
    assert lines["query-store"]["errors"] == 3 and lines["upload"]["files"] == 0


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tracker", "127.0.0.1:1", "-n", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["--tracker", "nowhere"])
    with pytest.raises(SystemExit):
        main(["-n", "1"])  # neither --tracker nor --spawn
    capsys.readouterr()


def test_sizes_phases_and_percentiles() -> None:
    assert parse_size("4096") == 4096
    assert parse_size("4K") == 4096
    assert parse_size("64KiB") == 65536
    assert parse_size("1m") == 1 << 20
    assert parse_phases("upload,download,delete") == ("upload", "download", "delete")
    for bad in ("download", "upload,upload", "upload,nothing"):
        with pytest.raises(Exception, match="phase"):
            parse_phases(bad)
    with pytest.raises(Exception, match="size"):
        parse_size("0")
    ordered = list(range(1, 101))
    assert percentile(ordered, 0.5) == 50
    assert percentile(ordered, 0.99) == 99
    assert percentile([7], 0.99) == 7


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_spawned_cluster(tmp_path: Path, sync_mode: str) -> None:
    out = tmp_path / "load.json"
    args = ["--spawn", "--sync-mode", sync_mode, "--spawn-dir", str(tmp_path), "-n", "1000", "-s", "4K"]
    code = main([*args, "--warmup", "5", "--phases", "upload,download,delete", "--json", str(out)])
    assert code != 2, "the local cluster did not start"
    document = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0, document["error_messages"]
    lines = lines_by_op(document)
    assert lines["upload"]["files"] == lines["download"]["files"] == lines["delete"]["files"] == 1000
    # The spawned servers' CPU time is reported (its value is not asserted: clock-tick resolution).
    assert lines["upload"]["server_cpu_us"] is not None and lines["query-fetch"]["server_cpu_us"] is not None
    assert lines["upload"]["client_cpu_us"] is not None
    assert list(tmp_path.glob("trunkstore-load-*")) == []  # the throwaway cluster is gone


def test_real_servers_through_the_tracker_option(tmp_path: Path, cluster: Cluster) -> None:
    code, document = run_load(
        tmp_path, cluster.tracker.address, "-n", "25", "-s", "1000", "-c", "2", "--phases", "upload,download,delete"
    )
    assert code == 0, document["error_messages"]
    lines = lines_by_op(document)
    assert lines["query-store"]["files"] == lines["upload"]["files"] == 25
    assert lines["download"]["files"] == lines["delete"]["files"] == 25
    # Everything was deleted: a second download of a deleted file would be ENOENT.
    assert cluster.storage.alive() and cluster.tracker.alive()


def test_a_spawned_cluster_that_cannot_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--spawn", "--spawn-dir", str(tmp_path), "--storage-conf", "store_path_count=-3", "-n", "1"])
    assert code == 2
    assert "could not start the local cluster" in capsys.readouterr().err
    assert list(tmp_path.glob("trunkstore-load-*")) == []


def test_a_worker_that_died_counts_its_files_as_errors() -> None:
    config = LoadConfig(("127.0.0.1", 1), count=10, size=16, connections=3)
    lines = summarize(config, [_failed_worker(config, 0, RuntimeError("gone"))])
    upload = next(line for line in lines if line.op == "upload")
    assert upload.errors == config.share(0) == 4 and upload.files == 0
    # Medians over runs that did not all produce the same lines keep every line.
    medians = median_lines([lines, lines[:1]])
    assert [line.op for line in medians] == [line.op for line in lines]
    assert medians[0].errors == 2 * lines[0].errors
