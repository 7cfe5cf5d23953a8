"""In-memory free-space trees for trunk containers.  No I/O.

Two views of the same set of free extents, kept in step:

* ``by_size``: a ``SortedList`` of ``(size, trunk_id, offset)``, for best-fit allocation: the smallest
  free extent that is large enough, ties going to the lowest container and offset so that later
  containers drain and can be removed;
* ``by_offset[trunk_id]``: a ``SortedDict`` ``offset -> size`` per container, for finding an extent's
  neighbours, so that a freed extent merges with adjacent free space at once.

Invariants (checked by :meth:`FreeSpace._check`): both views hold the same extents; extents lie inside
their container; no two overlap; no two are adjacent (they would have been merged).  Nothing is ever
dropped: a remainder too small to split off stays with the allocation that it follows, and its size
is part of that allocation (FastDFS's ``alloc_size``), so it comes back when that file is freed.

With ``n`` free extents in all: allocation, freeing and reservation are ``O(log n)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from sortedcontainers import SortedDict, SortedList


class FreeSpaceError(ValueError):
    """An operation that contradicts the free-space state (double free, overlap, unknown container)."""


class Extent(NamedTuple):
    trunk_id: int
    offset: int
    size: int


class FreeSpace:
    """Free extents of every trunk container of a store."""

    __slots__ = ("_by_offset", "_by_size", "_capacity", "_free_bytes", "min_split")

    def __init__(self, min_split: int) -> None:
        #: A remainder smaller than this is not split off an allocation (``slot_min_size``).
        self.min_split = min_split
        self._by_size: SortedList = SortedList()
        self._by_offset: dict[int, SortedDict] = {}
        self._capacity: dict[int, int] = {}
        self._free_bytes = 0

    # ---- containers -------------------------------------------------------------------------------
    def add_container(self, trunk_id: int, capacity: int, *, free: bool = True) -> None:
        """Track a container; wholly free unless ``free`` is false (then its free extents are added)."""
        if trunk_id in self._capacity:
            raise FreeSpaceError(f"container {trunk_id} already tracked")
        self._capacity[trunk_id] = capacity
        self._by_offset[trunk_id] = SortedDict()
        if free:
            self._insert(trunk_id, 0, capacity)

    def remove_container(self, trunk_id: int) -> None:
        """Stop tracking a container; it must be wholly free."""
        if not self.is_empty_container(trunk_id):
            raise FreeSpaceError(f"container {trunk_id} is not wholly free")
        self._delete(trunk_id, 0, self._capacity[trunk_id])
        del self._by_offset[trunk_id]
        del self._capacity[trunk_id]

    def is_empty_container(self, trunk_id: int) -> bool:
        extents = self._by_offset.get(trunk_id)
        if extents is None:
            raise FreeSpaceError(f"unknown container {trunk_id}")
        return len(extents) == 1 and extents.peekitem(0) == (0, self._capacity[trunk_id])

    def containers(self) -> dict[int, int]:
        """``{trunk_id: capacity}`` of the tracked containers."""
        return dict(self._capacity)

    def has_container(self, trunk_id: int) -> bool:
        return trunk_id in self._capacity

    # ---- allocation -------------------------------------------------------------------------------
    def allocate(self, size: int) -> Extent | None:
        """Best fit: take ``size`` bytes from the smallest free extent that holds them.

        Returns the allocated extent, whose size is ``size``, or the whole free extent when the
        remainder would be smaller than ``min_split``.  ``None`` when no extent is large enough.
        ``O(log n)``.
        """
        index = self._by_size.bisect_left((size, -1, -1))
        if index == len(self._by_size):
            return None
        free_size, trunk_id, offset = self._by_size[index]
        self._delete(trunk_id, offset, free_size)
        if free_size - size >= self.min_split:
            self._insert(trunk_id, offset + size, free_size - size)
            return Extent(trunk_id, offset, size)
        return Extent(trunk_id, offset, free_size)

    def reserve(self, trunk_id: int, offset: int, size: int) -> None:
        """Take exactly ``[offset, offset + size)``, which must be free (journal replay, replicas).

        Remainders on either side stay free whatever their size.  ``O(log n)``.
        """
        extents = self._extents(trunk_id)
        index = extents.bisect_right(offset) - 1
        if index < 0:
            raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} is not free")
        start, free_size = extents.peekitem(index)
        end = offset + size
        if size <= 0 or end > start + free_size:
            raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} is not free")
        self._delete(trunk_id, start, free_size)
        if offset > start:
            self._insert(trunk_id, start, offset - start)
        if end < start + free_size:
            self._insert(trunk_id, end, start + free_size - end)

    def free(self, trunk_id: int, offset: int, size: int) -> Extent:
        """Return ``[offset, offset + size)`` and merge it with free neighbours.

        Returns the merged free extent that now contains the range.  Raises :class:`FreeSpaceError` on
        a range that overlaps free space or leaves the container (a double free).  ``O(log n)``.
        """
        extents = self._extents(trunk_id)
        end = offset + size
        if size <= 0 or offset < 0 or end > self._capacity[trunk_id]:
            raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} outside its container")
        index = extents.bisect_right(offset)
        start, new_size = offset, size
        if index > 0:
            left_start, left_size = extents.peekitem(index - 1)
            if left_start + left_size > offset:
                raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} is already free")
            if left_start + left_size == offset:
                self._delete(trunk_id, left_start, left_size)
                start, new_size = left_start, new_size + left_size
                index -= 1
        if index < len(extents):
            right_start, right_size = extents.peekitem(index)
            if right_start < end:
                raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} is already free")
            if right_start == end:
                self._delete(trunk_id, right_start, right_size)
                new_size += right_size
        self._insert(trunk_id, start, new_size)
        return Extent(trunk_id, start, new_size)

    def is_free(self, trunk_id: int, offset: int, size: int = 1) -> bool:
        """Whether any byte of ``[offset, offset + size)`` is free.  ``O(log n)``."""
        extents = self._by_offset.get(trunk_id)
        if extents is None:
            return True
        index = extents.bisect_right(offset + size - 1) - 1
        if index < 0:
            return False
        start, free_size = extents.peekitem(index)
        return start + free_size > offset

    # ---- views ------------------------------------------------------------------------------------
    @property
    def free_bytes(self) -> int:
        return self._free_bytes

    @property
    def largest(self) -> int:
        return int(self._by_size[-1][0]) if self._by_size else 0

    def __len__(self) -> int:
        return len(self._by_size)

    def extents(self, trunk_id: int) -> list[Extent]:
        """Free extents of one container in offset order."""
        return [Extent(trunk_id, o, s) for o, s in self._extents(trunk_id).items()]

    def allocated(self, trunk_id: int) -> Iterator[Extent]:
        """The allocated ranges of one container (the complement of its free extents), in order."""
        position = 0
        for offset, size in self._extents(trunk_id).items():
            if offset > position:
                yield Extent(trunk_id, position, offset - position)
            position = offset + size
        if position < self._capacity[trunk_id]:
            yield Extent(trunk_id, position, self._capacity[trunk_id] - position)

    # ---- internals --------------------------------------------------------------------------------
    def _extents(self, trunk_id: int) -> SortedDict:
        extents = self._by_offset.get(trunk_id)
        if extents is None:
            raise FreeSpaceError(f"unknown container {trunk_id}")
        return extents

    def _insert(self, trunk_id: int, offset: int, size: int) -> None:
        self._by_size.add((size, trunk_id, offset))
        self._by_offset[trunk_id][offset] = size
        self._free_bytes += size

    def _delete(self, trunk_id: int, offset: int, size: int) -> None:
        self._by_size.remove((size, trunk_id, offset))
        del self._by_offset[trunk_id][offset]
        self._free_bytes -= size

    def _check(self) -> None:
        """Verify every invariant; raises ``AssertionError`` naming the first one broken."""
        seen = 0
        total = 0
        for trunk_id, extents in self._by_offset.items():
            capacity = self._capacity[trunk_id]
            previous_end = -1
            for offset, size in extents.items():
                assert size > 0, f"empty extent {trunk_id}:{offset}"
                assert offset >= 0 and offset + size <= capacity, f"extent {trunk_id}:{offset}+{size} outside"
                assert offset > previous_end, f"extent {trunk_id}:{offset} overlaps or touches its left"
                assert (size, trunk_id, offset) in self._by_size, f"extent {trunk_id}:{offset} not by size"
                previous_end = offset + size
                seen += 1
                total += size
        assert seen == len(self._by_size), "by_size holds extents that by_offset does not"
        assert total == self._free_bytes, "free byte counter is off"
        assert set(self._capacity) == set(self._by_offset), "container maps disagree"
        self._by_size._check()
