"""The start queue every connect goes through, the reconnect backoff and the flap breaker's history."""

from __future__ import annotations

import itertools
import logging
import time

from connector.startqueue import FlapBreaker, StartQueue, backoff
from connector.types import SessionId
from tests.connector.fakes import until

log = logging.getLogger("test")


async def test_queue_spaces_connects_keeps_fifo_order_and_dedupes() -> None:
    seen: list[tuple[str, float]] = []

    async def connect(sid: SessionId) -> bool:
        seen.append((sid, time.monotonic()))
        return True

    q = StartQueue(connect, interval=0.05, jitter=0.0, log=log)
    for sid in ["a", "b", "a", "c", "b"]:  # duplicates keep their place
        q.put(SessionId(sid))
    assert q.waiting() == ["a", "b", "c"]
    q.start()
    try:
        await until(lambda: len(seen) >= 3)
        q.put(SessionId("a"))  # served again: to the back
        q.put(SessionId("d"))
        await until(lambda: len(seen) >= 5)
    finally:
        await q.stop()
    assert [s for s, _ in seen] == ["a", "b", "c", "a", "d"]
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(seen)]
    assert all(g >= 0.045 for g in gaps), gaps
    assert q.connects == 5


async def test_queue_skips_the_wait_when_nothing_was_started_and_connect_now_counts() -> None:
    seen: list[tuple[str, float]] = []

    async def connect(sid: SessionId) -> bool:
        seen.append((sid, time.monotonic()))
        return sid != "skip"

    q = StartQueue(connect, interval=0.2, jitter=0.0, log=log)
    q.put(SessionId("skip"))
    q.put(SessionId("x"))
    q.start()
    try:
        await until(lambda: len(seen) >= 2)
        assert seen[1][1] - seen[0][1] < 0.1  # nothing started: no wait
        await q.connect_now(SessionId("now"))  # immediate (515)...
        q.put(SessionId("y"))
        await until(lambda: len(seen) >= 4)
    finally:
        await q.stop()
    assert seen[2][0] == "now" and seen[2][1] - seen[1][1] < 0.1
    assert seen[3][1] - seen[2][1] >= 0.19  # ...but the next queued connect waits a full interval after it


def test_backoff_is_exponential_jittered_and_capped() -> None:
    assert all(0.5 <= backoff(1, initial=1, cap=300) <= 2 for _ in range(50))
    assert all(4 <= backoff(4, initial=1, cap=300) <= 9 for _ in range(50))
    assert all(150 <= backoff(30, initial=1, cap=300) <= 300 for _ in range(50))
    assert len({backoff(5, initial=1, cap=300) for _ in range(20)}) > 1
    delays = [backoff(n, initial=2.0, cap=300.0) for n in range(1, 15)]
    assert all(0 < d <= 300 for d in delays) and delays[0] <= 4


def test_flap_breaker_counts_closes_in_the_window_and_a_trip_clears_it() -> None:
    b = FlapBreaker(max_closes=3, window_s=10, hold_s=100)
    sid = SessionId("s")
    assert [b.record(sid, now=t) for t in (0, 1, 2, 3)] == [1, 2, 3, 4]
    assert b.trip(sid, now=3) == 103
    assert b.trips == 1 and b.recent(sid) == 0
    # closes spread wider than the window never add up
    assert all(b.record(sid, now=100 + 11 * i) == 1 for i in range(10))
    b.forget(sid)
    assert b.recent(sid) == 0
