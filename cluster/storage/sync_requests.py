"""Binlog records to SYNC_* requests: each change, with the file's bytes or metadata as they are now.

A record of a file deleted since is skipped (its delete is further on in the binlog); an append or
modify sends the bytes that still exist.  A file sent *whole* (to a peer whose copy is behind) goes
as delete, create and metadata, or not at all.  Preparing reads files, so it runs where a read may
block: on the event loop only for small trunk files (:func:`quick`), else in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cluster.errors import ConnectionLost
from cluster.protocol import (
    SyncAppendFileRequest,
    SyncCreateFileRequest,
    SyncDeleteFileRequest,
    SyncModifyFileRequest,
    SyncRenameFileRequest,
    SyncTruncateFileRequest,
    SyncUpdateFileRequest,
)
from trunkstore import FileNotFound, Store

from .binlog import BinlogRecord
from .handlers import trunk_file_size

log = logging.getLogger(__name__)

#: Files up to this size are read whole and sent in one write; larger ones are streamed.
WHOLE_FILE = 1 << 20


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record's request: ``frame`` whole, or for a large file a head and the file region."""

    record: BinlogRecord
    frame: bytes
    region: tuple[str, int, int] | None = None


def quick(record: BinlogRecord) -> bool:
    """Whether preparing the record's request reads at most a small trunk file (no plain file, no
    metadata database)."""
    op = record.op.upper()
    return op in "DTR" or (op == "C" and 0 <= trunk_file_size(record.filename) <= WHOLE_FILE)


def whole_file_records(records: list[BinlogRecord]) -> list[BinlogRecord]:
    """What replaces changes a peer could not apply: each file as it is now (delete, create, metadata),
    once per file, at the position of the first record that needed it; for a rename, the old name is
    deleted on the peer too."""
    replaced: dict[str, BinlogRecord] = {}
    for record in records:
        replaced.setdefault(record.filename, record)
    whole = []
    for name, record in replaced.items():
        if record.op.upper() == "R":
            whole.append(BinlogRecord(record.timestamp, "D", record.extra[0], (), record.end))
        for op in ("D", "C", "U"):
            whole.append(BinlogRecord(record.timestamp, op, name, (), record.end))
    return whole


class SyncRequests:
    """Builds the requests of one storage's records for its peers."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.group = store.group
        self.prefix = store.group + "/"

    def prepare(self, records: list[BinlogRecord], peer: str) -> tuple[list[Outgoing], int]:
        """The requests of ``records``, and how many records were skipped."""
        outgoing = []
        skipped = 0
        for record in records:
            try:
                item = self.request(record)
            except FileNotFound:
                item = None  # gone since: its delete (or rename) is further on in the binlog
            except (ValueError, OSError) as exc:
                log.warning("peer %s: record %s %s not sent: %s", peer, record.op, record.filename, exc)
                item = None
            if item is None:
                skipped += 1
            else:
                outgoing.append(item)
        return outgoing, skipped

    def prepare_whole(self, records: list[BinlogRecord]) -> list[Outgoing]:
        """The requests sending files whole (see :func:`whole_file_records`).  A file that exists here
        but cannot be read now is not sent in part (its copy on the peer deleted, the new one missing):
        ConnectionLost, and it is tried again from the mark."""
        outgoing: list[Outgoing] = []
        for record in records:
            try:
                item = self.request(record)
            except FileNotFound:
                item = None
            except (ValueError, OSError) as exc:
                raise ConnectionLost(f"cannot read {record.filename} to send it whole: {exc}") from exc
            if item is None and record.op == "C" and self.store.exists(self.prefix + record.filename):
                raise ConnectionLost(f"{record.filename} changed while being read to be sent whole")
            if item is None:
                if record.op == "C":
                    # Gone here since: the peer's copy goes too (the delete before it), nothing more.
                    outgoing = [o for o in outgoing if o.record.filename != record.filename or o.record.op == "D"]
                continue
            if record.op == "U" and not any(
                o.record.filename == record.filename and o.record.op == "C" for o in outgoing
            ):
                continue
            outgoing.append(item)
        return outgoing

    def request(self, record: BinlogRecord) -> Outgoing | None:
        """The request of one record; ``None`` when there is nothing to send (the file shrank or changed)."""
        store, group = self.store, self.group
        file_id = self.prefix + record.filename
        op, ts, name = record.op.upper(), record.timestamp, record.filename
        if op == "C":
            data = store.read_small(file_id, WHOLE_FILE, counted=False)
            if data:
                return Outgoing(record, SyncCreateFileRequest(ts, group, name, len(data)).encode(data))
            path, offset, size = store.locate(file_id)
            head = SyncCreateFileRequest(ts, group, name, size)
            if size > WHOLE_FILE:
                return Outgoing(record, head.encode_head(), (path, offset, size))
            data = store.get(file_id)
            return Outgoing(record, head.encode(data)) if len(data) == size else None
        if op == "D":
            return Outgoing(record, SyncDeleteFileRequest(ts, group, name).encode())
        if op == "U":
            meta = store.get_meta(file_id)
            return Outgoing(record, SyncUpdateFileRequest(ts, group, name, tuple(meta.items())).encode())
        if op == "T":
            old, new = record.ints()
            return Outgoing(record, SyncTruncateFileRequest(ts, group, name, old, new).encode())
        if op == "R":
            return Outgoing(record, SyncRenameFileRequest(ts, group, name, record.extra[0]).encode())
        offset, length = record.ints()  # A and M: the bytes as they are now, as many as still exist
        data = store.get(file_id, offset, length)
        if not data:
            return None  # truncated since: its truncate follows
        kind = SyncAppendFileRequest if op == "A" else SyncModifyFileRequest
        return Outgoing(record, kind(ts, group, name, offset, len(data)).encode(data))
