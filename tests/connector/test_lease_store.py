"""Conformance suite of ``LeaseStore`` (STYLE rule 9): memory and DynamoDB (on DynamoDB Local), never skipped."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from connector.errors import LeaseLost
from connector.resources import AUTH_TABLE
from connector.store import LeaseStore
from tests.connector.conftest import DynamoStores, Stores
from tests.connector.test_store import items_of, raw_client, sid


@pytest.fixture
def leases(stores: Stores) -> LeaseStore:
    """The lease store of the shared ``stores`` fixture (memory and DynamoDB Local)."""
    return stores.leases


async def test_acquire_a_free_lease_gets_token_1(leases: LeaseStore) -> None:
    s = sid()
    assert await leases.get_lease(s) is None
    before = time.time()
    lease = await leases.acquire(s, "a", 30)
    assert lease is not None
    assert (lease.session, lease.owner, lease.token) == (s, "a", 1)
    assert before + 30 <= lease.expires_at <= time.time() + 30
    assert await leases.get_lease(s) == lease


async def test_another_owner_waits_for_expiry_then_gets_a_greater_token(leases: LeaseStore) -> None:
    s = sid()
    a = await leases.acquire(s, "a", 0.3)
    assert a is not None
    assert await leases.acquire(s, "b", 30) is None
    assert await leases.get_lease(s) == a
    await asyncio.sleep(0.4)
    b = await leases.acquire(s, "b", 30)
    assert b is not None
    assert b.owner == "b" and b.token > a.token
    assert await leases.acquire(s, "a", 30) is None  # the old owner cannot take it back while b holds it
    assert await leases.get_lease(s) == b


async def test_the_same_owner_reacquiring_keeps_its_token(leases: LeaseStore) -> None:
    s = sid()
    first = await leases.acquire(s, "a", 0.2)
    assert first is not None
    again = await leases.acquire(s, "a", 30)
    assert again is not None
    assert again.token == first.token and again.expires_at > first.expires_at
    await asyncio.sleep(0.3)  # expired, but nobody took it: still ours, same token
    third = await leases.acquire(s, "a", 30)
    assert third is not None and third.token == first.token


async def test_renew_extends_and_keeps_the_token(leases: LeaseStore) -> None:
    s = sid()
    lease = await leases.acquire(s, "a", 1)
    assert lease is not None
    renewed = await leases.renew(lease, 60)
    assert renewed.token == lease.token and renewed.owner == "a"
    assert renewed.expires_at > lease.expires_at + 50
    assert await leases.get_lease(s) == renewed
    assert await leases.acquire(s, "b", 30) is None
    # renewing with the older Lease object is fine: owner and token are what count
    assert (await leases.renew(lease, 60)).token == lease.token


async def test_renew_after_a_takeover_raises_lease_lost(leases: LeaseStore) -> None:
    s = sid()
    a = await leases.acquire(s, "a", 0.2)
    assert a is not None
    await asyncio.sleep(0.3)
    b = await leases.acquire(s, "b", 30)
    assert b is not None
    with pytest.raises(LeaseLost):
        await leases.renew(a, 30)
    assert await leases.get_lease(s) == b
    await leases.release(a)  # releasing a lease no longer ours changes nothing
    assert await leases.get_lease(s) == b


async def test_release_frees_the_lease_at_once(leases: LeaseStore) -> None:
    s = sid()
    a = await leases.acquire(s, "a", 60)
    assert a is not None
    await leases.release(a)
    released = await leases.get_lease(s)
    assert released is not None and released.expires_at <= time.time() and released.token == a.token
    with pytest.raises(LeaseLost):
        await leases.renew(a, 60)  # a released lease is given up
    b = await leases.acquire(s, "b", 60)
    assert b is not None and b.token > a.token
    await leases.release(b)
    await leases.release(b)  # idempotent
    # the token never goes back, whoever comes next
    c = await leases.acquire(s, "a", 60)
    assert c is not None and c.token > b.token


async def test_leases_are_per_session(leases: LeaseStore) -> None:
    s1, s2 = sid(), sid()
    assert await leases.acquire(s1, "a", 60) is not None
    b = await leases.acquire(s2, "b", 60)
    assert b is not None and b.token == 1


async def test_concurrent_acquires_elect_exactly_one_owner(leases: LeaseStore) -> None:
    s = sid()
    got = await asyncio.gather(*(leases.acquire(s, f"o{i}", 30) for i in range(8)))
    winners = [lease for lease in got if lease is not None]
    assert len(winners) == 1
    assert await leases.get_lease(s) == winners[0]


# ---- DynamoDB only -----------------------------------------------------------------------------------------------


async def test_lease_item_layout(dynamo_pair: DynamoStores, dynamodb_endpoint: str) -> None:
    store, leases = dynamo_pair
    s = sid()
    lease = await leases.acquire(s, "host-1-abcd", 30)
    assert lease is not None
    item: dict[str, Any] = items_of(dynamodb_endpoint, s)["lease"]
    assert item["owner"] == {"S": "host-1-abcd"}
    assert item["token"] == {"N": "1"}
    assert abs(float(item["expires_at"]["N"]) - lease.expires_at) < 1e-3
    # a lease item the session never had a token in (written by hand) still gets a token on takeover
    raw_client(dynamodb_endpoint).put_item(
        TableName=AUTH_TABLE.default_name, Item={"pk": {"S": s}, "sk": {"S": "lease"}, "expires_at": {"N": "0"}}
    )
    taken = await leases.acquire(s, "other", 30)
    assert taken is not None and taken.token == 1
    # lease items are neither sessions nor keys
    assert s not in await store.list_sessions()
