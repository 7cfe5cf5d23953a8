"""Metadata and the dedup index, in one SQLite database per store.

Metadata of small files must not cost an inode each (FastDFS writes a ``-m`` file per file), so every
file's metadata is a row here, keyed by its remote file name and stored in FastDFS's wire encoding
(``name\\x02value`` records joined by ``\\x01``, sorted by name).

The dedup index maps a content signature (xxh3-128 and size) to the IDs sharing that content:
``content(digest, file_id, refs)`` names the holder that new uploads of that content share (``file_id``
is empty while none can be: the named one was found corrupt or at its file system's link limit, and the
next holder registered is named instead); ``holders(file_id, digest)`` lists them all.  The holder
rows are the truth: ``refs`` counts them, and a count that disagrees with them is repaired, not trusted.

Every change that takes more than one statement runs in one transaction (the connection is in
autocommit mode, so :meth:`MetaDB._transaction` opens it explicitly): a crash in the middle leaves
the database as it was before the change.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from trunkstore.errors import FileExists, InvalidArgument

MAX_NAME = 64
MAX_VALUE = 256
FIELD_SEP = "\x02"
RECORD_SEP = "\x01"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (file TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content (digest BLOB PRIMARY KEY, file_id TEXT NOT NULL, refs INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holders (file_id TEXT PRIMARY KEY, digest BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holders_by_digest ON holders (digest);
"""


def encode_meta(meta: Mapping[str, str]) -> str:
    """FastDFS's metadata encoding; names 1..64 and values up to 256 UTF-8 bytes."""
    for name, value in meta.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument("metadata names and values are strings")
        if not 0 < len(name.encode()) <= MAX_NAME or not len(value.encode()) <= MAX_VALUE:
            raise InvalidArgument(f"metadata {name!r}: names are 1..{MAX_NAME} bytes, values up to {MAX_VALUE}")
        if any(sep in name or sep in value for sep in (FIELD_SEP, RECORD_SEP)):
            raise InvalidArgument("metadata may not contain the separators \\x01 and \\x02")
    return RECORD_SEP.join(f"{name}{FIELD_SEP}{meta[name]}" for name in sorted(meta))


def decode_meta(text: str) -> dict[str, str]:
    if not text:
        return {}
    result = {}
    for record in text.split(RECORD_SEP):
        name, _, value = record.partition(FIELD_SEP)
        result[name] = value
    return result


