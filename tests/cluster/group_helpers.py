"""Storages of one group in the tests: their settings, and what a test asks of them.

Each member writes its numeric storage ID into its file names and creates trunk containers of its
own (``trunk_id_start`` / ``trunk_id_step``), as ``trunkstore cluster up`` configures them.
"""

from __future__ import annotations

import errno
from typing import Any, Protocol

from procs import ServerProcess, WireClient
from storage_wire import download, file_info

from cluster.client import Client
from cluster.protocol import StorageStatus

GROUP = "group1"
#: Engine settings of an in-process third member of the group, for IDs the pair did not make.
THIRD_MEMBER: dict[str, Any] = {
    "storage_id": 100003,
    "trunk_id_start": 3,
    "trunk_id_step": 3,
    "trunk_file_size": 4 << 20,
    "slot_max_size": 1 << 20,
}


class Reachable(Protocol):
    """A storage process, or one in-process."""

    @property
    def address(self) -> str: ...


def member_conf(number: int, members: int = 2) -> dict[str, Any]:
    """storage.conf settings of member ``number`` of a group of ``members`` (and a third, in-process)."""
    return {"storage_id": 100000 + number, "trunk_id_start": number, "trunk_id_step": members + 1}


def statuses(tracker: ServerProcess) -> dict[str, StorageStatus]:
    with Client([tracker.address]) as client:
        return {s.id: s.status for s in client.list_storages(GROUP)}


def all_active(tracker: ServerProcess, count: int) -> bool:
    found = statuses(tracker)
    return len(found) == count and all(status is StorageStatus.ACTIVE for status in found.values())


def read(storage: Reachable, name: str) -> bytes | None:
    """The file's bytes on ``storage``, or None while it does not have them."""
    with WireClient(storage.address) as wire:
        status, body = download(wire, name)
    if status == errno.EINVAL:  # FastDFS's answer to a download of a 0-byte file (and it hangs up)
        with WireClient(storage.address) as wire:
            status, info = file_info(wire, name)
        assert status != 0 or info[:8] == bytes(8), f"{name}: EINVAL to a download of a non-empty file"
        body = b""
    if status == errno.ENOENT:
        return None
    assert status == 0, f"download of {name} from {storage.address}: status {status}"
    return body
