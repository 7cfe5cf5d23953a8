"""The reserved-space limit: uploads never eat into ``reserved_storage_space`` of a store path's disk.

``statvfs`` is asked again at most every half second or after a fraction of the headroom has been
written, so the check costs nothing measurable per upload yet never lets a burst run past the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from trunkstore import diskio
from trunkstore.errors import StoreFull

_REFRESH_SECONDS = 0.5


class SpaceGuard:
    """Tracks free space of each store path's file system against its reserve."""

    def __init__(
        self,
        store_dirs: list[str],
        reserved_bytes: Callable[[int], int],
        probe: Callable[[str], tuple[int, int]] = diskio.disk_space,
    ) -> None:
        self._dirs = store_dirs
        self._reserved_bytes = reserved_bytes
        self._probe = probe
        self._lock = threading.Lock()
        n = len(store_dirs)
        self._available = [0] * n
        self._reserved = [0] * n
        self._total = [0] * n
        # Bytes that may still be admitted, and until when, before the file system is asked again.
        self._budget = [0] * n
        self._deadline = [float("-inf")] * n
        # Bytes admitted since the last probe: they may not have reached the disk when it is probed
        # again, so the next probe counts them as still to come (at worst twice, never not at all).
        self._recent = [0] * n

    def _refresh(self, index: int) -> None:
        total, available = self._probe(self._dirs[index])
        self._total[index] = total
        self._available[index] = available
        self._reserved[index] = self._reserved_bytes(total)
        self._budget[index] = max(available - self._reserved[index] - self._recent[index], 0) // 4
        self._deadline[index] = time.monotonic() + _REFRESH_SECONDS

    def admit(self, index: int, nbytes: int) -> None:
        """Account for ``nbytes`` about to be written to store path ``index``; raise when over the limit."""
        budget = self._budget[index] - nbytes
        if budget >= 0 and time.monotonic() < self._deadline[index]:
            self._budget[index] = budget
            self._recent[index] += nbytes
            return
        with self._lock:
            self._refresh(index)
            headroom = self._available[index] - self._reserved[index] - self._recent[index]
            self._recent[index] = 0
            if nbytes > headroom:
                raise StoreFull(
                    f"store path {index} is full: {max(headroom, 0)} bytes free above the reserve of "
                    f"{self._reserved[index]}, {nbytes} needed"
                )
            self._budget[index] = max(self._budget[index] - nbytes, 0)
            self._recent[index] = nbytes

    def release(self, index: int, nbytes: int) -> None:
        """Give back ``nbytes`` admitted to store path ``index`` that will not be written after all."""
        with self._lock:
            self._recent[index] = max(self._recent[index] - nbytes, 0)
            self._budget[index] += nbytes

    def usage(self, index: int) -> tuple[int, int]:
        """``(total, available)`` bytes of store path ``index``'s file system, freshly probed."""
        with self._lock:
            self._refresh(index)
            return self._total[index], self._available[index]

    def most_free(self) -> int:
        with self._lock:
            for index in range(len(self._dirs)):
                if time.monotonic() >= self._deadline[index]:
                    self._refresh(index)
            return max(range(len(self._dirs)), key=lambda i: self._available[i])
