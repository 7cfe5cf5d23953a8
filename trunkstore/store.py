"""The engine facade: one storage server's disk, addressed by FastDFS file IDs.

Small files (``size + 24 <= slot_max_size``) are merged into trunk containers; larger files, appender
files and slave files are plain files in the sub-directory layout.  Every method is safe to call from
many threads at once; an :class:`~trunkstore.upload.Upload` is used by one thread at a time.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

from trunkstore import appender, dedup, filemeta, plainfiles, reading, replica, upload
from trunkstore import fileid as fid
from trunkstore.buffers import Bytes, byte_view
from trunkstore.checksum import crc32
from trunkstore.config import StoreConfig
from trunkstore.diskio import write_file_atomic
from trunkstore.errors import (
    FileNotFound,
    FormatMismatch,
    InvalidArgument,
    InvalidFileId,
    StoreClosed,
)
from trunkstore.fastpath import make_decoder, make_reader
from trunkstore.fileid import TAIL_CHARS, FileId
from trunkstore.layout import Layout
from trunkstore.metadb import MetaDB
from trunkstore.reports import CheckReport, FileStat, ScrubReport, StoreStats
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE, TYPE_SHARED, slot_size
from trunkstore.space import SpaceGuard
from trunkstore.stats import Counters
from trunkstore.trunkpool import TrunkPool
from trunkstore.upload import Upload

FileSource = str | os.PathLike[str] | BinaryIO
_FORMAT_VERSION = 1


class Store:
    """A FastDFS-compatible store of files on local disk.

    ``Store(root, config=None, **settings)``: ``settings`` override fields of ``config`` (a
    :class:`StoreConfig`).  Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, root: str | os.PathLike[str], config: StoreConfig | None = None, **settings: Any) -> None:
        config = config or StoreConfig()
        if settings:
            config = config.replace(**settings)
        self.config = config
        self.root = os.path.abspath(os.fspath(root))
        os.makedirs(self.root, exist_ok=True)
        dirs = config.store_path_dirs(self.root)
        self.layout = Layout(
            self.root,
            dirs,
            config.subdir_count_per_path,
            config.file_distribute_path_mode,
            config.file_distribute_rotate_count,
        )
        self._check_format(dirs)
        for index, directory in enumerate(dirs):
            os.makedirs(os.path.join(directory, "data"), exist_ok=True)
            plainfiles.remove_stale_tmp(self.layout.tmp_dir(index))
        self.group = config.group_name
        self._durable = config.sync_mode == "always"
        self._source = config.source
        self._dedup = config.dedup
        self._slot_max = config.slot_max_size if config.use_trunk_file else -1
        self._slot_min = config.slot_min_size
        self._align = config.trunk_alloc_alignment_size
        self._path_count = config.store_path_count
        self._rotor = itertools.count()
        self._guard = SpaceGuard(dirs, config.reserved_bytes)
        self._meta = MetaDB(self.layout.meta_db, durable=config.sync_mode != "none")
        self.counters = Counters()
        self._pool = TrunkPool(self.layout, config)
        self._pool.set_id_prefix(self.group)
        self._decode_trunk_id = make_decoder(self.group)
        self._remote_start = len(self.group) + 1
        self._read_whole = make_reader(
            self.group, self._pool.slot_map, crc32 if config.verify_crc_on_read else None, config.read_cache_entries
        )
        self._ext_ok: set[str] = {""}
        # Appender operations on one file are serialised; distinct files proceed in parallel.
        self._file_locks = [threading.Lock() for _ in range(64)]
        # With dedup, finding a holder, sharing its slot and registering the new holder must not
        # interleave with the deletion of holders.
        self._dedup_lock = threading.RLock()
        self._closed = False

    # ---- lifecycle --------------------------------------------------------------------------------
    def _check_format(self, dirs: list[str]) -> None:
        # Paths inside the root are recorded relative to it, so a store can be moved or restored elsewhere.
        recorded_dirs = [os.path.relpath(d, self.root) if d.startswith(self.root + os.sep) else d for d in dirs]
        record = {"format": _FORMAT_VERSION, **self.config.format_record(), "store_paths": recorded_dirs}
        path = self.layout.format_file
        try:
            with open(path, encoding="utf-8") as handle:
                recorded = json.load(handle)
        except FileNotFoundError:
            write_file_atomic(path, json.dumps(record, indent=2).encode())
            return
        except (OSError, ValueError) as exc:
            raise FormatMismatch(f"cannot read the store's format record {path}: {exc}") from exc
        differing = [key for key in record if recorded.get(key) != record[key]]
        if differing:
            details = ", ".join(f"{key}: store has {recorded.get(key)!r}, given {record[key]!r}" for key in differing)
            raise FormatMismatch(f"store at {self.root} was created with other settings ({details})")

    def close(self) -> None:
        """Make everything durable, write a snapshot of the allocation state and release the files."""
        if self._closed:
            return
        self._closed = True
        try:
            self._pool.close()
        finally:
            self._meta.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def sync(self) -> None:
        """Make every write so far durable (useful with ``sync_mode="none"`` or ``"interval"``)."""
        self._pool.sync()

    # ---- helpers ----------------------------------------------------------------------------------
    def _parse(self, file_id: str) -> FileId:
        parsed = fid.parse_file_id(file_id, self.group)
        if parsed.store_path >= self._path_count:
            raise InvalidFileId(f"file ID {file_id!r} names store path {parsed.store_path}, which is not configured")
        count = self.config.subdir_count_per_path
        if parsed.sub_high >= count or parsed.sub_low >= count:
            raise InvalidFileId(f"file ID {file_id!r} names a sub-directory outside 00..{count - 1:02X}")
        return parsed

    def _check_ext(self, ext: str) -> None:
        if ext not in self._ext_ok:
            fid.check_ext(ext)
            if len(self._ext_ok) < 1024:
                self._ext_ok.add(ext)

    def _pick_store_path(self) -> int:
        if self._path_count == 1:
            return 0
        if self.config.store_path_mode == 2:
            return self._guard.most_free()
        return next(self._rotor) % self._path_count

    def _live(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def _format(self, store_path: int, high: int, low: int, name: str) -> str:
        return f"{self.group}/M{store_path:02X}/{high:02X}/{low:02X}/{name}"

    # ---- writing ----------------------------------------------------------------------------------
    def put(self, data: Bytes, ext: str = "") -> str:
        """Store ``data``; returns its new file ID."""
        if self._closed:
            self._live()
        if ext not in self._ext_ok:
            self._check_ext(ext)
        if data.__class__ is not bytes:
            data = byte_view(data)
        counters = self.counters
        counters.upload_total += 1
        size = len(data)
        if size + HEADER_SIZE <= self._slot_max and not self._dedup:
            # _put_bytes's trunk branch, spelt out on the hot path.
            file_id, ticket = self._write_trunk(data, size, crc32(data), ext)
            if ticket:
                self._pool.wait(ticket)
        else:
            file_id = self._put_bytes(data, ext)
        counters.upload_ok += 1
        counters.upload_bytes += size
        return file_id

    def _put_bytes(self, data: Bytes, ext: str, store_path: int = -1) -> str:
        """Store bytes held in memory: a trunk slot when they fit, else a plain file; dedup when enabled.

        ``store_path`` >= 0: where the trunk slot goes, its space admitted already (by an upload).
        """
        size = len(data)
        crc = crc32(data)
        if self._dedup:
            with self._dedup_lock:
                return dedup.put_deduplicated(self, data, size, crc, ext, store_path)
        if size + HEADER_SIZE <= self._slot_max:
            file_id, ticket = self._write_trunk(data, size, crc, ext, store_path)
            self._pool.wait(ticket)
            return file_id
        return self._put_plain_bytes(data, ext)

    def _write_trunk(self, data: Bytes, size: int, crc: int, ext: str, store_path: int = -1) -> tuple[str, int]:
        """Write one small file into a slot; returns its ID and the ticket to wait on for durability.

        ``store_path`` < 0: pick one and admit the slot's space here.
        """
        alloc = slot_size(size, self._slot_min, self._align)
        if store_path < 0:
            store_path = 0 if self._path_count == 1 else self._pick_store_path()
            self._guard.admit(store_path, alloc)
        timestamp = int(time.time())
        tail = fid.make_tail(ext)
        container, offset, alloc, ticket = self._pool.write_slot(
            store_path, alloc, size, crc, timestamp, tail.encode("ascii"), data
        )
        file_id = fid.encode_trunk_name(
            self._source, timestamp, size, crc, container.trunk_id, offset, alloc, tail, container.id_prefix
        )
        return file_id, ticket

    def _write_trunk_from_file(self, source_fd: int, size: int, crc: int, ext: str, store_path: int) -> str:
        """Copy a spooled file of ``size`` bytes into a slot of ``store_path`` (space admitted already)."""
        alloc = slot_size(size, self._slot_min, self._align)
        timestamp = int(time.time())
        tail = fid.make_tail(ext)
        container, offset, alloc, ticket = self._pool.write_slot_from_file(
            store_path, alloc, size, crc, timestamp, tail.encode("ascii"), source_fd
        )
        self._pool.wait(ticket)
        return fid.encode_trunk_name(
            self._source, timestamp, size, crc, container.trunk_id, offset, alloc, tail, container.id_prefix
        )

    def _put_plain_bytes(self, data: Bytes, ext: str) -> str:
        return upload.upload_all(upload.open_upload(self, len(data), ext, counted=False, dedup=False), [data])

    def open_upload(self, size: int, ext: str = "", *, appender: bool = False) -> Upload:
        """Start a streaming upload of ``size`` bytes: :meth:`Upload.write` them, then :meth:`Upload.commit`.

        Small files are held in memory (at most ``slot_max_size``), larger ones, appender files and
        slave files are spooled to disk as they arrive.  :class:`StoreFull` at once if the announced
        size does not fit above the reserved space.
        """
        self._live()
        self._check_ext(ext)
        upload.check_size(size)
        self.counters.upload_total += 1
        return upload.open_upload(self, size, ext, appender=appender)

    def open_slave_upload(self, master_id: str, prefix: str, size: int, ext: str = "") -> Upload:
        """Start a streaming upload of a slave file of ``master_id`` (see :meth:`put_slave`)."""
        self._live()
        self._check_ext(ext)
        upload.check_size(size)
        self.counters.upload_total += 1
        return upload.open_slave_upload(self, master_id, prefix, size, ext)

    def put_file(self, source: FileSource, ext: str = "") -> str:
        """Store the contents of a path or binary file object, streaming: memory use stays bounded."""
        self._live()
        self._check_ext(ext)
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                return upload.put_stream(self, handle, ext)
        return upload.put_stream(self, source, ext)

    def put_many(self, items: Iterable[Bytes | tuple[Bytes, str]]) -> list[str]:
        """Store several files; the small ones share one durable commit.  Returns their IDs in order."""
        self._live()
        ids: list[str] = []
        last_ticket = 0
        try:
            for item in items:
                if isinstance(item, tuple):
                    if len(item) != 2:
                        raise InvalidArgument(f"put_many takes data or (data, ext) pairs, not a {len(item)}-tuple")
                    data, ext = item
                else:
                    data, ext = item, ""
                data = byte_view(data)
                size = len(data)
                if self._dedup or size + HEADER_SIZE > self._slot_max:
                    ids.append(self.put(data, ext))
                    continue
                self._check_ext(ext)
                self.counters.upload_total += 1
                file_id, last_ticket = self._write_trunk(data, size, crc32(data), ext)
                ids.append(file_id)
                self.counters.upload_ok += 1
                self.counters.upload_bytes += size
        finally:
            # Tickets are ordered: waiting for the last covers every earlier one.
            self._pool.wait(last_ticket)
        return ids

    # ---- reading ----------------------------------------------------------------------------------
    def get(self, file_id: str, offset: int = 0, length: int | None = None) -> bytes:
        """The file's bytes from ``offset``, ``length`` of them (``None``: to the end)."""
        counters = self.counters
        counters.download_total += 1
        data = self._read_whole(file_id) if offset == 0 and length is None else None
        if data is None:
            data = self._get_slow(file_id, offset, length)
        counters.download_ok += 1
        counters.download_bytes += len(data)
        return data

    def read_small(self, file_id: str, limit: int, *, counted: bool = True) -> bytes | None:
        """A whole trunk file of at most ``limit`` bytes, from the read fast path; ``None`` otherwise.

        ``None`` says nothing about the file: use :meth:`get`, which reads any file or reports
        precisely why it cannot.  For servers that answer small reads at once and larger ones otherwise;
        ``counted=False`` leaves the download counters alone (a read for replication, not a client's).
        """
        data = self._read_whole(file_id, limit)
        if data is not None and counted:
            counters = self.counters
            counters.download_total += 1
            counters.download_ok += 1
            counters.download_bytes += len(data)
        return data

    def _get_slow(self, file_id: str, offset: int, length: int | None) -> bytes:
        return reading.read(self, file_id, offset, length)

    def read_into(self, file_id: str, out: BinaryIO, offset: int = 0, length: int | None = None) -> int:
        """Stream the file's bytes (a range of them) into ``out``; returns how many were written."""
        return reading.read_into(self, file_id, out, offset, length)

    def locate(self, file_id: str) -> tuple[str, int, int]:
        """``(path, offset, size)`` of the file's bytes on disk, for zero-copy sending (``sendfile``).

        The range is checked now; a server sends it at once, so a later delete cannot be observed.
        """
        return reading.locate(self, file_id)

    def stat(self, file_id: str) -> FileStat:
        """Size, crc32, creation time, kind and source of a live file."""
        return reading.stat(self, file_id)

    def exists(self, file_id: str) -> bool:
        try:
            self.stat(file_id)
        except (FileNotFound, InvalidFileId):
            return False
        return True

    # ---- deleting ---------------------------------------------------------------------------------
    def delete(self, file_id: str) -> None:
        """Delete a file and its metadata; its space is reusable once the deletion is durable."""
        self._live()
        counters = self.counters
        counters.delete_total += 1
        if not self._dedup and self._delete_own_trunk_slot(file_id):
            counters.delete_ok += 1
            return
        parsed = self._parse(file_id)
        if self._dedup:
            with self._dedup_lock:
                self._delete_parsed(parsed, file_id)
        else:
            self._delete_parsed(parsed, file_id)
        self.counters.delete_ok += 1

    def _delete_own_trunk_slot(self, file_id: str) -> bool:
        """The hot path: free the slot of a well-formed trunk ID that is exactly its file's own slot.

        Decodes only what freeing needs (see :func:`trunkstore.fastpath.make_decoder`); the directory
        must be that of the container, and the pool checks the slot start and header under its lock.
        ``False`` for anything else (not a trunk ID, a shared slot, no such file): the full path then
        deletes it or reports the precise error.
        """
        decoded = self._decode_trunk_id(file_id)
        if decoded is None:
            return False
        raw, (_source, mtime, _high, size, crc, trunk_id, offset, alloc) = decoded
        container = self._pool.containers.get(trunk_id)
        if container is None or not file_id.startswith(container.id_prefix):
            return False
        expected = HEADER.pack(TYPE_FILE, alloc, size, crc, mtime, raw[-TAIL_CHARS:])
        try:
            ticket = self._pool.free(trunk_id, offset, alloc, expected)
        except FileNotFound:
            return False
        self._meta.drop_holder(file_id)
        self._pool.wait(ticket)
        self._meta.delete_meta(file_id[self._remote_start :])
        return True

    def _delete_parsed(self, parsed: FileId, file_id: str) -> None:
        key = parsed.remote_filename
        if parsed.trunk is not None:
            self._delete_trunk(parsed)
        else:
            path = self.layout.file_path(parsed)
            with self._file_lock(key):
                self._meta.drop_holder(str(parsed))
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    raise FileNotFound(f"no file {file_id}") from None
        self._meta.delete_meta(key)

    def _delete_trunk(self, parsed: FileId) -> None:
        trunk = parsed.trunk
        assert trunk is not None
        expected = reading.expected_header(parsed)
        reading.check_container_dir(self, parsed)
        try:
            ticket = self._pool.free(trunk.trunk_id, trunk.offset, trunk.alloc_size, expected)
        except FileNotFound:
            # Not this file's own slot: it may be one holder of a slot shared by dedup.
            on_disk = self._pool.slot_header(trunk.trunk_id, trunk.offset)
            if on_disk[:1] != TYPE_SHARED or not reading.shared_slot_matches(self, parsed, on_disk):
                raise FileNotFound(f"no file {parsed}") from None
            if self._meta.drop_holder(str(parsed)) != 0:
                return
            ticket = self._pool.free(trunk.trunk_id, trunk.offset, trunk.alloc_size, on_disk)
        else:
            self._meta.drop_holder(str(parsed))
        self._pool.wait(ticket)

    # ---- appender and slave files -----------------------------------------------------------------
    def _file_lock(self, key: str) -> threading.Lock:
        return self._file_locks[hash(key) % len(self._file_locks)]

    def put_appender(self, data: Bytes = b"", ext: str = "") -> str:
        """Store an appender file: a plain file that can later be appended to, modified and truncated."""
        data = byte_view(data)
        return upload.upload_all(self.open_upload(len(data), ext, appender=True), [data])

    def append(self, file_id: str, data: Bytes) -> int:
        """Append to an appender file; returns its new size."""
        return appender.append(self, file_id, byte_view(data))

    def modify(self, file_id: str, offset: int, data: Bytes) -> int:
        """Overwrite an appender file's bytes at ``offset`` (at most its size); returns its new size."""
        return appender.modify(self, file_id, offset, byte_view(data))

    def truncate(self, file_id: str, size: int = 0, *, expected_size: int | None = None) -> bool:
        """Cut an appender file to ``size`` bytes (at most its current size).  With ``expected_size``,
        only if the file has exactly that size (checked under the file's lock); returns whether it cut."""
        return appender.truncate(self, file_id, size, expected_size)

    def regenerate_appender_name(self, file_id: str) -> str:
        """Turn an appender file into a normal file: a new ID with its real size and crc32."""
        return appender.regenerate_name(self, file_id)

    def put_slave(self, master_id: str, prefix: str, data: Bytes | BinaryIO, ext: str = "") -> str:
        """Store a slave file named after its master (``<master name><prefix>.<ext>``)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            content = byte_view(data)
            return upload.upload_all(self.open_slave_upload(master_id, prefix, len(content), ext), [content])
        self._live()
        self._check_ext(ext)
        self.counters.upload_total += 1
        return upload.put_slave_stream(self, master_id, prefix, data, ext)

    # ---- replicas: another storage's files and changes, at their file IDs (see trunkstore.replica) -----
    def open_replica_upload(self, file_id: str, size: int) -> Upload:
        """Start receiving another storage's file of ``size`` bytes; :meth:`Upload.commit` stores it under
        exactly ``file_id``.  :class:`AlreadyExists` if it is here already, at once or at the commit."""
        return replica.open_upload(self, file_id, size)

    def put_replica(self, file_id: str, data: Bytes) -> None:
        """Store another storage's file under exactly ``file_id`` (see :meth:`open_replica_upload`)."""
        replica.put(self, file_id, byte_view(data))

    def append_replica(self, file_id: str, offset: int, data: Bytes) -> None:
        """Apply an append another storage made at ``offset`` (its size then) of an appender file."""
        replica.append(self, file_id, offset, byte_view(data))

    def rename_replica(self, src_id: str, dest_id: str) -> None:
        """Apply another storage's renaming of appender file ``src_id`` to normal file ``dest_id``."""
        replica.rename(self, src_id, dest_id)

    # ---- metadata ---------------------------------------------------------------------------------
    def set_meta(self, file_id: str, meta: Mapping[str, str], merge: bool = False) -> None:
        """Replace (or with ``merge``, update) the file's metadata; an empty replace deletes it."""
        filemeta.set_meta(self, file_id, meta, merge)

    def get_meta(self, file_id: str) -> dict[str, str]:
        """The file's metadata (empty if it has none)."""
        return filemeta.get_meta(self, file_id)

    # ---- inspection -------------------------------------------------------------------------------
    def check(self, fix: bool = False) -> CheckReport:
        """Verify every invariant: free-space trees, containers, and each allocated slot's header; and find
        what a change cut short by a crash can leave besides the files (:mod:`trunkstore.leftovers`).
        ``fix=True`` frees leaked space and removes such leftovers."""
        from trunkstore.verify import check_store

        self._live()
        return check_store(self, self._pool, fix=fix)

    def scrub(self) -> ScrubReport:
        """Re-read every stored file and verify its crc32."""
        from trunkstore.verify import scrub_store

        self._live()
        return scrub_store(self, self._pool)

    def stats(self) -> StoreStats:
        """Operation counters (as FastDFS's storage stats) and space figures."""
        pool = self._pool.stats()
        totals = [self._guard.usage(i) for i in range(self._path_count)]
        return StoreStats(
            counters=self.counters.snapshot(),
            trunk_containers=pool["trunk_containers"],
            trunk_capacity_bytes=pool["trunk_capacity_bytes"],
            trunk_free_bytes=pool["trunk_free_bytes"],
            trunk_free_extents=pool["trunk_free_extents"],
            trunk_own_free_bytes=pool["trunk_own_free_bytes"],
            metadata_entries=self._meta.meta_count(),
            dedup_holders=self._meta.holder_count(),
            disk_total_bytes=sum(t for t, _ in totals),
            disk_free_bytes=sum(f for _, f in totals),
        )
