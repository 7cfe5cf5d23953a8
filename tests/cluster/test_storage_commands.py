"""Every client command of a real storage process, its successes and FastDFS's error answers.

The storage runs with no tracker (it must serve clients all the same) and is driven over raw
sockets; replies are checked byte for byte against FastDFS's layouts and status codes.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from procs import ServerProcess, WireClient, start_storage
from storage_wire import (
    ACTIVE_TEST,
    APPEND,
    EEXIST,
    EINVAL,
    ENOENT,
    GROUP,
    QUIT,
    append,
    delete,
    download,
    file_info,
    filename_of,
    frame,
    get_meta,
    modify,
    regenerate,
    set_meta,
    truncate,
    upload,
    upload_slave,
    upload_status,
)

from cluster.protocol import UploadFileRequest, decode_metadata

SIZES = {"1B": 1, "4KiB": 4096, "200KB-trunk": 200_000, "3MiB-plain": 3 << 20}


@pytest.fixture(scope="module", params=["none", "always", "interval"])
def storage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One storage per sync mode: each runs its writes differently (inline, or in threads)."""
    # Trunk slots up to 2 MB (trunk_file_size 4MB): the 3 MiB file is a plain file.
    with start_storage(tmp_path_factory.mktemp("storage"), sync_mode=request.param) as server:
        yield server


@pytest.fixture
def wire(storage: ServerProcess) -> Iterator[WireClient]:
    with WireClient(storage.address) as client:
        yield client


def payload(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) % 251 for i in range(4096))
    return (block * (size // 4096 + 1))[:size]


def still_serves(wire: WireClient) -> bool:
    return wire.call(ACTIVE_TEST) == (0, b"")


# ---- upload and download -------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_upload_then_download_returns_the_bytes(wire: WireClient, size: int) -> None:
    data = payload(size)
    name = upload(wire, data, "bin")
    assert name.startswith("M00/") and name.endswith(".bin")
    assert download(wire, name) == (0, data)


@pytest.mark.parametrize("ext", ["", "jpg", "tar.gz", "jpg.", ".", "abcdef", "a-b_c"])
@pytest.mark.parametrize("appender", [False, True], ids=["normal", "appender"])
def test_extensions_with_dots_and_none(wire: WireClient, ext: str, appender: bool) -> None:
    name = upload(wire, b"extension " + ext.encode(), ext, appender=appender)
    tail = name[-7:]
    assert tail.endswith("." + ext) if ext else tail.isdigit()
    assert download(wire, name) == (0, b"extension " + ext.encode())


def test_upload_reply_is_group_and_name_without_nul(wire: WireClient) -> None:
    wire.send(UploadFileRequest(0, 5000, "txt").encode(b"x" * 5000))
    status, body = wire.reply()
    assert status == 0 and len(body) == 16 + 60  # a trunk file's remote name is 60 characters
    assert body[:16] == GROUP.encode().ljust(16, b"\0")
    assert b"\0" not in body[16:]


@pytest.mark.parametrize("size", [4096, 200_000, 3 << 20], ids=["small", "trunk-region", "plain-region"])
@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 1), (1, 0), (100, 50), (0, 1 << 40), (4095, 0), (1000, 100_000)],
    ids=["first", "from-1", "middle", "clipped", "last", "long-range"],
)
def test_range_downloads(wire: WireClient, size: int, offset: int, length: int) -> None:
    data = payload(size, seed=3)
    name = upload(wire, data)
    expected = data[offset:] if length == 0 else data[offset : offset + length]
    assert download(wire, name, offset, length) == (0, expected)


@pytest.mark.parametrize("size", [10, 200_000, 3 << 20], ids=["small", "trunk", "plain"])
def test_download_offset_at_or_past_the_end_is_einval_and_closes(storage: ServerProcess, size: int) -> None:
    with WireClient(storage.address) as wire:
        name = upload(wire, payload(size))
        assert download(wire, name, size, 0) == (EINVAL, b"")
        assert wire.closed_by_peer()


def test_zero_byte_file_is_stored_but_cannot_be_downloaded(wire: WireClient, storage: ServerProcess) -> None:
    name = upload(wire, b"", "")
    status, body = file_info(wire, name)
    assert status == 0 and struct.unpack("!q", body[:8])[0] == 0
    assert download(wire, name) == (EINVAL, b"")  # FastDFS: offset 0 is not below size 0
    assert wire.closed_by_peer()


