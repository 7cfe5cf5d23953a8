"""Fixtures for the cluster tests: real tracker and storage processes on 127.0.0.1."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import ServerProcess, WireClient, start_storage, start_tracker, wait_for

QUERY_STORE_WITHOUT_GROUP_ONE = 101


@dataclass
class Cluster:
    tracker: ServerProcess
    storage: ServerProcess


def storage_is_offered(tracker: ServerProcess, storage: ServerProcess) -> bool:
    """True once the tracker answers an upload query with ``storage``'s port."""
    with WireClient(tracker.address) as wire:
        status, body = wire.call(QUERY_STORE_WITHOUT_GROUP_ONE)
    return status == 0 and len(body) == 40 and struct.unpack("!q", body[31:39])[0] == storage.port


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[ServerProcess]:
    with start_tracker(tmp_path) as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """One tracker and one storage, the storage active (offered for uploads)."""
    with start_tracker(tmp_path) as tracker, start_storage(tmp_path, [tracker]) as storage:
        wait_for(lambda: storage_is_offered(tracker, storage), message="the storage to become active")
        yield Cluster(tracker, storage)
