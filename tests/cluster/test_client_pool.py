"""cluster.client.pool: idle connections kept per address, LIFO reuse, limits, expiry, liveness."""

from __future__ import annotations

import pytest

from cluster.client.pool import ConnectionPool

A = ("127.0.0.1", 1)
B = ("127.0.0.1", 2)


class Dummy:
    def __init__(self, name: str, alive: bool = True) -> None:
        self.name = name
        self.idle_since = 0.0
        self.is_alive = alive
        self.closed = False

    def alive(self) -> bool:
        return self.is_alive

    def close(self) -> None:
        self.closed = True


def test_reuse_is_last_in_first_out_per_address() -> None:
    pool: ConnectionPool[Dummy] = ConnectionPool(max_idle=4, max_idle_time=60)
    first, second, other = Dummy("first"), Dummy("second"), Dummy("other")
    pool.give(A, first)
    pool.give(A, second)
    pool.give(B, other)
    assert (pool.idle_count(A), pool.idle_count(B)) == (2, 1)
    assert pool.take(A) is second
    assert pool.take(A) is first
    assert pool.take(A) is None
    assert pool.take(B) is other
    assert not any(c.closed for c in (first, second, other))


def test_surplus_connections_are_closed() -> None:
    pool: ConnectionPool[Dummy] = ConnectionPool(max_idle=2, max_idle_time=60)
    conns = [Dummy(str(i)) for i in range(3)]
    for conn in conns:
        pool.give(A, conn)
    assert pool.idle_count(A) == 2
    assert [c.closed for c in conns] == [False, False, True]


def test_zero_idle_keeps_nothing() -> None:
    pool: ConnectionPool[Dummy] = ConnectionPool(max_idle=0, max_idle_time=60)
    conn = Dummy("c")
    pool.give(A, conn)
    assert conn.closed and pool.take(A) is None


def test_dead_connections_are_skipped_and_closed() -> None:
    pool: ConnectionPool[Dummy] = ConnectionPool(max_idle=4, max_idle_time=60)
    live, dead = Dummy("live"), Dummy("dead", alive=False)
    pool.give(A, live)
    pool.give(A, dead)
    assert pool.take(A) is live
    assert dead.closed and not live.closed


def test_expired_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("cluster.client.pool.time.monotonic", lambda: now[0])
    pool: ConnectionPool[Dummy] = ConnectionPool(max_idle=4, max_idle_time=10)
    old, recent = Dummy("old"), Dummy("recent")
    pool.give(A, old)
    now[0] += 8
    pool.give(A, recent)
    now[0] += 5  # old has idled 13 s, recent 5 s
    assert pool.take(A) is recent
    assert pool.take(A) is None and old.closed
    pool.give(A, recent)
    now[0] += 11
    newer = Dummy("newer")
    pool.give(A, newer)  # giving back also drops what has expired
    assert recent.closed and pool.idle_count(A) == 1


def test_close_closes_idle_and_later_connections() -> None:
    pool: ConnectionPool[Dummy] = ConnectionPool(max_idle=4, max_idle_time=60)
    idle, later = Dummy("idle"), Dummy("later")
    pool.give(A, idle)
    pool.close()
    assert idle.closed and pool.take(A) is None
    pool.give(A, later)
    assert later.closed
