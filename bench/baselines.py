"""The three storage backends the benchmarks compare, behind one small adapter interface.

* ``trunkstore``: the engine, ``sync_mode="none"`` or, when durable, ``"always"`` (group commit).
* ``files``: one file per object in the same 256 x 256 two-level layout the engine uses for plain files
  (``root/HH/HH/<name>``), filled by rotation, 100 files per directory (FastDFS's default). Durable: every
  file is fsynced, and so is its directory (and new directories' parents), before the put returns.
* ``sqlite``: one table ``blobs(id INTEGER PRIMARY KEY, data BLOB)`` in WAL mode, autocommit per put,
  ``synchronous=OFF``; durable: ``synchronous=FULL``, and a batch is one transaction.

Each baseline is written as a careful user would write it (keys carry the size so a read is one ``read``,
the current directory's descriptor is kept open for its fsyncs), so that the comparison is not flattered.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Hashable
from types import TracebackType
from typing import Any

from trunkstore import Store

Key = Hashable
BACKENDS = ("trunkstore", "files", "sqlite")


class Backend:
    """``put(bytes) -> key``, ``get(key) -> bytes``, ``delete(key)``, ``put_batch_durable(list) -> keys``."""

    name = "backend"

    def __init__(self, root: str, durable: bool) -> None:
        self.root = root
        self.durable = durable

    def put(self, data: bytes) -> Any:
        raise NotImplementedError

    def get(self, key: Any) -> bytes:
        raise NotImplementedError

    def delete(self, key: Any) -> None:
        raise NotImplementedError

    def put_batch_durable(self, items: list[bytes]) -> list[Any]:
        """Store ``items``; all of them are durable when this returns (``durable`` backends only)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class TrunkstoreBackend(Backend):
    name = "trunkstore"

    #: Keyword settings of the store beyond its sync mode (a subclass changes them).
    settings: dict[str, Any] = {}

    def __init__(self, root: str, durable: bool) -> None:
        super().__init__(root, durable)
        self.store = Store(root, sync_mode="always" if durable else "none", **self.settings)
        # Bound methods looked up once: the benchmark loop should time the engine, not attribute lookups.
        self.put = self.store.put  # type: ignore[method-assign]
        self.get = self.store.get  # type: ignore[method-assign]
        self.delete = self.store.delete  # type: ignore[method-assign]

    def put_batch_durable(self, items: list[bytes]) -> list[Any]:
        assert self.durable, "put_batch_durable on a store opened with sync_mode='none'"
        return self.store.put_many(items)

    def close(self) -> None:
        self.store.close()


class UncachedTrunkstoreBackend(TrunkstoreBackend):
    """The engine with the read fast path's cache of decoded IDs turned off: every read decodes its ID,
    as reads of a working set larger than the cache (``read_cache_entries``) do."""

    name = "trunkstore"
    settings = {"read_cache_entries": 0}


class FilesBackend(Backend):
    name = "files"
    PER_DIR = 100  # FastDFS's file_distribute_rotate_count default

    def __init__(self, root: str, durable: bool) -> None:
        super().__init__(root, durable)
        os.makedirs(root, exist_ok=True)
        self._next = 0
        self._dir = ""
        self._dir_fd = -1

    def _directory(self, number: int) -> str:
        index = (number // self.PER_DIR) % 65536
        directory = os.path.join(self.root, f"{index >> 8:02X}", f"{index & 0xFF:02X}")
        if directory != self._dir:
            # Made when first needed, as the engine does, so both pay for their directories alike.
            parent = os.path.dirname(directory)
            new_parent = not os.path.isdir(parent)
            os.makedirs(directory, exist_ok=True)
            if self._dir_fd >= 0:
                os.close(self._dir_fd)
                self._dir_fd = -1
            if self.durable:
                self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                _fsync_dir(parent)
                if new_parent:
                    _fsync_dir(self.root)
            self._dir = directory
        return directory

    def _write(self, data: bytes) -> tuple[str, int]:
        number = self._next
        self._next += 1
        path = os.path.join(self._directory(number), f"{number:016x}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        return path, len(data)

    def put(self, data: bytes) -> tuple[str, int]:
        key = self._write(data)
        if self.durable:
            os.fsync(self._dir_fd)  # the new directory entry, without which the file is not durable
        return key

    def get(self, key: tuple[str, int]) -> bytes:
        path, size = key
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, size)
            while len(data) < size:  # never for regular files this small, but a short read is legal
                more = os.read(fd, size - len(data))
                if not more:
                    raise OSError(f"{path}: file shorter than {size} bytes")
                data += more
            return data
        finally:
            os.close(fd)

    def delete(self, key: tuple[str, int]) -> None:
        os.unlink(key[0])

    def put_batch_durable(self, items: list[bytes]) -> list[Any]:
        """fsync per file (as ``put``); each directory the batch touched is fsynced once, at the end."""
        assert self.durable
        keys = []
        directories = set()
        for data in items:
            key = self._write(data)
            keys.append(key)
            directories.add(os.path.dirname(key[0]))
        for directory in directories:
            _fsync_dir(directory)
        return keys

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, root: str, durable: bool) -> None:
        super().__init__(root, durable)
        os.makedirs(root, exist_ok=True)
        # isolation_level=None: autocommit, so a lone put is its own transaction.
        self.db = sqlite3.connect(os.path.join(root, "blobs.db"), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self.db.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)")

    def put(self, data: bytes) -> int:
        row_id = self.db.execute("INSERT INTO blobs (data) VALUES (?)", (data,)).lastrowid
        assert row_id is not None
        return row_id

    def get(self, key: int) -> bytes:
        row = self.db.execute("SELECT data FROM blobs WHERE id = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        data: bytes = row[0]
        return data

    def delete(self, key: int) -> None:
        self.db.execute("DELETE FROM blobs WHERE id = ?", (key,))

    def put_batch_durable(self, items: list[bytes]) -> list[Any]:
        assert self.durable
        self.db.execute("BEGIN")
        try:
            keys = [self.put(data) for data in items]
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return keys

    def close(self) -> None:
        self.db.close()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_backend(name: str, root: str, durable: bool) -> Backend:
    kinds: dict[str, type[Backend]] = {
        "trunkstore": TrunkstoreBackend,
        "trunkstore-uncached": UncachedTrunkstoreBackend,
        "files": FilesBackend,
        "sqlite": SqliteBackend,
    }
    return kinds[name](root, durable)


def disk_usage(root: str) -> int:
    """What ``du -s --block-size=1`` reports: allocated blocks of every entry under ``root``, itself included."""
    total = os.lstat(root).st_blocks * 512
    for directory, subdirs, files in os.walk(root):
        for entry in (*subdirs, *files):
            total += os.lstat(os.path.join(directory, entry)).st_blocks * 512
    return total
