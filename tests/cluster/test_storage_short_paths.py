"""The storage's short paths for its commonest requests, arriving whole in one read: the download of a
whole small trunk file, and a small upload when no sync is needed to acknowledge it.

They must answer exactly as the general path does: the bytes, ENOENT for a deleted file (the connection
stays open), EINVAL and a closed connection for another group or a bad extension, and requests split
across reads or several in one read go the general way with the same answers, in order.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import ServerProcess, WireClient, start_storage
from storage_wire import DOWNLOAD, EINVAL, ENOENT, GROUP, UPLOAD, delete, filename_of, frame, upload

from cluster.protocol import DownloadFileRequest, UploadFileRequest


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_storage(tmp_path_factory.mktemp("whole-download")) as server:
        yield server


def whole(name: str, group: str = GROUP) -> bytes:
    return DownloadFileRequest(group, name).encode()


def test_whole_small_file_in_one_read(storage: ServerProcess) -> None:
    data = os.urandom(4096)
    with WireClient(storage.address) as wire:
        name = upload(wire, data)
        for _ in range(3):  # the same connection keeps serving
            wire.send(whole(name))
            assert wire.reply() == (0, data)


def test_deleted_file_is_enoent_and_the_connection_stays(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        name = upload(wire, b"short-lived")
        assert delete(wire, name)[0] == 0
        wire.send(whole(name))
        assert wire.reply() == (ENOENT, b"")
        other = upload(wire, b"still served")
        wire.send(whole(other))
        assert wire.reply() == (0, b"still served")


def test_another_group_is_einval_and_closes(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        name = upload(wire, b"x" * 100)
        wire.send(whole(name, group="group2"))
        assert wire.reply() == (EINVAL, b"")
        assert wire.closed_by_peer()


def test_split_and_pipelined_requests_get_the_same_answers(storage: ServerProcess) -> None:
    blobs = [os.urandom(n) for n in (1, 700, 5000)]
    with WireClient(storage.address) as wire:
        names = [upload(wire, blob) for blob in blobs]
        request = whole(names[0])
        wire.send(request[:7])
        wire.send(request[7:])
        assert wire.reply() == (0, blobs[0])
        wire.send(b"".join(whole(name) for name in names))  # three requests in one write
        assert [wire.reply() for _ in names] == [(0, blob) for blob in blobs]


def test_a_frame_of_the_same_length_but_another_command_is_not_taken_for_a_download(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        name = upload(wire, b"data")
        body = whole(name)[10:]
        wire.send(frame(DOWNLOAD + 1, body))  # 15 GET_METADATA with a download's body: malformed
        status, _ = wire.reply()
        assert status == EINVAL


def raw_upload(data: bytes, ext: bytes = b"txt", size: int | None = None, index: int = 0xFF) -> bytes:
    head = struct.pack("!Bq6s", index, len(data) if size is None else size, ext)
    return frame(UPLOAD, head + data)


@pytest.mark.parametrize("sync_mode", ["none", "always"])
def test_small_upload_in_one_write_is_stored(tmp_path: Path, sync_mode: str) -> None:
    with start_storage(tmp_path, sync_mode=sync_mode) as server, WireClient(server.address) as wire:
        for size in (0, 1, 4096, 64 * 1024):
            data = os.urandom(size)
            wire.send(UploadFileRequest(0xFF, size, "jpg").encode(data))
            status, body = wire.reply()
            assert status == 0
            name = filename_of(body)
            assert name.endswith(".jpg")
            if size:
                wire.send(whole(name))
                assert wire.reply() == (0, data)


@pytest.mark.parametrize(
    "request_bytes",
    [raw_upload(b"abc", ext=b"a/b"), raw_upload(b"abc", index=7)],
    ids=["bad-ext", "bad-store-path"],
)
def test_refused_small_uploads_answer_as_the_general_path(storage: ServerProcess, request_bytes: bytes) -> None:
    with WireClient(storage.address) as wire:
        wire.send(request_bytes)
        assert wire.reply() == (EINVAL, b"")
        assert wire.closed_by_peer()


def test_upload_whose_size_field_disagrees_is_refused(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        wire.send(raw_upload(b"abcdef", size=3))
        assert wire.reply() == (EINVAL, b"")
        assert wire.closed_by_peer()
