"""Group commit: concurrent writers share commit rounds, each covered by a round that began after it."""

from __future__ import annotations

import threading
import time

import pytest

from trunkstore.groupcommit import GroupCommit

JOIN_TIMEOUT = 20.0


class StagedLog:
    """Writers stage items; a commit makes everything staged before it began durable."""

    def __init__(self, pause: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.staged: list[int] = []
        self.durable: set[int] = set()
        self.calls = 0
        self.pause = pause
        self.fail_calls: set[int] = set()
        self.errors: dict[int, Exception] = {}
        self.gate: dict[int, threading.Event] = {}
        self.started: dict[int, threading.Event] = {1: threading.Event()}

    def stage(self, item: int) -> None:
        with self.lock:
            self.staged.append(item)

    def commit(self) -> None:
        with self.lock:
            self.calls += 1
            call = self.calls
            covered = list(self.staged)
            self.started.setdefault(call, threading.Event()).set()
        gate = self.gate.get(call)
        if gate is not None:
            assert gate.wait(JOIN_TIMEOUT)
        if self.pause:
            time.sleep(self.pause)
        if call in self.fail_calls:
            self.errors[call] = OSError(5, f"commit {call} failed")
            raise self.errors[call]
        with self.lock:
            self.durable.update(covered)


def run_threads(targets: list[threading.Thread]) -> None:
    for thread in targets:
        thread.start()
    for thread in targets:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "a waiter never returned"


def test_lone_writer_pays_one_round() -> None:
    log = StagedLog()
    group = GroupCommit(log.commit)
    for i in range(5):
        log.stage(i)
        group.wait(group.ticket())
        assert i in log.durable
    assert log.calls == 5


def test_tickets_increase() -> None:
    group = GroupCommit(lambda: None)
    assert [group.ticket() for _ in range(4)] == [1, 2, 3, 4]


def test_wait_for_covered_ticket_does_not_commit_again() -> None:
    log = StagedLog()
    group = GroupCommit(log.commit)
    first, second = group.ticket(), group.ticket()
    group.wait(second)
    assert log.calls == 1
    group.wait(first)  # covered by the round that covered the later ticket
    assert log.calls == 1


@pytest.mark.parametrize("writers", [16])
def test_concurrent_writers_share_rounds(writers: int) -> None:
    log = StagedLog(pause=0.02)
    group = GroupCommit(log.commit)
    start = threading.Barrier(writers)
    failures: list[str] = []

    def writer(item: int) -> None:
        start.wait()
        log.stage(item)
        ticket = group.ticket()
        group.wait(ticket)
        with log.lock:
            if item not in log.durable:
                failures.append(f"writer {item} returned before its item was committed")

    run_threads([threading.Thread(target=writer, args=(i,)) for i in range(writers)])
    assert failures == []
    assert log.durable == set(range(writers))
    assert 1 <= log.calls <= writers // 2


def test_many_rounds_every_waiter_covered() -> None:
    log = StagedLog()
    group = GroupCommit(log.commit)
    failures: list[str] = []

    def writer(base: int) -> None:
        for n in range(50):
            item = base * 1000 + n
            log.stage(item)
            group.wait(group.ticket())
            with log.lock:
                if item not in log.durable:
                    failures.append(f"item {item} not durable when its wait returned")

    run_threads([threading.Thread(target=writer, args=(i,)) for i in range(8)])
    assert failures == []
    assert len(log.durable) == 400


def test_round_covers_only_tickets_taken_before_it_started() -> None:
    """While round 1 runs, later writers queue; round 2 covers all of them at once."""
    log = StagedLog()
    release_first = threading.Event()
    log.gate[1] = release_first
    group = GroupCommit(log.commit)
    ticketed = [threading.Event() for _ in range(5)]
    order: list[tuple[int, int]] = []

    def writer(item: int) -> None:
        log.stage(item)
        ticket = group.ticket()
        ticketed[item].set()
        group.wait(ticket)
        with log.lock:
            order.append((item, log.calls))

    leader = threading.Thread(target=writer, args=(0,))
    leader.start()
    assert ticketed[0].wait(JOIN_TIMEOUT)
    assert log.started[1].wait(JOIN_TIMEOUT)  # round 1 has begun and holds only item 0
    followers = [threading.Thread(target=writer, args=(i,)) for i in range(1, 5)]
    for thread in followers:
        thread.start()
    for event in ticketed[1:]:
        assert event.wait(JOIN_TIMEOUT)
    assert log.durable == set()
    release_first.set()
    for thread in [leader, *followers]:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive()
    assert log.calls == 2
    assert log.durable == set(range(5))


def test_failed_round_raises_in_exactly_its_waiters() -> None:
    log = StagedLog()
    release_first = threading.Event()
    log.gate[1] = release_first
    log.fail_calls = {2}
    group = GroupCommit(log.commit)
    ticketed = [threading.Event() for _ in range(5)]
    results: dict[int, BaseException | None] = {}

    def writer(item: int) -> None:
        log.stage(item)
        ticket = group.ticket()
        ticketed[item].set()
        try:
            group.wait(ticket)
        except BaseException as exc:
            results[item] = exc
        else:
            results[item] = None

    leader = threading.Thread(target=writer, args=(0,))
    leader.start()
    assert ticketed[0].wait(JOIN_TIMEOUT)
    assert log.started[1].wait(JOIN_TIMEOUT)
    followers = [threading.Thread(target=writer, args=(i,)) for i in range(1, 5)]
    for thread in followers:
        thread.start()
    for event in ticketed[1:]:
        assert event.wait(JOIN_TIMEOUT)
    release_first.set()
    for thread in [leader, *followers]:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive()

    assert log.calls == 2
    assert results[0] is None  # round 1 succeeded
    for item in range(1, 5):  # round 2 covered tickets 2..5 and failed
        assert results[item] is log.errors[2]
    assert log.durable == {0}

    # Later rounds succeed, and the failure is not re-raised for them.
    log.stage(99)
    group.wait(group.ticket())
    assert 99 in log.durable and log.calls == 3
    group.wait(1)  # an old successful ticket stays successful


def test_failing_commit_single_writer() -> None:
    log = StagedLog()
    log.fail_calls = {1}
    group = GroupCommit(log.commit)
    log.stage(1)
    ticket = group.ticket()
    with pytest.raises(OSError, match="commit 1 failed"):
        group.wait(ticket)
    with pytest.raises(OSError):  # asking again about the same ticket reports the same failure
        group.wait(ticket)
    log.stage(2)
    group.wait(group.ticket())
    assert log.durable == {1, 2}
