"""A storage under bad input and load: limits, cut-short bodies, timeouts, floods, restarts, memory.

After each abuse the server must still serve everyone else, and what it stored must be intact:
the store is opened afterwards with :class:`trunkstore.Store` and ``check()`` must be clean.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import ServerProcess, WireClient, start_storage, wait_for
from storage_wire import (
    ACTIVE_TEST,
    EINVAL,
    GROUP,
    append,
    assert_store_clean,
    download,
    file_info,
    frame,
    rss_kib,
    tmp_files,
    upload,
)

from cluster.protocol import AppendFileRequest, DownloadFileRequest, UploadFileRequest

MIB = 1 << 20


def check_store(server: ServerProcess) -> None:
    """Stop the server and verify every invariant of the store it leaves."""
    assert server.stop() == 0
    assert_store_clean(server.base_path)


def serves(server: ServerProcess) -> bool:
    with WireClient(server.address) as wire:
        return wire.call(ACTIVE_TEST) == (0, b"")


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[ServerProcess]:
    with start_storage(tmp_path, max_pkg_size="4KB", max_upload_size="8MB", network_timeout=1) as server:
        yield server


# ---- limits --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cmd", "pkg_len"), [(14, 4097), (13, 1 << 40), (11, 8 * MIB + 1), (24, 1 << 62)])
def test_pkg_len_over_the_limit_is_refused_before_the_body(storage: ServerProcess, cmd: int, pkg_len: int) -> None:
    with WireClient(storage.address) as wire:
        wire.send(struct.pack("!qBB", pkg_len, cmd, 0))  # no body follows: the refusal must not wait for it
        assert wire.reply() == (EINVAL, b"")
        assert wire.closed_by_peer()
    assert serves(storage)


def test_negative_pkg_len_is_refused(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        wire.send(struct.pack("!qBB", -5, 14, 0))
        assert wire.reply() == (EINVAL, b"")
        assert wire.closed_by_peer()


# ---- bodies cut short ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [3000, 5 * MIB], ids=["trunk", "plain"])
def test_disconnect_mid_upload_stores_nothing(storage: ServerProcess, size: int) -> None:
    with WireClient(storage.address) as keeper:
        kept = upload(keeper, b"kept")
        with WireClient(storage.address) as wire:
            wire.send(UploadFileRequest(0xFF, size, "bin").encode_head() + b"x" * (size // 2))
            if size > MIB:  # the spool file exists while the upload is in progress
                wait_for(lambda: tmp_files(storage.base_path), message="the upload to start")
        wait_for(lambda: not tmp_files(storage.base_path), message="the spool file to be removed")
        assert download(keeper, kept) == (0, b"kept")
    check_store(storage)


def test_append_cut_short_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    with start_storage(tmp_path) as storage:
        check_append_cut_short(storage)


def check_append_cut_short(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        name = upload(wire, b"original", appender=True)

    def size_now() -> int:
        with WireClient(storage.address) as wire:
            status, body = file_info(wire, name, flags=1)
            return struct.unpack("!q", body[:8])[0] if status == 0 else -1

    with WireClient(storage.address) as wire:
        wire.send(AppendFileRequest(name, 3 * MIB).encode_head() + b"y" * (2 * MIB))
        # Some of it is in the file (the rest may be waiting to fill a write) before the client goes.
        wait_for(lambda: size_now() > len(b"original"), message="the data sent to be appended")
    # The undo runs once the server sees the disconnect; a download racing it may be cut short.
    wait_for(lambda: size_now() == len(b"original"), message="the append to be undone")
    with WireClient(storage.address) as wire:
        assert download(wire, name) == (0, b"original")
        assert append(wire, name, b"+more") == (0, b"")
        assert download(wire, name) == (0, b"original+more")
    check_store(storage)


def test_header_then_eof_is_harmless(storage: ServerProcess) -> None:
    for partial in (b"\0\0\0", struct.pack("!qBB", 40, 14, 0), struct.pack("!qBB", 40, 14, 0) + b"\0" * 20):
        with WireClient(storage.address) as wire:
            wire.send(partial)
    assert serves(storage)


# ---- timeouts ------------------------------------------------------------------------------------
def test_silent_connection_is_closed_after_network_timeout(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        assert wire.closed_by_peer(timeout=10)


def test_stalled_request_is_closed_after_network_timeout(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        assert wire.call(ACTIVE_TEST) == (0, b"")
        wire.send(UploadFileRequest(0xFF, 1000, "txt").encode_head() + b"z" * 10)  # then nothing
        assert wire.closed_by_peer(timeout=10)
    wait_for(lambda: not tmp_files(storage.base_path), message="no spool file")
    assert serves(storage)


def read_to_eof(sock: socket.socket, cap: int) -> int | None:
    """Bytes read until the peer closes, or ``None`` if more than ``cap`` arrive first."""
    total = 0
    while total <= cap:
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return total
        if not chunk:
            return total
        total += len(chunk)
    return None


def test_client_that_does_not_read_its_replies_is_dropped(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        small = upload(wire, b"r" * 60_000)
        large = upload(wire, b"R" * (6 * MIB))
    baseline = rss_kib(storage.pid)
    for name, count in ((small, 3000), (large, 30)):  # 180 MB of replies either way
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
            sock.settimeout(10)
            sock.connect((storage.host, storage.port))
            host, port = sock.getsockname()[:2]
            with contextlib.suppress(OSError):  # dropped while still sending: what is wanted
                sock.sendall(DownloadFileRequest(GROUP, name).encode() * count)
            # Without reading for longer than network_timeout (1 s) the server gives up on the client
            # (and says so in its log); what it had handed to the kernel still arrives, then the end.
            dropped = f"{host}:{port}: "
            wait_for(lambda: dropped in storage.log_text(), timeout=60, message="the server to drop the client")  # noqa: B023
            assert read_to_eof(sock, cap=40 * MIB) is not None
    assert rss_kib(storage.pid) - baseline < 32 * 1024
    assert serves(storage)


def test_idle_connection_that_has_served_stays_open(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        assert wire.call(ACTIVE_TEST) == (0, b"")
        assert not wire.closed_by_peer(timeout=2.5)  # over twice network_timeout: FastDFS clients pool these
        assert wire.call(ACTIVE_TEST) == (0, b"")


def test_slow_client_sending_byte_by_byte_is_served(storage: ServerProcess) -> None:
    with WireClient(storage.address) as wire:
        request = UploadFileRequest(0xFF, 20, "txt").encode(b"0123456789" * 2)
        for index in range(len(request)):
            wire.send(request[index : index + 1])
        status, body = wire.reply()
        assert status == 0
        assert download(wire, body[16:].decode()) == (0, b"0123456789" * 2)


# ---- connection flood ----------------------------------------------------------------------------
def test_connections_over_max_connections_are_closed_and_the_rest_served(tmp_path: Path) -> None:
    with start_storage(tmp_path, max_connections=4) as server:
        first = WireClient(server.address)
        assert first.call(ACTIVE_TEST) == (0, b"")
        flood = [socket.create_connection((server.host, server.port)) for _ in range(30)]
        try:
            assert first.call(ACTIVE_TEST) == (0, b"")
            closed = 0
            for sock in flood:
                sock.settimeout(5)
                try:
                    sock.sendall(frame(ACTIVE_TEST))
                    closed += sock.recv(10) == b""
                except (ConnectionResetError, BrokenPipeError):
                    closed += 1
            assert closed >= 30 - 3
        finally:
            for sock in flood:
                sock.close()
        first.close()
        wait_for(lambda: serves(server), message="the server to accept connections again")


# ---- concurrency ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sync_mode", ["always", "none"])
def test_concurrent_uploads_on_many_connections(tmp_path: Path, sync_mode: str) -> None:
    with start_storage(tmp_path, sync_mode=sync_mode) as server:
        results: dict[int, list[tuple[str, bytes]]] = {}
        errors: list[BaseException] = []

        def client(index: int) -> None:
            try:
                with WireClient(server.address) as wire:
                    stored = []
                    for n in range(15):
                        data = b"%d-%d " % (index, n) * (1 + n * 37)
                        stored.append((upload(wire, data), data))
                    results[index] = stored
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        with WireClient(server.address) as wire:
            for stored in results.values():
                for name, data in stored:
                    assert download(wire, name) == (0, data)
        check_store(server)


def test_restart_keeps_files(tmp_path: Path) -> None:
    with start_storage(tmp_path, sync_mode="always") as server:
        with WireClient(server.address) as wire:
            names = {upload(wire, b"%d" % i * (i * 1000 + 1)): b"%d" % i * (i * 1000 + 1) for i in range(5)}
            names[upload(wire, b"appender", appender=True)] = b"appender"
        assert server.stop() == 0
    with start_storage(tmp_path, base_path=server.base_path, sync_mode="always") as again:
        with WireClient(again.address) as wire:
            for name, data in names.items():
                assert download(wire, name) == (0, data)
        check_store(again)


def test_sigterm_finishes_a_request_in_progress(tmp_path: Path) -> None:
    with start_storage(tmp_path, sync_mode="always") as server, WireClient(server.address) as wire:
        data = b"q" * (4 * MIB)
        head = UploadFileRequest(0xFF, len(data), "bin").encode_head()
        wire.send(head + data)
        status, body = wire.reply()
        assert status == 0
        assert server.stop() == 0
    with start_storage(tmp_path, base_path=server.base_path) as again, WireClient(again.address) as wire:
        assert download(wire, body[16:].decode()) == (0, data)


def test_sigterm_lets_an_upload_still_arriving_complete(tmp_path: Path) -> None:
    with start_storage(tmp_path, sync_mode="always") as server, WireClient(server.address) as wire:
        data = b"w" * (3 * MIB)
        wire.send(UploadFileRequest(0xFF, len(data), "bin").encode_head() + data[:MIB])
        os.kill(server.pid, signal.SIGTERM)
        wait_for(lambda: "stopping" in server.log_text(), message="the server to begin stopping")
        wire.send(data[MIB:])
        status, body = wire.reply()
        assert status == 0
        assert server.proc.wait(timeout=30) == 0
    with start_storage(tmp_path, base_path=server.base_path) as again, WireClient(again.address) as wire:
        assert download(wire, body[16:].decode()) == (0, data)


# ---- memory --------------------------------------------------------------------------------------
#: The size of the memory test's file; ``TRUNKSTORE_BIG_MIB=2048`` checks the 2 GiB figure (slow).
BIG_MIB = int(os.environ.get("TRUNKSTORE_BIG_MIB", "300"))


def test_large_upload_and_download_keep_memory_bounded(tmp_path: Path) -> None:
    """A large file through one connection each way; the server's RSS stays far below its size."""
    size = BIG_MIB * MIB
    block = bytes(range(256)) * 4096  # 1 MiB
    with start_storage(tmp_path, sync_mode="none") as server:
        baseline = rss_kib(server.pid)
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with WireClient(server.address, timeout=600) as wire:
                wire.send(UploadFileRequest(0xFF, size, "bin").encode_head())
                for _ in range(size // len(block)):
                    wire.send(block)
                status, body = wire.reply()
                assert status == 0
                name = body[16:].decode()
                wire.send(DownloadFileRequest(GROUP, name).encode())
                pkg_len, cmd, status = struct.unpack("!qBB", wire.recv_exact(10))
                assert cmd == 100
                assert (pkg_len, status) == (size, 0)
                crc, remaining = 0, size
                while remaining:
                    chunk = wire.sock.recv(min(remaining, 4 * MIB))
                    assert chunk
                    crc = zlib.crc32(chunk, crc)
                    remaining -= len(chunk)
                assert crc == zlib.crc32(block * (size // len(block)))
        finally:
            done.set()
            sampler.join()
        print(f"RSS {baseline} KiB at rest, {peak[0]} KiB at peak")
        assert peak[0] - baseline < 64 * 1024, f"RSS grew from {baseline} KiB to {peak[0]} KiB"
        assert peak[0] < 100 * 1024
