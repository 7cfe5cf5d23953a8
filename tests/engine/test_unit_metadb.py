"""MetaDB and the metadata codec: FastDFS's encoding, the metadata rows and the dedup index in SQLite."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkstore.errors import FileExists, InvalidArgument
from trunkstore.metadb import MetaDB, decode_meta, encode_meta

#: Two dedup signatures (24 bytes, as dedup.content_digest makes them).
DIGEST_A = b"a" * 24
DIGEST_B = b"b" * 24

# Up to 16 characters of at most 4 UTF-8 bytes each stay within the 64-byte name limit.
chars_st = st.characters(codec="utf-8", exclude_characters="\x01\x02")
names_st = st.text(chars_st, min_size=1, max_size=16)
values_st = st.text(chars_st, max_size=64)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[MetaDB]:
    meta = MetaDB(str(tmp_path / "meta.db"), durable=False)
    yield meta
    meta.close()


def traced(db: MetaDB) -> list[str]:
    """The SQL statements ``db`` runs from now on."""
    statements: list[str] = []
    db._db.set_trace_callback(statements.append)
    return statements


# ---- the codec ----------------------------------------------------------------------------------------
def test_encoding_sorts_by_name_and_joins_with_the_separators() -> None:
    assert encode_meta({"b": "2", "a": "1", "c": ""}) == "a\x021\x01b\x022\x01c\x02"


def test_no_metadata_encodes_as_the_empty_string() -> None:
    assert encode_meta({}) == ""
    assert decode_meta("") == {}


@given(st.dictionaries(names_st, values_st, max_size=8))
def test_decode_inverts_encode(meta: dict[str, str]) -> None:
    assert decode_meta(encode_meta(meta)) == meta


def test_limits_count_utf8_bytes_and_are_inclusive() -> None:
    meta = {"n" * 64: "v" * 256, "é" * 32: "ü" * 128}
    assert decode_meta(encode_meta(meta)) == meta


@pytest.mark.parametrize(
    "meta",
    [
        {"": "v"},
        {"n" * 65: "v"},
        {"é" * 33: "v"},  # 66 bytes
        {"n": "v" * 257},
        {"n": "ü" * 129},  # 258 bytes
        {"a\x01b": "v"},
        {"a\x02b": "v"},
        {"a": "b\x01c"},
        {"a": "b\x02c"},
        {"a": 5},
        {5: "a"},
    ],
)
def test_encoding_refuses_what_fastdfs_cannot_carry(meta: dict[object, object]) -> None:
    with pytest.raises(InvalidArgument) as info:
        encode_meta(meta)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


# ---- metadata rows ------------------------------------------------------------------------------------
def test_get_of_a_file_without_metadata_is_none(db: MetaDB) -> None:
    assert db.get_meta("M00/00/00/none") is None
    assert db.meta_count() == 0


def test_replace_keeps_only_the_given_pairs(db: MetaDB) -> None:
    db.set_meta("M00/00/00/f", {"a": "1", "b": "2"}, merge=False)
    db.set_meta("M00/00/00/f", {"c": "3"}, merge=False)
    assert db.get_meta("M00/00/00/f") == {"c": "3"}
    assert db.meta_count() == 1


def test_merge_updates_given_names_and_keeps_the_others(db: MetaDB) -> None:
    db.set_meta("M00/00/00/f", {"b": "3"}, merge=True)  # merging into nothing creates the row
    assert db.meta_count() == 1
    db.set_meta("M00/00/00/f", {"a": "1", "b": "4"}, merge=True)
    assert db.get_meta("M00/00/00/f") == {"a": "1", "b": "4"}
    assert db.meta_count() == 1


def test_empty_replace_deletes_the_row_and_empty_merge_into_nothing_stores_nothing(db: MetaDB) -> None:
    db.set_meta("M00/00/00/f", {"a": "1"}, merge=False)
    db.set_meta("M00/00/00/f", {}, merge=False)
    assert db.get_meta("M00/00/00/f") is None
    assert db.meta_count() == 0
    db.set_meta("M00/00/00/g", {}, merge=True)
    assert db.get_meta("M00/00/00/g") is None
    assert db.meta_count() == 0


@pytest.mark.parametrize("merge", [False, True])
def test_a_refused_set_changes_neither_the_row_nor_the_count(db: MetaDB, merge: bool) -> None:
    with pytest.raises(InvalidArgument):
        db.set_meta("M00/00/00/f", {"": "v"}, merge=merge)
    assert db.get_meta("M00/00/00/f") is None
    assert db.meta_count() == 0
    db.set_meta("M00/00/00/g", {"a": "1"}, merge=False)
    with pytest.raises(InvalidArgument):
        db.set_meta("M00/00/00/g", {"b": "v" * 257}, merge=merge)
    assert db.get_meta("M00/00/00/g") == {"a": "1"}
    assert db.meta_count() == 1
    assert db._db.execute("SELECT COUNT(*) FROM meta").fetchone() == (1,)


def test_delete_counts_only_rows_that_existed(db: MetaDB) -> None:
    db.set_meta("M00/00/00/f", {"a": "1"}, merge=False)
    db.set_meta("M00/00/00/g", {"a": "2"}, merge=False)
    db.delete_meta("M00/00/00/unknown")
    assert db.meta_count() == 2
    db.delete_meta("M00/00/00/f")
    assert db.meta_count() == 1
    assert db.get_meta("M00/00/00/f") is None
    assert db.get_meta("M00/00/00/g") == {"a": "2"}


def test_rename_moves_the_pairs_to_the_new_name(db: MetaDB) -> None:
    db.set_meta("M00/00/00/old", {"k": "v"}, merge=False)
    db.rename_meta("M00/00/00/old", "M00/00/00/new")
    assert db.get_meta("M00/00/00/old") is None
    assert db.get_meta("M00/00/00/new") == {"k": "v"}
    assert db.meta_count() == 1
    db.rename_meta("M00/00/00/unknown", "M00/00/00/other")
    assert db.get_meta("M00/00/00/other") is None
    assert db.meta_count() == 1


def test_lookups_run_no_sql_while_the_tables_are_empty(db: MetaDB) -> None:
    # Every delete asks for metadata and holders: with none stored, that must cost nothing.
    statements = traced(db)
    db.delete_meta("M00/00/00/f")
    db.rename_meta("M00/00/00/f", "M00/00/00/g")
    assert db.is_holder("group1/M00/00/00/f") is False
    assert db.drop_holder("group1/M00/00/00/f") is None
    assert statements == []


def test_counts_are_read_back_from_the_database_on_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "meta.db")
    first = MetaDB(path, durable=True)
    for i in range(3):
        first.set_meta(f"M00/00/00/f{i}", {"i": str(i)}, merge=False)
    first.add_holder(DIGEST_A, "group1/M00/00/00/x")
    first.add_holder(DIGEST_A, "group1/M00/00/00/y")
    first.close()
    second = MetaDB(path, durable=True)
    try:
        assert (second.meta_count(), second.holder_count()) == (3, 2)
        assert second.get_meta("M00/00/00/f2") == {"i": "2"}
        assert second.find_content(DIGEST_A) == "group1/M00/00/00/x"
    finally:
        second.close()


@pytest.mark.parametrize(("durable", "synchronous"), [(True, 2), (False, 0)])  # 2: FULL, 0: OFF
def test_durable_databases_sync_every_commit(tmp_path: Path, durable: bool, synchronous: int) -> None:
    db = MetaDB(str(tmp_path / "meta.db"), durable=durable)
    try:
        assert db._db.execute("PRAGMA synchronous").fetchone() == (synchronous,)
        assert db._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        db.close()


def test_concurrent_writers_keep_the_count_exact(db: MetaDB) -> None:
    def worker(tag: int) -> None:
        for i in range(50):
            db.set_meta(f"M00/00/00/t{tag}-{i}", {"tag": str(tag)}, merge=i % 2 == 0)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.meta_count() == 400
    assert db._db.execute("SELECT COUNT(*) FROM meta").fetchone() == (400,)
    assert db.get_meta("M00/00/00/t7-49") == {"tag": "7"}


# ---- the dedup index ----------------------------------------------------------------------------------
def test_unknown_content_has_no_holder(db: MetaDB) -> None:
    assert db.find_content(DIGEST_A) is None
    assert db.holder_count() == 0


def test_the_first_holder_names_the_content_and_later_ones_join_it(db: MetaDB) -> None:
    for name in ("x", "y", "z"):
        db.add_holder(DIGEST_A, f"group1/M00/00/00/{name}")
    db.add_holder(DIGEST_B, "group1/M00/00/00/other")
    assert db.find_content(DIGEST_A) == "group1/M00/00/00/x"
    assert db.find_content(DIGEST_B) == "group1/M00/00/00/other"
    assert db.holder_count() == 4
    assert db.is_holder("group1/M00/00/00/y") is True
    assert db.is_holder("group1/M00/00/00/w") is False


def test_dropping_holders_counts_down_and_moves_the_content_to_a_remaining_holder(db: MetaDB) -> None:
    for name in ("x", "y", "z"):
        db.add_holder(DIGEST_A, f"group1/M00/00/00/{name}")
    assert db.drop_holder("group1/M00/00/00/y") == 2
    assert db.find_content(DIGEST_A) == "group1/M00/00/00/x"
    assert db.drop_holder("group1/M00/00/00/x") == 1  # the named holder goes: the entry names z now
    assert db.find_content(DIGEST_A) == "group1/M00/00/00/z"
    assert db.is_holder("group1/M00/00/00/x") is False
    assert db.drop_holder("group1/M00/00/00/z") == 0
    assert db.find_content(DIGEST_A) is None
    assert db.holder_count() == 0
    assert db._db.execute("SELECT COUNT(*) FROM content").fetchone() == (0,)


def test_dropping_a_file_that_holds_nothing_changes_nothing(db: MetaDB) -> None:
    db.add_holder(DIGEST_A, "group1/M00/00/00/x")
    assert db.drop_holder("group1/M00/00/00/stranger") is None
    assert db.holder_count() == 1
    assert db.find_content(DIGEST_A) == "group1/M00/00/00/x"
    assert db._db.execute("SELECT refs FROM content").fetchall() == [(1,)]


def test_holders_of_other_content_are_not_touched(db: MetaDB) -> None:
    db.add_holder(DIGEST_A, "group1/M00/00/00/a1")
    db.add_holder(DIGEST_B, "group1/M00/00/00/b1")
    db.add_holder(DIGEST_B, "group1/M00/00/00/b2")
    assert db.drop_holder("group1/M00/00/00/a1") == 0
    assert db.find_content(DIGEST_B) == "group1/M00/00/00/b1"
    assert db._db.execute("SELECT refs FROM content WHERE digest = ?", (DIGEST_B,)).fetchone() == (2,)


def content_row(db: MetaDB, digest: bytes) -> tuple[str, int] | None:
    row = db._db.execute("SELECT file_id, refs FROM content WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else (row[0], row[1])


def test_a_holder_added_twice_is_refused_and_counted_once(db: MetaDB) -> None:
    db.add_holder(DIGEST_A, "group1/M00/00/00/x")
    with pytest.raises(FileExists):
        db.add_holder(DIGEST_A, "group1/M00/00/00/x")
    with pytest.raises(FileExists):
        db.add_holder(DIGEST_B, "group1/M00/00/00/x")  # one file holds one content
    assert content_row(db, DIGEST_A) == ("group1/M00/00/00/x", 1)
    assert content_row(db, DIGEST_B) is None
    assert db.holder_count() == 1
    assert db.drop_holder("group1/M00/00/00/x") == 0
    assert content_row(db, DIGEST_A) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda db: db.add_holder(DIGEST_A, "group1/M00/00/00/z"),
        lambda db: db.drop_holder("group1/M00/00/00/x"),
        lambda db: db.set_meta("M00/00/00/f", {"a": "1"}, merge=True),
    ],
    ids=["add_holder", "drop_holder", "set_meta"],
)
def test_each_change_of_several_statements_is_one_transaction(db: MetaDB, change: Callable[[MetaDB], object]) -> None:
    db.add_holder(DIGEST_A, "group1/M00/00/00/x")
    db.add_holder(DIGEST_A, "group1/M00/00/00/y")
    statements = traced(db)
    change(db)
    assert len(statements) > 3
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert "BEGIN IMMEDIATE" not in statements[1:] and "COMMIT" not in statements[:-1]


def test_a_failed_change_is_rolled_back_and_the_connection_stays_usable(db: MetaDB) -> None:
    db.add_holder(DIGEST_A, "group1/M00/00/00/x")
    statements = traced(db)
    with pytest.raises(FileExists):
        db.add_holder(DIGEST_A, "group1/M00/00/00/x")
    assert statements[-1] == "ROLLBACK"
    assert not db._db.in_transaction
    db.add_holder(DIGEST_A, "group1/M00/00/00/y")
    assert content_row(db, DIGEST_A) == ("group1/M00/00/00/x", 2)


# Rows as a non-atomic change killed half-way leaves them: the holder rows are the truth.
@pytest.mark.parametrize(
    ("content", "dropped", "left"),
    [
        (("group1/M00/00/00/x", 2), "group1/M00/00/00/x", 0),  # a holder row went, its count did not
        (("group1/M00/00/00/x", 1), "group1/M00/00/00/x", 0),
        (("group1/M00/00/00/gone", 5), "group1/M00/00/00/x", 0),
        (None, "group1/M00/00/00/x", 0),  # holder rows without a content row
    ],
)
def test_dropping_the_last_holder_row_ends_the_content_whatever_its_count_says(
    db: MetaDB, content: tuple[str, int] | None, dropped: str, left: int
) -> None:
    db._db.execute("INSERT INTO holders (file_id, digest) VALUES (?, ?)", ("group1/M00/00/00/x", DIGEST_A))
    if content is not None:
        db._db.execute("INSERT INTO content (digest, file_id, refs) VALUES (?, ?, ?)", (DIGEST_A, *content))
    db._holder_rows = 1
    assert db.drop_holder(dropped) == left
    assert content_row(db, DIGEST_A) is None
    assert db.holder_count() == 0


@pytest.mark.parametrize("content", [("group1/M00/00/00/x", 1), ("group1/M00/00/00/x", 0), None])
def test_a_count_too_low_for_the_holder_rows_is_recounted(db: MetaDB, content: tuple[str, int] | None) -> None:
    for name in ("x", "y", "z"):
        db._db.execute("INSERT INTO holders (file_id, digest) VALUES (?, ?)", (f"group1/M00/00/00/{name}", DIGEST_A))
    if content is not None:
        db._db.execute("INSERT INTO content (digest, file_id, refs) VALUES (?, ?, ?)", (DIGEST_A, *content))
    db._holder_rows = 3
    assert db.drop_holder("group1/M00/00/00/x") == 2
    assert content_row(db, DIGEST_A) == ("group1/M00/00/00/y", 2)
    assert db.drop_holder("group1/M00/00/00/y") == 1
    assert db.drop_holder("group1/M00/00/00/z") == 0
    assert content_row(db, DIGEST_A) is None


def test_a_retired_holder_is_not_found_and_the_next_holder_is_named(db: MetaDB) -> None:
    db.add_holder(DIGEST_A, "group1/M00/00/00/bad")
    db.add_holder(DIGEST_A, "group1/M00/00/00/alias")
    db.retire_named_holder(DIGEST_A)
    assert db.find_content(DIGEST_A) is None
    assert db.is_holder("group1/M00/00/00/bad")  # still registered: its file keeps answering for it
    assert db.drop_holder("group1/M00/00/00/alias") == 1
    assert db.find_content(DIGEST_A) is None
    db.add_holder(DIGEST_A, "group1/M00/00/00/good")
    db.add_holder(DIGEST_A, "group1/M00/00/00/later")
    assert content_row(db, DIGEST_A) == ("group1/M00/00/00/good", 3)
    assert db.drop_holder("group1/M00/00/00/bad") == 2
    assert db.find_content(DIGEST_A) == "group1/M00/00/00/good"
