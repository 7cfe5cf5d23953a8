"""What the client's calls return: frozen dataclasses (the stat listings reuse the codec's)."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.protocol import Address, GroupStat, StorageStat

__all__ = ["FileInfo", "GroupStat", "StorageAddress", "StorageStat", "StoreTarget"]


@dataclass(frozen=True, slots=True)
class StorageAddress:
    """A storage the tracker named for reading or changing a file (QUERY_FETCH_ONE / QUERY_UPDATE)."""

    group: str
    host: str
    port: int

    @property
    def address(self) -> Address:
        return Address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where the tracker sends an upload: a storage and the store path (0xFF: the storage picks)."""

    group: str
    host: str
    port: int
    store_path_index: int

    @property
    def address(self) -> Address:
        return Address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """QUERY_FILE_INFO's answer, with the file's kind decoded from its ID."""

    file_id: str
    size: int
    create_time: int
    #: Unsigned crc32 of the content (0 when the storage did not compute it).
    crc32: int
    source_ip: str
    #: ``normal``, ``trunk``, ``appender`` or ``slave``, from the ID as FastDFS decodes it locally.
    kind: str
