"""Does a crc32 implementation slow down the rest of the process?  ``python -m bench.checksum_state``

Times each installed crc32 implementation on 4 KiB, and a loop of small ``bytes`` slices (each one a
``memcpy``) before and after one call of it.  On CPUs with AVX-512, code that uses the wide registers and returns
without ``vzeroupper`` leaves the upper register state dirty; every SSE instruction that follows, in
any code of the process, then pays a penalty, and the slices take several times as long.  The engine's
choice of crc32 (``trunkstore.checksum``) is the one that leaves the loop's time unchanged.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable

IMPLEMENTATIONS = (("zlib", "zlib"), ("zlib-ng", "zlib_ng.zlib_ng"), ("isal", "isal.isal_zlib"))


def slice_loop_ns(rounds: int = 7, count: int = 20_000) -> float:
    """Best-of-``rounds`` nanoseconds per iteration of three small slices and two concatenations."""
    raw = b"group1/M00/00/00/fwAAAWsCDGuITsbXAAAQAD4Qd8EAAAAAQAAAAAAABAY7444455"
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(count):
            raw[17:44] + b"A" + raw[44:60]
        best = min(best, time.perf_counter_ns() - start)
    return best / count


def crc_ns(crc32: Callable[[bytes], int], data: bytes, count: int = 20_000) -> float:
    """Best-of-7 nanoseconds per call."""
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter_ns()
        for _ in range(count):
            crc32(data)
        best = min(best, time.perf_counter_ns() - start)
    return best / count


def main() -> None:
    data = bytes(range(256)) * 16
    print(f"{'after':24s} slice loop   crc32 of 4 KiB")
    print(f"{'(nothing)':24s} {slice_loop_ns():7.0f} ns")
    for name, module_name in IMPLEMENTATIONS:
        try:
            crc32: Callable[[bytes], int] = importlib.import_module(module_name).crc32
        except ImportError:
            print(f"{name:24s} not installed")
            continue
        took = crc_ns(crc32, data)
        print(f"{name + ' crc32':24s} {slice_loop_ns():7.0f} ns   {took:7.0f} ns")
        # A call of zlib-ng's crc32 clears the state again, so each row is measured from a clean start.
        importlib.import_module("trunkstore.checksum").crc32(data)


if __name__ == "__main__":
    main()
