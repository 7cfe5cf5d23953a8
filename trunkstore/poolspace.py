"""The free space of a store's trunk containers, and the part of the trunk-id space that is its own.

The storages of a group split the trunk-id space between them (``trunk_id_start``, then every
``trunk_id_step``-th id), so that the containers a storage creates never collide with the ones its
peers create and replicate to it.  A store allocates only in its own containers; the others' hold
replicas, which only their owners' writes fill, so their free space is kept apart, where no upload
of this store can take it.  One :class:`FreeSpace` per store path on each side.
"""

from __future__ import annotations

from collections.abc import Callable

from trunkstore.freespace import FreeSpace
from trunkstore.trunk import TrunkContainer


class PoolSpace:
    """The own and the foreign free space of each store path, and this store's next trunk id."""

    __slots__ = ("_start", "_step", "foreign", "next_id", "own")

    def __init__(self, store_paths: int, slot_min_size: int, id_start: int, id_step: int) -> None:
        #: Free space of this store's own containers, where it allocates, by store path.
        self.own = [FreeSpace(slot_min_size) for _ in range(store_paths)]
        #: Free space of the group's other storages' containers (replicas), by store path.
        self.foreign = [FreeSpace(slot_min_size) for _ in range(store_paths)]
        self._start = id_start
        self._step = id_step
        #: The next own trunk id to give a new container: past every own container this store has had.
        self.next_id = id_start

    def is_own(self, trunk_id: int) -> bool:
        """Whether ``trunk_id`` is in this store's part of the trunk-id space, the only part it allocates in."""
        return trunk_id >= self._start and (trunk_id - self._start) % self._step == 0

    def of(self, trunk_id: int, store_path: int) -> FreeSpace:
        """The free space that container ``trunk_id`` of ``store_path`` belongs to."""
        return (self.own if self.is_own(trunk_id) else self.foreign)[store_path]

    def of_container(self, container: TrunkContainer) -> FreeSpace:
        return self.of(container.trunk_id, container.store_path)

    def own_id_from(self, trunk_id: int) -> int:
        """The first own id at or after ``trunk_id`` (a snapshot taken with other ``trunk_id_start`` /
        ``trunk_id_step`` settings may hold an id outside this store's part)."""
        return self._start + max(0, -(-(trunk_id - self._start) // self._step)) * self._step

    def saw(self, trunk_id: int) -> None:
        """Container ``trunk_id`` exists: an own one moves the next id past it.  Another storage's
        (a replica) does not, as its id is from another part of the trunk-id space."""
        if self.is_own(trunk_id):
            self.next_id = max(self.next_id, trunk_id + self._step)

    def new_id(self, is_taken: Callable[[int], bool]) -> int:
        """The next own trunk id that is not ``is_taken``; it counts as seen from now on."""
        trunk_id = self.next_id
        while is_taken(trunk_id):
            trunk_id += self._step
        self.next_id = trunk_id + self._step
        return trunk_id

    def check(self, is_open: Callable[[int], bool]) -> list[str]:
        """Problems in the trees, and containers tracked but not open (``is_open``) or on the wrong side."""
        problems: list[str] = []
        for own, spaces in ((True, self.own), (False, self.foreign)):
            for index, space in enumerate(spaces):
                try:
                    space._check()
                except AssertionError as exc:
                    problems.append(f"store path {index}: free-space tree: {exc}")
                for trunk_id in space.containers():
                    if not is_open(trunk_id):
                        problems.append(f"store path {index}: container {trunk_id} tracked but not open")
                    if self.is_own(trunk_id) != own:
                        problems.append(f"store path {index}: container {trunk_id} is in the wrong free space")
        return problems

    def free_bytes(self) -> int:
        """Free bytes in every container, own and foreign."""
        return sum(space.free_bytes for space in [*self.own, *self.foreign])

    def own_free_bytes(self) -> int:
        """Free bytes in this store's own containers: what its uploads can take without a new container."""
        return sum(space.free_bytes for space in self.own)

    def free_extents(self) -> int:
        """Free extents in every container, own and foreign."""
        return sum(len(space) for space in [*self.own, *self.foreign])
