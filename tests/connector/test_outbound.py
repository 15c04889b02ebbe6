from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from connector.contracts import OutboundReply, RawKey, reply_id, whatsapp_message_id
from connector.errors import SessionNotReady
from connector.messagecache import MessageCache
from connector.outbound import OutboundConsumer
from connector.replies import Replies, message_content
from connector.store import MemoryReplyLog, SentReply
from connector.types import SessionId


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: set[str] = set()
        self.open = True

    async def send_text(
        self,
        sid: SessionId,
        to: str,
        text: str,
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
        quoted_id: str | None = None,
    ) -> str:
        if sid in self.closed:
            raise SessionNotReady(f"session {sid} is reconnecting, not open")
        self.sent.append({"session": sid, "to": to, "text": text, "message_id": message_id, "quoted": quoted})
        return message_id or "GEN"

    def has_open_sessions(self) -> bool:
        return self.open


@pytest.fixture
def queues(sqs_endpoint: str) -> Iterator[tuple[Any, str, str]]:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint)
    name = uuid.uuid4().hex[:12]
    fifo = {"FifoQueue": "true"}
    dlq = sqs.create_queue(QueueName=f"out-dlq-{name}.fifo", Attributes=fifo)["QueueUrl"]
    url = sqs.create_queue(QueueName=f"out-{name}.fifo", Attributes={**fifo, "VisibilityTimeout": "30"})["QueueUrl"]
    yield sqs, url, dlq
    sqs.delete_queue(QueueUrl=url)
    sqs.delete_queue(QueueUrl=dlq)


def reply(n: int, *, session: str = "s1", to: str = "88887770001@lid", quoted: bool = False) -> OutboundReply:
    rid = reply_id(f"ev-{n}", 0)
    key = RawKey(remoteJid=to, id="Q1", fromMe=False) if quoted else None
    return OutboundReply(reply_id=rid, event_id=f"ev-{n}", session_id=session, to=to, text=f"reply {n}", quoted=key)


def enqueue(sqs: Any, url: str, body: str, group: str = "s1:88887770001@lid") -> None:
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=uuid.uuid4().hex)


def depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


async def until(pred: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polls state outside this process (SQS)
            await asyncio.sleep(0.05)


def consumer(url: str, dlq: str | None, sender: FakeSender, log: MemoryReplyLog, endpoint: str) -> OutboundConsumer:
    replies = Replies(sender, log, MessageCache(100))
    return OutboundConsumer(url, sender, replies, dlq_url=dlq, endpoint_url=endpoint, wait_time_s=1, retry_base_s=1)


async def test_sends_with_derived_id_records_and_deletes(sqs_endpoint: str, queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    sender, log = FakeSender(), MemoryReplyLog()
    replies = [reply(1), reply(2, quoted=True), reply(3)]
    for r in replies:
        enqueue(sqs, url, r.model_dump_json())
    c = consumer(url, dlq, sender, log, sqs_endpoint)
    await c.start()
    try:
        await until(lambda: len(sender.sent) == 3)
        await until(lambda: depth(sqs, url) == 0)
    finally:
        await c.stop()
    assert [s["text"] for s in sender.sent] == ["reply 1", "reply 2", "reply 3"]  # one group: in order
    assert sender.sent[0]["to"] == "88887770001@lid"
    assert sender.sent[0]["message_id"] == whatsapp_message_id(replies[0].reply_id)
    assert sender.sent[1]["quoted"] == {"remoteJid": "88887770001@lid", "fromMe": False, "id": "Q1"}
    for r in replies:
        record = await log.get_sent(SessionId("s1"), whatsapp_message_id(r.reply_id))
        assert record is not None and record.reply_id == r.reply_id
        assert record.content == message_content(r.text, r.quoted.model_dump() if r.quoted else None, None)


async def test_redelivered_sent_reply_is_not_sent_again(sqs_endpoint: str, queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    sender, log = FakeSender(), MemoryReplyLog()
    r = reply(7)
    await log.record_sent(SentReply(SessionId("s1"), whatsapp_message_id(r.reply_id), r.to))  # sent before a crash
    enqueue(sqs, url, r.model_dump_json())
    c = consumer(url, dlq, sender, log, sqs_endpoint)
    await c.start()
    try:
        await until(lambda: c.duplicates == 1)
        await until(lambda: depth(sqs, url) == 0)
    finally:
        await c.stop()
    assert sender.sent == []


async def test_malformed_body_goes_to_the_dlq(
    sqs_endpoint: str, queues: tuple[Any, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sqs, url, dlq = queues
    sender, log = FakeSender(), MemoryReplyLog()
    bad = json.dumps({"type": "outbound.reply", "v": 1, "text": "SECRET-TEXT"})
    enqueue(sqs, url, bad)
    c = consumer(url, dlq, sender, log, sqs_endpoint)
    await c.start()
    try:
        await until(lambda: c.malformed == 1)
        await until(lambda: depth(sqs, url) == 0)
    finally:
        await c.stop()
    msgs = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in msgs] == [bad]
    assert "malformed outbound message" in caplog.text
    assert "SECRET-TEXT" not in caplog.text
    assert sender.sent == []


async def test_session_not_open_leaves_the_message_for_later(sqs_endpoint: str, queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    sender, log = FakeSender(), MemoryReplyLog()
    sender.closed.add("s1")
    enqueue(sqs, url, reply(1).model_dump_json())
    enqueue(sqs, url, reply(2).model_dump_json())
    c = consumer(url, dlq, sender, log, sqs_endpoint)
    await c.start()
    try:
        await until(lambda: c.deferred >= 2)
        assert depth(sqs, url) == 2 and sender.sent == []
        sender.closed.clear()  # the session opens: the deferred replies go out
        await until(lambda: len(sender.sent) == 2, timeout=20)
    finally:
        await c.stop()
    # Real SQS FIFO redelivers a group in order; moto returns the later message of a re-visible group first, so
    # only the set is checked here (the group as a whole is deferred by the same delay, see OutboundConsumer).
    assert sorted(s["text"] for s in sender.sent) == ["reply 1", "reply 2"]


async def test_a_connector_with_no_open_session_leaves_the_queue_alone() -> None:
    """A standby connector must not take replies it cannot send: each receive counts towards the DLQ."""
    sender = FakeSender()
    sender.open = False

    receives: list[dict[str, Any]] = []

    class CountingClient:
        async def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            receives.append(kwargs)
            await asyncio.sleep(0.05)  # as a long poll would, instead of spinning
            return {}

    replies = Replies(sender, MemoryReplyLog(), MessageCache(1))
    consumer = OutboundConsumer("http://queue.invalid/q.fifo", sender, replies)
    consumer._client = CountingClient()
    task = asyncio.create_task(consumer._run())
    await asyncio.sleep(0.3)
    assert receives == [], "received while no session is open"
    sender.open = True
    await asyncio.sleep(1.2)
    assert receives, "polls again once a session is open"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
