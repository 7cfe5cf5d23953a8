"""In-memory free-space trees for trunk containers.  No I/O.

Two views of the same set of free extents, kept in step:

* ``by_size``: a ``SortedList`` of ``(size, trunk_id, offset)``, for best-fit allocation: the smallest
  free extent that is large enough, ties going to the lowest container and offset so that later
  containers drain and can be removed;
* ``by_offset[trunk_id]``: a ``SortedDict`` ``offset -> size`` per container, for finding an extent's
  neighbours, so that a freed extent merges with adjacent free space at once.

A third place holds at most one extent: the *carve*, the free extent that allocations are currently
cut from front to back.  Filling a container then costs a comparison and two additions per slot
instead of four tree updates; the carve still takes part in best fit exactly like any other extent.

Invariants (checked by :meth:`FreeSpace._check`): both trees hold the same extents; extents (the carve
included) lie inside their container; no two overlap; no two are adjacent (they would have been
merged).  Nothing is ever
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


# ``tuple.__new__(Extent, (a, b, c))`` makes the same Extent as ``Extent(a, b, c)`` in half the time (no
# generated Python-level ``__new__``); allocation and freeing, on every upload's and delete's path, use it.
_new_extent = tuple.__new__


class FreeSpace:
    """Free extents of every trunk container of a store."""

    __slots__ = ("_by_offset", "_by_size", "_capacity", "_carve", "_free_bytes", "min_split")

    def __init__(self, min_split: int) -> None:
        #: A remainder smaller than this is not split off an allocation (``slot_min_size``).
        self.min_split = min_split
        self._by_size: SortedList = SortedList()
        self._by_offset: dict[int, SortedDict] = {}
        self._capacity: dict[int, int] = {}
        self._free_bytes = 0
        # (size, trunk_id, offset) of the carve, or None; it is in neither tree.
        self._carve: tuple[int, int, int] | None = None

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
        self._park_carve(trunk_id)
        self._delete(trunk_id, 0, self._capacity[trunk_id])
        del self._by_offset[trunk_id]
        del self._capacity[trunk_id]

    def is_empty_container(self, trunk_id: int) -> bool:
        extents = self._by_offset.get(trunk_id)
        if extents is None:
            raise FreeSpaceError(f"unknown container {trunk_id}")
        carve = self._carve
        if carve is not None and carve[1] == trunk_id:
            return not extents and carve[0] == self._capacity[trunk_id]
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
        if size <= 0:
            raise FreeSpaceError(f"allocation size must be positive, not {size}")
        by_size = self._by_size
        carve = self._carve
        # Only when some extent in the trees is large enough (while a container is being filled, the
        # carve is often the only one).
        if by_size and by_size[-1][0] >= size:
            index = by_size.bisect_left((size, -1, -1))
            if index < len(by_size):
                best = by_size[index]
                if carve is None or carve[0] < size or best < carve:
                    free_size, trunk_id, offset = best
                    self._delete(trunk_id, offset, free_size)
                    remainder = free_size - size
                    if remainder < self.min_split:
                        return _new_extent(Extent, (trunk_id, offset, free_size))
                    if carve is None or carve[0] < remainder:
                        # Cut the following allocations from the larger of the two; the other joins the trees.
                        if carve is not None:
                            self._park_carve(carve[1])
                        self._carve = (remainder, trunk_id, offset + size)
                        self._free_bytes += remainder
                    else:
                        self._insert(trunk_id, offset + size, remainder)
                    return _new_extent(Extent, (trunk_id, offset, size))
        if carve is None or carve[0] < size:
            return None
        free_size, trunk_id, offset = carve
        remainder = free_size - size
        if remainder < self.min_split:
            self._carve = None
            self._free_bytes -= free_size
            return _new_extent(Extent, (trunk_id, offset, free_size))
        self._carve = (remainder, trunk_id, offset + size)
        self._free_bytes -= size
        return _new_extent(Extent, (trunk_id, offset, size))

    def reserve(self, trunk_id: int, offset: int, size: int) -> None:
        """Take exactly ``[offset, offset + size)``, which must be free (journal replay, replicas).

        Remainders on either side stay free whatever their size.  ``O(log n)``.
        """
        self._park_carve(trunk_id)
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
        carve = self._carve
        if carve is not None and carve[1] == trunk_id and carve[2] <= end and offset <= carve[2] + carve[0]:
            # Touches or overlaps the carve: let the trees merge (or refuse) it like any extent.
            self._park_carve(trunk_id)
        index = extents.bisect_right(offset)
        left = extents.peekitem(index - 1) if index > 0 else None
        right = extents.peekitem(index) if index < len(extents) else None
        # Refuse an overlap on either side before changing anything.
        if (left is not None and left[0] + left[1] > offset) or (right is not None and right[0] < end):
            raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} is already free")
        by_size = self._by_size
        start, new_size = offset, size
        if left is not None and left[0] + left[1] == offset:
            # Grows the left neighbour in place: its key in by_offset stays.
            start, new_size = left[0], left[1] + size
            by_size.remove((left[1], trunk_id, start))
        if right is not None and right[0] == end:
            new_size += right[1]
            by_size.remove((right[1], trunk_id, end))
            del extents[end]
        extents[start] = new_size
        by_size.add((new_size, trunk_id, start))
        self._free_bytes += size
        return _new_extent(Extent, (trunk_id, start, new_size))

    def is_free(self, trunk_id: int, offset: int, size: int = 1) -> bool:
        """Whether any byte of ``[offset, offset + size)`` is free.  ``O(log n)``."""
        extents = self._by_offset.get(trunk_id)
        if extents is None:
            return True
        carve = self._carve
        if carve is not None and carve[1] == trunk_id and carve[2] < offset + size and offset < carve[2] + carve[0]:
            return True
        index = extents.bisect_right(offset + size - 1) - 1
        if index < 0:
            return False
        start, free_size = extents.peekitem(index)
        return bool(start + free_size > offset)

    # ---- views ------------------------------------------------------------------------------------
    @property
    def free_bytes(self) -> int:
        return self._free_bytes

    @property
    def largest(self) -> int:
        in_tree = int(self._by_size[-1][0]) if self._by_size else 0
        return max(in_tree, self._carve[0]) if self._carve is not None else in_tree

    def __len__(self) -> int:
        return len(self._by_size) + (self._carve is not None)

    def extents(self, trunk_id: int) -> list[Extent]:
        """Free extents of one container in offset order."""
        found = [Extent(trunk_id, o, s) for o, s in self._extents(trunk_id).items()]
        carve = self._carve
        if carve is not None and carve[1] == trunk_id:
            found.append(Extent(trunk_id, carve[2], carve[0]))
            found.sort()
        return found

    def allocated(self, trunk_id: int) -> Iterator[Extent]:
        """The allocated ranges of one container (the complement of its free extents), in order."""
        position = 0
        for _tid, offset, size in self.extents(trunk_id):
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

    def _park_carve(self, trunk_id: int) -> None:
        """Put the carve back into the trees if it lies in ``trunk_id`` (before tree-only operations)."""
        carve = self._carve
        if carve is not None and carve[1] == trunk_id:
            self._carve = None
            self._free_bytes -= carve[0]
            self._insert(trunk_id, carve[2], carve[0])

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
        if self._carve is not None:
            size, trunk_id, offset = self._carve
            assert trunk_id in self._capacity, f"carve in unknown container {trunk_id}"
            assert size > 0 and offset >= 0 and offset + size <= self._capacity[trunk_id], "carve outside"
            extents = self._by_offset[trunk_id]
            index = extents.bisect_right(offset) - 1
            if index >= 0:
                left_start, left_size = extents.peekitem(index)
                assert left_start + left_size < offset, "carve overlaps or touches its left neighbour"
            if index + 1 < len(extents):
                assert extents.peekitem(index + 1)[0] > offset + size, "carve overlaps or touches its right"
            total += size
        assert total == self._free_bytes, "free byte counter is off"
        assert set(self._capacity) == set(self._by_offset), "container maps disagree"
        self._by_size._check()
