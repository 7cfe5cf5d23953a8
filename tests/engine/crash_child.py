"""Child process for the crash tests: writes to a store until it is killed.

Usage::

    python crash_child.py ROOT SEED SYNC_MODE [--threads N] [--crash-at POINT:N] [--burst N]

Several threads put and delete files of mixed sizes in a store with 4 MiB containers, in global
phases of growth and of draining, so that containers are created and removed all the time.  Every
acknowledged operation is reported on stdout, one line each, flushed at once:

    READY                        the store is open
    P <file id> <sha256> <size>  put returned: the file is acknowledged
    M <file id> <value>          set_meta returned: the file's metadata is {"n": value}
    d <file id>                  a delete is about to start (its outcome is unknown until D)
    D <file id>                  delete returned: the file is gone
    S <containers>               statistics, now and then
    DONE                         (--burst) all puts acknowledged; the child then waits to be killed

``--crash-at POINT:N`` makes the child kill itself with SIGKILL at the N-th passage through a named
point inside the engine (see ``CRASH_POINTS``), rather than waiting for the parent's SIGKILL.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sys
import threading
import time
from typing import Any

from trunkstore import FileNotFound, Store, StoreConfig

MIB = 1 << 20
SETTINGS: dict[str, Any] = {
    "trunk_file_size": 4 * MIB,
    "slot_max_size": 256 * 1024,
    "slot_min_size": 256,
    "snapshot_every": 500,
}
GROW_OPS = 600
DRAIN_OPS = 600
TIME_LIMIT = 40.0


def config(sync_mode: str) -> StoreConfig:
    """The settings both the child and the parent open the store with."""
    return StoreConfig(sync_mode=sync_mode, **SETTINGS)  # type: ignore[arg-type]


class Output:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def emit(self, line: str) -> None:
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner: Any, name: str, count: int, *, after: bool) -> None:
    """Kill the process at the ``count``-th call of ``owner.name`` (before or after the real call)."""
    real = getattr(owner, name)
    calls = [0]
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            calls[0] += 1
            hit = calls[0] == count
        if hit and not after:
            die()
        result = real(*args, **kwargs)
        if hit and after:
            die()
        return result

    setattr(owner, name, wrapper)


def _install_crash_point(point: str, count: int) -> None:
    from trunkstore import diskio, journal, plainfiles, trunk, trunkpool

    crash_points = {
        # between an operation's data and its journal record
        "journal-append-before": lambda: _wrap(journal.Journal, "append", count, after=False),
        # the record written, not yet synced (sync_mode="always") or just written
        "journal-append-after": lambda: _wrap(journal.Journal, "append", count, after=True),
        # a free's record written, the slot not yet zeroed
        "clear-before": lambda: _wrap(trunk.TrunkContainer, "clear", count, after=False),
        # a container's file created, its creation not yet journaled
        "container-created": lambda: _wrap(trunk.TrunkContainer, "create", count, after=True),
        # a removed container's record written, its file not yet unlinked
        "unlink-before": lambda: _wrap(trunkpool, "_unlink_quietly", count, after=False),
        # a snapshot's new generation created, the snapshot not yet written
        "snapshot-before": lambda: _wrap(journal.diskio, "write_file_atomic", count, after=False),
        # a snapshot written, the old generations not yet deleted
        "snapshot-after": lambda: _wrap(journal.diskio, "write_file_atomic", count, after=True),
        # a large file spooled, not yet linked into place
        "publish-before": lambda: _wrap(plainfiles, "publish", count, after=False),
    }
    assert journal.diskio is diskio
    crash_points[point]()


def _size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.randrange(0, 4096)
    if roll < 0.95:
        return rng.randrange(4096, 100_000)
    return rng.randrange(300_000, 600_000)  # larger than slot_max_size: a plain file


class Workload:
    def __init__(self, store: Store, seed: int, out: Output) -> None:
        self.store = store
        self.seed = seed
        self.out = out
        self.ops = 0
        self.lock = threading.Lock()
        self.deadline = time.monotonic() + TIME_LIMIT

    def tick(self) -> bool:
        """Count one operation; True while in a growth phase."""
        with self.lock:
            self.ops += 1
            ops = self.ops
        if ops % 200 == 0:
            self.out.emit(f"S {self.store.stats().trunk_containers}")
        return ops % (GROW_OPS + DRAIN_OPS) < GROW_OPS

    def put(self, rng: random.Random, mine: list[str]) -> None:
        store = self.store
        roll = rng.random()
        if roll < 0.1:
            batch = [rng.randbytes(rng.randrange(0, 5000)) for _ in range(rng.randrange(1, 5))]
            ids = store.put_many(batch)
        else:
            batch = [rng.randbytes(_size(rng))]
            ids = [store.put(batch[0], rng.choice(["", "jpg", "txt"]))]
        for file_id, data in zip(ids, batch, strict=True):
            self.out.emit(f"P {file_id} {hashlib.sha256(data).hexdigest()} {len(data)}")
            mine.append(file_id)
        if rng.random() < 0.05:
            value = str(rng.randrange(1_000_000))
            store.set_meta(ids[0], {"n": value})
            self.out.emit(f"M {ids[0]} {value}")

    def delete(self, rng: random.Random, mine: list[str]) -> None:
        file_id = mine.pop(rng.randrange(len(mine)))
        self.out.emit(f"d {file_id}")
        self.store.delete(file_id)
        self.out.emit(f"D {file_id}")

    def run(self, index: int) -> None:
        rng = random.Random(f"{self.seed}-{index}")
        mine: list[str] = []
        while time.monotonic() < self.deadline:
            growing = self.tick()
            if growing:
                if mine and rng.random() < 0.25:
                    self.delete(rng, mine)
                else:
                    self.put(rng, mine)
            elif mine:
                self.delete(rng, mine)
            else:
                time.sleep(0.001)


def burst(store: Store, seed: int, count: int, out: Output) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        data = rng.randbytes(rng.randrange(0, 3000))
        file_id = store.put(data)
        out.emit(f"P {file_id} {hashlib.sha256(data).hexdigest()} {len(data)}")
    out.emit("DONE")
    time.sleep(TIME_LIMIT)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("seed", type=int)
    parser.add_argument("sync_mode", choices=["always", "interval", "none"])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--crash-at", default="")
    parser.add_argument("--burst", type=int, default=0)
    args = parser.parse_args()
    if args.crash_at:
        point, _, count = args.crash_at.partition(":")
        _install_crash_point(point, int(count or 1))
    store = Store(args.root, config(args.sync_mode))
    out = Output()
    out.emit("READY")
    if args.burst:
        burst(store, args.seed, args.burst, out)
        return 3
    workload = Workload(store, args.seed, out)
    threads = [threading.Thread(target=workload.run, args=(i,), daemon=True) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 3  # not killed in time: the parent treats this as a failure


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FileNotFound as exc:  # pragma: no cover - reported to the parent
        print(f"ERROR {exc}", flush=True)
        sys.exit(4)
