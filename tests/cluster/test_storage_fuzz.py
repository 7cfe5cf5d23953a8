"""Random and mutated frames against a running storage, over many connections at once.

Valid requests of every command are mutated (bytes flipped, cut short, lengths and commands
replaced, frames glued together, garbage inserted) and sent by several threads; each connection
then half-closes or just goes away.  Every reply that comes back must be a well-formed reply
header.  Afterwards the server must still store and return files exactly, files uploaded before the
fuzzing (and never named by it) must be intact, and the store must pass ``check()`` with no
spool file left behind.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from pathlib import Path

import pytest
from procs import ServerProcess, WireClient, start_storage
from storage_wire import GROUP, assert_store_clean, download, upload

from cluster.protocol import (
    ActiveTestRequest,
    AppendFileRequest,
    DeleteFileRequest,
    DownloadFileRequest,
    GetMetadataRequest,
    MetadataFlag,
    ModifyFileRequest,
    QueryFileInfoRequest,
    RegenerateAppenderFilenameRequest,
    SetMetadataRequest,
    TruncateFileRequest,
    UploadAppenderFileRequest,
    UploadFileRequest,
    UploadSlaveFileRequest,
)

CASES_PER_THREAD = 150
THREADS = 6
COMMANDS = [11, 12, 13, 14, 15, 21, 22, 23, 24, 34, 36, 38, 82, 111, 0, 100, 255]


def seed_frames(victim: str, appender: str) -> list[bytes]:
    """One valid request of each command, naming only files the fuzzing may change."""
    return [
        UploadFileRequest(0xFF, 300, "txt").encode(b"u" * 300),
        UploadFileRequest(0xFF, 70_000, "bin").encode(b"U" * 70_000),
        UploadAppenderFileRequest(0xFF, 10, "log").encode(b"a" * 10),
        UploadSlaveFileRequest(victim, "_fz", 20, "txt").encode(b"s" * 20),
        DownloadFileRequest(GROUP, victim, 0, 0).encode(),
        DownloadFileRequest(GROUP, victim, 3, 5).encode(),
        DeleteFileRequest(GROUP, victim).encode(),
        SetMetadataRequest(GROUP, victim, (("k", "v"), ("w", "100")), MetadataFlag.MERGE).encode(),
        GetMetadataRequest(GROUP, victim).encode(),
        QueryFileInfoRequest(GROUP, victim).encode(),
        AppendFileRequest(appender, 16).encode(b"+" * 16),
        ModifyFileRequest(appender, 2, 4).encode(b"MMMM"),
        TruncateFileRequest(appender, 3).encode(),
        RegenerateAppenderFilenameRequest(appender).encode(),
        ActiveTestRequest().encode(),
    ]


def mutate(rng: random.Random, frames: list[bytes]) -> bytes:
    data = bytearray(rng.choice(frames))
    operation = rng.randrange(8)
    if operation == 0:  # flip a few bytes
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif operation == 1:  # cut short
        del data[rng.randrange(len(data)) :]
    elif operation == 2:  # another pkg_len
        value = rng.choice([0, 1, 9, 15, 40, len(data), len(data) * 2, 1 << 31, (1 << 63) - 1, -1])
        data[0:8] = struct.pack("!q", value)
    elif operation == 3:  # another command
        data[8] = rng.choice(COMMANDS)
    elif operation == 4:  # garbage
        data = bytearray(rng.randbytes(rng.randrange(0, 300)))
    elif operation == 5:  # two frames glued, the first possibly damaged
        data += mutate(rng, frames) if rng.random() < 0.5 else rng.choice(frames)
    elif operation == 6:  # bytes inserted
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 20))
    else:  # the header's status byte
        data[9] = rng.randrange(256)
    return bytes(data)


def read_replies(sock: socket.socket) -> None:
    """Read until the server closes or goes quiet; every reply header must be a reply's."""
    buffer = b""
    sock.settimeout(0.5)
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        buffer += chunk
        while len(buffer) >= 10:
            pkg_len, cmd, status = struct.unpack("!qBB", buffer[:10])
            assert cmd == 100 and 0 <= pkg_len < 1 << 24, f"bad reply header {buffer[:10].hex()}"
            assert status == 0 or pkg_len == 0, "error replies are header-only"
            if len(buffer) < 10 + pkg_len:
                break
            buffer = buffer[10 + pkg_len :]


def fuzz_connection(server: ServerProcess, rng: random.Random, frames: list[bytes]) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        try:
            for _ in range(rng.randint(1, 3)):
                sock.sendall(mutate(rng, frames))
            if rng.random() < 0.7:
                sock.shutdown(socket.SHUT_WR)
                read_replies(sock)
        except OSError:
            pass  # closed by the server after a refusal (EPIPE, ECONNRESET, ENOTCONN): allowed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_frames_leave_the_server_serving_and_the_store_intact(tmp_path: Path, seed: int) -> None:
    with start_storage(tmp_path, network_timeout=2, max_pkg_size="16KB", max_upload_size="1MB") as server:
        with WireClient(server.address) as wire:
            anchors = {upload(wire, b"anchor %d " % i * (1 + i * 500), "dat"): b"anchor %d " % i * (1 + i * 500)
                       for i in range(6)}  # fmt: skip
            victim = upload(wire, b"victim file contents")
            appender = upload(wire, b"appender contents", "log", appender=True)
        frames = seed_frames(victim, appender)
        failures: list[BaseException] = []

        def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            try:
                for _ in range(CASES_PER_THREAD):
                    fuzz_connection(server, rng, frames)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures[0]
        assert server.alive()
        with WireClient(server.address) as wire:
            for name, data in anchors.items():
                assert download(wire, name) == (0, data)
            fresh = b"after the fuzzing" * 100
            assert download(wire, upload(wire, fresh)) == (0, fresh)
        assert server.stop() == 0
    assert_store_clean(server.base_path)
