"""Fixtures shared by the connector's suites: the store pairs of the conformance suites (every case runs on the memory
store and on DynamoDB Local), and a session manager over memory stores and a fake bridge."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connector.resources import AUTH_TABLE
from connector.store import MemoryAuthStore
from connector.store.dynamodb import DynamoAuthStore
from tests.connector.fakes import FAST, Harness

Store = MemoryAuthStore | DynamoAuthStore
"""Both are an AuthStore and a LeaseStore."""


@pytest.fixture(params=["memory", "dynamodb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryAuthStore()
        return
    endpoint = request.getfixturevalue("dynamodb_endpoint")
    s = DynamoAuthStore(AUTH_TABLE.default_name, endpoint, "us-east-1")
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def dynamo(dynamodb_endpoint: str) -> AsyncIterator[DynamoAuthStore]:
    s = DynamoAuthStore(AUTH_TABLE.default_name, dynamodb_endpoint, "us-east-1")
    await s.start()
    yield s
    await s.stop()


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
