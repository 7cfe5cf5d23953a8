"""cluster.client end to end: real tracker and storage processes on 127.0.0.1, both clients."""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cluster, storage_is_offered
from procs import ServerProcess, start_storage, start_tracker, wait_for

from cluster.client import (
    AlreadyExists,
    AsyncClient,
    Client,
    ClientConfig,
    InvalidRequest,
    NotFound,
    StorageAddress,
)
from cluster.protocol import StatLayout, StorageStatus


class LoopFacade:
    """An AsyncClient whose coroutine methods run to completion on a loop of its own when called."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        return lambda *args, **kwargs: self.loop.run_until_complete(attr(*args, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One tracker and one active storage for the tests that only add files."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    with start_tracker(tmp_path) as tracker, start_storage(tmp_path, [tracker]) as storage:
        wait_for(lambda: storage_is_offered(tracker, storage), message="the storage to become active")
        yield Cluster(tracker, storage)


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(trackers: list[str], **options: Any) -> Any:
        client: Any = (
            Client(trackers, **options) if request.param == "sync" else LoopFacade(AsyncClient(trackers, **options))
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(shared_cluster: Cluster, connect: Callable[..., Any]) -> Any:
    return connect([shared_cluster.tracker.address], network_timeout=20.0)


def test_uploads_and_downloads(client: Any, shared_cluster: Cluster, tmp_path: Path) -> None:
    small = client.upload(b"hello trunkstore", "txt", meta={"lang": "en"})
    assert small.startswith("group1/M00/") and small.endswith(".txt")
    assert client.download(small) == b"hello trunkstore"
    assert client.download(small, 6) == b"trunkstore"
    assert client.download(small, 0, 5) == b"hello"
    assert client.get_meta(small) == {"lang": "en"}

    big = os.urandom(3 * 1024 * 1024 + 5)
    source = tmp_path / "big.bin"
    source.write_bytes(big)
    seen: list[tuple[int, int]] = []
    from_path = client.upload(source, progress=lambda done, total: seen.append((done, total)))
    assert from_path.endswith(".bin") and seen[-1] == (len(big), len(big))
    with source.open("rb") as handle:
        from_file = client.upload(handle, "dat")
    dest = tmp_path / "copy.bin"
    assert client.download_to(from_path, dest) == len(big)
    assert dest.read_bytes() == big
    sink = io.BytesIO()
    assert client.download_to(from_file, sink, 1000, 100_000) == 100_000
    assert sink.getvalue() == big[1000:101_000]
    assert client.download(from_file) == big

    info = client.file_info(from_path)
    assert (info.size, info.crc32, info.source_ip, info.kind) == (len(big), zlib.crc32(big), "127.0.0.1", "normal")
    small_info = client.file_info(small)
    assert small_info.size == 16 and small_info.kind in ("trunk", "normal")


def test_metadata_delete_and_queries(client: Any, shared_cluster: Cluster) -> None:
    file_id = client.upload(b"x" * 100, "jpg")
    client.set_meta(file_id, {"width": "100", "height": "50"})
    client.set_meta(file_id, {"width": "200", "color": "red"}, merge=True)
    assert client.get_meta(file_id) == {"color": "red", "height": "50", "width": "200"}
    client.set_meta(file_id, {"only": "this"})
    assert client.get_meta(file_id) == {"only": "this"}

    storage = shared_cluster.storage
    target = client.query_store()
    assert (target.group, target.host, target.port) == ("group1", "127.0.0.1", storage.port)
    assert client.query_fetch(file_id) == StorageAddress("group1", "127.0.0.1", storage.port)
    assert client.query_update(file_id) == StorageAddress("group1", "127.0.0.1", storage.port)
    (group,) = client.list_groups()
    assert (group.group_name, group.storage_count, group.storage_port) == ("group1", 1, storage.port)
    (stat,) = client.list_storages("group1")
    assert stat.storage_port == storage.port and stat.status == StorageStatus.ACTIVE
    assert [s.ip for s in client.list_storages("group1", "127.0.0.1")] == ["127.0.0.1"]

    client.delete(file_id)
    with pytest.raises(NotFound):
        client.download(file_id)
    with pytest.raises(NotFound):
        client.delete(file_id)


def test_appender_and_slave_files(client: Any) -> None:
    appender = client.upload_appender(b"abc", "log")
    assert client.file_info(appender).kind == "appender"
    client.append(appender, b"def")
    client.append(appender, io.BytesIO(b"g" * 200_000))
    assert client.download(appender, 0, 7) == b"abcdefg"
    client.modify(appender, 1, b"XY")
    client.truncate(appender, 5)
    assert client.download(appender) == b"aXYde"
    regenerated = client.regenerate_appender_name(appender)
    assert regenerated != appender and client.download(regenerated) == b"aXYde"
    assert client.file_info(regenerated).kind in ("normal", "trunk")

    master = client.upload(b"m" * 70_000, "jpg")
    slave = client.upload_slave(master, "_small", b"thumb", "jpg", meta={"size": "small"})
    assert slave.startswith(master.rsplit(".", 1)[0] + "_small") and slave.endswith(".jpg")
    assert client.download(slave) == b"thumb"
    assert client.get_meta(slave) == {"size": "small"}
    with pytest.raises(AlreadyExists):
        client.upload_slave(master, "_small", b"again", "jpg")


def test_errors_from_real_servers(client: Any) -> None:
    normal = client.upload(b"n" * 70_000, "bin")
    with pytest.raises((InvalidRequest, NotFound)):  # appending to a file that is no appender
        client.append(normal, b"more")
    with pytest.raises(NotFound):
        client.upload(b"x", group="nosuchgroup")
    with pytest.raises(NotFound):
        client.list_storages("nosuchgroup")
    missing = normal[: -len("AAAA.bin")] + "AAAA.bin"
    with pytest.raises((NotFound, InvalidRequest)):
        client.download(missing)
    assert client.download(normal, 69_999) == b"n"  # connections survived the errors


def test_failover_between_real_trackers_and_v6_10_listing(tmp_path: Path, connect: Callable[..., Any]) -> None:
    first = start_tracker(tmp_path, stat_layout="6.10")
    with (
        first,
        start_tracker(tmp_path, stat_layout="6.10") as second,
        start_storage(tmp_path, [first, second]) as storage,
    ):
        for tracker in (first, second):
            wait_for(lambda t=tracker: storage_is_offered(t, storage), message="the storage to join both trackers")
        client = connect([first.address, second.address], config=ClientConfig(stat_layout=StatLayout.V6_10))
        file_id = client.upload(b"before the first tracker died")
        first.kill()
        assert client.download(file_id) == b"before the first tracker died"
        assert client.upload(b"after") != file_id
        (group,) = client.list_groups()
        assert group.group_name == "group1" and group.storage_port == storage.port


def answers_fetch(client: Any, file_id: str) -> bool:
    try:
        client.query_fetch(file_id)
    except NotFound:
        return False
    return True


def test_storage_restart_behind_pooled_connections(tmp_path: Path, connect: Callable[..., Any]) -> None:
    with start_tracker(tmp_path) as tracker:
        storage: ServerProcess = start_storage(tmp_path, [tracker])
        try:
            wait_for(lambda: storage_is_offered(tracker, storage), message="the storage to become active")
            client = connect([tracker.address])
            file_id = client.upload(b"survives a restart")
            port, base = storage.port, storage.base_path
            storage.stop()
            mark = len(storage.log_text())  # the restarted process appends to the same log
            storage = start_storage(tmp_path, [tracker], base_path=base, port=port)
            # Until the new process has joined, the tracker's answers describe the old one.
            wait_for(lambda: "joined as" in storage.log_text()[mark:], message="the restarted storage to join")
            wait_for(lambda: storage_is_offered(tracker, storage), message="the restarted storage")
            wait_for(lambda: answers_fetch(client, file_id), message="the tracker to route reads again")
            # The pooled connection to the old process is dead: detected, replaced, not an error.
            assert client.download(file_id) == b"survives a restart"
            assert client.upload(b"new") != file_id
        finally:
            storage.stop()
