"""Fuzz: random and mutated frames from many connections at a running tracker process; it must
keep serving correctly and keep a readable state file."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

from procs import WireClient, start_tracker, wait_for
from tracker_helpers import FakeClock, FakeStorage, file_name, group_field, join_request, store_port

from cluster.protocol import (
    BeatRequest,
    DiskUsage,
    ReportDiskUsageRequest,
    StorageBrief,
    StorageStats,
    StorageStatus,
    SyncNotifyRequest,
    SyncProgress,
    SyncReportRequest,
    SyncSrcRequest,
)
from cluster.tracker import persist
from cluster.tracker.registry import Registry


def _samples() -> list[bytes]:
    """Valid request frames of every tracker command."""
    frame = lambda cmd, body=b"": struct.pack("!qBB", len(body), cmd, 0) + body  # noqa: E731
    name = file_name().encode()
    return [
        join_request("fuzz1", 23100, 2).encode(),
        BeatRequest(StorageStats(success_upload_count=4)).encode(),
        BeatRequest().encode(),
        ReportDiskUsageRequest((DiskUsage(1000, 500), DiskUsage(1000, 400))).encode(),
        SyncReportRequest((SyncProgress("127.0.0.1", 5),)).encode(),
        SyncSrcRequest("fuzz1", "127.0.0.1").encode(),
        SyncNotifyRequest("127.0.0.1", 5).encode(),
        frame(76, group_field("fuzz1") + StorageBrief(StorageStatus.ONLINE, 23100, "127.0.0.1", "127.0.0.1").encode()),
        frame(87),
        frame(75),
        frame(101),
        frame(104, group_field("fuzz1")),
        frame(106),
        frame(107, group_field("fuzz1")),
        frame(102, group_field("fuzz1") + name),
        frame(103, group_field("fuzz1") + name),
        frame(105, group_field("fuzz1") + name),
        frame(90, group_field("fuzz1")),
        frame(91),
        frame(92, group_field("fuzz1")),
        frame(92, group_field("fuzz1") + b"127.0.0.1"),
        frame(111),
    ]


def _mutate(rng: random.Random, sample: bytes) -> bytes:
    data = bytearray(sample)
    choice = rng.randrange(6)
    if choice == 0:  # flip bytes anywhere
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 1:  # another command code
        data[8] = rng.choice(
            [
                75,
                76,
                81,
                82,
                83,
                84,
                86,
                87,
                88,
                89,
                90,
                91,
                92,
                101,
                102,
                103,
                104,
                105,
                106,
                107,
                111,
                rng.randrange(256),
            ]
        )
    elif choice == 2:  # truncated
        data = data[: rng.randrange(len(data))]
    elif choice == 3:  # body cut or extended, pkg_len fixed up
        body = bytes(data[10:])
        body = body[: rng.randrange(len(body) + 1)] + rng.randbytes(rng.randrange(8))
        data = bytearray(struct.pack("!qBB", len(body), data[8], data[9]) + body)
    elif choice == 4:  # random pkg_len
        data[:8] = struct.pack("!q", rng.choice([-5, 0, 1, 145, 1 << 20, (1 << 63) - 1, rng.randrange(70000)]))
    else:  # pure noise
        data = bytearray(rng.randbytes(rng.randrange(1, 80)))
    return bytes(data)


def test_random_and_mutated_frames(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    samples = _samples()
    tracker = start_tracker(tmp_path, reserved_storage_space="0%", network_timeout=2)
    with tracker:
        host, port = tracker.host, tracker.port
        for _ in range(250):
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                stream = b"".join(
                    rng.choice(samples) if rng.random() < 0.4 else _mutate(rng, rng.choice(samples))
                    for _ in range(rng.randint(1, 6))
                )
                try:
                    sock.sendall(stream)
                    sock.shutdown(socket.SHUT_WR)  # the tracker answers what it can, then closes
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass  # closed (reset) by the tracker
        # still correct: a real storage joins a fresh group and is offered
        with WireClient(tracker.address) as wire, WireClient(tracker.address) as client:
            FakeStorage(wire, group="after", port=23999).activate()
            status, body = client.call(104, group_field("after"))
            assert status == 0 and store_port(body) == 23999
            assert client.call(111) == (0, b"")
        state = tracker.base_path / "data" / "tracker_state.json"
        wait_for(state.exists, message="the state file")
    assert tracker.proc.returncode == 0
    registry = Registry(1.0, FakeClock())
    assert persist.read_state(state, registry)
    registry._check()
    assert "after" in registry.groups
