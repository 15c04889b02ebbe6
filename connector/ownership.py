"""Leases as the session manager uses them (DESIGN section 7, ``connector.lease`` keeps them): take the session's
lease before each connect, show a session another connector owns, and retry acquisition when that lease may have
expired, so a standby takes a session over once its owner stops renewing.

Without a lease store (one connector per table, e.g. tests) every session counts as ours.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable

from connector.config import SessionSettings
from connector.lease import LeaseKeeper, default_owner_id
from connector.retries import Retries
from connector.session import Session, SessionState
from connector.store.abstract import AuthStore, LeaseStore
from connector.types import SessionId

log = logging.getLogger("wa_relay.ownership")


class Ownership:
    def __init__(self, keeper: LeaseKeeper | None, retries: Retries, *, ttl_s: float) -> None:
        self.keeper = keeper
        self.retries = retries
        self.ttl_s = ttl_s

    @classmethod
    def over(
        cls,
        leases: LeaseStore | None,
        auth: AuthStore,
        settings: SessionSettings,
        retries: Retries,
        *,
        on_lost: Callable[[SessionId], Awaitable[None]],
    ) -> Ownership:
        """A keeper over ``leases`` that fences ``auth`` (this connector's id from the settings, else host and pid);
        without a lease store, every session counts as ours."""
        keeper = None
        if leases is not None:
            owner = settings.connector_id or default_owner_id()
            keeper = LeaseKeeper(
                leases, auth, owner, ttl_s=settings.lease_ttl_s, renew_every_s=settings.lease_renew_s, on_lost=on_lost
            )
        return cls(keeper, retries, ttl_s=settings.lease_ttl_s)

    async def start(self) -> None:
        if self.keeper is not None:
            await self.keeper.start()

    async def stop(self) -> None:
        """Releases every held lease: call it only after every socket is closed."""
        if self.keeper is not None:
            await self.keeper.stop()

    async def take(self, s: Session) -> bool:
        """Acquire the session's lease (and fence the auth store with it). False when the session must not be
        started now: owned elsewhere (shown, retried later) or the lease store failed (backoff)."""
        if self.keeper is None:
            return True
        try:
            lease = await self.keeper.acquire(s.id)
        except Exception as e:
            self.retries.back_off(s, f"lease acquisition failed: {e}")
            return False
        if lease is None:
            await self.owned_elsewhere(s)
            return False
        if s.owner is not None:
            s.log.info("lease acquired (token %d); taking the session over", lease.token)
            s.owner = s.owner_until = None
            s.state = SessionState.STARTING
        return True

    async def release(self, sid: SessionId) -> None:
        if self.keeper is not None:
            try:
                await self.keeper.release(sid)
            except Exception as e:
                log.warning("releasing the lease of %s failed: %s", sid, e)

    def forget(self, sid: SessionId) -> None:
        """After the session's items (its lease item included) were deleted."""
        if self.keeper is not None:
            self.keeper.forget(sid)

    async def owned_elsewhere(self, s: Session) -> None:
        """Another connector holds the session's lease: show it and try again when that lease could expire."""
        lease = None
        if self.keeper is not None:
            try:
                lease = await self.keeper.current(s.id)
            except Exception as e:
                s.log.warning("reading the lease failed: %s", e)
        if lease is not None and self.keeper is not None and lease.owner == self.keeper.owner:
            # Our own lease, which could not be renewed in time (the store was unreachable): nobody else owns the
            # session, so it is not shown as owned elsewhere; it reconnects, taking the lease again.
            s.owner = s.owner_until = None
            self.retries.back_off(s, "the session's lease could not be renewed in time")
            return
        owner = lease.owner if lease is not None else "another connector"
        until = lease.expires_at if lease is not None else time.time() + self.ttl_s
        if s.owner != owner:
            s.log.info("owned by %s until %s; not started here, acquisition retried", owner, int(until))
        s.owner, s.owner_until = owner, until
        s.record_error(None, f"owned by {owner} until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))}")
        s.state = SessionState.STOPPED  # after the error: the state's event carries it
        s.qr = None
        delay = min(self.ttl_s, max(1.0, until - time.time())) + random.uniform(0, 1.0)
        self.retries.later(s, delay, "lease-retry")
