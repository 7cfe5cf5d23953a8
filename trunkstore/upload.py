"""Streaming uploads: a file received piece by piece, its size announced before the first byte.

:meth:`Store.open_upload` and :meth:`Store.open_slave_upload` return an :class:`Upload`.  What has
arrived is held in one of two places, chosen at open:

* **in memory**, for a file that goes into a trunk slot (``size + 24 <= slot_max_size``, not an
  appender file, trunks enabled) and is at most :data:`MEMORY_LIMIT` bytes (or any slot-sized file
  when dedup is on): committed exactly as :meth:`Store.put` stores bytes;
* **in a spool file, then copied into a slot**, for a larger file that still fits a slot: a server
  receiving many such uploads at once must not hold them all in memory (256 connections times the
  16 MiB default ``slot_max_size`` would be 4 GiB); the kernel copies the spool into the slot;
* **in a spool file** under the chosen store path's ``tmp/`` directory, for larger files, appender
  files and slave files: each :meth:`Upload.write` goes straight to the file, so memory stays bounded
  whatever the size, and :meth:`Upload.commit` links the file into place as a plain file (synced
  first with ``sync_mode="always"``), as every plain file is published.

The announced size (a trunk file's slot size) is admitted against the reserved-space limit at open, so
a full disk refuses an upload before any data arrives; an abort or a failed commit gives it back.  An
upload is used by one thread at a time; any number of uploads may run at once.  A spool file is removed
by :meth:`Upload.abort`, by a failed commit, when an abandoned upload is garbage-collected, and in any
case when the store is next opened.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterable
from stat import S_ISREG
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from trunkstore import fileid as fid
from trunkstore import plainfiles
from trunkstore.buffers import Bytes
from trunkstore.dedup import ContentHasher, link_to_holder, plain_holder_path
from trunkstore.diskio import fsync_dir
from trunkstore.errors import FileExists, InvalidArgument
from trunkstore.slot import HEADER_SIZE, slot_size
from trunkstore.space import SpaceGuard

if TYPE_CHECKING:
    from trunkstore.replica import ReplicaTarget
    from trunkstore.store import Store


_OPEN, _COMMITTED, _CLOSED = "open", "committed", "closed"

#: ``size`` of an upload whose length was not announced (internal: streams of unknown length).
UNKNOWN_SIZE = -1

#: Largest slot-sized upload held in memory; larger ones are spooled to disk as they arrive.
MEMORY_LIMIT = 256 * 1024


class Upload:
    """A file being uploaded piece by piece.  Made by :meth:`Store.open_upload`, not directly.

    ``size`` is the announced size and ``written`` the number of bytes received so far.  Use as a
    context manager: leaving the block with an exception, or without a commit, aborts.
    """

    __slots__ = (
        "__weakref__",
        "_appender",
        "_buffer",
        "_cleanup",
        "_counted",
        "_ext",
        "_hasher",
        "_replica",
        "_slave",
        "_slot_spooled",
        "_state",
        "_store",
        "_store_path",
        "_writer",
        "size",
        "written",
    )

    def __init__(
        self,
        store: Store,
        size: int,
        ext: str,
        store_path: int,
        *,
        in_memory: bool = False,
        slot_spooled: bool = False,
        appender: bool = False,
        slave: tuple[str, str, str] | None = None,
        dedup: bool = False,
        counted: bool = True,
        replica: ReplicaTarget | None = None,
    ) -> None:
        self._store = store
        self.size = size
        self.written = 0
        self._ext = ext
        self._store_path = store_path
        self._appender = appender
        #: For a slave file: ``(master ID, its path, its ID)``.
        self._slave = slave
        #: For another storage's file: where it goes (see :mod:`trunkstore.replica`).
        self._replica = replica
        self._counted = counted
        #: Spooled to disk, but committed into a trunk slot.
        self._slot_spooled = slot_spooled
        self._state = _OPEN
        self._hasher = ContentHasher() if dedup else None
        in_slot = in_memory or slot_spooled
        if replica is not None:
            admitted = replica.admitted
        else:
            admitted = slot_size(size, store._slot_min, store._align) if in_slot else max(size, 0)
        guard = store._guard
        guard.admit(store_path, admitted)
        self._buffer: bytearray | None = None
        self._writer: plainfiles.SpoolWriter | None = None
        try:
            if in_memory:
                self._buffer = bytearray(size)
            else:
                self._writer = plainfiles.SpoolWriter(store.layout.tmp_dir(store_path))
        except BaseException:
            guard.release(store_path, admitted)
            raise
        self._cleanup = weakref.finalize(self, _give_back, guard, store_path, admitted, self._writer)

    # ---- receiving --------------------------------------------------------------------------------
    def write(self, data: Bytes) -> None:
        """Add the next bytes; :class:`InvalidArgument` if they would exceed the announced size."""
        if self._state is not _OPEN:
            raise InvalidArgument(f"the upload is {self._state}")
        view = data if data.__class__ is bytes else memoryview(data).cast("B")
        count = len(view)
        position = self.written
        if self.size >= 0 and position + count > self.size:
            raise InvalidArgument(f"{position + count} bytes would exceed the announced size of {self.size}")
        buffer = self._buffer
        if buffer is not None:
            buffer[position : position + count] = view
        else:
            try:
                self._writer.write(view)  # type: ignore[union-attr]
            except BaseException:
                # What reached the spool is unknown now: the upload cannot go on.
                self._close()
                raise
            if self._hasher is not None:
                self._hasher.update(view)
        self.written = position + count

    # ---- finishing --------------------------------------------------------------------------------
    def commit(self) -> str:
        """Store the file; returns its file ID.

        :class:`InvalidArgument` if fewer bytes than announced were written (the upload stays open).
        Durable as ``sync_mode`` says before it returns.  Any other failure aborts the upload.
        """
        if self._state is not _OPEN:
            raise InvalidArgument(f"the upload is {self._state}")
        if self.size >= 0 and self.written != self.size:
            raise InvalidArgument(f"{self.written} of the announced {self.size} bytes were written")
        store = self._store
        try:
            store._live()
            if self._replica is not None:
                file_id = self._replica.commit(self._buffer, self._writer)
            elif self._buffer is not None:
                file_id = store._put_bytes(self._buffer, self._ext, self._store_path)
            elif self._slot_spooled:
                file_id = self._copy_into_slot()
            else:
                file_id = self._publish()
        except BaseException:
            self._close()
            raise
        self._state = _COMMITTED
        self._buffer = None
        self._cleanup.detach()
        if self._counted:
            store.counters.upload_ok += 1
            store.counters.upload_bytes += self.written
        return file_id

    def abort(self) -> None:
        """Discard everything received; idempotent, and harmless after a commit or a failed commit."""
        if self._state is _OPEN:
            self._close()

    def _close(self) -> None:
        self._state = _CLOSED
        self._buffer = None
        self._cleanup()

    def _spooled_bytes(self) -> bytes:
        """What the spool file holds so far (for a file found small enough for a slot after all)."""
        assert self._writer is not None
        with open(self._writer.path, "rb") as spooled:
            return spooled.read()

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.abort()

    def __repr__(self) -> str:
        return f"<Upload {self._state} {self.written}/{self.size} bytes>"

    def _copy_into_slot(self) -> str:
        """Copy the spooled file into a trunk slot; the spool goes whatever happens."""
        writer = self._writer
        assert writer is not None
        # No sync of the spool: the slot's container is synced before the allocation is published.
        spooled = writer.finish(durable=False)
        try:
            source_fd = os.open(spooled.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return self._store._write_trunk_from_file(
                    source_fd, spooled.size, spooled.crc32, self._ext, self._store_path
                )
            finally:
                os.close(source_fd)
        finally:
            plainfiles.discard(spooled)

    # ---- plain files ------------------------------------------------------------------------------
    def _publish(self) -> str:
        """Link the spooled file into place (the lock-free part first, then dedup under its lock)."""
        store = self._store
        writer = self._writer
        assert writer is not None
        store_path = self._store_path
        if self.size < 0:
            store._guard.admit(store_path, writer.size)  # not announced: admitted now that it is known
        spooled = writer.finish(durable=store._durable)
        if self._slave is not None:
            master_id, path, file_id = self._slave
            store.stat(master_id)  # the master must still exist
            plainfiles.publish(spooled, path, durable=store._durable)
            return file_id
        size_field = fid.make_size_field(spooled.size, appender=self._appender)
        name = fid.encode_name(
            store._source, int(time.time()), size_field, spooled.crc32, None, fid.make_tail(self._ext)
        )
        high, low = store.layout.next_subdir(store_path, name)
        path = os.path.join(store.layout.ensure_data_dir(store_path, high, low), name)
        file_id = store._format(store_path, high, low, name)
        if self._hasher is None:
            plainfiles.publish(spooled, path, durable=store._durable)
            return file_id
        digest = self._hasher.digest()
        with store._dedup_lock:
            holder_path = plain_holder_path(store, digest, spooled)
            # The same bytes stored already: one more name for them, and the spool goes; unless the
            # file system refuses another link (then the spool is published, a copy of its own).
            if holder_path is None or not link_to_holder(store, digest, holder_path, path):
                plainfiles.publish(spooled, path, durable=store._durable)
            else:
                plainfiles.discard(spooled)
                if store._durable:
                    fsync_dir(os.path.dirname(path))
            store._meta.add_holder(digest, file_id)
        return file_id


def _give_back(guard: SpaceGuard, store_path: int, admitted: int, writer: plainfiles.SpoolWriter | None) -> None:
    """Undo what opening an upload did: remove its spool file, return its admitted space."""
    if writer is not None:
        writer.discard()
    guard.release(store_path, admitted)


def open_upload(
    store: Store, size: int, ext: str, *, appender: bool = False, counted: bool = True, dedup: bool = True
) -> Upload:
    """A new upload of ``size`` bytes (:data:`UNKNOWN_SIZE`: not announced); the caller checked ``ext``.

    ``counted``: commit counts it in ``upload_ok``; ``dedup``: a plain file is deduplicated (when the
    store does that) at commit.
    """
    store_path = store._pick_store_path()
    if not appender and size >= 0 and size + HEADER_SIZE <= store._slot_max:
        if size <= MEMORY_LIMIT or store.config.dedup:
            return Upload(store, size, ext, store_path, in_memory=True, counted=counted)
        return Upload(store, size, ext, store_path, slot_spooled=True, counted=counted)
    dedup = dedup and store.config.dedup and not appender
    return Upload(store, size, ext, store_path, appender=appender, dedup=dedup, counted=counted)


def open_slave_upload(store: Store, master_id: str, prefix: str, size: int, ext: str) -> Upload:
    """A new upload of a slave file of ``master_id``; refused now if the name cannot be stored."""
    fid.check_prefix(prefix)
    master = store._parse(master_id)
    if master.is_slave:
        raise InvalidArgument(f"{master_id} is a slave file; a slave's master must not be one")
    store.stat(master_id)  # the master must exist
    name = fid.slave_name(master, prefix, ext)
    if len(name) == len(master.name):
        # FastDFS tells slaves from masters by length alone: this name would read as a master's.
        raise InvalidArgument(f"prefix {prefix!r} with extension {ext!r} gives a name as long as the master's")
    if len(name) + 10 + len(store.group) + 1 > fid.MAX_FILE_ID_LEN:
        raise InvalidArgument("slave file name too long")
    directory = store.layout.ensure_data_dir(master.store_path, master.sub_high, master.sub_low)
    path = os.path.join(directory, name)
    if os.path.lexists(path):
        raise FileExists(f"{name} exists already")
    file_id = store._format(master.store_path, master.sub_high, master.sub_low, name)
    return Upload(store, size, ext, master.store_path, slave=(master_id, path, file_id))


def upload_all(upload: Upload, chunks: Iterable[Bytes]) -> str:
    """Write every chunk and commit; the upload is aborted if anything fails."""
    with upload:
        for chunk in chunks:
            upload.write(chunk)
        return upload.commit()


def put_stream(store: Store, source: BinaryIO, ext: str) -> str:
    """Store what is left of a binary file object (see :meth:`Store.put_file`); ``ext`` is checked."""
    size = remaining_size(source)
    if size is not None:
        return upload_all(store.open_upload(size, ext), plainfiles.read_chunks(source, size))
    # Length unknown (a pipe, a socket, a stream object): what ends within the first chunk is stored
    # from memory; anything longer is spooled as it arrives and read back only if it turns out to fit
    # a trunk slot after all.  Memory: at most a chunk, or a file small enough for a slot.
    limit = store._slot_max - HEADER_SIZE
    wanted = min(limit + 1, plainfiles.CHUNK) if limit >= 0 else 0
    head = _read_up_to(source, wanted)
    if len(head) < wanted:  # the stream ended, within a slot's size
        return store.put(head, ext)
    store.counters.upload_total += 1
    with open_upload(store, UNKNOWN_SIZE, ext) as upload:
        upload.write(head)
        del head  # not held while the rest streams
        for chunk in plainfiles.read_chunks(source):
            upload.write(chunk)
        if upload.written > limit:
            return upload.commit()
        data = upload._spooled_bytes()
    file_id = store._put_bytes(data, ext)  # as put stores it
    store.counters.upload_ok += 1
    store.counters.upload_bytes += len(data)
    return file_id


def put_slave_stream(store: Store, master_id: str, prefix: str, source: BinaryIO, ext: str) -> str:
    """Store what is left of a binary file object as a slave file; ``ext`` is checked, the upload counted."""
    size = remaining_size(source)
    upload = open_slave_upload(store, master_id, prefix, UNKNOWN_SIZE if size is None else size, ext)
    return upload_all(upload, plainfiles.read_chunks(source, size))


def remaining_size(source: BinaryIO) -> int | None:
    """Bytes left in a regular file from its current position; ``None`` when that cannot be known."""
    try:
        st = os.fstat(source.fileno())
        position = source.tell()
    except (AttributeError, OSError, ValueError):
        return None
    if not S_ISREG(st.st_mode) or position < 0 or position > st.st_size:
        return None
    return st.st_size - position


def _read_up_to(source: BinaryIO, count: int) -> bytes:
    """Read ``count`` bytes, or fewer only at end of file (``read`` may return less at a time)."""
    parts = []
    remaining = count
    while remaining > 0:
        chunk = source.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def check_size(size: object) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"an upload's size must be a non-negative integer, not {size!r}")
    return size
