"""Stale detection (DESIGN section 7): an ``open`` session that WhatsApp stopped delivering to.

A linked device whose phone has been offline for long, or that WhatsApp silently dropped, stays ``open`` while
nothing arrives. So an ``open`` session is flagged ``stale`` (with re-link guidance) when nothing was received for
``STALE_AFTER_S`` (no event from the bridge and no frame on its socket: ``lastReceivedAt`` in ``session.list``), or,
if enabled, no message for ``STALE_MESSAGES_AFTER_S``. It is a flag, not a state: the socket may still be fine, and
the flag clears by itself when traffic resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from connector.config import SessionSettings
from connector.session import Session, SessionState
from connector.sidecar.types import SessionListResult
from connector.tasks import cancel, spawn
from connector.types import SessionId

log = logging.getLogger("wa_relay.stale")

STALE_GUIDANCE = (
    "WhatsApp stopped delivering to this linked device. Keep the phone online and open WhatsApp on it; if nothing "
    "arrives within minutes, re-link: on the phone open Settings > Linked devices, remove this device, then delete "
    "and create the session here and scan the new QR (or use a pairing code)."
)


class SocketLister(Protocol):
    @property
    def connected(self) -> bool: ...

    async def list_sessions(self) -> SessionListResult: ...


class StaleWatch:
    def __init__(self, sessions: Mapping[SessionId, Session], bridge: SocketLister, settings: SessionSettings) -> None:
        self.sessions = sessions
        self.bridge = bridge
        self.after_s = settings.stale_after_s
        self.messages_after_s = settings.stale_messages_after_s
        active = [x for x in (self.after_s, self.messages_after_s) if x > 0]
        self.check_s = settings.stale_check_s or (min(30.0, max(0.05, min(active) / 4)) if active else 0.0)
        self.total = 0
        """Times a session was flagged (for ``/metrics``)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.check_s > 0 and self._task is None:
            self._task = spawn(self._run(), name="stale-watch")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def check(self, now: float | None = None) -> None:
        """One pass over the open sessions (the watch runs it every ``check_s``)."""
        now = time.time() if now is None else now
        received: dict[str, float] = {}
        if self.after_s > 0 and self.bridge.connected:
            try:
                for info in (await self.bridge.list_sessions()).sessions:
                    if info.lastReceivedAt:
                        received[info.session] = info.lastReceivedAt / 1000.0
            except Exception as e:
                log.info("session.list for stale detection failed: %s", e)
        for s in self.sessions.values():
            if s.state != SessionState.OPEN:
                s.clear_stale()
                continue
            reason = None
            last = max(s.opened_at, s.last_event_at, received.get(s.id, 0.0))
            last_message = max(s.opened_at, s.last_message_at)
            if self.after_s > 0 and now - last > self.after_s:
                reason = f"nothing received from WhatsApp for {int(now - last)}s while open"
            elif self.messages_after_s > 0 and now - last_message > self.messages_after_s:
                reason = f"no message delivered for {int(now - last_message)}s while open"
            if reason is None:
                s.clear_stale()
            elif s.stale_since is None:
                s.stale_since, s.stale_reason = now, reason
                self.total += 1
                s.log.warning("stale: %s. %s", reason, STALE_GUIDANCE)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            try:
                await self.check()
            except Exception:
                log.exception("stale detection failed")
