"""What the store reports: file status, statistics, and the results of check and scrub."""

from __future__ import annotations

from dataclasses import dataclass, field

from trunkstore.fileid import FileKind


@dataclass(frozen=True, slots=True)
class FileStat:
    file_id: str
    size: int
    crc32: int
    #: Unix time the file was created (from its ID).
    create_time: int
    kind: FileKind
    #: The storage that created the file: its IPv4 address, and the raw 4-byte source field.
    source_ip: str
    source: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    counters: dict[str, int]
    trunk_containers: int
    trunk_capacity_bytes: int
    #: Free bytes inside every trunk container, this store's own and the replicas of other storages'.
    trunk_free_bytes: int
    trunk_free_extents: int
    #: The part of ``trunk_free_bytes`` in this store's own containers, the only ones it allocates in.
    trunk_own_free_bytes: int
    metadata_entries: int
    dedup_holders: int
    disk_total_bytes: int
    disk_free_bytes: int


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Problems found by :meth:`Store.check`, leftovers, and what ``fix=True`` repaired or removed.

    ``problems`` are broken invariants.  ``leftovers`` are what a change cut short by a crash left
    besides the files (a metadata row of a deleted file, a second name nobody was given): harmless to
    every read and write, and not counted against ``ok``; they only take room until removed.
    """

    problems: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    slots_checked: int = 0
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class ScrubReport:
    """Files whose bytes no longer match their crc32, found by :meth:`Store.scrub`."""

    files_checked: int = 0
    bytes_checked: int = 0
    corrupt: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt
