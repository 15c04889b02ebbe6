"""``LeaseKeeper``: acquisition with fencing, the renewal loop, loss detection and release on stop (memory store)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time

import pytest

from connector.errors import LeaseLost, StoreError
from connector.lease import LeaseKeeper, default_owner_id
from connector.store import Lease, MemoryAuthStore, MemoryLeaseStore
from connector.types import SessionId
from tests.connector.test_store import sid


class Lost:
    def __init__(self) -> None:
        self.sessions: list[SessionId] = []
        self.event = asyncio.Event()

    async def __call__(self, session: SessionId) -> None:
        self.sessions.append(session)
        self.event.set()


class FailingRenewals(MemoryLeaseStore):
    """DynamoDB unreachable for renewals (acquire and release still work)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False
        self.hang = False
        self.renewals = 0

    async def renew(self, lease: Lease, ttl_s: float) -> Lease:
        self.renewals += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            raise StoreError("unreachable")
        return await super().renew(lease, ttl_s)


def keeper(store: MemoryAuthStore, lost: Lost, *, ttl_s: float = 0.5, renew_every_s: float = 0.1) -> LeaseKeeper:
    return LeaseKeeper(store.leases, store, "me", ttl_s=ttl_s, renew_every_s=renew_every_s, on_lost=lost)


def test_default_owner_id_is_host_pid_random() -> None:
    owner = default_owner_id()
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}-{os.getpid()}-[0-9a-f]{{4}}", owner)
    assert len({default_owner_id() for _ in range(20)}) > 1


def test_renew_every_must_be_shorter_than_the_ttl() -> None:
    store = MemoryAuthStore()
    with pytest.raises(ValueError, match="renew_every_s"):
        LeaseKeeper(store.leases, store, "me", ttl_s=1, renew_every_s=1, on_lost=Lost())


async def test_acquire_fences_and_renewals_move_the_expiry_forward() -> None:
    store, lost = MemoryAuthStore(), Lost()
    k = keeper(store, lost)
    await k.start()
    await k.start()  # idempotent
    try:
        s = sid()
        lease = await k.acquire(s)
        assert lease is not None and lease.owner == "me"
        assert k.held(s) == lease and k.owned() == [s]
        await store.set_keys(s, {"session": {"a.1": {"n": 1}}})
        await asyncio.sleep(0.8)  # past the first ttl: only renewals keep it
        current = await store.leases.get_lease(s)
        assert current is not None and current.token == lease.token
        assert current.expires_at > lease.expires_at + 0.2
        assert current.expires_at > time.time()
        held = k.held(s)
        assert held is not None and held.expires_at >= current.expires_at - 0.15
        assert lost.sessions == []
        assert await store.leases.acquire(s, "other", 10) is None
    finally:
        await k.stop()


async def test_a_second_keeper_cannot_acquire_a_held_session() -> None:
    store, lost = MemoryAuthStore(), Lost()
    a, b = keeper(store, lost), keeper(store, lost)
    b.owner = "other"
    s = sid()
    assert await a.acquire(s) is not None
    assert await b.acquire(s) is None
    assert b.owned() == []


async def test_on_lost_is_called_once_when_another_owner_takes_over(caplog: pytest.LogCaptureFixture) -> None:
    store, lost = MemoryAuthStore(), Lost()
    k = keeper(store, lost, ttl_s=2, renew_every_s=0.1)
    await k.start()
    try:
        s, other = sid(), sid()
        lease = await k.acquire(s)
        assert lease is not None
        assert await k.acquire(other) is not None
        # another connector takes it over (as if our lease had expired)
        store.leases._leases[s] = Lease(s, lease.owner, lease.token, 0.0)
        taken = await store.leases.acquire(s, "other", 30)
        assert taken is not None
        with caplog.at_level(logging.ERROR, logger="wa_relay.lease"):
            await asyncio.wait_for(lost.event.wait(), 1)
            await asyncio.sleep(0.35)  # several more ticks
        assert lost.sessions == [s]
        assert k.held(s) is None and k.owned() == [other]
        assert any(r.levelno == logging.ERROR and s in r.getMessage() for r in caplog.records)
        # the fence keeps the old token: a straggling write fails
        with pytest.raises(LeaseLost):
            await store.set_keys(s, {"session": {"a.1": {"n": 1}}})
        await store.set_keys(other, {"session": {"a.1": {"n": 1}}})
    finally:
        await k.stop()
    current = await store.leases.get_lease(s)
    assert current is not None and current.owner == "other", "stop() must not touch a lease that is not ours"


