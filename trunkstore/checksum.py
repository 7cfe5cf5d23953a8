"""crc32 (zlib's polynomial, as FastDFS uses) for every checksum the engine computes.

zlib-ng's implementation (the ``zlib-ng`` package) gives the same values as ``zlib.crc32`` about 15x
faster on a 4 KiB file (112 ns against 1.7 µs; ``python -m bench.checksum_state``), where the checksum
would otherwise be a large share of an upload's or a read's cost.

Not ISA-L's (the ``isal`` package), though it is nearly as fast: its AVX-512 code returns without
``vzeroupper``, and on CPUs with AVX-512 the dirty upper register state then slows every SSE
instruction the process runs afterwards: each ``memcpy`` of a small ``bytes`` slice took 3x as long,
and the whole engine with it, until something cleared the state.  ``bench/checksum_state.py`` shows it.
"""

from __future__ import annotations

from collections.abc import Callable

crc32: Callable[..., int]
try:
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - zlib-ng is a declared dependency; zlib gives the same values
    from zlib import crc32

__all__ = ["crc32"]
