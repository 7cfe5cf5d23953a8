"""Engine benchmarks: trunkstore against one-file-per-object and SQLite, at 1 KiB, 4 KiB and 64 KiB.

Every benchmark times rounds of a fixed number of operations (``benchmark.pedantic``, one iteration per
round, no warm-up round), so ``ops_per_round / median round time`` is the throughput.  After the timed
rounds a small sampler times single operations on the same backend for p50 / p99 latencies; these, and
what the round consists of, are stored in ``extra_info`` for ``bench/report.py``.

Reads hit the page cache: the objects were written moments before.  ``TRUNKSTORE_BENCH_QUICK=1``
shrinks every count (a smoke run of the suite, not a measurement).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from bench.baselines import BACKENDS, Backend, disk_usage, open_backend
from bench.bounds import dense_layout_bound

QUICK = os.environ.get("TRUNKSTORE_BENCH_QUICK") == "1"
SIZES = (1024, 4096, 65536)
SIZE_IDS = {1024: "1KiB", 4096: "4KiB", 65536: "64KiB"}


def _n(count: int) -> int:
    # Quick mode keeps counts multiples of 64 so that batches and thread shares stay whole.
    return max(64 * round(count / 20 / 64), 128) if QUICK else count


#: Operations per timed round.  Fewer at 64 KiB: 5,000 of them are already 320 MB per round.
OPS = {1024: _n(10_000), 4096: _n(10_000), 65536: _n(5_000)}
#: Durable rounds, multiples of 64 (batches) and of 8 (threads).  One-at-a-time durable puts each wait
#: for a disk flush (about 1-10 ms on this virtual disk), so their rounds are shorter.
DURABLE_OPS = {"batch64": _n(5_120), "threads8": _n(5_120), "single": _n(1_024)}
ROUNDS = 2 if QUICK else 5
DURABLE_ROUNDS = 2 if QUICK else 3
SAMPLE_OPS = _n(2_000)
#: Per-object latency samples of durable puts: one-at-a-time, and batched or threaded.
DURABLE_SAMPLE_OPS = {"single": _n(256), "batch64": _n(2_048), "threads8": _n(2_048)}
DISK_OBJECTS = _n(100_000)
THREADS = 8
BATCH = 64
SEED = 20240521


def payloads(size: int, count: int) -> list[bytes]:
    """``count`` references to 16 distinct random buffers: distinct content, no per-op generation cost."""
    rng = random.Random(size)
    distinct = [rng.randbytes(size) for _ in range(16)]
    return [distinct[i % 16] for i in range(count)]


def percentile(sorted_ns: list[int], fraction: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    rank = max(math.ceil(fraction * len(sorted_ns)) - 1, 0)
    return sorted_ns[rank] / 1000


def time_each(op: Callable[[], object], count: int) -> list[int]:
    latencies = []
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        op()
        latencies.append(clock() - start)
    return latencies


def record(
    benchmark: Any, *, workload: str, variant: str, backend: str, size: int, ops: int, latencies_ns: list[int]
) -> None:
    latencies_ns.sort()
    benchmark.extra_info.update(
        workload=workload,
        variant=variant,
        backend=backend,
        size=size,
        ops_per_round=ops,
        latency_samples=len(latencies_ns),
        p50_us=percentile(latencies_ns, 0.50),
        p99_us=percentile(latencies_ns, 0.99),
    )


@contextmanager
def opened(name: str, root: str, durable: bool = False) -> Iterator[Backend]:
    with open_backend(name, root, durable) as backend:
        yield backend


sizes = pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS.get)
backends = pytest.mark.parametrize("name", BACKENDS)


# ---- without sync -----------------------------------------------------------------------------------
@backends
@sizes
def test_put(benchmark: Any, workdir: str, name: str, size: int) -> None:
    """Puts into a store that grows by ``OPS`` objects per round; nothing is synced."""
    items = payloads(size, OPS[size])
    benchmark.group = f"put {SIZE_IDS[size]}"
    with opened(name, workdir) as backend:
        put = backend.put

        def run() -> None:
            for data in items:
                put(data)

        benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
        latencies = time_each(lambda: put(items[0]), SAMPLE_OPS)
    record(benchmark, workload="put", variant="no sync", backend=name, size=size, ops=len(items),
           latencies_ns=latencies)


@pytest.mark.parametrize("name", [*BACKENDS, "trunkstore-uncached"])
@sizes
def test_get(benchmark: Any, workdir: str, name: str, size: int) -> None:
    """Each round reads every one of ``OPS`` stored objects once, in a new random order (page cache warm).

    ``trunkstore-uncached`` is the engine with its cache of decoded IDs off (``read_cache_entries=0``):
    what reads cost when the IDs read are too many for that cache.
    """
    items = payloads(size, OPS[size])
    rng = random.Random(SEED)
    benchmark.group = f"get {SIZE_IDS[size]}"
    variant = "random, ID cache off" if name == "trunkstore-uncached" else "random"
    with opened(name, workdir) as backend:
        keys = [backend.put(data) for data in items]
        assert backend.get(keys[1]) == items[1]
        get = backend.get

        def shuffled() -> tuple[tuple[list[Any]], dict[str, Any]]:
            order = keys[:]
            rng.shuffle(order)
            return (order,), {}

        def run(order: list[Any]) -> None:
            for key in order:
                get(key)

        benchmark.pedantic(run, setup=shuffled, rounds=ROUNDS, iterations=1)
        latencies = time_each(lambda: get(keys[rng.randrange(len(keys))]), SAMPLE_OPS)
    record(benchmark, workload="get", variant=variant, backend=backend.name, size=size, ops=len(keys),
           latencies_ns=latencies)


@backends
@sizes
def test_delete(benchmark: Any, workdir: str, name: str, size: int) -> None:
    """Each round deletes, in random order, the ``OPS`` objects its (untimed) setup put beside a base set."""
    items = payloads(size, OPS[size])
    rng = random.Random(SEED)
    benchmark.group = f"delete {SIZE_IDS[size]}"
    with opened(name, workdir) as backend:
        for data in items:  # a base population that stays: the store is never empty
            backend.put(data)

        def fill() -> tuple[tuple[list[Any]], dict[str, Any]]:
            keys = [backend.put(data) for data in items]
            rng.shuffle(keys)
            return (keys,), {}

        delete = backend.delete

        def run(keys: list[Any]) -> None:
            for key in keys:
                delete(key)

        benchmark.pedantic(run, setup=fill, rounds=ROUNDS, iterations=1)
        victims = iter(fill()[0][0][:SAMPLE_OPS])
        latencies = time_each(lambda: delete(next(victims)), SAMPLE_OPS)
    record(benchmark, workload="delete", variant="random", backend=name, size=size, ops=len(items),
           latencies_ns=latencies)


@backends
@sizes
def test_churn(benchmark: Any, workdir: str, name: str, size: int) -> None:
    """Pre-fill ``OPS`` objects, then rounds of ``OPS`` operations: each a delete of a random live object
    or a put, 50/50 (seeded), so the live set stays near ``OPS`` while space is freed and reused."""
    count = OPS[size]
    items = payloads(size, count)
    rng = random.Random(SEED)
    benchmark.group = f"churn {SIZE_IDS[size]}"
    with opened(name, workdir) as backend:
        live = [backend.put(data) for data in items]
        put, delete = backend.put, backend.delete

        def plan() -> tuple[tuple[list[float]], dict[str, Any]]:
            # < 0.5: put; otherwise delete the live object at that fraction of the list.  Drawn here so
            # that the timed loop does not pay for the random number generator.
            return ([rng.random() for _ in range(count)],), {}

        def run(draws: list[float]) -> None:
            for index, draw in enumerate(draws):
                if draw < 0.5 or not live:
                    live.append(put(items[index]))
                else:
                    slot = int((draw - 0.5) * 2 * len(live))
                    live[slot], live[-1] = live[-1], live[slot]
                    delete(live.pop())

        benchmark.pedantic(run, setup=plan, rounds=ROUNDS, iterations=1)
        draws = plan()[0][0][:SAMPLE_OPS]
        latencies = []
        for draw in draws:
            start = time.perf_counter_ns()
            run([draw])
            latencies.append(time.perf_counter_ns() - start)
    record(benchmark, workload="churn", variant="50/50", backend=name, size=size, ops=count,
           latencies_ns=latencies)


# ---- durable ----------------------------------------------------------------------------------------
#: (backend, how the puts are issued).  ``single``: one put at a time, each durable on return;
#: ``batch64``: ``put_batch_durable`` of 64; ``threads8``: 8 threads each putting one at a time.
DURABLE_CASES = [
    ("trunkstore", "batch64"),
    ("trunkstore", "threads8"),
    ("trunkstore", "single"),
    ("files", "single"),
    ("sqlite", "single"),
    ("sqlite", "batch64"),
]


def _durable_round(backend: Backend, variant: str, pool: ThreadPoolExecutor) -> Callable[[list[bytes]], list[int]]:
    """A function putting a list durably in the given way and returning per-object latencies (ns)."""
    clock = time.perf_counter_ns
    put = backend.put

    def single(items: list[bytes]) -> list[int]:
        latencies = []
        for data in items:
            start = clock()
            put(data)
            latencies.append(clock() - start)
        return latencies

    def batch64(items: list[bytes]) -> list[int]:
        latencies = []
        for first in range(0, len(items), BATCH):
            start = clock()
            backend.put_batch_durable(items[first : first + BATCH])
            # Every object of a batch is acknowledged when the batch returns.
            latencies.extend([clock() - start] * len(items[first : first + BATCH]))
        return latencies

    def threads8(items: list[bytes]) -> list[int]:
        share = len(items) // THREADS
        parts = [items[i * share : (i + 1) * share] for i in range(THREADS)]
        return [latency for part in pool.map(single, parts) for latency in part]

    return {"single": single, "batch64": batch64, "threads8": threads8}[variant]


@pytest.mark.parametrize(("name", "variant"), DURABLE_CASES, ids=[f"{b}-{v}" for b, v in DURABLE_CASES])
@sizes
def test_durable_put(benchmark: Any, workdir: str, name: str, variant: str, size: int) -> None:
    """Rounds of ``DURABLE_OPS[variant]`` puts, each acknowledged only once on disk.

    The baselines' durable puts are one at a time (files: fsync of the file and of its directory; sqlite:
    synchronous=FULL, a transaction per put) and, for sqlite, 64 per transaction as well."""
    items = payloads(size, DURABLE_OPS[variant])
    benchmark.group = f"durable put {SIZE_IDS[size]}"
    with opened(name, workdir, durable=True) as backend, ThreadPoolExecutor(THREADS) as pool:
        put_all = _durable_round(backend, variant, pool)
        benchmark.pedantic(put_all, args=(items,), rounds=DURABLE_ROUNDS, iterations=1)
        latencies = put_all(items[: DURABLE_SAMPLE_OPS[variant]])
    record(benchmark, workload="durable put", variant=variant, backend=name, size=size, ops=len(items),
           latencies_ns=latencies)


@sizes
def test_durable_disk_ceiling(benchmark: Any, workdir: str, size: int) -> None:
    """The most any store could do here: each batch of 64 objects written with one ``pwritev`` over
    blocks written and flushed beforehand (untimed), then one ``fdatasync``.

    The timed writes allocate nothing and change no metadata, and nothing records where an object is:
    all that is left is the bytes reaching the disk, which every store must pay for.  Not a backend
    (nothing can be read back by key): the bound that durable puts are measured against, on the same
    disk in the same run.
    """
    items = payloads(size, DURABLE_OPS["batch64"])
    benchmark.group = f"durable put {SIZE_IDS[size]}"
    fd = os.open(os.path.join(workdir, "log"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    clock = time.perf_counter_ns

    def write_all(objects: list[bytes]) -> list[int]:
        latencies = []
        offset = 0
        for first in range(0, len(objects), BATCH):
            start = clock()
            batch = objects[first : first + BATCH]
            end = offset + sum(map(len, batch))
            offset += os.pwritev(fd, batch, offset)
            if offset < end:  # a short write: its last end - offset bytes are still to go
                rest = memoryview(b"".join(batch))[offset - end :]
                while rest:
                    written = os.pwrite(fd, rest, offset)
                    rest, offset = rest[written:], offset + written
            os.fdatasync(fd)
            latencies.extend([clock() - start] * len(batch))
        return latencies

    try:
        zeros = bytes(1 << 20)
        for start in range(0, size * len(items), len(zeros)):
            os.pwrite(fd, zeros[: size * len(items) - start], start)
        os.fdatasync(fd)
        benchmark.pedantic(write_all, args=(items,), rounds=DURABLE_ROUNDS, iterations=1)
        latencies = write_all(items[: DURABLE_SAMPLE_OPS["batch64"]])
    finally:
        os.close(fd)
    record(benchmark, workload="durable put", variant="ceiling", backend="disk", size=size, ops=len(items),
           latencies_ns=latencies)


# ---- space on disk ----------------------------------------------------------------------------------
DISK_CASES = [("trunkstore", "random"), ("trunkstore", "oldest"), ("files", "random"), ("sqlite", "random")]


@pytest.mark.parametrize(("name", "deletion"), DISK_CASES, ids=[f"{b}-{d}" for b, d in DISK_CASES])
def test_disk_usage(benchmark: Any, workdir: str, name: str, deletion: str) -> None:
    """``DISK_OBJECTS`` x 1 KiB without sync (the timed part: one round), then the space they take
    (``du``: allocated blocks of everything under the root) over their payload; then half of them are
    deleted, a seeded random half or the oldest half, and the space is compared with the live bytes.
    Nothing is compacted."""
    size = 1024
    items = payloads(size, DISK_OBJECTS)
    benchmark.group = "disk usage 1KiB"
    keys: list[Any] = []
    with opened(name, workdir) as backend:

        def fill() -> None:
            keys.extend(backend.put(data) for data in items)

        benchmark.pedantic(fill, rounds=1, iterations=1)
        payload = size * len(keys)
        full = disk_usage(workdir)
        half = len(keys) // 2
        positions = random.Random(SEED).sample(range(len(keys)), half) if deletion == "random" else range(half)
        victims = [keys[i] for i in positions]
        for key in victims:
            backend.delete(key)
        live = payload - size * half
        after_delete = disk_usage(workdir)
    after_close = disk_usage(workdir)
    benchmark.extra_info.update(
        workload="disk usage",
        variant=f"{deletion} half deleted",
        backend=name,
        size=size,
        ops_per_round=len(keys),
        objects=len(keys),
        payload_bytes=payload,
        du_full_bytes=full,
        du_full_ratio=full / payload,
        live_bytes=live,
        du_after_delete_bytes=after_delete,
        du_after_delete_ratio=after_delete / live,
        du_after_close_bytes=after_close,
        du_after_close_ratio=after_close / live,
        dense_layout_after_delete_ratio=dense_layout_bound(len(keys), size, set(positions)) / live,
    )
