"""Durability: kill -9 a writing child process at random moments and at named points, then recover.

After every kill the store must reopen with every acknowledged file byte-exact, every acknowledged
delete gone, ``check()`` clean, and 500 new uploads succeeding without touching the old files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trunkstore import FileNotFound, Store, journal, parse_file_id
from trunkstore.journal import Journal

CHILD = Path(__file__).with_name("crash_child.py")


def _load_child_module():
    """``crash_child`` as a module, for the settings the parent must open the store with."""
    spec = importlib.util.spec_from_file_location("crash_child", CHILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crash_child = _load_child_module()


@dataclass
class ChildLog:
    """What a killed child acknowledged before it died."""

    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    deleting: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    containers_seen: list[int] = field(default_factory=list)
    lines: int = 0
    done: bool = False

    def feed(self, line: str) -> None:
        kind, *rest = line.split(" ")
        self.lines += 1
        if kind == "P":
            file_id, digest, size = rest
            self.files[file_id] = (digest, int(size))
        elif kind == "M":
            self.meta[rest[0]] = rest[1]
        elif kind == "d":
            self.deleting.add(rest[0])
        elif kind == "D":
            self.deleted.add(rest[0])
        elif kind == "S":
            self.containers_seen.append(int(rest[0]))
        elif kind == "DONE":
            self.done = True


class Child:
    """A running ``crash_child.py``; its stdout is parsed as it arrives."""

    def __init__(self, root: Path, seed: int, sync_mode: str, *extra: str) -> None:
        self.log = ChildLog()
        self.ready = threading.Event()
        self.progress = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(root), str(seed), sync_mode, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.endswith("\n"):
                break  # a line torn by the kill: never acknowledged
            with self.progress:
                if line == "READY\n":
                    self.ready.set()
                else:
                    self.log.feed(line.rstrip("\n"))
                self.progress.notify_all()

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self.progress:
            while not predicate(self.log):
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    break
                self.progress.wait(min(left, 0.2))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self, timeout: float = 60.0) -> int:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(10)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        self.process.stderr.close()
        return self.process.returncode


def assert_slots_allocated(store: Store, file_ids) -> None:
    """Every live trunk file's slot is allocated in the recovered state: no later upload can take it."""
    unallocated = [
        file_id
        for file_id in file_ids
        if (trunk := parse_file_id(file_id).trunk) is not None
        and not store._pool.is_allocated(trunk.trunk_id, trunk.offset, trunk.alloc_size)
    ]
    assert unallocated == [], f"{len(unallocated)} live files lie in space the store thinks is free"


def verify_recovery(root: Path, sync_mode: str, log: ChildLog, check_store, *, new_puts: int = 500) -> None:
    config = crash_child.config(sync_mode)
    survivors = {f: v for f, v in log.files.items() if f not in log.deleting}
    uncertain = {f: v for f, v in log.files.items() if f in log.deleting and f not in log.deleted}
    with Store(root, config) as store:
        for file_id, (digest, size) in survivors.items():
            data = store.get(file_id)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), file_id
            assert store.stat(file_id).size == size
        assert_slots_allocated(store, survivors)
        for file_id in log.deleted:
            with pytest.raises(FileNotFound):
                store.get(file_id)
            assert not store.exists(file_id)
        for file_id, (digest, _size) in uncertain.items():
            with contextlib.suppress(FileNotFound):
                assert hashlib.sha256(store.get(file_id)).hexdigest() == digest, file_id
        for file_id, value in log.meta.items():
            if file_id in survivors:
                assert store.get_meta(file_id) == {"n": value}, file_id
            elif file_id in log.deleted:
                with pytest.raises(FileNotFound):
                    store.get_meta(file_id)
        for index in range(store.config.store_path_count):
            tmp = store.layout.tmp_dir(index)
            assert not os.path.isdir(tmp) or os.listdir(tmp) == [], "stray temporary files survived reopening"
        # A delete killed after its slot was freed leaves the file's metadata row: nothing else is left over.
        explained = {f"{f}: metadata of a file that does not exist" for f in uncertain if f in log.meta}
        leftovers = check_store(store, fix=True).leftovers
        assert set(leftovers) <= explained, leftovers
        assert not store.check().leftovers
        rng = random.Random(len(log.files))
        fresh = {}
        batch = [rng.randbytes(rng.randrange(0, 9000)) for _ in range(new_puts - 20)]
        for file_id, data in zip(store.put_many(batch), batch, strict=True):
            fresh[file_id] = data
        for _ in range(20):
            data = rng.randbytes(rng.randrange(0, 300_000))
            fresh[store.put(data)] = data
        assert len(fresh) == new_puts
        assert not set(fresh) & set(log.files)
        for file_id, data in fresh.items():
            assert store.get(file_id) == data
        for file_id, (digest, _size) in survivors.items():
            assert hashlib.sha256(store.get(file_id)).hexdigest() == digest, f"{file_id} overwritten"
        check_store(store)
    with Store(root, config) as store:
        assert store._pool.replayed_records == 0
        check_store(store)


