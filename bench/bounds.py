"""Limits of the machine that no store can pass, computed for the benchmarks' own workloads."""

from __future__ import annotations

from collections.abc import Container


def dense_layout_bound(count: int, size: int, deleted: Container[int], page: int = 4096) -> int:
    """Bytes still allocated if ``count`` objects of ``size`` bytes lay back to back (no headers, no gaps,
    in the order they were stored) and the objects at the ``deleted`` positions were then freed a page at a
    time, as hole punching frees them: every page that holds a byte of a live object stays.

    The densest layout there is; a layout that fixes each object's place when it is stored and keeps
    within 1.05x of the payload puts about as many objects in each page, so with deletions it does not
    choose, this is about the least space any such layout keeps.
    """
    live_pages: set[int] = set()
    for index in range(count):
        if index not in deleted:
            live_pages.update(range(index * size // page, ((index + 1) * size - 1) // page + 1))
    return len(live_pages) * page
