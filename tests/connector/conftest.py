"""Fixtures shared by the connector's suites: the store pairs of the conformance suites (every case runs on the memory
stores and on DynamoDB Local), and a session manager over memory stores and a fake bridge."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import pytest

from connector.resources import AUTH_TABLE
from connector.store import AuthStore, LeaseStore, MemoryAuthStore
from connector.store.dynamodb import DynamoAuthStore, DynamoLeaseStore
from tests.connector.fakes import FAST, Harness


class Stores(NamedTuple):
    """An auth store and the lease store it fences against (the same lease items)."""

    auth: AuthStore
    leases: LeaseStore


class DynamoStores(NamedTuple):
    auth: DynamoAuthStore
    leases: DynamoLeaseStore


async def dynamo_stores(endpoint: str) -> DynamoStores:
    auth = DynamoAuthStore(AUTH_TABLE.default_name, endpoint, "us-east-1")
    leases = DynamoLeaseStore(AUTH_TABLE.default_name, endpoint, "us-east-1")
    await auth.start()
    await leases.start()
    return DynamoStores(auth, leases)


@pytest.fixture(params=["memory", "dynamodb"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    if request.param == "memory":
        auth = MemoryAuthStore()
        yield Stores(auth, auth.leases)
        return
    auth, leases = await dynamo_stores(request.getfixturevalue("dynamodb_endpoint"))
    yield Stores(auth, leases)
    await auth.stop()
    await leases.stop()


@pytest.fixture
def store(stores: Stores) -> AuthStore:
    """The auth store of ``stores`` alone (the suites that need no lease)."""
    return stores.auth


@pytest.fixture
async def dynamo_pair(dynamodb_endpoint: str) -> AsyncIterator[DynamoStores]:
    pair = await dynamo_stores(dynamodb_endpoint)
    yield pair
    await pair.auth.stop()
    await pair.leases.stop()


@pytest.fixture
def dynamo(dynamo_pair: DynamoStores) -> DynamoAuthStore:
    return dynamo_pair.auth


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """A session manager with ``FAST`` settings, not started yet (``await harness.start(...)``)."""
    h = Harness()
    yield h
    await h.manager.stop()


@pytest.fixture
async def make_harness() -> AsyncIterator[Callable[..., Harness]]:
    """Build harnesses with other settings (``make_harness(flap_max=2, leases=True)``); each is stopped at the end
    of the test (stopping twice is harmless)."""
    made: list[Harness] = []

    def make(*, leases: bool = False, **changes: Any) -> Harness:
        h = Harness(dataclasses.replace(FAST, **changes), leases=leases)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.manager.stop()
