"""ack_replicas and peers that refuse a record for good: a refused file is not the peer's copy.

The source storage runs in-process, so that the test can ask its replication how many copies of a
record it counts; its peer and the tracker are real processes on 127.0.0.1.  The peer's trunk
containers are smaller than the source's (4 MB against 16 MB), so a file in a slot that ends past
4 MB of the source's container has no place on the peer: it answers EINVAL, and the source's
sender passes that record over for good.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from group_helpers import all_active, member_conf, read
from inprocess import InProcessStorage
from procs import WireClient, start_storage, start_tracker, wait_for
from storage_wire import delete, upload, upload_status

from cluster.errors import Busy
from cluster.storage import replicator
from cluster.storage.binlog import BinlogPosition, BinlogReader, BinlogRecord
from cluster.storage.replication import sync_dir

MIB = 1 << 20
PEER_ID = "100002"


def last_record(storage: InProcessStorage) -> BinlogRecord:
    return BinlogReader(sync_dir(str(storage.base_path)), BinlogPosition()).read(limit=10_000)[-1]


def test_a_peer_that_refused_a_file_is_not_counted_as_holding_it(tmp_path: Path) -> None:
    with (
        start_tracker(tmp_path) as tracker,
        InProcessStorage(
            tmp_path, [tracker], ack_replicas=1, network_timeout=20, trunk_file_size="16MB", **member_conf(1)
        ) as source,
        start_storage(tmp_path, [tracker], **member_conf(2)) as peer,
    ):
        wait_for(lambda: all_active(tracker, 2), message="both storages ACTIVE")

        def first_upload() -> bool:
            with WireClient(source.address) as wire:
                status, _ = upload_status(wire, b"copied")
            assert status in (0, errno.EBUSY), status  # EBUSY: the peer is not connected yet
            return status == 0

        wait_for(first_upload, message="an upload once the peer is reachable")

        # 5 MB in a 16 MB container: the peer, with 4 MB containers, refuses it.  The upload is
        # answered at once, and not as copied.
        with WireClient(source.address) as wire:
            status, _ = upload_status(wire, os.urandom(5 * MIB), "bin")
        assert status == errno.EBUSY
        refused = last_record(source)
        assert refused.op == "C"
        assert read(source, refused.filename) is not None  # kept here, not acknowledged
        replication = source.server.replication
        assert replication is not None

        # The sender passes the refused record over; the peer still does not count as holding it.
        wait_for(
            lambda: replication.senders[PEER_ID].mark.position >= refused.end,
            message="the sender past the refused record",
        )

        async def ask() -> int:
            copies = replication.copies(refused.end)
            with pytest.raises(Busy, match="1 refused it"):
                await replication.copied(refused.end, 1, timeout=10)  # at once: no peer can take it
            return copies

        assert source.run(ask()) == 0
        assert read(peer, refused.filename) is None

        # Replication goes on after the refused record: once the big file is gone, making room in the
        # first 4 MB of the container again, later uploads are copied, then acknowledged.
        with WireClient(source.address) as wire:
            assert delete(wire, refused.filename)[0] == 0
            name = upload(wire, b"after the refused one")
        assert read(peer, name) == b"after the refused one"  # no wait: the reply came after the copy


def test_a_refusal_the_sender_no_longer_remembers_is_never_counted_as_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sender keeps only its newest refusals.  Once it has forgotten one, it cannot tell the records
    # up to it that the peer took from those it refused: none of them counts as the peer's copy.
    monkeypatch.setattr(replicator, "REFUSALS_KEPT", 1)
    with (
        start_tracker(tmp_path) as tracker,
        InProcessStorage(
            tmp_path, [tracker], ack_replicas=1, network_timeout=20, trunk_file_size="16MB", **member_conf(1)
        ) as source,
        start_storage(tmp_path, [tracker], **member_conf(2)),
    ):
        wait_for(lambda: all_active(tracker, 2), message="both storages ACTIVE")
        replication = source.server.replication
        assert replication is not None

        async def copies(*records: BinlogRecord) -> list[int]:
            return [replication.copies(record.end) for record in records]

        async def refused_at_once(record: BinlogRecord) -> None:
            with pytest.raises(Busy):
                await replication.copied(record.end, 1, timeout=10)

        wait_for(lambda: replication.reachable() == 1, message="the peer reachable")
        with WireClient(source.address) as wire:
            assert upload(wire, b"copied") == last_record(source).filename
        held = last_record(source)
        sender = replication.senders[PEER_ID]
        refused: list[BinlogRecord] = []
        for _ in range(2):  # 0-5 MB and 5-10 MB of a 16 MB container: past the peer's 4 MB
            # The peer closes its connection after each refusal: with none reachable, an upload would
            # be refused at its start.
            wait_for(lambda: replication.reachable() == 1, message="the peer reachable")
            with WireClient(source.address) as wire:
                assert upload_status(wire, os.urandom(5 * MIB), "bin")[0] == errno.EBUSY
            refused.append(last_record(source))
            wait_for(lambda: sender.mark.position >= refused[-1].end, message="the sender past the refusal")
            if len(refused) == 1:
                assert source.run(copies(held, refused[0])) == [1, 0]
        assert held.end < refused[0].end < refused[1].end
        assert list(sender.refused) == [refused[1].end]  # the first refusal forgotten
        assert source.run(copies(held, *refused)) == [0, 0, 0]
        for record in refused:
            source.run(refused_at_once(record))
