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
        self._since = [0] * n  # bytes admitted since the last probe
        self._probed_at = [float("-inf")] * n

    def _refresh(self, index: int) -> None:
        total, available = self._probe(self._dirs[index])
        self._total[index] = total
        self._available[index] = available
        self._reserved[index] = self._reserved_bytes(total)
        self._since[index] = 0
        self._probed_at[index] = time.monotonic()

    def admit(self, index: int, nbytes: int) -> None:
        """Account for ``nbytes`` about to be written to store path ``index``; raise when over the limit."""
        with self._lock:
            headroom = self._available[index] - self._since[index] - self._reserved[index]
            if (
                time.monotonic() - self._probed_at[index] > _REFRESH_SECONDS
                or nbytes > headroom
                or self._since[index] > headroom // 4
            ):
                self._refresh(index)
                headroom = self._available[index] - self._reserved[index]
            if nbytes > headroom:
                raise StoreFull(
                    f"store path {index} is full: {max(headroom, 0)} bytes free above the reserve of "
                    f"{self._reserved[index]}, {nbytes} needed"
                )
            self._since[index] += nbytes

    def usage(self, index: int) -> tuple[int, int]:
        """``(total, available)`` bytes of store path ``index``'s file system, freshly probed."""
        with self._lock:
            self._refresh(index)
            return self._total[index], self._available[index]

    def most_free(self) -> int:
        with self._lock:
            for index in range(len(self._dirs)):
                if time.monotonic() - self._probed_at[index] > _REFRESH_SECONDS:
                    self._refresh(index)
            return max(range(len(self._dirs)), key=lambda i: self._available[i] - self._since[i])
