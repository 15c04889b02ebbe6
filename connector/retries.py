"""When a session is queued again: after a reconnect backoff, at the end of a flap hold, or when another connector's
lease may have expired. Each session has at most one pending timer (``Session.retry``); a new one replaces it.

When a timer fires, the session goes back into the start queue only if it is still wanted (still registered, not
stopping, not terminal unless owned elsewhere, not held): the manager answers that through ``wanted``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from connector.config import SessionSettings
from connector.session import Session, SessionState
from connector.startqueue import FlapBreaker, StartQueue, backoff
from connector.tasks import cancel, spawn

log = logging.getLogger("wa_relay.retries")


class Retries:
    def __init__(
        self,
        queue: StartQueue,
        breaker: FlapBreaker,
        settings: SessionSettings,
        wanted: Callable[[Session], bool],
    ) -> None:
        self.queue = queue
        self.breaker = breaker
        self.settings = settings
        self.wanted = wanted

    def later(self, s: Session, delay: float, why: str) -> None:
        """Queue ``s`` again after ``delay`` seconds."""

        async def later() -> None:
            await asyncio.sleep(delay)
            s.retry = None
            if s.held_until is not None and not s.held:
                s.held_until = None
                s.log.info("flap hold over; queued again")
            if self.wanted(s):
                self.queue.put(s.id)

        if s.retry is not None:
            s.retry.cancel()
        s.retry = spawn(later(), name=f"{why}-{s.id}")

    async def cancel(self, s: Session) -> None:
        await cancel(s.retry)
        s.retry = None

    def back_off(self, s: Session, reason: str | None = None) -> None:
        """Reconnect after an exponential, jittered delay that grows with the closes since the last ``open``;
        ``reason``, when given, is what went wrong (``last_error`` and a WARNING)."""
        if reason is not None:
            s.record_error(None, reason)
            s.log.warning("%s; retrying with backoff", reason)
        s.failures += 1
        delay = backoff(s.failures, initial=self.settings.reconnect_initial_s, cap=self.settings.reconnect_max_s)
        s.state = SessionState.RECONNECTING
        s.log.info("reconnecting in %.1fs (attempt %d)", delay, s.failures)
        self.later(s, delay, "reconnect")

    def hold(self, s: Session) -> None:
        """The session flaps: hold it back (``held_until``, ERROR log) and queue it again when the hold ends."""
        until = self.breaker.trip(s.id)
        s.held_until = until
        s.state = SessionState.RECONNECTING
        self.queue.discard(s.id)
        message = (
            f"flapping: more than {self.breaker.max_closes} closes within {int(self.breaker.window_s)}s; held back "
            f"until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))}"
        )
        code = s.last_error.code if s.last_error else None
        s.record_error(code, message)
        s.log.error("%s (last close %s)", message, code)
        self.later(s, max(0.0, until - time.time()), "flap-hold")
