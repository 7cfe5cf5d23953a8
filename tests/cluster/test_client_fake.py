"""cluster.client against small in-process fake servers: every operation, error mapping, failover,
timeouts, pooling, streaming, and replies that break the protocol; for Client and AsyncClient.

The fakes are asyncio servers on 127.0.0.1 port 0 built from the codec, running in a thread of
their own; the AsyncClient runs on that same loop, behind an adapter that makes its coroutines
callable like the blocking client's methods, so that each test body serves both flavours.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import io
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cluster.client import (
    AccessDenied,
    AlreadyExists,
    AsyncClient,
    Busy,
    Client,
    ClientConfig,
    ClusterError,
    ConnectionLost,
    FileInfo,
    InvalidRequest,
    NoSpace,
    NotFound,
    ProtocolViolation,
    RequestTimeout,
    ServerError,
    Unavailable,
)
from cluster.errors import ConfigError
from cluster.protocol import (
    AppendFileRequest,
    Command,
    DeleteFileRequest,
    DeleteStorageRequest,
    DownloadFileRequest,
    FetchTargetReply,
    FileIdReply,
    FileInfoReply,
    GetMetadataRequest,
    GroupStat,
    ListGroupsReply,
    ListStorageRequest,
    ListStoragesReply,
    MetadataFlag,
    MetadataReply,
    ModifyFileRequest,
    QueryFileInfoRequest,
    QueryStoreOneRequest,
    RegenerateAppenderFilenameRequest,
    RequestWithData,
    SetMetadataRequest,
    StatLayout,
    StorageStat,
    StorageStatus,
    StoreTargetReply,
    TruncateFileRequest,
    UploadAppenderFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
    encode_error,
    encode_reply,
    parse_request,
)
from trunkstore.fileid import encode_name, format_file_id, make_size_field, make_tail, parse_file_id, slave_name

CLOSE = object()  # the fake closes the connection instead of replying
HANG = object()  # the fake never replies (and keeps the connection open)

Handler = Callable[[int, bytes, int], Any]


# ---- the fakes -----------------------------------------------------------------------------------
class LoopThread:
    """An event loop running in a thread: the fakes, and the AsyncClient under test, run on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class FakeServer:
    """Reads whole frames and answers each with ``handler(cmd, body, status)``: reply bytes, CLOSE,
    HANG, or a list of byte strings written one by one, perhaps ending in CLOSE."""

    def __init__(self, loops: LoopThread, handler: Handler) -> None:
        self.loops = loops
        self.handler = handler
        self.requests: list[tuple[int, bytes]] = []
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server = loops.call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def commands(self) -> list[int]:
        return [cmd for cmd, _ in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        try:
            while True:
                pkg_len, cmd, status = struct.unpack("!qBB", await reader.readexactly(10))
                body = await reader.readexactly(pkg_len)
                self.requests.append((cmd, body))
                action = self.handler(cmd, body, status)
                if action is HANG:
                    await asyncio.Event().wait()
                pieces = action if isinstance(action, list) else [action]
                for piece in pieces:
                    if piece is CLOSE:
                        return
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close_idle_connections(self) -> None:
        async def close_all() -> None:
            for writer in self._writers:
                writer.close()
            for writer in self._writers:  # until the sockets are closed: the FINs have gone out
                await writer.wait_closed()

        self.loops.call(close_all())

    def stop(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()

        self.loops.call(stop())


class FakeCluster:
    """A tracker and a storage of one group, keeping files in memory, built from the codec."""

    def __init__(self, loops: LoopThread, layout: StatLayout = StatLayout.V6_15) -> None:
        self.layout = layout
        self.files: dict[str, bytearray] = {}
        self.meta: dict[str, dict[str, str]] = {}
        self.created: dict[str, int] = {}
        #: Commands answered with this status instead (error injection).
        self.fail: dict[int, int] = {}
        self.storage = FakeServer(loops, self.storage_reply)
        self.tracker = FakeServer(loops, self.tracker_reply)

    def stop(self) -> None:
        self.tracker.stop()
        self.storage.stop()

    # ---- tracker
    def tracker_reply(self, cmd: int, body: bytes, status: int) -> Any:
        if cmd in self.fail:
            return encode_error(self.fail[cmd])
        request = parse_request(cmd, body, status)
        if isinstance(request, QueryStoreOneRequest):
            if request.group not in (None, "group1"):
                return encode_error(errno.ENOENT)
            return StoreTargetReply("group1", "127.0.0.1", self.storage.port, 0).encode()
        if cmd in (Command.QUERY_FETCH_ONE, Command.QUERY_UPDATE):
            return FetchTargetReply("group1", "127.0.0.1", self.storage.port).encode()
        if cmd == Command.SERVER_LIST_ALL_GROUPS:
            group = GroupStat("group1", total_mb=100, free_mb=60, storage_count=1, storage_port=self.storage.port)
            return ListGroupsReply((group,), self.layout).encode()
        if isinstance(request, ListStorageRequest):
            if request.group != "group1":
                return encode_error(errno.ENOENT)
            stat = StorageStat(StorageStatus.ACTIVE, "127.0.0.1", "127.0.0.1", storage_port=self.storage.port)
            return ListStoragesReply((stat,), self.layout).encode()
        return encode_error(errno.EINVAL)

    # ---- storage
    def _new_id(self, data: bytes, ext: str, appender: bool = False) -> str:
        ts = int(time.time())
        field = make_size_field(len(data), appender=appender)
        name = encode_name(0x7F000001, ts, field, zlib.crc32(data), None, make_tail(ext))
        file_id = format_file_id("group1", 0, 0, 0, name)
        self.files[file_id] = bytearray(data)
        self.created[file_id] = ts
        return file_id

    def storage_reply(self, cmd: int, body: bytes, status: int) -> Any:
        if cmd in self.fail:
            return encode_error(self.fail[cmd])
        request = parse_request(cmd, body, status)
        try:
            return self._storage(request)
        except KeyError:
            return encode_error(errno.ENOENT)

    def _storage(self, request: Any) -> bytes:
        if isinstance(request, RequestWithData):
            head, data = request.request, request.data
            if isinstance(head, (UploadFileRequest, UploadAppenderFileRequest)):
                file_id = self._new_id(data, head.ext, isinstance(head, UploadAppenderFileRequest))
                return FileIdReply(*file_id.split("/", 1)).encode()
            if isinstance(head, UploadSlaveFileRequest):
                master = parse_file_id("group1/" + head.master_filename)
                if str(master) not in self.files:
                    raise KeyError(master)
                file_id = format_file_id("group1", 0, 0, 0, slave_name(master, head.prefix, head.ext))
                if file_id in self.files:
                    return encode_error(errno.EEXIST)
                self.files[file_id] = bytearray(data)
                self.created[file_id] = 1
                return FileIdReply(*file_id.split("/", 1)).encode()
            assert isinstance(head, (AppendFileRequest, ModifyFileRequest)), head
            file_id = "group1/" + head.filename
            content = self.files[file_id]
            if isinstance(head, AppendFileRequest):
                content += data
            elif isinstance(head, ModifyFileRequest):
                content[head.offset : head.offset + len(data)] = data
            return encode_reply()
        if isinstance(request, DownloadFileRequest):
            content = self.files[f"{request.group}/{request.filename}"]
            if request.offset >= len(content):
                return encode_error(errno.EINVAL)
            end = len(content) if not request.length else request.offset + request.length
            return encode_reply(bytes(content[request.offset : end]))
        file_id = f"group1/{request.filename}"
        if isinstance(request, DeleteFileRequest):
            del self.files[file_id]
            self.meta.pop(file_id, None)
            return encode_reply()
        if isinstance(request, SetMetadataRequest):
            if file_id not in self.files:
                raise KeyError(file_id)
            old = self.meta.get(file_id, {}) if request.flag is MetadataFlag.MERGE else {}
            self.meta[file_id] = {**old, **dict(request.meta)}
            return encode_reply()
        if isinstance(request, GetMetadataRequest):
            return MetadataReply(tuple(self.meta[file_id].items())).encode()
        if isinstance(request, QueryFileInfoRequest):
            content = self.files[file_id]
            return FileInfoReply(len(content), self.created[file_id], zlib.crc32(content), "127.0.0.1").encode()
        if isinstance(request, TruncateFileRequest):
            del self.files[file_id][request.new_size :]
            return encode_reply()
        if isinstance(request, RegenerateAppenderFilenameRequest):
            content = self.files.pop(file_id)
            new_id = self._new_id(bytes(content), parse_file_id(file_id).ext)
            return FileIdReply(*new_id.split("/", 1)).encode()
        return encode_error(errno.EINVAL)


class SyncFacade:
    """The AsyncClient's coroutine methods, called like the blocking client's (on the fakes' loop)."""

    def __init__(self, client: AsyncClient, loops: LoopThread) -> None:
        self.client = client
        self.loops = loops

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.loops.call(attr(*args, **kwargs))

        return call


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def loops() -> Iterator[LoopThread]:
    loop_thread = LoopThread()
    yield loop_thread
    loop_thread.stop()


@pytest.fixture
def fake(loops: LoopThread) -> Iterator[FakeCluster]:
    cluster = FakeCluster(loops)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest, loops: LoopThread) -> Iterator[Callable[..., Any]]:
    """``connect(trackers, **options)``: a Client, or an AsyncClient behind a SyncFacade."""
    made: list[Any] = []

    def make(trackers: Any, **options: Any) -> Any:
        if request.param == "sync":
            client: Any = Client(trackers, **options)
        else:
            client = SyncFacade(AsyncClient(trackers, **options), loops)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(fake: FakeCluster, connect: Callable[..., Any]) -> Any:
    return connect([fake.tracker.address], network_timeout=5.0)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


class CountingReader(io.RawIOBase):
    """A binary stream that records the largest read asked of it, to prove streaming."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.max_read = 0
        self.total_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = len(self.data) - self.pos if size is None or size < 0 else size
        self.max_read = max(self.max_read, size)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        self.total_read += len(chunk)
        return chunk


# ---- every operation ------------------------------------------------------------------------------
def test_upload_download_and_ranges(client: Any, fake: FakeCluster) -> None:
    file_id = client.upload(b"hello world", "txt")
    assert file_id.startswith("group1/M00/") and file_id.endswith(".txt")
    assert client.download(file_id) == b"hello world"
    assert client.download(file_id, 6) == b"world"
    assert client.download(file_id, 0, 5) == b"hello"
    assert client.download(file_id, 6, 3) == b"wor"
    with pytest.raises(InvalidRequest):  # offset at the end: EINVAL, as FastDFS answers
        client.download(file_id, 11)
    # The store query went to the tracker (101), the download asked where to read (102).
    assert Command.QUERY_STORE_WITHOUT_GROUP_ONE in fake.tracker.commands()
    assert Command.QUERY_FETCH_ONE in fake.tracker.commands()


def test_upload_sources(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpeg"
    path.write_bytes(b"\xff\xd8 jpeg bytes")
    from_path = client.upload(path)
    assert from_path.endswith(".jpeg")  # a path's suffix is the default extension
    assert client.download(from_path) == path.read_bytes()
    assert client.upload(str(path), "bin").endswith(".bin")
    long_suffix = tmp_path / "data.toolongext"
    long_suffix.write_bytes(b"x")
    assert "." not in client.upload(long_suffix).rsplit("/", 1)[1][-7:]
    with path.open("rb") as handle:
        handle.seek(3)
        assert client.download(client.upload(handle)) == b"jpeg bytes"  # from the current position
    assert client.download(client.upload(io.BytesIO(b"in memory"))) == b"in memory"
    assert client.download(client.upload(bytearray(b"mutable"))) == b"mutable"
    assert client.download(client.upload(memoryview(b"viewed"))) == b"viewed"
    empty = client.upload(b"")
    assert client.file_info(empty).size == 0


def test_upload_to_group_and_unknown_group(client: Any, fake: FakeCluster) -> None:
    assert client.upload(b"x", group="group1").startswith("group1/")
    assert fake.tracker.requests[-1][0] == Command.QUERY_STORE_WITH_GROUP_ONE
    with pytest.raises(NotFound):
        client.upload(b"x", group="nogroup")
    target = client.query_store()
    assert (target.group, target.host, target.port, target.store_path_index) == (
        "group1", "127.0.0.1", fake.storage.port, 0,
    )  # fmt: skip


def test_download_to_file_object_and_path(client: Any, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    file_id = client.upload(data, "bin")
    sink = io.BytesIO()
    assert client.download_to(file_id, sink) == len(data)
    assert sink.getvalue() == data
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old content")
    assert (
        client.download_to(file_id, dest, 1000, 5000, progress=lambda done, total: seen.append((done, total))) == 5000
    )
    assert dest.read_bytes() == data[1000:6000]
    assert seen[-1] == (5000, 5000)
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


def test_metadata(client: Any) -> None:
    file_id = client.upload(b"x", meta={"width": "100", "height": "50"})
    assert client.get_meta(file_id) == {"height": "50", "width": "100"}
    client.set_meta(file_id, {"width": "200", "color": "red"}, merge=True)
    assert client.get_meta(file_id) == {"color": "red", "height": "50", "width": "200"}
    client.set_meta(file_id, {"only": "this"})
    assert client.get_meta(file_id) == {"only": "this"}
    with pytest.raises(NotFound):
        client.get_meta(client.upload(b"no meta"))
    with pytest.raises(InvalidRequest):
        client.set_meta(file_id, {"bad\x01name": "v"})


def test_file_info(client: Any) -> None:
    file_id = client.upload(b"some content", "txt")
    info = client.file_info(file_id)
    assert isinstance(info, FileInfo)
    assert (info.file_id, info.size, info.crc32, info.source_ip, info.kind) == (
        file_id, 12, zlib.crc32(b"some content"), "127.0.0.1", "normal",
    )  # fmt: skip
    assert info.create_time > 0
    assert client.file_info(client.upload_appender(b"a")).kind == "appender"
    with pytest.raises(InvalidRequest):
        client.file_info("group1/M00/00/00/not-a-file-id")


def test_appender_operations(client: Any, fake: FakeCluster) -> None:
    file_id = client.upload_appender(b"abc", "log")
    client.append(file_id, b"def")
    client.append(file_id, io.BytesIO(b"ghi"))
    assert client.download(file_id) == b"abcdefghi"
    client.modify(file_id, 1, b"XY")
    assert client.download(file_id) == b"aXYdefghi"
    client.truncate(file_id, 4)
    assert client.download(file_id) == b"aXYd"
    client.truncate(file_id)
    assert client.file_info(file_id).size == 0
    client.append(file_id, b"final")
    new_id = client.regenerate_appender_name(file_id)
    assert new_id != file_id and new_id.endswith(".log")
    assert client.download(new_id) == b"final"
    # Appender writes go through QUERY_UPDATE (103).
    assert fake.tracker.commands().count(Command.QUERY_UPDATE) >= 6


def test_slave_upload(client: Any) -> None:
    master = client.upload(b"master", "jpg")
    slave = client.upload_slave(master, "_150x150", b"thumb", "jpg", meta={"kind": "thumb"})
    assert slave.startswith(master.rsplit(".", 1)[0] + "_150x150") and slave.endswith(".jpg")
    assert client.download(slave) == b"thumb"
    assert client.get_meta(slave) == {"kind": "thumb"}
    assert client.file_info(slave).kind == "slave"
    with pytest.raises(AlreadyExists):
        client.upload_slave(master, "_150x150", b"again", "jpg")
    with pytest.raises(InvalidRequest):
        client.upload_slave(master, "", b"no prefix", "jpg")


def test_delete(client: Any) -> None:
    file_id = client.upload(b"doomed")
    client.delete(file_id)
    with pytest.raises(NotFound) as caught:
        client.download(file_id)
    assert caught.value.status == errno.ENOENT and file_id in str(caught.value)
    with pytest.raises(NotFound):
        client.delete(file_id)


@pytest.mark.parametrize("layout", [StatLayout.V6_15, StatLayout.V6_10], ids=["6.15", "6.10"])
def test_listings(loops: LoopThread, connect: Callable[..., Any], layout: StatLayout) -> None:
    fake = FakeCluster(loops, layout)
    try:
        client = connect([fake.tracker.address], config=ClientConfig(stat_layout=layout))
        (group,) = client.list_groups()
        assert (group.group_name, group.total_mb, group.free_mb, group.storage_port) == (
            "group1", 100, 60, fake.storage.port,
        )  # fmt: skip
        (storage,) = client.list_storages("group1")
        assert (storage.status, storage.ip, storage.storage_port) == (
            StorageStatus.ACTIVE,
            "127.0.0.1",
            fake.storage.port,
        )
        with pytest.raises(NotFound):
            client.list_storages("other")
    finally:
        fake.stop()


def deleting_tracker(loops: LoopThread, status: int) -> FakeServer:
    """A tracker answering SERVER_DELETE_STORAGE with ``status`` (anything else: EINVAL)."""

    def reply(cmd: int, body: bytes, _status: int) -> bytes:
        if cmd != Command.SERVER_DELETE_STORAGE:
            return encode_error(errno.EINVAL)
        return encode_reply() if status == 0 else encode_error(status)

    return FakeServer(loops, reply)


def test_delete_storage_is_sent_to_every_tracker(loops: LoopThread, connect: Callable[..., Any]) -> None:
    # Each tracker keeps its own membership: one deletes, one had deleted it already, one never knew it.
    trackers = [deleting_tracker(loops, status) for status in (0, errno.EALREADY, errno.ENOENT)]
    try:
        client = connect([tracker.address for tracker in trackers])
        client.delete_storage("group1", "192.168.0.2")
        for tracker in trackers:
            assert [(cmd, parse_request(cmd, body, 0)) for cmd, body in tracker.requests] == [
                (Command.SERVER_DELETE_STORAGE, DeleteStorageRequest("group1", "192.168.0.2"))
            ]
        # Unknown to every tracker: the tracker's ENOENT.
        with pytest.raises(NotFound):
            connect([trackers[2].address]).delete_storage("group1", "192.168.0.2")
        # Deleted already everywhere: nothing to do.
        connect([trackers[1].address]).delete_storage("group1", "192.168.0.2")
    finally:
        for tracker in trackers:
            tracker.stop()


def test_delete_storage_names_the_trackers_it_could_not_reach(loops: LoopThread, connect: Callable[..., Any]) -> None:
    deleting, busy = deleting_tracker(loops, 0), deleting_tracker(loops, errno.EBUSY)
    down = f"127.0.0.1:{closed_port()}"
    try:
        client = connect([deleting.address, down], connect_timeout=2.0)
        with pytest.raises(Unavailable, match=rf"deleted on 1 tracker\(s\); not reached: {down}"):
            client.delete_storage("group1", "100002")
        assert len(deleting.requests) == 1
        # A tracker's refusal (the storage still serving) is the error, not an unreachable tracker.
        with pytest.raises(Busy):
            connect([busy.address, deleting.address]).delete_storage("group1", "100002")
        assert len(deleting.requests) == 1
    finally:
        deleting.stop()
        busy.stop()


def test_tracker_queries(client: Any, fake: FakeCluster) -> None:
    file_id = client.upload(b"x")
    fetch, update = client.query_fetch(file_id), client.query_update(file_id)
    assert (fetch.group, fetch.host, fetch.port) == ("group1", "127.0.0.1", fake.storage.port)
    assert update.address.port == fake.storage.port
    with pytest.raises(InvalidRequest):
        client.query_fetch("no-slash")


# ---- arguments checked before anything is sent ----------------------------------------------------
@pytest.mark.parametrize("ext", ["toolong", "b@d", "a b", "é"], ids=["long", "at", "space", "accent"])
def test_bad_extension_refused_locally(client: Any, fake: FakeCluster, ext: str) -> None:
    with pytest.raises(InvalidRequest):
        client.upload(b"x", ext)
    assert fake.tracker.requests == []


def test_bad_arguments(client: Any, fake: FakeCluster, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        client.download("group1")
    with pytest.raises(InvalidRequest):
        client.upload(b"x", group="g" * 17)
    with pytest.raises(NotFound):
        client.upload(tmp_path / "missing.txt")
    with pytest.raises(InvalidRequest):
        client.upload(12345)
    with pytest.raises(InvalidRequest):
        client.upload(b"abc", size=2)
    assert fake.tracker.requests == []


def test_unsized_stream_needs_size(client: Any) -> None:
    with pytest.raises(InvalidRequest, match="size"):
        client.upload(CountingReader(b"abc"))
    assert client.download(client.upload(CountingReader(b"abc"), size=3)) == b"abc"
    with pytest.raises(InvalidRequest, match="ended"):  # fewer bytes than announced
        client.upload(CountingReader(b"abc" * 100_000), size=400_000)


# ---- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (errno.ENOENT, NotFound),
        (errno.EINVAL, InvalidRequest),
        (errno.EEXIST, AlreadyExists),
        (errno.EACCES, AccessDenied),
        (errno.ENOSPC, NoSpace),
        (errno.EBUSY, Busy),
        (errno.EIO, ServerError),
        (errno.ENOSYS, ServerError),
    ],
    ids=["ENOENT", "EINVAL", "EEXIST", "EACCES", "ENOSPC", "EBUSY", "EIO", "ENOSYS"],
)
def test_status_mapping(client: Any, fake: FakeCluster, status: int, error: type[ClusterError]) -> None:
    file_id = client.upload(b"x")
    fake.fail[Command.DOWNLOAD_FILE] = status
    with pytest.raises(error) as caught:
        client.download(file_id)
    assert caught.value.status == status
    fake.fail[Command.QUERY_STORE_WITHOUT_GROUP_ONE] = status
    with pytest.raises(error):
        client.upload(b"y")
    del fake.fail[Command.DOWNLOAD_FILE], fake.fail[Command.QUERY_STORE_WITHOUT_GROUP_ONE]
    assert client.download(file_id) == b"x"  # the connections are still usable


def test_storage_closes_after_einval_so_its_connection_is_dropped(client: Any, fake: FakeCluster) -> None:
    file_id = client.upload(b"x")
    accepted = fake.storage.accepted
    with pytest.raises(InvalidRequest):
        client.download(file_id, 5)
    assert client.download(file_id) == b"x"
    assert fake.storage.accepted == accepted + 1


# ---- failover -------------------------------------------------------------------------------------
def test_failover_across_three_trackers(loops: LoopThread, fake: FakeCluster, connect: Callable[..., Any]) -> None:
    silent = FakeServer(loops, lambda cmd, body, status: HANG)
    try:
        trackers = [f"127.0.0.1:{closed_port()}", silent.address, fake.tracker.address]
        # The timeout also bounds the answers of the live fakes: short, but not tight on a busy machine.
        client = connect(trackers, connect_timeout=2.0, network_timeout=1.5)
        file_id = client.upload(b"failed over")
        wait_until(lambda: len(silent.requests) == 1)  # the second tracker was asked, and timed out
        # The third tracker answered: it is asked first from now on.
        assert client.download(file_id) == b"failed over"
        assert len(silent.requests) == 1
    finally:
        silent.stop()


def test_all_trackers_down(connect: Callable[..., Any]) -> None:
    client = connect([f"127.0.0.1:{closed_port()}", ("127.0.0.1", closed_port())], connect_timeout=2.0)
    with pytest.raises(Unavailable, match="no tracker answered") as caught:
        client.upload(b"x")
    assert isinstance(caught.value, ConnectionError)


def test_tracker_dropping_connections_fails_over(
    loops: LoopThread, fake: FakeCluster, connect: Callable[..., Any]
) -> None:
    dropper = FakeServer(loops, lambda cmd, body, status: CLOSE)
    try:
        client = connect([dropper.address, fake.tracker.address])
        assert client.query_store().group == "group1"
    finally:
        dropper.stop()


# ---- timeouts -------------------------------------------------------------------------------------
def test_storage_read_timeout(client: Any, fake: FakeCluster, connect: Callable[..., Any]) -> None:
    file_id = client.upload(b"x")
    fake.storage.handler = lambda cmd, body, status: HANG
    quick = connect([fake.tracker.address], network_timeout=1.0)  # the tracker's answer must fit in it
    with pytest.raises(RequestTimeout) as caught:
        quick.download(file_id)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.status == errno.ETIMEDOUT


def test_no_tracker_answers_in_time(loops: LoopThread, connect: Callable[..., Any]) -> None:
    silent = FakeServer(loops, lambda cmd, body, status: HANG)
    try:
        client = connect([silent.address], network_timeout=0.3)
        with pytest.raises(Unavailable, match="no progress"):
            client.list_groups()
    finally:
        silent.stop()


# ---- connection pool ------------------------------------------------------------------------------
def test_connections_are_reused(client: Any, fake: FakeCluster) -> None:
    file_id = client.upload(b"x")
    for _ in range(10):
        assert client.download(file_id) == b"x"
    assert (fake.tracker.accepted, fake.storage.accepted) == (1, 1)
    assert client.pool.idle_count(("127.0.0.1", fake.storage.port)) == 1


def test_concurrent_requests_share_the_pool(client: Any, fake: FakeCluster) -> None:
    """Threads sharing one Client (or coroutines sharing one AsyncClient) each get a connection."""

    def work(worker: int) -> None:
        for i in range(15):
            data = f"{worker}-{i}".encode()
            file_id = client.upload(data)
            assert client.download(file_id) == data

    with ThreadPoolExecutor(6) as pool:
        for done in [pool.submit(work, worker) for worker in range(6)]:
            done.result()
    assert len(fake.files) == 90
    assert 1 <= fake.storage.accepted <= 6
    assert client.pool.idle_count(("127.0.0.1", fake.storage.port)) == fake.storage.accepted


def test_no_pool_when_disabled(fake: FakeCluster, connect: Callable[..., Any]) -> None:
    client = connect([fake.tracker.address], config=ClientConfig(use_connection_pool=False))
    file_id = client.upload(b"x")
    client.download(file_id)
    assert fake.storage.accepted == 2


def test_connection_closed_while_idle_is_replaced(client: Any, fake: FakeCluster) -> None:
    client.upload(b"warm up")
    fake.storage.close_idle_connections()
    fake.tracker.close_idle_connections()
    # Not idempotent, yet safe: the dead pooled connection is noticed before the request is sent.
    file_id = client.upload(b"after the server closed idle connections")
    assert client.download(file_id) == b"after the server closed idle connections"
    assert (fake.tracker.accepted, fake.storage.accepted) == (2, 2)


def test_lost_upload_is_not_sent_twice(client: Any, fake: FakeCluster) -> None:
    fake.storage.handler = lambda cmd, body, status: CLOSE
    with pytest.raises(ConnectionLost, match="closed by the server"):
        client.upload(b"outcome unknown")
    assert fake.storage.commands() == [Command.UPLOAD_FILE]


def test_lost_read_is_retried_once(client: Any, fake: FakeCluster) -> None:
    file_id = client.upload(b"x")
    serve = fake.storage.handler
    drops = iter([True])
    fake.storage.handler = lambda cmd, body, status: CLOSE if next(drops, False) else serve(cmd, body, status)
    assert client.download(file_id) == b"x"
    fake.storage.handler = lambda cmd, body, status: CLOSE
    before = len(fake.storage.requests)
    with pytest.raises(ConnectionLost):
        client.download(file_id)
    assert len(fake.storage.requests) == before + 2


def test_protocol_violation_discards_the_connection(client: Any, fake: FakeCluster) -> None:
    file_id = client.upload(b"x")
    serve = fake.storage.handler
    fake.storage.handler = lambda cmd, body, status: struct.pack("!qBB", 3, 99, 0) + b"abc"
    with pytest.raises(ProtocolViolation, match="command 99"):
        client.download(file_id)
    fake.storage.handler = serve
    assert client.download(file_id) == b"x"
    assert fake.storage.accepted == 2


def breaking(serve: Handler, command: int, reply: bytes) -> Handler:
    """``serve``, except that ``command`` is answered with ``reply``."""
    return lambda cmd, body, status: reply if cmd == command else serve(cmd, body, status)


@pytest.mark.parametrize(
    ("command", "reply", "message"),
    [
        (Command.QUERY_STORE_WITHOUT_GROUP_ONE, encode_reply(b"\0" * 41), "must be 40"),
        (Command.QUERY_STORE_WITHOUT_GROUP_ONE, encode_reply(b"\0" * 39), "must be 40"),
        (Command.QUERY_FETCH_ONE, encode_reply(b"\0" * 40), "must be 39"),
        (Command.QUERY_FETCH_ONE, encode_reply(b"\0" * 39) + b"extra", "after the reply"),
        (Command.DOWNLOAD_FILE, encode_reply(b"y" * 10), "above the 2"),
        (Command.UPLOAD_FILE, encode_reply(b"group1"), "malformed reply"),
        (Command.DELETE_FILE, encode_reply(b"unexpected"), "malformed reply"),
        (Command.DOWNLOAD_FILE, struct.pack("!qBB", -1, 100, 0), "negative"),
    ],
    ids=["store-41", "store-39", "fetch-40", "fetch-trailing", "download-long", "upload-id", "delete-body", "negative"],
)
def test_replies_that_break_the_protocol(
    client: Any, fake: FakeCluster, command: int, reply: bytes, message: str
) -> None:
    file_id = client.upload(b"x")
    for server in (fake.tracker, fake.storage):
        server.handler = breaking(server.handler, command, reply)
    with pytest.raises(ProtocolViolation, match=message) as caught:
        if command in (Command.UPLOAD_FILE, Command.QUERY_STORE_WITHOUT_GROUP_ONE):
            client.upload(b"x")
        elif command == Command.DELETE_FILE:
            client.delete(file_id)
        else:
            client.download(file_id, 0, 2)
    assert isinstance(caught.value, ConnectionLost)


# ---- streaming ------------------------------------------------------------------------------------
def test_file_object_is_streamed_not_read_whole(
    loops: LoopThread, fake: FakeCluster, connect: Callable[..., Any]
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    source = CountingReader(data)
    client = connect([fake.tracker.address], config=ClientConfig(chunk_size=64 * 1024))
    seen: list[int] = []
    file_id = client.upload(source, "bin", size=len(data), progress=lambda done, total: seen.append(done))
    assert source.total_read == len(data) and source.max_read <= 64 * 1024
    assert bytes(fake.files[file_id]) == data
    assert seen[-1] == len(data) and seen == sorted(seen) and len(seen) > 10
    big = bytes(data)
    assert client.download(file_id) == big


class EarlyRefusal:
    """A storage that answers an upload's header at once with ``status`` and closes, unread data and all."""

    def __init__(self, loops: LoopThread, status: int) -> None:
        self.status = status
        self.accepted = 0
        server = loops.call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self._server: asyncio.Server = server
        self.port: int = server.sockets[0].getsockname()[1]
        self.loops = loops

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await reader.readexactly(10)
        writer.write(encode_error(self.status))
        await writer.drain()
        writer.close()

    def stop(self) -> None:
        async def stop() -> None:
            self._server.close()

        self.loops.call(stop())


def test_upload_refused_before_its_data_was_sent(loops: LoopThread, fake: FakeCluster, client: Any) -> None:
    refusing = EarlyRefusal(loops, errno.ENOSPC)
    real_storage = fake.storage
    fake.storage = refusing  # type: ignore[assignment]  # the tracker now names the refusing storage
    try:
        with pytest.raises(ClusterError) as caught:
            client.upload(os.urandom(16 * 1024 * 1024))
        assert isinstance(caught.value, NoSpace)  # the refusal's own error, read after the reset
        assert refusing.accepted == 1  # an upload whose outcome is unknown is never sent twice
    finally:
        fake.storage = real_storage
        refusing.stop()


def test_seekable_stream_size_is_found(client: Any, fake: FakeCluster) -> None:
    stream = io.BytesIO(b"0123456789" * 20_000)
    stream.seek(100)
    file_id = client.upload(stream)
    assert bytes(fake.files[file_id]) == (b"0123456789" * 20_000)[100:]


def test_download_to_path_failure_leaves_nothing(client: Any, fake: FakeCluster, tmp_path: Path) -> None:
    file_id = client.upload(b"x" * 200_000)
    serve = fake.storage.handler
    # The reply announces 200,000 bytes and the connection closes after 70,000 of them.
    fake.storage.handler = lambda cmd, body, status: [struct.pack("!qBB", 200_000, 100, 0) + b"x" * 70_000, CLOSE]
    dest = tmp_path / "dest.bin"
    with pytest.raises(ConnectionLost, match="mid-reply"):
        client.download_to(file_id, dest)
    assert os.listdir(tmp_path) == []
    dest.write_bytes(b"previous")
    with pytest.raises(ConnectionLost):
        client.download_to(file_id, dest)
    assert dest.read_bytes() == b"previous" and os.listdir(tmp_path) == ["dest.bin"]
    fake.storage.handler = serve
    fake.fail[Command.DOWNLOAD_FILE] = errno.ENOENT
    with pytest.raises(NotFound):
        client.download_to(file_id, dest)
    assert os.listdir(tmp_path) == ["dest.bin"]


# ---- configuration --------------------------------------------------------------------------------
def test_config_from_client_conf(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = tmp_path / "client.conf"
    conf.write_text(
        "# FastDFS client.conf\n"
        "connect_timeout = 2\n"
        "network_timeout = 500ms\n"
        "base_path = /home/fastdfs\n"
        "tracker_server = 10.0.0.1:22122\n"
        "tracker_server = 10.0.0.2\n"
        "log_level = info\n"
        "use_connection_pool = false\n"
        "connection_pool_max_idle_time = 60\n"
        "stat_layout = 6.10\n"
        "http.tracker_server_port = 80\n"
        "no_such_key = 1\n"
    )
    config = ClientConfig.from_file(conf)
    assert [(t.host, t.port) for t in config.trackers] == [("10.0.0.1", 22122), ("10.0.0.2", 22122)]
    assert (config.connect_timeout, config.network_timeout) == (2.0, 0.5)
    assert (config.use_connection_pool, config.max_idle, config.pool_max_idle_time) == (False, 0, 60.0)
    assert config.stat_layout is StatLayout.V6_10
    assert "no_such_key" in caplog.text and "base_path" not in caplog.text


@pytest.mark.parametrize(
    "line",
    ["stat_layout = 7", "tracker_server = host:notaport", "network_timeout = 0", "connect_timeout = soon"],
    ids=["layout", "tracker", "zero-timeout", "timeout-text"],
)
def test_bad_config_values(tmp_path: Path, line: str) -> None:
    conf = tmp_path / "client.conf"
    conf.write_text(line + "\n")
    with pytest.raises(ConfigError, match=r"client\.conf"):
        ClientConfig.from_file(conf)


def test_constructor_arguments() -> None:
    with pytest.raises(ConfigError, match="no tracker"):
        Client()
    client = Client("127.0.0.1:1", connect_timeout=1.5)
    assert [(t.host, t.port) for t in client.config.trackers] == [("127.0.0.1", 1)]
    ipv6 = Client([("::1", 3), "[::1]:4", "[fe80::2]"])
    assert [(t.host, t.port) for t in ipv6.config.trackers] == [("::1", 3), ("::1", 4), ("fe80::2", 22122)]
    assert client.config.connect_timeout == 1.5
    client = Client([("127.0.0.1", 2)], config=ClientConfig(network_timeout=9.0), network_timeout=3.0)
    assert client.config.network_timeout == 3.0 and client.config.trackers[0].port == 2
    client.close()
    with pytest.raises(ClusterError, match="closed"):
        client.upload(b"x")
