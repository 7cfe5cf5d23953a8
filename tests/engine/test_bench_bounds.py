"""The space bound reported next to the engine's disk-usage benchmark."""

from __future__ import annotations

import random

from bench.bounds import dense_layout_bound

PAGE = 4096


def test_nothing_deleted_keeps_every_page_touched() -> None:
    assert dense_layout_bound(8, 1024, set()) == 2 * PAGE
    assert dense_layout_bound(5, 1024, set()) == 2 * PAGE  # the fifth object starts a second page


def test_everything_deleted_keeps_nothing() -> None:
    assert dense_layout_bound(8, 1024, set(range(8))) == 0


def test_one_live_object_keeps_its_page() -> None:
    assert dense_layout_bound(8, 1024, {0, 1, 2, 4, 5, 6, 7}) == PAGE


def test_an_object_across_a_page_boundary_keeps_both_pages() -> None:
    # 1,000-byte objects: the fifth spans bytes 4,000-4,999, in pages 0 and 1.
    assert dense_layout_bound(10, 1000, set(range(10)) - {4}) == 2 * PAGE


def test_a_random_half_of_one_kib_objects_keeps_about_fifteen_sixteenths_of_the_pages() -> None:
    count = 40_000
    deleted = set(random.Random(1).sample(range(count), count // 2))
    kept_pages = dense_layout_bound(count, 1024, deleted) / PAGE
    assert abs(kept_pages / (count / 4) - 15 / 16) < 0.01
