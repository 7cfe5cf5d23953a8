"""The metadata database after kill -9 in the middle of a change: the change happened whole or not at all.

A child process (this file, run as a script) makes the change and is killed by SIGKILL from inside
SQLite's statement trace, at the first statement after a chosen one: the earlier statements have run,
the change is not finished.  The parent then reopens the database and uses it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from trunkstore import FileNotFound, Store, parse_file_id
from trunkstore.metadb import MetaDB
from trunkstore.reports import CheckReport

MIB = 1 << 20
DIGEST = b"d" * 24
HOLDERS = ("group1/M00/00/00/x", "group1/M00/00/00/y")
DEDUP = {"dedup": True, "slot_max_size": 64 * 1024, "trunk_file_size": 4 * MIB, "sync_mode": "always"}
SHARED = b"shared content" * 70
#: The holder row is deleted, the content row not yet updated: inside ``drop_holder``.
KILL_AFTER = "DELETE FROM holders"


def kill_after_statement(db: sqlite3.Connection, prefix: str) -> None:
    """SIGKILL this process when ``db`` starts the statement that follows one beginning with ``prefix``."""
    seen = False

    def trace(statement: str) -> None:
        nonlocal seen
        if seen:
            os.kill(os.getpid(), signal.SIGKILL)
        seen = statement.startswith(prefix)

    db.set_trace_callback(trace)


def child_drop_holder(path: str) -> None:
    db = MetaDB(path, durable=True)
    for holder in HOLDERS:
        db.add_holder(DIGEST, holder)
    print("READY", flush=True)
    kill_after_statement(db._db, KILL_AFTER)
    db.drop_holder(HOLDERS[0])


def child_store_delete(root: str) -> None:
    store = Store(root, **DEDUP)
    ids = [store.put(SHARED), store.put(SHARED)]
    print("IDS", *ids, flush=True)
    kill_after_statement(store._meta._db, KILL_AFTER)
    store.delete(ids[0])


def run_child(mode: str, path: Path) -> list[str]:
    """Run this file as a child in ``mode``; it must die by SIGKILL.  Returns its output lines."""
    done = subprocess.run(
        [sys.executable, __file__, mode, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stdout, done.stderr)
    return done.stdout.splitlines()


def test_kill_inside_drop_holder_leaves_the_index_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    assert run_child("drop-holder", path) == ["READY"]
    db = MetaDB(str(path), durable=True)
    try:
        holders = db._db.execute("SELECT file_id FROM holders ORDER BY file_id").fetchall()
        assert holders == [(holder,) for holder in HOLDERS]
        assert db._db.execute("SELECT file_id, refs FROM content").fetchall() == [(HOLDERS[0], 2)]
        assert db.holder_count() == 2
        assert db.drop_holder(HOLDERS[0]) == 1
        assert db.drop_holder(HOLDERS[1]) == 0
        assert db._db.execute("SELECT COUNT(*) FROM content").fetchone() == (0,)
    finally:
        db.close()


def test_kill_inside_the_delete_of_a_shared_slot_leaves_both_files_deletable(
    tmp_path: Path, check_store: Callable[[Store], CheckReport]
) -> None:
    root = tmp_path / "store"
    lines = run_child("store-delete", root)
    assert len(lines) == 1 and lines[0].startswith("IDS ")
    first, second = lines[0].split()[1:]
    with Store(root, **DEDUP) as store:
        # The delete of ``first`` was never acknowledged: rolled back, so both still read back.
        assert store.get(first) == SHARED and store.get(second) == SHARED
        check_store(store)
        store.delete(first)
        assert store.get(second) == SHARED
        store.delete(second)
        for file_id in (first, second):
            with pytest.raises(FileNotFound):
                store.get(file_id)
        trunk = parse_file_id(second).trunk
        assert trunk is not None
        assert not store._pool.is_allocated(trunk.trunk_id, trunk.offset, trunk.alloc_size)
        assert store.stats().dedup_holders == 0
        check_store(store)


if __name__ == "__main__":
    {"drop-holder": child_drop_holder, "store-delete": child_store_delete}[sys.argv[1]](sys.argv[2])
    sys.exit(3)  # not killed: the parent fails
