"""The engine's configuration: one frozen object, FastDFS's key names and defaults where they exist."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from trunkstore.conffile import parse_bool, parse_float, parse_int, parse_size, read_conf, single
from trunkstore.errors import ConfigError, InvalidArgument
from trunkstore.fileid import check_group, source_from_ip
from trunkstore.slot import HEADER_SIZE

SyncMode = Literal["always", "interval", "none"]

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Settings of one :class:`~trunkstore.Store`.

    The format-defining ones (``group_name``, ``store_path_count``, ``subdir_count_per_path``,
    ``trunk_file_size``) are recorded in the store when it is created and checked on every later open.
    """

    #: The group that IDs made by this store belong to.
    group_name: str = "group1"
    #: The storage's IPv4 address, written into every ID as its source ...
    storage_ip: str = "127.0.0.1"
    #: ... or, when set, a numeric storage id written instead (FastDFS's ``use_storage_id``).
    storage_id: int | None = None
    #: How many store paths (``M00``, ``M01``, ...); their directories default to ``<root>/M00`` ...
    store_path_count: int = 1
    #: Explicit directories for the store paths (e.g. one per disk); length must equal the count.
    store_paths: tuple[str, ...] = ()
    #: Sub-directories per level: ``data/00..FF/00..FF`` with the default 256.
    subdir_count_per_path: int = 256
    #: 0: rotate through sub-directories; 1: pick them by a hash of the file name.
    file_distribute_path_mode: int = 0
    #: With rotation, how many files go into one sub-directory before the next is used.
    file_distribute_rotate_count: int = 100
    #: Which store path a new file goes to: 0 round robin, 2 the one with most free space.
    store_path_mode: int = 0
    #: Merge small files into trunk containers.
    use_trunk_file: bool = True
    #: Smallest slot, header included; a smaller remainder is never split off.
    slot_min_size: int = 256
    #: Files with ``size + 24 <= slot_max_size`` go into trunk containers.
    slot_max_size: int = 16 * MIB
    #: Size of one trunk container (a sparse file).
    trunk_file_size: int = 64 * MIB
    #: Slot sizes are rounded up to a multiple of this; 0 allocates exactly ``size + 24``.
    trunk_alloc_alignment_size: int = 0
    #: ``"10%"`` of the disk or an absolute size (``"2G"``) that uploads never eat into.
    reserved_storage_space: str = "10%"
    #: ``always``: acknowledge a write only once it is on disk (group commit);
    #: ``interval``: sync in the background every ``sync_interval`` seconds; ``none``: leave it to the OS.
    sync_mode: SyncMode = "always"
    sync_interval: float = 1.0
    #: Store identical content once (xxhash signature, then a byte comparison).
    dedup: bool = False
    #: Verify the crc32 of every trunk file read.
    verify_crc_on_read: bool = True
    #: How many recently read IDs the read fast path keeps decoded (about 0.4 KB each; 0: none).
    #: A read of one of them skips decoding the ID (about 40% of a small read's cost), never a check.
    read_cache_entries: int = 32_768
    #: Take a snapshot of the allocation state after this many journal records.
    snapshot_every: int = 200_000
    #: This store creates trunk containers ``trunk_id_start``, ``+ trunk_id_step``, ...: storages of
    #: one group use disjoint sequences so that no two ever allocate in the same container.
    trunk_id_start: int = 1
    trunk_id_step: int = 1

    def __post_init__(self) -> None:
        try:
            check_group(self.group_name)
            source_from_ip(self.storage_ip)
        except InvalidArgument as exc:
            raise ConfigError(str(exc)) from None
        if self.storage_id is not None and not 0 < self.storage_id < 1 << 32:
            raise ConfigError(f"storage_id {self.storage_id} out of range 1 .. 2**32-1")
        if not 1 <= self.store_path_count <= 256:
            raise ConfigError("store_path_count must be 1 .. 256")
        if self.store_paths and len(self.store_paths) != self.store_path_count:
            raise ConfigError(
                f"{len(self.store_paths)} store paths given but store_path_count is {self.store_path_count}"
            )
        if not 1 <= self.subdir_count_per_path <= 256:
            raise ConfigError("subdir_count_per_path must be 1 .. 256")
        if self.file_distribute_path_mode not in (0, 1):
            raise ConfigError("file_distribute_path_mode must be 0 (rotate) or 1 (hash)")
        if self.file_distribute_rotate_count < 1:
            raise ConfigError("file_distribute_rotate_count must be at least 1")
        if self.store_path_mode not in (0, 2):
            raise ConfigError("store_path_mode must be 0 (round robin) or 2 (most free space)")
        if not 4 * MIB <= self.trunk_file_size < 1 << 32:
            raise ConfigError("trunk_file_size must be at least 4MB and under 4GB")
        if not HEADER_SIZE < self.slot_min_size <= 64 * 1024:
            raise ConfigError("slot_min_size must be between 25 bytes and 64KB")
        if not self.slot_min_size <= self.slot_max_size <= self.trunk_file_size // 2:
            raise ConfigError("slot_max_size must be between slot_min_size and trunk_file_size / 2")
        if self.trunk_alloc_alignment_size < 0 or self.trunk_alloc_alignment_size > 64 * 1024:
            raise ConfigError("trunk_alloc_alignment_size must be 0 .. 64KB")
        if self.sync_mode not in ("always", "interval", "none"):
            raise ConfigError("sync_mode must be always, interval or none")
        if self.sync_interval <= 0:
            raise ConfigError("sync_interval must be positive")
        if self.read_cache_entries < 0:
            raise ConfigError("read_cache_entries must be 0 or more")
        if self.snapshot_every < 1:
            raise ConfigError("snapshot_every must be at least 1")
        if not 1 <= self.trunk_id_start < 1 << 31 or not 1 <= self.trunk_id_step < 1 << 16:
            raise ConfigError("trunk_id_start and trunk_id_step must be positive")
        self.reserved_bytes(1 << 40)  # validates the syntax now rather than at the first upload

    @property
    def source(self) -> int:
        """The 4 source bytes written into IDs."""
        return self.storage_id if self.storage_id is not None else source_from_ip(self.storage_ip)

    def reserved_bytes(self, disk_total: int) -> int:
        text = self.reserved_storage_space.strip()
        if text.endswith("%"):
            try:
                percent = float(text[:-1])
            except ValueError:
                raise ConfigError(f"reserved_storage_space: bad percentage {text!r}") from None
            if not 0 <= percent < 100:
                raise ConfigError("reserved_storage_space percentage must be 0 .. 100")
            return int(disk_total * percent / 100)
        return parse_size(text, "reserved_storage_space")

    def store_path_dirs(self, root: str) -> list[str]:
        if self.store_paths:
            return [os.path.abspath(p) for p in self.store_paths]
        return [os.path.join(root, f"M{index:02X}") for index in range(self.store_path_count)]

    def format_record(self) -> dict[str, Any]:
        """The settings that fix the on-disk format, as recorded in the store."""
        return {
            "group_name": self.group_name,
            "store_path_count": self.store_path_count,
            "subdir_count_per_path": self.subdir_count_per_path,
            "trunk_file_size": self.trunk_file_size,
        }

    def replace(self, **changes: Any) -> StoreConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_conf(cls, path: str | os.PathLike[str], **overrides: Any) -> StoreConfig:
        """Load from a FastDFS ``storage.conf``-style file; unknown keys are ignored here."""
        return cls.from_values(read_conf(path), **overrides)

    @classmethod
    def from_values(cls, values: Mapping[str, list[str]], **overrides: Any) -> StoreConfig:
        kwargs: dict[str, Any] = {}
        for key, kind in _CONF_KEYS.items():
            text = single(values, key)
            if text is None:
                continue
            kwargs[key] = _convert(kind, text, key)
        count = kwargs.get("store_path_count", 1)
        paths = [single(values, f"store_path{i}") for i in range(count)]
        if any(paths):
            if not all(paths):
                raise ConfigError(f"store_path0 .. store_path{count - 1} must all be given")
            # FastDFS keeps files under <store_path>/data; so does trunkstore.
            kwargs["store_paths"] = tuple(p for p in paths if p)
        kwargs.update(overrides)
        return cls(**kwargs)


