"""Appender files: plain files that can be appended to, modified, truncated and renamed to normal.

Operations on one file are serialised by the store's striped file locks; distinct files proceed in
parallel.  Growth is admitted against the reserved space first, as every upload is.

A failed append or modify (a full disk part way through, an I/O error, a failed sync) leaves the file
as it was, so that it can simply be retried: an append is cut back to the old size; a modify is cut
back too, and the bytes it overwrote are written back from a copy read before writing (which costs a
read of at most the bytes being written).  Only when undoing fails as well, noted on the error raised,
may the file keep part of the new bytes.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from trunkstore import fileid as fid
from trunkstore import plainfiles
from trunkstore.buffers import Bytes
from trunkstore.diskio import fsync_dir
from trunkstore.errors import FileNotFound, InvalidArgument, NotAppender
from trunkstore.fileid import FileId

if TYPE_CHECKING:
    from trunkstore.store import Store


def appender_path(store: Store, file_id: str) -> tuple[FileId, str]:
    """The parsed ID and path of a live appender file."""
    parsed = store._parse(file_id)
    if parsed.trunk is not None:
        raise FileNotFound(f"{file_id} is a trunk file, not an appender file")
    path = store.layout.file_path(parsed)
    if not os.path.exists(path):
        raise FileNotFound(f"no file {file_id}")
    if not parsed.is_appender:
        raise NotAppender(f"{file_id} is not an appender file")
    return parsed, path


def append(store: Store, file_id: str, data: Bytes) -> int:
    store._live()
    counters = store.counters
    counters.append_total += 1
    parsed, path = appender_path(store, file_id)
    store._guard.admit(parsed.store_path, len(data))
    try:
        with store._file_lock(parsed.remote_filename):
            size = plainfiles.write_at(path, None, data, durable=store._durable)
    except BaseException:
        store._guard.release(parsed.store_path, len(data))
        raise
    counters.append_ok += 1
    counters.append_bytes += len(data)
    return size


def modify(store: Store, file_id: str, offset: int, data: Bytes) -> int:
    store._live()
    counters = store.counters
    counters.modify_total += 1
    parsed, path = appender_path(store, file_id)
    with store._file_lock(parsed.remote_filename):
        size = os.stat(path).st_size
        if not 0 <= offset <= size:
            raise InvalidArgument(f"modify offset {offset} outside the file's {size} bytes")
        growth = max(0, offset + len(data) - size)
        store._guard.admit(parsed.store_path, growth)
        try:
            new_size = plainfiles.write_at(path, offset, data, durable=store._durable)
        except BaseException:
            store._guard.release(parsed.store_path, growth)
            raise
    counters.modify_ok += 1
    counters.modify_bytes += len(data)
    return new_size


def truncate(store: Store, file_id: str, size: int, expected_size: int | None = None) -> bool:
    store._live()
    store.counters.truncate_total += 1
    parsed, path = appender_path(store, file_id)
    with store._file_lock(parsed.remote_filename):
        current = os.stat(path).st_size
        if expected_size is not None and current != expected_size:
            return False
        if not 0 <= size <= current:
            raise InvalidArgument(f"truncate size {size} outside 0..{current}")
        plainfiles.truncate(path, size, durable=store._durable)
    store.counters.truncate_ok += 1
    return True


def regenerate_name(store: Store, file_id: str) -> str:
    """A new ID with the file's real size and crc32, as a normal file; its metadata moves with it.

    Ordered so that a crash at any point leaves the old ID valid with its metadata, or the new one with
    it: the new name is linked and given a copy of the metadata while the old name still stands; removing
    the old name is the switch; the old name's metadata row is deleted last.  A crash before the switch
    leaves the new name as an extra link nobody was given (and the copy of the metadata), one after it
    an unused metadata row under the old name; ``check(fix=True)`` removes either.
    """
    store._live()
    parsed, path = appender_path(store, file_id)
    with store._file_lock(parsed.remote_filename):
        size, crc = plainfiles.crc32_of(path)
        name = fid.encode_name(
            store._source, int(time.time()), fid.make_size_field(size), crc, None, fid.make_tail(parsed.ext)
        )
        directory = os.path.dirname(path)
        new_id = store._format(parsed.store_path, parsed.sub_high, parsed.sub_low, name)
        new_remote = new_id.split("/", 1)[1]
        meta = store._meta.get_meta(parsed.remote_filename)
        os.link(path, os.path.join(directory, name))
        if store._durable:
            fsync_dir(directory)
        if meta:
            store._meta.set_meta(new_remote, meta, merge=False)
        os.unlink(path)
        if store._durable:
            fsync_dir(directory)
        store._meta.delete_meta(parsed.remote_filename)
    return new_id
