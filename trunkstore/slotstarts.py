"""Where the live slots of each trunk container start: what makes a forged trunk ID harmless.

A trunk file ID names ``(trunk_id, offset, alloc_size)``; a read or delete takes it to name a slot only
if a live slot starts exactly at that offset, so an ID pointing into another file's bytes finds
nothing.  The pool learns a container's starts by walking the slot headers that tile its allocated
runs (``O(slots)``, once per container after the store is opened) and then keeps them up to date, under
its lock, as slots are allocated and freed.  The same set objects back the read fast path
(:class:`~trunkstore.fastpath.SlotMap`), which reads them without the lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trunkstore.fastpath import SlotMap
    from trunkstore.freespace import Extent
    from trunkstore.trunk import TrunkContainer


class SlotStarts:
    """``trunk_id -> offsets where live slots start``, for the containers whose slots are known."""

    __slots__ = ("_map", "_starts")

    def __init__(self, slot_map: SlotMap) -> None:
        self._starts: dict[int, set[int]] = {}
        self._map = slot_map

    def known(self, trunk_id: int) -> set[int] | None:
        """The starts of ``trunk_id``, or ``None`` while they are not known yet."""
        return self._starts.get(trunk_id)

    def learn(self, container: TrunkContainer, starts: set[int]) -> None:
        """Record ``starts`` for ``container`` and open it to the read fast path."""
        self._starts[container.trunk_id] = starts
        self._map.add(
            container.trunk_id, container.map, container.store_path, container.sub_high, container.sub_low, starts
        )

    def started(self, trunk_id: int, offset: int) -> None:
        starts = self._starts.get(trunk_id)
        if starts is not None:
            starts.add(offset)

    def ended(self, trunk_id: int, offset: int) -> None:
        starts = self._starts.get(trunk_id)
        if starts is not None:
            starts.discard(offset)

    def forget(self, trunk_id: int) -> None:
        self._map.remove(trunk_id)
        self._starts.pop(trunk_id, None)


def walk_starts(container: TrunkContainer, runs: Iterable[Extent], reserved: Mapping[tuple[int, int], int]) -> set[int]:
    """The starts of the slots tiling the allocated ``runs`` of ``container``.

    Reservations not written yet (``reserved``: ``(trunk_id, offset) -> size``) are stepped over.  A run
    whose tiling breaks is damaged: the slots after the damage are not known, and
    :meth:`trunkstore.Store.check` reports it.
    """
    trunk_id = container.trunk_id
    starts: set[int] = set()
    for run in runs:
        position, end = run.offset, run.offset + run.size
        while position < end:
            found, position = container.slots(position, end)
            starts.update(slot[0] for slot in found)
            size = reserved.get((trunk_id, position))
            if size is None:
                break
            position += size
    return starts
