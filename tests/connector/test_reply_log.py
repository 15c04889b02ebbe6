"""Conformance suite of ``ReplyLog``: memory and DynamoDB (on DynamoDB Local) pass the same tests."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable

import boto3
import pytest

from connector.resources import DYNAMODB_ITEM_MAX_BYTES, IDEMPOTENCY_TABLE
from connector.store import MemoryReplyLog, ReplyLog, SentReply
from connector.store.abstract import SENT_MESSAGE_ID_MAX, SENT_RECORD_MAX_BYTES
from connector.store.dynamodb import DynamoReplyLog
from connector.store.dynamodb.codec import item_size
from connector.types import SessionId
from tests.connector.test_store import Recording

WriteExpired = Callable[[SentReply], None]
S1, S2 = SessionId("s1"), SessionId("s2")
TEXT_MAX = 65536
"""WhatsApp's longest text, in characters (the API's ``TEXT_MAX``)."""


@pytest.fixture(params=["memory", "dynamodb"])
async def reply_log(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ReplyLog, WriteExpired]]:
    """A started log, and a way to plant a record whose expiration has passed but that TTL has not deleted yet."""
    if request.param == "memory":
        memory = MemoryReplyLog()

        def expired_in_memory(sent: SentReply) -> None:
            memory._sent[(sent.session, sent.message_id)] = (sent, None, time.time() - 5)

        yield memory, expired_in_memory
        return
    endpoint = request.getfixturevalue("dynamodb_endpoint")
    store = DynamoReplyLog(IDEMPOTENCY_TABLE.default_name, endpoint, "us-east-1")
    raw = boto3.client("dynamodb", endpoint_url=endpoint)

    def expired_in_dynamodb(sent: SentReply) -> None:
        raw.put_item(
            TableName=IDEMPOTENCY_TABLE.default_name,
            Item={
                "id": {"S": f"send#{sent.session}#{sent.message_id}"},
                "to": {"S": sent.to},
                "expiration": {"N": str(int(time.time()) - 5)},
            },
        )

    await store.start()
    yield store, expired_in_dynamodb
    await store.stop()


def record(text: str = "hello", **changes: object) -> SentReply:
    sent = SentReply(
        S1,
        "3EB0" + uuid.uuid4().hex[:20].upper(),
        "88887770001@lid",
        {"extendedTextMessage": {"text": text}},
        reply_id=uuid.uuid4().hex,
    )
    return dataclasses.replace(sent, **changes)  # type: ignore[arg-type]


async def test_absent_then_recorded_with_its_content(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    log, _ = reply_log
    sent = record(request="digest-1")
    assert await log.get_sent(S1, sent.message_id) is None
    await log.record_sent(sent)
    assert await log.get_sent(S1, sent.message_id) == sent
    await log.record_sent(sent)  # idempotent
    assert await log.get_sent(S1, sent.message_id) == sent
    assert await log.get_sent(S1, record().message_id) is None


async def test_a_record_belongs_to_its_session(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    """A contact's phone names the message it wants re-sent; only the session that sent it may answer with it."""
    log, _ = reply_log
    sent = record()
    await log.record_sent(sent)
    assert await log.get_sent(S2, sent.message_id) is None


async def test_what_comes_back_is_a_copy(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    log, _ = reply_log
    sent = record()
    await log.record_sent(sent)
    first = await log.get_sent(S1, sent.message_id)
    assert first is not None and first.content is not None
    first.content["extendedTextMessage"]["text"] = "changed"
    assert await log.get_sent(S1, sent.message_id) == sent


async def test_a_record_without_content_or_ids(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    log, _ = reply_log
    sent = record(content=None, reply_id=None)
    await log.record_sent(sent)
    assert await log.get_sent(S1, sent.message_id) == sent


@pytest.mark.parametrize(
    "text",
    [
        "\x01" * TEXT_MAX,  # every character escaped in JSON: the largest a text's JSON gets (6 bytes each)
        "".join(chr(random.Random(7).randrange(0x10000, 0x10FFFF)) for _ in range(TEXT_MAX)),  # 4 bytes, random
        "\ud800 lone surrogate, as JSON can carry one",
    ],
    ids=["escaped", "astral", "surrogate"],
)
async def test_the_longest_texts_fit_and_come_back_exactly(reply_log: tuple[ReplyLog, WriteExpired], text: str) -> None:
    log, _ = reply_log
    sent = record(text)
    await log.record_sent(sent)
    assert await log.get_sent(S1, sent.message_id) == sent


def test_a_record_over_the_item_limit_is_refused_before_any_write() -> None:
    with pytest.raises(ValueError, match="over"):
        record("x" * (SENT_RECORD_MAX_BYTES + 1))
    with pytest.raises(ValueError, match="message id"):
        record(message_id="X" * (SENT_MESSAGE_ID_MAX + 1))


async def test_an_overlong_id_is_looked_up_as_absent(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    """Ids come from the contact's retry request: one longer than a DynamoDB key may be must not fail the read."""
    log, _ = reply_log
    assert await log.get_sent(S1, "X" * 3000) is None
    assert await log.get_sent(S1, "") is None


async def test_an_expired_record_is_absent(reply_log: tuple[ReplyLog, WriteExpired]) -> None:
    log, write_expired = reply_log
    sent = record()
    write_expired(sent)
    assert await log.get_sent(S1, sent.message_id) is None
    await log.record_sent(sent)  # a fresh record replaces the lingering one
    assert await log.get_sent(S1, sent.message_id) == sent


async def test_dynamodb_one_put_per_record_with_ttl_compressed_and_consistent_reads(dynamodb_endpoint: str) -> None:
    store = DynamoReplyLog(IDEMPOTENCY_TABLE.default_name, dynamodb_endpoint, "us-east-1", ttl_s=3600)
    await store.start()
    try:
        rec = Recording(store._client)
        store._client = rec
        sent = record("a long reply, said again and again. " * 1000)
        await store.record_sent(sent)
        await store.get_sent(S1, sent.message_id)
        [put] = rec.ops("put_item")
        item = put["Item"]
        assert item["id"] == {"S": f"send#s1#{sent.message_id}"}
        assert abs(int(item["expiration"]["N"]) - (time.time() + 3600)) < 5
        assert len(item["content"]["B"]) < 2000, "stored compressed"
        assert all(kw["ConsistentRead"] is True for kw in rec.ops("get_item"))
        escaped = record("\x01" * TEXT_MAX, to="x" * 1000, request="d" * 64)
        await store.record_sent(escaped)
        assert item_size(rec.ops("put_item")[1]["Item"]) < DYNAMODB_ITEM_MAX_BYTES
    finally:
        await store.stop()
        await store.stop()