# ---- crash images -------------------------------------------------------------------------------------


def crash(store: Store, scratch: Path) -> Path:
    """Leave at ``store.root`` what a kill -9 of the store's process at this instant would leave.

    Everything the engine has written has reached the OS (with every sync mode), so a copy taken now
    is exactly what a killed process leaves behind; the open store is then closed and the copy put
    in its place.  Returns the root to reopen.
    """
    root = Path(store.root)
    image = scratch / "crash-image"
    shutil.copytree(root, image)
    store.close()
    shutil.rmtree(root)
    image.rename(root)
    return root


def crash_image(store: Store, destination: Path) -> Path:
    """Copy a store that stays open to ``destination``: a kill -9 at this instant, opened elsewhere."""
    shutil.copytree(store.root, destination)
    record_path = destination / "store.json"
    record = json.loads(record_path.read_text())
    root = Path(store.root)
    record["store_paths"] = [
        str(destination / Path(p).relative_to(root)) if Path(p).is_absolute() and Path(p).is_relative_to(root) else p
        for p in record.get("store_paths", [])
    ]
    record_path.write_text(json.dumps(record))
    return destination


def recover_or_known_bug(verify) -> None:
    """Run a recovery check (kept as one call site for every crash test's verification)."""
    verify()


@pytest.mark.parametrize("sync_mode", ["always", "none"])
def test_replay_keeps_files_written_into_freed_space(tmp_path, check_store, sync_mode):
    settings = {"sync_mode": sync_mode, "trunk_file_size": 4 << 20, "slot_max_size": 64 << 10}
    store = Store(tmp_path / "store", **settings)
    try:
        first = store.put(b"a" * 1000)
        neighbour = store.put(b"n" * 1000)
        store.delete(first)
        reused = store.put(b"b" * 1000)  # takes the freed slot
        after = store.put(b"c" * 5000)  # lands in the free run the free merged with
        assert parse_file_id(reused).trunk.offset == parse_file_id(first).trunk.offset
        image = crash(store, tmp_path)
    finally:
        store.close()
    with Store(image, **settings) as reopened:
        assert reopened._pool.replayed_records > 0
        lost = []
        for file_id, data in ((neighbour, b"n" * 1000), (reused, b"b" * 1000), (after, b"c" * 5000)):
            try:
                if reopened.get(file_id) != data:
                    lost.append(file_id)
            except FileNotFound:
                lost.append(file_id)
        assert lost == [], f"{len(lost)} acknowledged files lost by the replay"
        check_store(reopened)