def test_missing_file_is_enoent_and_keeps_the_connection(wire: WireClient) -> None:
    name = upload(wire, b"gone soon")
    assert delete(wire, name) == (0, b"")
    assert download(wire, name) == (ENOENT, b"")
    assert delete(wire, name) == (ENOENT, b"")
    assert file_info(wire, name)[0] == ENOENT
    assert still_serves(wire)


def test_delete_plain_file_and_its_metadata(wire: WireClient) -> None:
    name = upload(wire, payload(3 << 20))
    assert set_meta(wire, name, {"a": "1"}) == (0, b"")
    assert delete(wire, name) == (0, b"")
    assert download(wire, name)[0] == ENOENT
    assert get_meta(wire, name)[0] == ENOENT


def test_pipelined_requests_are_answered_in_order(wire: WireClient) -> None:
    names = [upload(wire, b"%d" % i * 100) for i in range(5)]
    from cluster.protocol import DownloadFileRequest

    wire.send(b"".join(DownloadFileRequest(GROUP, name).encode() for name in names))
    for i in range(5):
        assert wire.reply() == (0, b"%d" % i * 100)


# ---- metadata ------------------------------------------------------------------------------------
def test_metadata_overwrite_merge_and_delete(wire: WireClient) -> None:
    name = upload(wire, b"with metadata")
    assert get_meta(wire, name) == (ENOENT, b"")
    assert set_meta(wire, name, {"width": "100", "height": "50"}) == (0, b"")
    status, body = get_meta(wire, name)
    assert status == 0 and body == b"height\x0250\x01width\x02100"
    assert set_meta(wire, name, {"width": "200", "color": "red"}, merge=True) == (0, b"")
    assert dict(decode_metadata(get_meta(wire, name)[1])) == {"width": "200", "height": "50", "color": "red"}
    assert set_meta(wire, name, {"only": "this"}) == (0, b"")
    assert dict(decode_metadata(get_meta(wire, name)[1])) == {"only": "this"}
    assert set_meta(wire, name, {}) == (0, b"")  # overwrite with nothing deletes it
    assert get_meta(wire, name) == (ENOENT, b"")


def test_metadata_of_a_missing_file_is_enoent(wire: WireClient) -> None:
    name = upload(wire, b"x")
    delete(wire, name)
    assert set_meta(wire, name, {"a": "b"}) == (ENOENT, b"")
    assert get_meta(wire, name) == (ENOENT, b"")
    assert still_serves(wire)


# ---- file info -----------------------------------------------------------------------------------
def test_file_info_is_40_bytes_with_crc32_sign_extended(wire: WireClient) -> None:
    # Find content whose crc32 has its top bit set, to see the sign extension.
    data = next(d for d in (b"crc %d" % i for i in range(1000)) if zlib.crc32(d) & 0x80000000)
    before = int(time.time())
    name = upload(wire, data)
    status, body = file_info(wire, name)
    assert status == 0 and len(body) == 40
    size, created, crc, ip = struct.unpack("!qqq16s", body)
    assert size == len(data)
    assert before - 2 <= created <= time.time() + 2
    assert crc < 0 and crc & 0xFFFFFFFF == zlib.crc32(data)
    assert ip.rstrip(b"\0") == b"127.0.0.1"


def test_file_info_of_an_appender_reflects_its_current_contents(wire: WireClient) -> None:
    name = upload(wire, b"first", appender=True)
    assert append(wire, name, b" second") == (0, b"")
    status, body = file_info(wire, name)
    size, _, crc, _ = struct.unpack("!qqq16s", body)
    assert status == 0 and size == 12 and crc & 0xFFFFFFFF == zlib.crc32(b"first second")
    status, body = file_info(wire, name, flags=1)  # don't compute: the ID's crc32 (first upload)
    assert struct.unpack("!qqq16s", body)[2] & 0xFFFFFFFF == zlib.crc32(b"first")


