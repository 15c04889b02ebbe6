"""Session ownership (DESIGN section 7): this connector drives a session only while it holds its lease.

``LeaseKeeper`` takes leases, fences the auth store with them (every auth write of the session is then conditioned on
the lease's token), renews all of them in one loop, and reports a lost lease through ``on_lost`` exactly once, so the
session manager closes that socket at once. A lease counts as lost when a renewal says so (``LeaseLost``: another
connector took it over) and also when renewals keep failing (DynamoDB unreachable) until shortly before it expires: a
connector that cannot renew must stop driving the session before another one may take it.

A lost or released lease stays the session's fence: a straggling write with the old token fails with ``LeaseLost``
once another connector has taken the session, instead of landing unconditionally.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from connector.errors import LeaseLost, StoreError
from connector.store.abstract import AuthStore, Lease, LeaseStore
from connector.tasks import cancel, spawn
from connector.types import SessionId

log = logging.getLogger("wa_relay.lease")


def default_owner_id() -> str:
    """Unique per process, readable in the lease item: ``<hostname>-<pid>-<4 random hex>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class LeaseKeeper:
    def __init__(
        self,
        store: LeaseStore,
        auth: AuthStore,
        owner: str,
        *,
        ttl_s: float = 30,
        renew_every_s: float = 10,
        on_lost: Callable[[SessionId], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        margin_s = min(1.0, ttl_s / 10)
        if not 0 < renew_every_s < ttl_s - margin_s:
            raise ValueError(f"renew_every_s must be positive and shorter than ttl_s - {margin_s}")
        self.store = store
        self.auth = auth
        self.owner = owner
        self.ttl_s = ttl_s
        self.renew_every_s = renew_every_s
        self.on_lost = on_lost
        self.clock = clock
        self.margin_s = margin_s
        """A lease that could not be renewed counts as lost this long before it expires (clock skew, the time the
        manager needs to close the socket)."""
        self._held: dict[SessionId, Lease] = {}
        self._task: asyncio.Task[None] | None = None
        self._notifying: set[asyncio.Task[None]] = set()
        self._acquiring: set[asyncio.Future[Lease | None]] = set()

    # ---- lifecycle ----

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = spawn(self._run(), name="lease-keeper")

    async def stop(self) -> None:
        """Stop renewing and release every held lease, so another connector can take the sessions at once."""
        task, self._task = self._task, None
        await cancel(task)
        if self._acquiring:  # their leases are released below with the rest
            await asyncio.wait(set(self._acquiring), timeout=self.ttl_s)
        held, self._held = self._held, {}
        results = await asyncio.gather(*(self.store.release(lease) for lease in held.values()), return_exceptions=True)
        for lease, result in zip(held.values(), results, strict=True):
            if isinstance(result, BaseException):
                log.warning("could not release the lease of %s (it expires by itself)", lease.session, exc_info=result)
        if self._notifying:
            _, pending = await asyncio.wait(set(self._notifying), timeout=self.ttl_s)
            for t in pending:
                await cancel(t)

    # ---- leases ----

    async def acquire(self, session: SessionId) -> Lease | None:
        """Take the session's lease (``None`` while another connector holds it) and fence the auth store with it.

        Shielded from the caller's cancellation: a caller cancelled while the store call is in flight (the connector
        stopping mid-connect) does not stop the store from taking the lease, and a lease taken but not known here
        could not be released by ``stop()``; the session would look owned by a connector that is gone until it
        expired. So the call runs to its end, its lease is recorded, and ``stop()`` waits for such calls."""
        task = asyncio.ensure_future(self._take(session))
        self._acquiring.add(task)
        task.add_done_callback(self._acquiring.discard)
        return await asyncio.shield(task)

    async def _take(self, session: SessionId) -> Lease | None:
        lease = await self.store.acquire(session, self.owner, self.ttl_s)
        if lease is None:
            return None
        self.auth.fence(session, lease)
        self._held[session] = lease
        log.info("acquired the lease of %s (token %d)", session, lease.token)
        return lease

    async def current(self, session: SessionId) -> Lease | None:
        """The session's lease item as stored, whoever holds it (``None`` if it never had one)."""
        return await self.store.get_lease(session)

    def held(self, session: SessionId) -> Lease | None:
        return self._held.get(session)

    def owned(self) -> list[SessionId]:
        return sorted(self._held)

    async def release(self, session: SessionId) -> None:
        """Give the session up (nothing happens if it is not held). The fence stays (see the module docstring)."""
        lease = self._held.pop(session, None)
        if lease is not None:
            await self.store.release(lease)
            log.info("released the lease of %s", session)

    def forget(self, session: SessionId) -> None:
        """The session was deleted, its lease item with it: drop its fence. A fence that outlived its lease item would
        refuse every later write of the session, even the deletion of the same id created again (and not yet
        connected), since no lease item can match it any more."""
        self.auth.fence(session, None)

    # ---- renewal ----

    async def _run(self) -> None:
        next_tick = self.clock() + self.renew_every_s
        while True:
            # Wake for the next renewal, or earlier when a lease whose renewals failed is about to expire.
            deadlines = [lease.expires_at - self.margin_s for lease in self._held.values()]
            wake = min([next_tick, *deadlines])
            await asyncio.sleep(max(0.0, wake - self.clock()))
            if self.clock() >= next_tick:
                next_tick = self.clock() + self.renew_every_s
                await self.renew_all()
            else:
                self._expire_overdue()

    async def renew_all(self) -> None:
        """One renewal round over every held lease (the loop calls this every ``renew_every_s``)."""
        await asyncio.gather(*(self._renew(lease) for lease in list(self._held.values())))
        self._expire_overdue()

    async def _renew(self, lease: Lease) -> None:
        session = lease.session
        budget = lease.expires_at - self.margin_s - self.clock()
        if budget <= 0:
            return  # _expire_overdue handles it
        try:
            renewed = await asyncio.wait_for(self.store.renew(lease, self.ttl_s), timeout=budget)
        except LeaseLost:
            self._lost(lease, "another connector took it over")
        except (StoreError, TimeoutError) as e:
            log.warning("could not renew the lease of %s (expires in %.1f s): %s", session, budget, e)
        else:
            if self._held.get(session) is lease:
                self._held[session] = renewed

    def _expire_overdue(self) -> None:
        now = self.clock()
        for lease in list(self._held.values()):
            if now >= lease.expires_at - self.margin_s:
                self._lost(lease, "it could not be renewed before it expires")

    def _lost(self, lease: Lease, why: str) -> None:
        session = lease.session
        if self._held.get(session) is not lease:
            return  # released or re-acquired meanwhile
        del self._held[session]
        log.error("lost the lease of %s (token %d): %s; closing the session", session, lease.token, why)
        task = spawn(self._notify(session), name=f"lease-lost-{session}")
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify(self, session: SessionId) -> None:
        await self.on_lost(session)
