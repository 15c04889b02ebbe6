"""The state of one linked WhatsApp account as the connector sees it (DESIGN section 7).

States: ``starting → qr | pairing_code → connecting → open``, plus ``reconnecting``, ``logged_out``, ``conflict`` and
``stopped``. Being held back by the flap breaker, owned by another connector or stale are not states of their own:
they are flags on top of one (``held_until``, ``owner``, ``stale_since``), because the socket's own state still
matters (a stale session is still ``open``; a held one is ``reconnecting``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connector.contracts import Account
from connector.inbound import account_from_me
from connector.sidecar.types import ConnectionUpdate
from connector.types import SessionId


class SessionState(enum.StrEnum):
    STARTING = "starting"
    QR = "qr"
    PAIRING_CODE = "pairing_code"
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    LOGGED_OUT = "logged_out"
    CONFLICT = "conflict"
    STOPPED = "stopped"


TERMINAL = frozenset({SessionState.LOGGED_OUT, SessionState.CONFLICT, SessionState.STOPPED})
"""States nothing reconnects from by itself."""
PAIRING = frozenset({SessionState.QR, SessionState.PAIRING_CODE})
"""The QR window is open: the creds are not registered yet."""


class Readiness(enum.StrEnum):
    """What a reply for a session can do now (``reply_readiness``); the gone ones name the reason."""

    READY = "ready"
    """Open here: send it."""
    WAIT = "wait"
    """Not open yet, and expected to be (starting, QR, connecting, reconnecting, held by the flap breaker; also a
    conflict or a stop, which a restart or an operator ends): keep it until the session opens."""
    ELSEWHERE = "elsewhere"
    """Another connector holds the session's lease: only that one can send it."""
    UNKNOWN = "session_unknown"
    """Gone: no such session here nor in the store (never created, or deleted)."""
    WIPED = "session_wiped"
    """Gone: logged out, or its pairing expired; its creds and keys are wiped (linked again, it may be another
    account)."""

    @property
    def gone(self) -> bool:
        return self in (Readiness.UNKNOWN, Readiness.WIPED)


@dataclass
class LastError:
    code: int | None
    message: str
    at: int
    """Unix seconds."""


WATCHED = frozenset({"state", "qr", "stale_since"})
"""Attributes whose changes are reported to ``Session.watcher`` (``connector.events``)."""
_UNSET = object()


@dataclass
class Session:
    id: SessionId
    log: logging.Logger
    state: SessionState = SessionState.STARTING
    me: Account = field(default_factory=Account)
    qr: str | None = None
    last_error: LastError | None = None
    failures: int = 0
    """Closes since the last ``open`` (drives the backoff)."""
    retry: asyncio.Task[None] | None = None
    """The one pending timer that queues the session again (backoff, flap hold, lease retry)."""
    held_until: float | None = None
    """Unix seconds: the flap breaker holds the session back until then."""
    owner: str | None = None
    owner_until: float | None = None
    """Another connector owns the session (its lease), until then at least; acquisition is retried."""
    wiped: bool = False
    """Creds and keys were deleted (logged out, pairing expired): late writes from the bridge are refused."""
    stored: bool = False
    """Its creds were in the store (found at boot or by discovery, or saved since): if they are gone at the next
    connect, another connector deleted the session, and it must not come back here as a fresh QR."""
    socket_live: bool = False
    """A socket of this session runs in the bridge (from ``session.start`` to its ``close``): the only time key and
    creds writes for it are taken."""
    opened_at: float = 0.0
    last_event_at: float = 0.0
    last_message_at: float = 0.0
    stale_since: float | None = None
    stale_reason: str | None = None
    received_total: int = 0
    """Messages from others received since the connector started (the dashboard's counters)."""
    sent_total: int = 0
    watcher: Callable[[Session, str, Any], None] | None = field(default=None, repr=False, compare=False)
    """Called as ``watcher(session, attribute, old value)`` after a change of a ``WATCHED`` attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        # One hook instead of an event call beside each of the many assignments of a state: none can be missed.
        old = self.__dict__.get(name, _UNSET)
        object.__setattr__(self, name, value)
        if name in WATCHED and old is not _UNSET and old != value and (watcher := self.__dict__.get("watcher")):
            watcher(self, name, old)

    def record_error(self, code: int | None, message: str) -> None:
        self.last_error = LastError(code=code, message=message, at=int(time.time()))

    def clear_stale(self) -> None:
        if self.stale_since is not None:
            self.log.info("no longer stale")
        self.stale_since = None
        self.stale_reason = None

    def apply_update(self, u: ConnectionUpdate) -> SessionState:
        """A ``connection.update`` other than ``close`` (closes go through ``connector.policy``); returns the new
        state."""
        if u.qr:
            self.qr = u.qr
            if self.state != SessionState.PAIRING_CODE:
                self.state = SessionState.QR
            self.log.info("QR ready for scanning")
        if u.isNewLogin:
            self.qr = None
            self.log.info("paired (new login)")
        if u.connection == "connecting" and self.state not in PAIRING:
            self.state = SessionState.CONNECTING
        elif u.connection == "open":
            if u.me is not None:  # before the state: its change event names the account
                self.me = account_from_me(u.me.id, u.me.lid)
            self.qr = None
            self.failures = 0
            self.held_until = None
            self.opened_at = time.time()
            self.clear_stale()
            self.state = SessionState.OPEN
            self.log.info("open as %s", self.me.pn or self.me.lid)
        return self.state

    @property
    def held(self) -> bool:
        return self.held_until is not None and self.held_until > time.time()


def reply_readiness(s: Session) -> Readiness:
    """What a reply for the known session ``s`` can do now."""
    if s.owner is not None:
        return Readiness.ELSEWHERE
    if s.state == SessionState.OPEN:
        return Readiness.READY
    if s.wiped and s.state in TERMINAL:
        return Readiness.WIPED
    return Readiness.WAIT
