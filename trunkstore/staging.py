"""What the next group commit of a trunk pool writes, and what waits for it (``sync_mode="always"``).

A commit syncs the containers written and the directories created, then appends the staged journal
records and syncs the journal; only then are the frees and container removals that waited for their
records carried out (see the write order in :mod:`trunkstore.trunkpool`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trunkstore import diskio

if TYPE_CHECKING:
    from trunkstore.freespace import Extent
    from trunkstore.journal import Journal
    from trunkstore.trunk import TrunkContainer


class Staged:
    """One commit's worth of staged work; the pool's lock guards it."""

    __slots__ = ("dirty", "frees", "new_dirs", "records", "unlinks")

    def __init__(self) -> None:
        #: Journal records not written yet.
        self.records = bytearray()
        #: Containers written to, and directories created, since the last commit.
        self.dirty: set[TrunkContainer] = set()
        self.new_dirs: set[str] = set()
        #: Freed slots and removed containers, carried out once their records are durable.
        self.frees: list[Extent] = []
        self.unlinks: list[TrunkContainer] = []

    @property
    def waiting(self) -> bool:
        """Whether records, or work waiting for records, are staged."""
        return bool(self.records or self.frees or self.unlinks)

    def take(self) -> Staged:
        """Everything staged, moved into a new object; this one is left empty."""
        taken = Staged()
        taken.records, self.records = self.records, bytearray()
        taken.dirty, self.dirty = self.dirty, set()
        taken.new_dirs, self.new_dirs = self.new_dirs, set()
        taken.frees, self.frees = self.frees, []
        taken.unlinks, self.unlinks = self.unlinks, []
        return taken

    def write_durably(self, journal: Journal) -> None:
        """New directories, then container data, then the records: each synced before the next."""
        for directory in self.new_dirs:
            diskio.fsync_dir(directory)
        for container in self.dirty:
            if container.fd >= 0:
                container.datasync()
        if self.records:
            journal.append(bytes(self.records))
            journal.sync()
