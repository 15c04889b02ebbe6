"""Conformance suite of ``ReplyLog``: memory and DynamoDB (on DynamoDB Local) pass the same tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import boto3
import pytest

from connector.resources import IDEMPOTENCY_TABLE
from connector.store import MemoryReplyLog, ReplyLog
from connector.store.dynamodb import DynamoReplyLog
from tests.connector.test_store import Recording

WriteExpired = Callable[[str, str], None]


@pytest.fixture(params=["memory", "dynamodb"])
async def reply_log(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ReplyLog, WriteExpired]]:
    """A started log, and a way to plant a record whose expiration has passed but that TTL has not deleted yet."""
    if request.param == "memory":
        memory = MemoryReplyLog()

        def expired_in_memory(reply_id: str, message_id: str) -> None:
            memory._sent[reply_id] = (message_id, time.time() - 5)

        yield memory, expired_in_memory
        return
    endpoint = request.getfixturevalue("dynamodb_endpoint")
    store = DynamoReplyLog(IDEMPOTENCY_TABLE.default_name, endpoint, "us-east-1")
    raw = boto3.client("dynamodb", endpoint_url=endpoint)

    def expired_in_dynamodb(reply_id: str, message_id: str) -> None:
        raw.put_item(
            TableName=IDEMPOTENCY_TABLE.default_name,
            Item={
                "id": {"S": f"reply#{reply_id}"},
                "message_id": {"S": message_id},
                "expiration": {"N": str(int(time.time()) - 5)},
            },
        )

    await store.start()
    yield store, expired_in_dynamodb
    await store.stop()


async def test_absent_then_recorded(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    log, _ = reply_log
    rid = uuid.uuid4().hex
    assert await log.sent_message_id(rid) is None
    await log.record_sent(rid, "3EB0ABC")
    assert await log.sent_message_id(rid) == "3EB0ABC"
    await log.record_sent(rid, "3EB0ABC")  # idempotent
    assert await log.sent_message_id(rid) == "3EB0ABC"
    assert await log.sent_message_id(uuid.uuid4().hex) is None


async def test_an_expired_record_is_absent(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    log, write_expired = reply_log
    rid = uuid.uuid4().hex
    write_expired(rid, "3EB0OLD")
    assert await log.sent_message_id(rid) is None
    await log.record_sent(rid, "3EB0NEW")  # a fresh record replaces the lingering one
    assert await log.sent_message_id(rid) == "3EB0NEW"


async def test_dynamodb_record_has_the_ttl_attribute_and_reads_are_consistent(dynamodb_endpoint: str) -> None:
    store = DynamoReplyLog(IDEMPOTENCY_TABLE.default_name, dynamodb_endpoint, "us-east-1", ttl_s=3600)
    await store.start()
    try:
        rec = Recording(store._client)
        store._client = rec
        rid = uuid.uuid4().hex
        await store.record_sent(rid, "3EB0X")
        await store.sent_message_id(rid)
        item = rec.ops("put_item")[0]["Item"]
        assert item["id"] == {"S": f"reply#{rid}"}
        assert abs(int(item["expiration"]["N"]) - (time.time() + 3600)) < 5
        assert all(kw["ConsistentRead"] is True for kw in rec.ops("get_item"))
    finally:
        await store.stop()
        await store.stop()
