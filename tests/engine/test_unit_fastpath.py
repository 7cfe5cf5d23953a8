"""trunkstore.fastpath: the decoded-ID cache of the read fast path, and that it never outlives a file."""

from __future__ import annotations

import pytest

from trunkstore import FileNotFound, Store
from trunkstore.config import ConfigError, StoreConfig
from trunkstore.fastpath import DecodedIds, SlotClaim


def claim(n: int) -> SlotClaim:
    return (1, n, b"M00/00/00/", (b"\x01", 1024, 1000, n, 0, b"0000001"))


def test_decoded_ids_keep_at_most_their_capacity() -> None:
    cache = DecodedIds(8)
    for n in range(100):
        cache.add(f"id{n}", claim(n))
        assert len(cache) <= 8
    assert cache.get("id99") == claim(99)
    assert cache.get("id0") is None


def test_an_id_read_again_before_two_generations_pass_stays() -> None:
    cache = DecodedIds(8)  # generations of 4
    cache.add("hot", claim(0))
    for n in range(1, 40):
        assert cache.get("hot") == claim(0)  # each hit in the old generation moves it to the young one
        cache.add(f"cold{n}", claim(n))
    assert cache.get("hot") == claim(0)


def test_capacity_zero_keeps_nothing() -> None:
    cache = DecodedIds(0)
    cache.add("x", claim(1))
    assert len(cache) == 0 and cache.get("x") is None


def test_negative_capacity_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        StoreConfig(read_cache_entries=-1)


def test_config_file_key() -> None:
    assert StoreConfig.from_values({"read_cache_entries": ["0"]}).read_cache_entries == 0


@pytest.mark.parametrize("entries", [0, 4, 32_768])
def test_a_cached_id_of_a_deleted_or_reused_slot_reads_as_not_found(tmp_path, entries: int) -> None:
    with Store(
        str(tmp_path), sync_mode="none", trunk_file_size=4 << 20, slot_max_size=64 << 10, read_cache_entries=entries
    ) as store:
        first = store.put(b"a" * 1000)
        assert store.get(first) == b"a" * 1000  # cached now (when entries > 0)
        store.delete(first)
        with pytest.raises(FileNotFound):
            store.get(first)
        # Same size, so best fit gives the very same slot to the next file.
        second = store.put(b"b" * 1000)
        assert second.split("/")[-1][27:43] == first.split("/")[-1][27:43]  # same trunk location
        with pytest.raises(FileNotFound):
            store.get(first)
        assert store.read_small(first, 4096) is None
        assert store.get(second) == b"b" * 1000
        # Many reads through a small cache: every one still right.
        ids = {store.put(bytes([n]) * 500): bytes([n]) * 500 for n in range(50)}
        for _ in range(3):
            for file_id, data in ids.items():
                assert store.get(file_id) == data


def test_reads_after_close_and_reopen_are_not_served_from_a_stale_map(tmp_path) -> None:
    with Store(str(tmp_path), sync_mode="none") as store:
        file_id = store.put(b"kept")
        assert store.get(file_id) == b"kept"
    with Store(str(tmp_path), sync_mode="none") as store:
        assert store.get(file_id) == b"kept"
        store.delete(file_id)
        with pytest.raises(FileNotFound):
            store.get(file_id)