def _convert(kind: str, text: str, key: str) -> Any:
    if kind == "size":
        return parse_size(text, key)
    if kind == "int":
        return parse_int(text, key)
    if kind == "bool":
        return parse_bool(text, key)
    if kind == "float":
        return parse_float(text, key)
    return text


_CONF_KEYS: dict[str, str] = {
    "group_name": "str",
    "storage_ip": "str",
    "store_path_count": "int",
    "subdir_count_per_path": "int",
    "file_distribute_path_mode": "int",
    "file_distribute_rotate_count": "int",
    "store_path_mode": "int",
    "use_trunk_file": "bool",
    "slot_min_size": "size",
    "slot_max_size": "size",
    "trunk_file_size": "size",
    "trunk_alloc_alignment_size": "size",
    "reserved_storage_space": "str",
    "sync_mode": "str",
    "sync_interval": "float",
    "dedup": "bool",
    "verify_crc_on_read": "bool",
    "read_cache_entries": "int",
    "snapshot_every": "int",
    "storage_id": "int",
    "trunk_id_start": "int",
    "trunk_id_step": "int",
}

#: Every key :meth:`StoreConfig.from_values` understands (for callers that warn about unknown keys).
STORE_CONF_KEYS = frozenset(_CONF_KEYS) | {f"store_path{i}" for i in range(256)}
