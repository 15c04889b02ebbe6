"""Store fixtures shared by the conformance suites: every case runs on the memory store and on DynamoDB Local."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connector.resources import AUTH_TABLE
from connector.store import MemoryAuthStore
from connector.store.dynamodb import DynamoAuthStore

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
