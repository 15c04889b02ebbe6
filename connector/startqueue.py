"""The one start queue every connect goes through (DESIGN section 7), the reconnect backoff and the flap breaker.

WhatsApp bans accounts (and IPs) that connect many sessions at once, and Baileys clients that loop on reconnects
(peers.md: Evolution API and WAHA both do). So:

- ``StartQueue``: at most one connect per ``interval`` + ``uniform(0, jitter)`` seconds, for boot, API create,
  reconnect after backoff, bridge restart and lease takeover alike. FIFO: a session is served in the order it was
  queued; queuing one that is already waiting keeps its place (no duplicates, no jumping the line), and a session
  that comes back after a connect goes to the back. The spacing is measured from the *start* of one connect to the
  start of the next, so a slow ``session.start`` does not add up with the interval.
- ``connect_now``: the one documented exception, 515 "restart required" (after pairing, WhatsApp closes the fresh
  socket and expects the login at once; the simulator and the phone's "linking…" screen time out otherwise).
  Decision: it does *not* wait for the spacing, but it counts as a connect: the next queued start waits a full
  interval after it. A server that sends 515 in a loop is caught by the flap breaker (every close counts), so the
  exception cannot become a storm.
- ``backoff(failures)``: exponential (``initial * 2^(n-1)``) with jitter (factor 0.5 to 1.0, plus up to
  ``initial``), capped at ``RECONNECT_MAX_S``. The delayed session then still queues like any other connect.
- ``FlapBreaker``: the close history per session. More than ``FLAP_MAX`` closes within ``FLAP_WINDOW_S`` → the
  session is held back for ``FLAP_HOLD_S`` (``connector.policy`` decides; the manager shows ``held_until`` and logs
  at ERROR). The window is cleared when the hold starts, so a session that keeps flapping after the hold is held
  again only after another ``FLAP_MAX`` + 1 closes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable

from connector.tasks import cancel, spawn
from connector.types import SessionId

Connect = Callable[[SessionId], Awaitable[bool]]
"""Starts one session's socket; False when nothing was started (the queue then does not wait the interval)."""


class StartQueue:
    def __init__(self, connect: Connect, *, interval: float, jitter: float, log: logging.Logger) -> None:
        self._connect = connect
        self.interval = interval
        self.jitter = jitter
        self.log = log
        self._order: deque[SessionId] = deque()
        self._queued: set[SessionId] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_at = 0.0
        """``time.monotonic()`` before which no queued connect starts."""
        self.connects = 0

    def start(self) -> None:
        if self._task is None:
            self._task = spawn(self._run(), name="session-start-queue")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def put(self, session: SessionId) -> None:
        """Queue a connect at the back; a session already waiting keeps its place."""
        if session in self._queued:
            return
        self._queued.add(session)
        self._order.append(session)
        self._wake.set()

    def discard(self, session: SessionId) -> None:
        """Forget a queued start (the worker skips ids no longer queued)."""
        self._queued.discard(session)

    def waiting(self) -> list[SessionId]:
        """Queued sessions in the order they will connect."""
        return [s for s in self._order if s in self._queued]

    def __contains__(self, session: object) -> bool:
        return session in self._queued

    def __len__(self) -> int:
        return len(self._queued)

    async def connect_now(self, session: SessionId) -> bool:
        """Connect at once, outside the line (515 only, see the module docstring); counts as a connect."""
        self.discard(session)
        started = await self._guarded(session)
        if started:
            self._spaced()
        return started

    def _spaced(self) -> None:
        self.connects += 1
        self._next_at = time.monotonic() + self.interval + random.uniform(0, self.jitter)

    async def _guarded(self, session: SessionId) -> bool:
        try:
            return await self._connect(session)
        except Exception:
            self.log.exception("starting session %s failed", session)
            return True

    async def _run(self) -> None:
        while True:
            while not self._order:
                self._wake.clear()
                await self._wake.wait()
            delay = self._next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # connect_now may have moved _next_at meanwhile
            session = self._order.popleft()
            if session not in self._queued:
                continue
            self._queued.discard(session)
            if await self._guarded(session):
                self._spaced()


def backoff(failures: int, *, initial: float, cap: float) -> float:
    """Seconds to wait before reconnect number ``failures`` (1-based): exponential with jitter, capped."""
    base = min(cap, initial * 2.0 ** max(0, failures - 1))
    return min(cap, base * random.uniform(0.5, 1.0) + random.uniform(0, initial))


class FlapBreaker:
    """The close history of each session. ``record`` counts a close and answers how many fell within the window
    (``connector.policy`` decides whether that is flapping); ``trip`` starts a hold and clears the window."""

    def __init__(self, *, max_closes: int, window_s: float, hold_s: float) -> None:
        self.max_closes = max_closes
        self.window_s = window_s
        self.hold_s = hold_s
        self._closes: dict[SessionId, deque[float]] = {}
        self.trips = 0

    def record(self, session: SessionId, now: float | None = None) -> int:
        now = time.time() if now is None else now
        closes = self._closes.setdefault(session, deque())
        closes.append(now)
        while closes and closes[0] < now - self.window_s:
            closes.popleft()
        return len(closes)

    def trip(self, session: SessionId, now: float | None = None) -> float:
        """Hold the session back: returns the end of the hold (Unix seconds)."""
        now = time.time() if now is None else now
        self._closes.pop(session, None)
        self.trips += 1
        return now + self.hold_s

    def recent(self, session: SessionId) -> int:
        return len(self._closes.get(session, ()))

    def forget(self, session: SessionId) -> None:
        self._closes.pop(session, None)
