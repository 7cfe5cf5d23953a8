"""Shared pieces of the tracker tests: a fake clock, join requests, file names, a fake storage."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cluster.protocol import (
    BeatRequest,
    DiskUsage,
    ReportDiskUsageRequest,
    ReportTrunkFreeRequest,
    StorageJoinReply,
    StorageJoinRequest,
    StorageStats,
    StorageStatus,
    TrackerChangesReply,
)
from cluster.tracker.config import TrackerConfig
from cluster.tracker.members import Storage
from cluster.tracker.registry import Registry
from trunkstore.fileid import encode_name, make_size_field, make_tail, source_from_ip


@dataclass
class FakeClock:
    mono: float = 1000.0
    now: float = 1_800_000_000.0

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.now += seconds


def join_request(
    group: str = "group1",
    port: int = 23000,
    paths: int = 1,
    subdirs: int = 256,
    *,
    init_flag: bool = True,
    status: StorageStatus = StorageStatus.INIT,
    priority: int = 0,
) -> StorageJoinRequest:
    return StorageJoinRequest(
        group=group,
        storage_id="",
        storage_port=port,
        store_path_count=paths,
        subdir_count_per_path=subdirs,
        upload_priority=priority,
        version="6.12",
        init_flag=init_flag,
        status=status,
    )


def make_config(tmp_path: object = "/nonexistent", **settings: object) -> TrackerConfig:
    settings.setdefault("reserved_storage_space", _reserve("0%"))
    return TrackerConfig(base_path=str(tmp_path), **settings)  # type: ignore[arg-type]


def _reserve(text: str) -> object:
    from cluster.tracker.config import ReservedSpace

    return ReservedSpace.parse(text)


def active_storage(
    registry: Registry,
    ip: str = "127.0.0.1",
    port: int = 23000,
    group: str = "group1",
    free: tuple[int, ...] = (1000,),
    total: int = 2000,
    priority: int = 0,
    uploads: int = 0,
) -> Storage:
    """A storage joined, beaten and reporting disk usage: ACTIVE."""
    storage, _ = registry.join(join_request(group, port, len(free), priority=priority), ip)
    registry.beat(storage, StorageStats(success_upload_count=uploads))
    registry.report_disk_usage(storage, tuple(DiskUsage(total, f) for f in free), most_free=False)
    assert storage.status is StorageStatus.ACTIVE
    registry._check()
    return storage


def file_name(ip: str = "127.0.0.1", timestamp: int = 1_700_000_000, size: int = 100) -> str:
    """A valid remote file name (``M00/...``) written by the storage at ``ip`` at ``timestamp``."""
    name = encode_name(source_from_ip(ip), timestamp, make_size_field(size), 0x1234, None, make_tail("txt"))
    return f"M00/00/00/{name}"


def group_field(group: str = "group1") -> bytes:
    return group.encode().ljust(16, b"\0")


class FakeStorage:
    """A raw connection acting as a storage server towards a tracker."""

    def __init__(self, wire: object, group: str = "group1", port: int = 23000, paths: int = 1) -> None:
        from procs import WireClient

        assert isinstance(wire, WireClient)
        self.wire = wire
        self.group = group
        self.port = port
        self.paths = paths

    def join(self, **kwargs: object) -> StorageJoinReply:
        request = join_request(self.group, self.port, self.paths, **kwargs)  # type: ignore[arg-type]
        status, body = self.wire.call(request.command, request.encode_body())
        assert status == 0, f"join refused: {status}"
        return StorageJoinReply.decode(body)

    def beat(self, stats: StorageStats | None = None) -> TrackerChangesReply:
        status, body = self.wire.call(83, BeatRequest(stats).encode_body())
        assert status == 0, f"beat refused: {status}"
        return TrackerChangesReply.decode(body)

    def report(self, free_mb: int = 1000, total_mb: int = 2000) -> TrackerChangesReply:
        request = ReportDiskUsageRequest(tuple(DiskUsage(total_mb, free_mb) for _ in range(self.paths)))
        status, body = self.wire.call(84, request.encode_body())
        assert status == 0, f"disk report refused: {status}"
        return TrackerChangesReply.decode(body)

    def report_trunk_free(self, trunk_free_mb: int) -> None:
        status, body = self.wire.call(74, ReportTrunkFreeRequest(trunk_free_mb).encode_body())
        assert (status, body) == (0, b""), f"trunk free report refused: {status}"

    def activate(self, free_mb: int = 1000) -> None:
        self.join()
        self.beat()
        self.report(free_mb)


def store_port(body: bytes) -> int:
    """The storage port of a 40-byte store reply."""
    return int(struct.unpack("!q", body[31:39])[0])
