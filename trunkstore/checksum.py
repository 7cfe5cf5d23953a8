"""crc32 (zlib's polynomial, as FastDFS uses) for every checksum the engine computes.

ISA-L's implementation (the ``isal`` package) gives the same values as ``zlib.crc32`` at about twice
the speed on small files, where the checksum is a large share of an upload's or a read's cost.
"""

from __future__ import annotations

from collections.abc import Callable

crc32: Callable[..., int]
try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a declared dependency; zlib gives the same values
    from zlib import crc32

__all__ = ["crc32"]
