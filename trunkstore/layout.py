"""Where things live on disk: store paths, the two-level sub-directory tree, and the store's own files.

::

    <store path>/data/HH/HH/<file name>         plain files (large, appender, slave)
    <store path>/data/HH/HH/<trunk id, 6 digits> trunk containers
    <store path>/tmp/                           uploads being written, renamed into place when complete
    <root>/store.json                           the format-defining settings, checked on open
    <root>/journal/                             allocation journal and snapshots
    <root>/meta.db                              metadata and dedup index (SQLite)

Sub-directories are created when first needed, not all 65,536 up front.
"""

from __future__ import annotations

import os
import threading
import zlib

from trunkstore.fileid import FileId


class Layout:
    """Paths of one store, and the choice of sub-directory for each new file."""

    def __init__(self, root: str, store_dirs: list[str], subdir_count: int, mode: int, rotate_count: int) -> None:
        self.root = root
        self.store_dirs = store_dirs
        self.subdir_count = subdir_count
        self.mode = mode
        self.rotate_count = rotate_count
        self._lock = threading.Lock()
        # Rotation position per store path: (high, low, files written into it).
        self._rotation = [[0, 0, 0] for _ in store_dirs]
        self._made: set[tuple[int, int, int]] = set()

    @property
    def journal_dir(self) -> str:
        return os.path.join(self.root, "journal")

    @property
    def meta_db(self) -> str:
        return os.path.join(self.root, "meta.db")

    @property
    def format_file(self) -> str:
        return os.path.join(self.root, "store.json")

    def tmp_dir(self, store_path: int) -> str:
        return os.path.join(self.store_dirs[store_path], "tmp")

    def data_dir(self, store_path: int, sub_high: int, sub_low: int) -> str:
        return os.path.join(self.store_dirs[store_path], "data", f"{sub_high:02X}", f"{sub_low:02X}")

    def ensure_data_dir(self, store_path: int, sub_high: int, sub_low: int) -> str:
        path = self.data_dir(store_path, sub_high, sub_low)
        key = (store_path, sub_high, sub_low)
        if key not in self._made:
            os.makedirs(path, exist_ok=True)
            self._made.add(key)
        return path

    def file_path(self, file_id: FileId) -> str:
        """The plain file of ``file_id`` (the ID is validated, so its name cannot leave the directory)."""
        return os.path.join(self.data_dir(file_id.store_path, file_id.sub_high, file_id.sub_low), file_id.name)

    def container_path(self, store_path: int, sub_high: int, sub_low: int, trunk_id: int) -> str:
        return os.path.join(self.data_dir(store_path, sub_high, sub_low), f"{trunk_id:06d}")

    def next_subdir(self, store_path: int, name: str = "") -> tuple[int, int]:
        """The sub-directory for a new file: by rotation (every ``rotate_count`` files) or by name hash."""
        count = self.subdir_count
        if self.mode == 1 and name:
            digest = zlib.crc32(name.encode("ascii"))
            return (digest >> 16) % count, (digest & 0xFFFF) % count
        with self._lock:
            position = self._rotation[store_path]
            high, low = position[0], position[1]
            position[2] += 1
            if position[2] >= self.rotate_count:
                position[2] = 0
                position[1] += 1
                if position[1] >= count:
                    position[1] = 0
                    position[0] = (position[0] + 1) % count
            return high, low

    def created_subdirs(self, store_path: int) -> int:
        """How many leaf sub-directories exist under one store path (for statistics and tests)."""
        data = os.path.join(self.store_dirs[store_path], "data")
        if not os.path.isdir(data):
            return 0
        return sum(len(os.listdir(os.path.join(data, high))) for high in os.listdir(data))