class MetaDB:
    """Thread-safe access to the store's SQLite database."""

    def __init__(self, path: str, *, durable: bool) -> None:
        self._lock = threading.Lock()
        # Autocommit mode: transactions are opened explicitly by _transaction, never implicitly.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        self._db.executescript(_SCHEMA)
        # Skips the metadata lookup on every delete while no file has metadata (the common case).
        (self._meta_rows,) = self._db.execute("SELECT COUNT(*) FROM meta").fetchone()
        (self._holder_rows,) = self._db.execute("SELECT COUNT(*) FROM holders").fetchone()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the body in one transaction: committed if it returns, rolled back if anything raises.

        The caller holds ``_lock`` and updates the row counts only after the body, so they change
        only with a commit.  With ``synchronous=FULL`` the commit is durable when this returns.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may have ended it already
                db.execute("ROLLBACK")
            raise

    # ---- metadata ---------------------------------------------------------------------------------
    def set_meta(self, file: str, meta: Mapping[str, str], *, merge: bool) -> None:
        with self._lock:
            with self._transaction() as db:
                row = db.execute("SELECT data FROM meta WHERE file = ?", (file,)).fetchone()
                current = decode_meta(row[0]) if merge and row is not None else {}
                current.update(meta)
                if current:
                    # Encoded (and so validated) before the write: a refused call writes and counts nothing.
                    data = encode_meta(current)
                    db.execute(
                        "INSERT INTO meta (file, data) VALUES (?, ?) "
                        "ON CONFLICT(file) DO UPDATE SET data=excluded.data",
                        (file, data),
                    )
                    added = int(row is None)
                else:
                    db.execute("DELETE FROM meta WHERE file = ?", (file,))
                    added = -int(row is not None)
            self._meta_rows += added

    def get_meta(self, file: str) -> dict[str, str] | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM meta WHERE file = ?", (file,)).fetchone()
        return None if row is None else decode_meta(row[0])

    def delete_meta(self, file: str) -> None:
        if not self._meta_rows:
            return
        with self._lock:
            if self._db.execute("DELETE FROM meta WHERE file = ?", (file,)).rowcount:
                self._meta_rows -= 1

    def rename_meta(self, old: str, new: str) -> None:
        if not self._meta_rows:
            return
        with self._lock:
            self._db.execute("UPDATE meta SET file = ? WHERE file = ?", (new, old))

    def meta_files(self) -> list[str]:
        """The remote file names that have metadata."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT file FROM meta")]

    def meta_count(self) -> int:
        return int(self._meta_rows)

    # ---- dedup ------------------------------------------------------------------------------------
    def find_content(self, digest: bytes) -> str | None:
        """The holder new uploads of ``digest`` share; ``None`` if there is none they can share."""
        with self._lock:
            row = self._db.execute(
                "SELECT file_id FROM content WHERE digest = ? AND file_id != ''", (digest,)
            ).fetchone()
        return None if row is None else str(row[0])

    def add_holder(self, digest: bytes, file_id: str) -> None:
        """Record that ``file_id`` holds the content ``digest``; it is named if no holder is.

        :class:`FileExists` if ``file_id`` is registered already (nothing changes then).
        """
        with self._lock:
            with self._transaction() as db:
                try:
                    db.execute("INSERT INTO holders (file_id, digest) VALUES (?, ?)", (file_id, digest))
                except sqlite3.IntegrityError:
                    raise FileExists(f"{file_id} is registered as a holder of content already") from None
                db.execute(
                    "INSERT INTO content (digest, file_id, refs) VALUES (?, ?, 1) "
                    "ON CONFLICT(digest) DO UPDATE SET refs = refs + 1, "
                    "file_id = CASE content.file_id WHEN '' THEN excluded.file_id ELSE content.file_id END",
                    (digest, file_id),
                )
            self._holder_rows += 1

    def retire_named_holder(self, digest: bytes) -> None:
        """The named holder of ``digest`` cannot be shared any more (corrupt, gone, or at its link limit):
        new uploads store a copy of their own, and the next holder registered is named instead.

        The holder itself stays registered, and its file as it is.
        """
        with self._lock:
            self._db.execute("UPDATE content SET file_id = '' WHERE digest = ?", (digest,))

    def is_holder(self, file_id: str) -> bool:
        if not self._holder_rows:
            return False
        with self._lock:
            return self._db.execute("SELECT 1 FROM holders WHERE file_id = ?", (file_id,)).fetchone() is not None

    def drop_holder(self, file_id: str) -> int | None:
        """Forget ``file_id`` as a holder; returns how many holders remain (``None``: it was none)."""
        if not self._holder_rows:
            return None
        with self._lock:
            with self._transaction() as db:
                row = db.execute("SELECT digest FROM holders WHERE file_id = ?", (file_id,)).fetchone()
                if row is None:
                    return None
                digest = row[0]
                db.execute("DELETE FROM holders WHERE file_id = ?", (file_id,))
                remaining = self._count_down(db, digest, file_id)
            self._holder_rows -= 1
        return remaining

    @staticmethod
    def _count_down(db: sqlite3.Connection, digest: bytes, dropped: str) -> int:
        """Rewrite ``digest``'s content row once the holder ``dropped`` is deleted; returns the holders left.

        The count is taken from the holder rows (so a content row left wrong or missing by a change that
        was not atomic is mended here); the named holder stays named unless it is the one dropped.
        """
        (remaining,) = db.execute("SELECT COUNT(*) FROM holders WHERE digest = ?", (digest,)).fetchone()
        if not remaining:
            db.execute("DELETE FROM content WHERE digest = ?", (digest,))
            return 0
        content = db.execute("SELECT file_id FROM content WHERE digest = ?", (digest,)).fetchone()
        named = None if content is None else content[0]
        if named is None or named == dropped:
            (named,) = db.execute("SELECT file_id FROM holders WHERE digest = ? LIMIT 1", (digest,)).fetchone()
        db.execute(
            "INSERT INTO content (digest, file_id, refs) VALUES (?, ?, ?) "
            "ON CONFLICT(digest) DO UPDATE SET file_id = excluded.file_id, refs = excluded.refs",
            (digest, named, remaining),
        )
        return int(remaining)

    def holder_ids(self) -> list[str]:
        """The file IDs registered as dedup holders."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT file_id FROM holders")]

    def holder_count(self) -> int:
        return int(self._holder_rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