async def test_on_lost_when_renewals_keep_failing_until_expiry() -> None:
    leases, lost = FailingRenewals(), Lost()
    store = MemoryAuthStore(leases)
    k = keeper(store, lost, ttl_s=0.6, renew_every_s=0.1)
    await k.start()
    try:
        s = sid()
        lease = await k.acquire(s)
        assert lease is not None
        await asyncio.sleep(0.25)
        renewed = k.held(s)
        assert renewed is not None and renewed.expires_at > lease.expires_at
        leases.fail = True
        failing_since = time.time()
        await asyncio.wait_for(lost.event.wait(), 2)
        # lost before the lease expired, so nobody else can have taken it yet
        held_until = (await store.leases.get_lease(s)).expires_at  # type: ignore[union-attr]
        assert time.time() < held_until
        assert time.time() - failing_since < 0.7
        assert leases.renewals >= 3
        assert lost.sessions == [s] and k.owned() == []
        await asyncio.sleep(0.3)
        assert lost.sessions == [s]
    finally:
        await k.stop()


async def test_on_lost_when_a_renewal_hangs() -> None:
    leases, lost = FailingRenewals(), Lost()
    store = MemoryAuthStore(leases)
    k = keeper(store, lost, ttl_s=0.5, renew_every_s=0.1)
    await k.start()
    try:
        s = sid()
        lease = await k.acquire(s)
        assert lease is not None
        leases.hang = True
        await asyncio.wait_for(lost.event.wait(), 1)
        assert time.time() < lease.expires_at + 0.35  # within one ttl of the last successful renewal
        assert lost.sessions == [s]
    finally:
        await k.stop()


async def test_release_frees_the_session_for_another_owner() -> None:
    store, lost = MemoryAuthStore(), Lost()
    k = keeper(store, lost)
    s = sid()
    lease = await k.acquire(s)
    assert lease is not None
    await k.release(s)
    await k.release(s)  # idempotent
    assert k.owned() == []
    assert await store.leases.acquire(s, "other", 30) is not None
    with pytest.raises(LeaseLost):  # the fence stays: our straggling writes cannot land
        await store.put_creds(s, {"n": 1})
    assert lost.sessions == []


async def test_stop_releases_every_held_lease() -> None:
    store, lost = MemoryAuthStore(), Lost()
    k = keeper(store, lost, ttl_s=30, renew_every_s=10)
    await k.start()
    sessions = [sid() for _ in range(3)]
    for s in sessions:
        assert await k.acquire(s) is not None
    await k.stop()
    await k.stop()  # idempotent
    assert k.owned() == []
    for s in sessions:
        current = await store.leases.get_lease(s)
        assert current is not None and current.expires_at <= time.time()
        assert await store.leases.acquire(s, "next", 30) is not None  # handed over at once
    assert lost.sessions == []


async def test_stop_without_start_and_restart() -> None:
    store, lost = MemoryAuthStore(), Lost()
    k = keeper(store, lost)
    await k.stop()
    await k.start()
    await k.stop()
    await k.start()
    s = sid()
    lease = await k.acquire(s)
    assert lease is not None
    await asyncio.sleep(0.7)
    assert (await store.leases.get_lease(s)).expires_at > lease.expires_at  # type: ignore[union-attr]
    await k.stop()


class SlowAnswers(MemoryLeaseStore):
    """The store applies an acquisition at once but its answer takes a while (a DynamoDB call in flight)."""

    async def acquire(self, session: SessionId, owner: str, ttl_s: float) -> Lease | None:
        lease = await super().acquire(session, owner, ttl_s)
        await asyncio.sleep(0.2)
        return lease


async def test_a_lease_taken_while_its_caller_was_cancelled_is_still_released_at_stop() -> None:
    # The connector stops while a session's connect waits for its lease: the store took it, the caller is gone.
    leases = SlowAnswers()
    store = MemoryAuthStore(leases)
    k = keeper(store, Lost(), ttl_s=30, renew_every_s=10)
    await k.start()
    waiting = asyncio.create_task(k.acquire(SessionId("late")))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await k.stop()
    lease = await leases.get_lease(SessionId("late"))
    assert lease is not None and lease.expires_at == 0.0, "released, so another connector can take it at once"
