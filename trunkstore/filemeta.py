"""File metadata, as FastDFS's set/get metadata commands: key-value pairs of a live file.

Stored in the store's metadata database (:mod:`trunkstore.metadb`), not beside the file, so a file
with metadata costs no extra inode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trunkstore.store import Store


def set_meta(store: Store, file_id: str, meta: Mapping[str, str], merge: bool) -> None:
    store._live()
    store.counters.set_meta_total += 1
    parsed = store._parse(file_id)
    # Under the file's lock: an appender file being renamed (regenerate) moves its metadata, and a
    # change made meanwhile to the old name would be lost with it.
    with store._file_lock(parsed.remote_filename):
        store.stat(file_id)  # the file must exist
        store._meta.set_meta(parsed.remote_filename, meta, merge=merge)
    store.counters.set_meta_ok += 1


def get_meta(store: Store, file_id: str) -> dict[str, str]:
    store._live()
    store.counters.get_meta_total += 1
    parsed = store._parse(file_id)
    store.stat(file_id)
    meta = store._meta.get_meta(parsed.remote_filename) or {}
    store.counters.get_meta_ok += 1
    return meta