# ---- appender files ------------------------------------------------------------------------------
def test_append_modify_truncate_regenerate(wire: WireClient) -> None:
    name = upload(wire, b"hello", "log", appender=True)
    assert append(wire, name, b" world") == (0, b"")
    big = payload(600_000)
    assert append(wire, name, big) == (0, b"")
    assert download(wire, name) == (0, b"hello world" + big)
    assert modify(wire, name, 0, b"HELLO") == (0, b"")
    assert modify(wire, name, 11 + len(big), b"!") == (0, b"")  # at the end: grows it
    assert download(wire, name, 0, 11) == (0, b"HELLO world")
    assert truncate(wire, name, 5) == (0, b"")
    assert download(wire, name) == (0, b"HELLO")
    status, body = regenerate(wire, name)
    assert status == 0
    new_name = filename_of(body)
    assert new_name != name and new_name.endswith(".log")
    assert download(wire, new_name) == (0, b"HELLO")
    assert download(wire, name) == (ENOENT, b"")
    status, body = file_info(wire, new_name)
    assert struct.unpack("!qqq16s", body)[2] & 0xFFFFFFFF == zlib.crc32(b"HELLO")
    assert append(wire, new_name, b"x") == (EINVAL, b"")  # a normal file now


def test_empty_appender_then_append(wire: WireClient) -> None:
    name = upload(wire, b"", appender=True)
    assert append(wire, name, b"abc") == (0, b"")
    assert download(wire, name) == (0, b"abc")


