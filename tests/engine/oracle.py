"""A naive allocator with the semantics of :class:`trunkstore.freespace.FreeSpace`, for comparison.

Every container is a byte map (0 free, 1 taken); free extents are the maximal runs of free bytes, found
by scanning, and every operation scans the whole list of them.  Slow, small and obviously right:
merging is implicit (adjacent free bytes form one run) and no byte can be dropped.

Semantics mirrored:

* ``allocate(size)``: the free extent with the smallest ``(size, trunk_id, offset)`` that holds
  ``size`` bytes; the remainder stays free only if it is at least ``min_split``, otherwise the whole
  extent is handed out.  ``None`` when nothing fits; a size that is not positive raises.
* ``reserve``: take exactly a range that is wholly free.
* ``free``: give back a range that is wholly taken (anything else raises: double free); returns the
  free extent that contains it afterwards.
* ``remove_container``: only when wholly free.
"""

from __future__ import annotations

from trunkstore.freespace import Extent, FreeSpaceError

FREE = 0
TAKEN = 1


class NaiveFreeSpace:
    def __init__(self, min_split: int) -> None:
        self.min_split = min_split
        self.maps: dict[int, bytearray] = {}

    # ---- containers ----
    def add_container(self, trunk_id: int, capacity: int, *, free: bool = True) -> None:
        if trunk_id in self.maps:
            raise FreeSpaceError(f"container {trunk_id} already tracked")
        self.maps[trunk_id] = bytearray([FREE if free else TAKEN]) * capacity

    def remove_container(self, trunk_id: int) -> None:
        if not self.is_empty_container(trunk_id):
            raise FreeSpaceError(f"container {trunk_id} is not wholly free")
        del self.maps[trunk_id]

    def is_empty_container(self, trunk_id: int) -> bool:
        return TAKEN not in self._map(trunk_id)

    def containers(self) -> dict[int, int]:
        return {trunk_id: len(m) for trunk_id, m in self.maps.items()}

    # ---- operations ----
    def allocate(self, size: int) -> Extent | None:
        if size <= 0:
            raise FreeSpaceError(f"allocation size must be positive, not {size}")
        candidates = [e for e in self.all_extents() if e.size >= size]
        if not candidates:
            return None
        best = min(candidates, key=lambda e: (e.size, e.trunk_id, e.offset))
        taken = size if best.size - size >= self.min_split else best.size
        self._set(best.trunk_id, best.offset, taken, TAKEN)
        return Extent(best.trunk_id, best.offset, taken)

    def reserve(self, trunk_id: int, offset: int, size: int) -> None:
        m = self._map(trunk_id)
        if size <= 0 or offset < 0 or offset + size > len(m) or TAKEN in m[offset : offset + size]:
            raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} is not free")
        self._set(trunk_id, offset, size, TAKEN)

    def free(self, trunk_id: int, offset: int, size: int) -> Extent:
        m = self._map(trunk_id)
        if size <= 0 or offset < 0 or offset + size > len(m) or FREE in m[offset : offset + size]:
            raise FreeSpaceError(f"range {trunk_id}:{offset}+{size} is not wholly allocated")
        self._set(trunk_id, offset, size, FREE)
        for extent in self.extents(trunk_id):
            if extent.offset <= offset < extent.offset + extent.size:
                return extent
        raise AssertionError("freed range not found among free extents")

    def is_free(self, trunk_id: int, offset: int, size: int = 1) -> bool:
        m = self._map(trunk_id)
        return FREE in m[max(offset, 0) : max(offset + size, 0)]

    # ---- views ----
    @property
    def free_bytes(self) -> int:
        return sum(m.count(FREE) for m in self.maps.values())

    @property
    def largest(self) -> int:
        return max((e.size for e in self.all_extents()), default=0)

    def __len__(self) -> int:
        return len(self.all_extents())

    def extents(self, trunk_id: int) -> list[Extent]:
        return self._runs(trunk_id, FREE)

    def allocated(self, trunk_id: int) -> list[Extent]:
        return self._runs(trunk_id, TAKEN)

    def all_extents(self) -> list[Extent]:
        return [e for trunk_id in sorted(self.maps) for e in self.extents(trunk_id)]

    # ---- internals ----
    def _map(self, trunk_id: int) -> bytearray:
        if trunk_id not in self.maps:
            raise FreeSpaceError(f"unknown container {trunk_id}")
        return self.maps[trunk_id]

    def _set(self, trunk_id: int, offset: int, size: int, value: int) -> None:
        self.maps[trunk_id][offset : offset + size] = bytes([value]) * size

    def _runs(self, trunk_id: int, value: int) -> list[Extent]:
        m = bytes(self._map(trunk_id))
        this, other = bytes([value]), bytes([1 - value])
        runs = []
        position = m.find(this)
        while position >= 0:
            end = m.find(other, position)
            if end < 0:
                end = len(m)
            runs.append(Extent(trunk_id, position, end - position))
            position = m.find(this, end)
        return runs