@pytest.mark.parametrize(("seed", "sync_mode"), [(1, "none"), (2, "always"), (3, "none")])
def test_crash_images_taken_during_a_random_workload(tmp_path, check_store, seed, sync_mode):
    """Deterministic crashes: the store's files copied between operations, each copy opened and verified."""
    rng = random.Random(seed)
    config = crash_child.config(sync_mode)
    store = Store(tmp_path / "store", config)
    files: dict[str, bytes] = {}
    deleted: list[str] = []
    images = []
    try:
        steps = 1200 if sync_mode == "none" else 300
        for step in range(1, steps + 1):
            if files and rng.random() < 0.4:
                file_id = rng.choice(sorted(files))
                store.delete(file_id)
                del files[file_id]
                deleted.append(file_id)
            else:
                data = rng.randbytes(rng.choice([rng.randrange(0, 3000), rng.randrange(3000, 90_000)]))
                files[store.put(data)] = data
            if step % (steps // 4) == 0:
                image = crash_image(store, tmp_path / f"image-{step}")
                images.append((image, dict(files), list(deleted)))
    finally:
        store.close()
    for image, expected, gone in images:
        with Store(image, config) as reopened:
            for file_id, data in expected.items():
                assert reopened.get(file_id) == data, f"{image.name}: {file_id}"
            assert_slots_allocated(reopened, expected)
            for file_id in gone[-50:]:
                with pytest.raises(FileNotFound):
                    reopened.get(file_id)
            check_store(reopened)
            fresh = reopened.put_many([b"after the crash %d" % i for i in range(100)])
            for file_id, data in expected.items():
                assert reopened.get(file_id) == data, f"{image.name}: {file_id} overwritten"
            assert [reopened.get(f) for f in fresh] == [b"after the crash %d" % i for i in range(100)]
            check_store(reopened)


# ---- kill -9 at a random moment ----------------------------------------------------------------------


@pytest.mark.parametrize("sync_mode", ["always", "none"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_kill_at_random_moment(tmp_path, check_store, sync_mode, seed):
    rng = random.Random(seed * 7919 + len(sync_mode))
    root = tmp_path / "store"
    child = Child(root, seed, sync_mode)
    assert child.ready.wait(30), "child did not start"
    # Let some work be acknowledged, then kill at a random moment.
    child.wait_for(lambda log: log.lines >= 20)
    time.sleep(rng.uniform(0.05, 1.5))
    child.kill()
    assert child.process.returncode == -signal.SIGKILL, child.stderr
    assert "Traceback" not in child.stderr, child.stderr
    log = child.log
    print(
        f"acknowledged {len(log.files)} puts, {len(log.deleted)} deletes, "
        f"containers seen {sorted(set(log.containers_seen))}"
    )
    assert log.files, "nothing was acknowledged before the kill"
    recover_or_known_bug(lambda: verify_recovery(root, sync_mode, log, check_store))


def test_workload_creates_and_removes_containers(tmp_path, check_store):
    """The crash workload really exercises container creation and removal (else the kills prove less)."""
    root = tmp_path / "store"
    child = Child(root, 99, "none")
    assert child.ready.wait(30)
    child.wait_for(lambda log: len(log.containers_seen) >= 12)
    child.kill()
    seen = child.log.containers_seen
    print("containers over time:", seen)
    peak = max(seen)
    assert peak >= 2
    assert min(seen[seen.index(peak) :]) < peak, "no container was removed after the peak"
    recover_or_known_bug(lambda: verify_recovery(root, "none", child.log, check_store, new_puts=100))


# ---- kill -9 at named points --------------------------------------------------------------------------

NAMED_POINTS = [
    ("journal-append-before", 40, "always"),
    ("journal-append-after", 40, "always"),
    ("journal-append-before", 300, "none"),
    ("journal-append-after", 300, "none"),
    ("clear-before", 30, "none"),
    ("clear-before", 30, "always"),
    ("container-created", 3, "none"),
    ("container-created", 2, "always"),
    ("unlink-before", 1, "none"),
    ("unlink-before", 1, "always"),
    ("snapshot-before", 2, "none"),
    ("snapshot-after", 2, "always"),
    ("publish-before", 5, "none"),
]


@pytest.mark.parametrize(("point", "count", "sync_mode"), NAMED_POINTS)
def test_kill_at_named_point(tmp_path, check_store, point, count, sync_mode):
    root = tmp_path / "store"
    child = Child(root, count, sync_mode, "--crash-at", f"{point}:{count}")
    code = child.finish(timeout=90)
    assert code == -signal.SIGKILL, f"the child never reached {point} (exit {code}): {child.stderr}"
    assert "Traceback" not in child.stderr, child.stderr
    print(f"{point}: acknowledged {len(child.log.files)} puts, {len(child.log.deleted)} deletes")
    recover_or_known_bug(lambda: verify_recovery(root, sync_mode, child.log, check_store, new_puts=200))


# ---- FastDFS's failure: acknowledged uploads lost and later uploads refused ----------------------------


@pytest.mark.parametrize("sync_mode", ["always", "none"])
def test_kill_after_300_acknowledged_uploads(tmp_path, check_store, sync_mode):
    root = tmp_path / "store"
    child = Child(root, 5, sync_mode, "--burst", "300", "--threads", "1")
    child.wait_for(lambda log: log.done)
    child.kill()
    assert child.log.done and len(child.log.files) == 300, child.stderr
    verify_recovery(root, sync_mode, child.log, check_store, new_puts=300)


# ---- durability without a crash -----------------------------------------------------------------------


@pytest.mark.parametrize("sync_mode", ["always", "interval", "none"])
def test_acknowledged_means_journaled(store_root, sync_mode, open_store):
    """When put or delete returns, its record is in the journal files (at least in the OS)."""
    store = open_store(sync_mode=sync_mode, sync_interval=60.0)
    file_id = store.put(b"journaled")
    location = parse_file_id(file_id).trunk
    _snapshot, records = journal.read_journal(store._pool.journal_dir)
    slot = (location.trunk_id, location.offset, location.alloc_size)
    assert any(r.kind == journal.ALLOC and (r.trunk_id, r.offset, r.size) == slot for r in records)
    store.delete(file_id)
    _snapshot, records = journal.read_journal(store._pool.journal_dir)
    assert any(
        r.kind == journal.FREE and (r.trunk_id, r.offset) == (location.trunk_id, location.offset) for r in records
    )


def test_group_commit_shares_syncs_between_writers(monkeypatch, open_store, check_store):
    syncs = []
    real_sync = Journal.sync

    def slow_sync(self: Journal) -> None:
        syncs.append(threading.get_ident())
        time.sleep(0.02)  # a slow disk: writers pile up behind each commit
        real_sync(self)

    monkeypatch.setattr(Journal, "sync", slow_sync)
    store = open_store(sync_mode="always")
    results: dict[int, list[tuple[str, bytes]]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(index: int) -> None:
        rng = random.Random(index)
        done = results.setdefault(index, [])
        start.wait()
        try:
            for _ in range(25):
                data = rng.randbytes(rng.randrange(0, 5000))
                done.append((store.put(data), data))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    puts = [item for done in results.values() for item in done]
    assert len(puts) == 200 and len({f for f, _ in puts}) == 200
    for file_id, data in puts:
        assert store.get(file_id) == data
    print(f"{len(puts)} durable puts, {len(syncs)} journal syncs")
    assert len(syncs) < len(puts) / 2
    check_store(store)


def test_clean_close_leaves_nothing_to_replay(store_root, check_store):
    with Store(store_root, sync_mode="always", trunk_file_size=4 << 20, slot_max_size=64 << 10) as store:
        ids = [store.put(bytes([i]) * 5000) for i in range(30)]
        for file_id in ids[::2]:
            store.delete(file_id)
    with Store(store_root, sync_mode="always", trunk_file_size=4 << 20, slot_max_size=64 << 10) as store:
        assert store._pool.replayed_records == 0
        for file_id in ids[1::2]:
            assert store.get(file_id) == bytes([ids.index(file_id)]) * 5000
        check_store(store)


def test_reopen_without_close_replays_the_journal(tmp_path, check_store):
    """A child that puts and exits without closing: its records are replayed on the next open."""
    root = tmp_path / "store"
    child = Child(root, 11, "none", "--burst", "50", "--threads", "1")
    child.wait_for(lambda log: log.done)
    child.kill()
    config = crash_child.config("none")
    with Store(root, config) as store:
        assert store._pool.replayed_records >= 50
        for file_id, (digest, _size) in child.log.files.items():
            assert hashlib.sha256(store.get(file_id)).hexdigest() == digest
        check_store(store)