def test_modify_past_the_end_is_einval_and_closes(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        name = upload(wire, b"12345", appender=True)
        assert modify(wire, name, 6, b"x") == (EINVAL, b"")
        assert wire.closed_by_peer()
    with WireClient(storage.address) as wire:
        assert download(wire, name) == (0, b"12345")


@pytest.mark.parametrize("operation", ["append", "modify", "truncate", "regenerate"])
@pytest.mark.parametrize(("target", "status"), [("trunk", ENOENT), ("plain", EINVAL), ("missing", ENOENT)])
def test_appender_operations_on_other_files(storage: ServerProcess, operation: str, target: str, status: int) -> None:
    with WireClient(storage.address) as wire:
        if target == "trunk":
            name = upload(wire, b"small file in a trunk")
        else:
            name = upload(wire, payload(3 << 20))  # a plain normal file
            if target == "missing":
                delete(wire, name)
        calls = {
            "append": lambda: append(wire, name, b"more"),
            "modify": lambda: modify(wire, name, 0, b"X"),
            "truncate": lambda: truncate(wire, name, 0),
            "regenerate": lambda: regenerate(wire, name),
        }
        assert calls[operation]() == (status, b"")
        if status == EINVAL:
            assert wire.closed_by_peer()
        else:
            assert still_serves(wire)


# ---- slave files ---------------------------------------------------------------------------------
def test_slave_upload_is_named_after_its_master(wire: WireClient) -> None:
    master = upload(wire, payload(1000), "jpg")
    status, body = upload_slave(wire, master, "_150x150", b"thumbnail", "jpg")
    assert status == 0
    slave = filename_of(body)
    assert slave == master[: -len(".jpg")] + "_150x150.jpg"
    assert download(wire, slave) == (0, b"thumbnail")
    assert upload_slave(wire, master, "_150x150", b"again", "jpg") == (EEXIST, b"")
    assert still_serves(wire)


def test_slave_of_a_missing_master_is_enoent(wire: WireClient) -> None:
    master = upload(wire, b"master")
    delete(wire, master)
    assert upload_slave(wire, master, "_s", b"data") == (ENOENT, b"")
    assert still_serves(wire)


# ---- refusals ------------------------------------------------------------------------------------
def assert_einval_and_closed(wire: WireClient, request: bytes) -> None:
    wire.send(request)
    assert wire.reply() == (EINVAL, b"")
    assert wire.closed_by_peer()


@pytest.mark.parametrize("cmd", [12, 13, 14, 15, 22])
def test_wrong_group_is_einval(storage: ServerProcess, cmd: int) -> None:
    with WireClient(storage.address) as wire:
        name = upload(wire, b"mine")
    with WireClient(storage.address) as wire:
        group2 = b"group2".ljust(16, b"\0")
        bodies = {
            12: group2 + name.encode(),
            13: struct.pack("!qqc16s", len(name), 3, b"O", group2) + name.encode() + b"a\x02b",
            14: struct.pack("!qq", 0, 0) + group2 + name.encode(),
            15: group2 + name.encode(),
            22: group2 + name.encode(),
        }
        assert_einval_and_closed(wire, frame(cmd, bodies[cmd]))
    with WireClient(storage.address) as wire:
        assert download(wire, name) == (0, b"mine")


@pytest.mark.parametrize(
    "name",
    ["M00/../../etc/passwd", "M00/../..", "../M00/00/00/x", "M00/00/00/" + "*" * 44, "M05/00/00/abc", "/etc/passwd"],
    ids=["dotdot-passwd", "dotdot", "leading-dotdot", "garbage", "bad-store-path", "absolute"],
)
@pytest.mark.parametrize("cmd", [12, 14, 22])
def test_names_that_leave_the_store_are_einval(storage: ServerProcess, name: str, cmd: int) -> None:
    with WireClient(storage.address) as wire:
        body = (struct.pack("!qq", 0, 0) if cmd == 14 else b"") + GROUP.encode().ljust(16, b"\0") + name.encode()
        assert_einval_and_closed(wire, frame(cmd, body))


#: Every command that names a stored file, as a call of a storage_wire helper.
NAMING_COMMANDS: dict[str, Callable[[WireClient, str], tuple[int, bytes]]] = {
    "set-meta": lambda wire, name: set_meta(wire, name, {"k": "v"}),
    "get-meta": get_meta,
    "slave-of": lambda wire, name: upload_slave(wire, name, "_s", b"slave"),
    "append": lambda wire, name: append(wire, name, b"tail"),
    "modify": lambda wire, name: modify(wire, name, 0, b"head"),
    "truncate": lambda wire, name: truncate(wire, name, 0),
    "regenerate": regenerate,
}


@pytest.mark.parametrize("name", ["M00/../../escape.txt", "M00/00/00/../../../../escape", "../escape"])
@pytest.mark.parametrize("command", sorted(NAMING_COMMANDS))
def test_every_command_refuses_names_that_leave_the_store(storage: ServerProcess, command: str, name: str) -> None:
    with WireClient(storage.address) as wire:
        assert NAMING_COMMANDS[command](wire, name) == (EINVAL, b"")
    assert not list(storage.base_path.parent.rglob("escape*"))


@pytest.mark.parametrize("cmd", [1, 99, 100, 81, 83, 16, 200])
def test_unknown_or_foreign_commands_are_einval(storage: ServerProcess, cmd: int) -> None:
    with WireClient(storage.address) as wire:
        assert_einval_and_closed(wire, frame(cmd, b"\0" * 20))


def test_bad_extension_is_einval(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        data = b"data"
        body = struct.pack("!Bq6s", 0xFF, len(data), b"a/b") + data
        assert_einval_and_closed(wire, frame(11, body))


def test_file_size_not_matching_pkg_len_is_einval(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        body = struct.pack("!Bq6s", 0xFF, 100, b"txt") + b"x" * 50
        assert_einval_and_closed(wire, frame(11, body))


def test_bad_store_path_index_is_einval(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        assert_einval_and_closed(wire, UploadFileRequest(3, 4, "txt").encode(b"data"))


def test_append_body_of_a_refused_request_is_skipped(wire: WireClient) -> None:
    """A refusal other than EINVAL reads and drops the data, so the connection stays in step."""
    name = upload(wire, b"x")
    delete(wire, name)
    assert upload_slave(wire, name, "_big", payload(1 << 20)) == (ENOENT, b"")
    wire.send(frame(APPEND, b""))  # a malformed append: too short for its head
    assert wire.reply() == (EINVAL, b"")


def test_quit_closes_without_a_reply(wire: WireClient) -> None:
    assert still_serves(wire)
    wire.send(frame(QUIT))
    assert wire.closed_by_peer()


def test_no_space_is_enospc(tmp_path: Path) -> None:
    # All of the disk is reserved: no upload fits, and the refusal keeps the connection.
    with start_storage(tmp_path, reserved_storage_space="99.99%") as server, WireClient(server.address) as wire:
        assert upload_status(wire, payload(3 << 20))[0] == 28
        assert upload_status(wire, b"small")[0] == 28
        assert still_serves(wire)
