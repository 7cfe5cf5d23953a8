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

from trunkstore.checksum import crc32
from trunkstore.slot import HEADER, HEADER_SIZE, TYPE_FILE, TYPE_SHARED

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
    whose tiling breaks is damaged (:meth:`trunkstore.Store.check` reports it): the walk resumes at the
    next slot whose data matches its crc32 (:func:`next_valid_slot`), so that the intact files after
    the damage stay readable.
    """
    trunk_id = container.trunk_id
    starts: set[int] = set()
    for run in runs:
        position, end = run.offset, run.offset + run.size
        while position < end:
            found, position = container.slots(position, end)
            starts.update(slot[0] for slot in found)
            if position >= end:
                break
            size = reserved.get((trunk_id, position))
            position = position + size if size is not None else next_valid_slot(container, position, end)
    return starts


def next_valid_slot(container: TrunkContainer, start: int, end: int) -> int:
    """The first offset after ``start`` and before ``end`` holding a slot header whose data matches its
    crc32, or ``end``: where the slots resume after damaged bytes.

    Bytes that merely look like a header are passed over unless the checksum of the bytes they claim
    agrees, which the data of a damaged slot matches only by chance (one in 2**32 per candidate), or
    if that data was made to hold a slot: damage to a file's own header then exposes the slot inside
    it.  :meth:`trunkstore.Store.check` reports the damaged bytes either way.
    """
    data = container.read(start, end - start)
    type_bytes = (TYPE_FILE, TYPE_SHARED)
    for index in range(1, len(data) - HEADER_SIZE + 1):
        if data[index : index + 1] not in type_bytes:
            continue
        _kind, alloc, size, crc, _mtime, _ext = HEADER.unpack_from(data, index)
        body = data[index + HEADER_SIZE : index + HEADER_SIZE + size]
        if alloc >= size + HEADER_SIZE and index + alloc <= len(data) and crc32(body) == crc:
            return start + index
    return end
