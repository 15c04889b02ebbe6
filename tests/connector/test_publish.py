from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest

from connector.contracts import Account, InboundEnvelope
from connector.errors import PublishError
from connector.inbound import build_envelope
from connector.publish import MemoryPublisher
from connector.publish.sqs import SPOOL_FILE, SqsPublisher
from connector.sidecar.types import WAMessage
from tests.connector.fakes import wa_message

ALT = {"88887770001@lid": "15557770001@s.whatsapp.net", "15557770001@s.whatsapp.net": "88887770001@lid"}


def envelope(msg_id: str, chat: str = "88887770001@lid", text: str = "hi") -> InboundEnvelope:
    env = build_envelope(
        WAMessage.model_validate(wa_message(chat, msg_id, alt=ALT[chat], message={"conversation": text})),
        session_id="s1",
        me=Account(),
        upsert_type="notify",
    )
    assert env is not None
    return env


@pytest.fixture
def fifo(sqs_endpoint: str) -> Iterator[tuple[Any, str]]:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint)
    url = sqs.create_queue(
        QueueName=f"pub-{uuid.uuid4().hex[:12]}.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"}
    )["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def receive_all(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(10):
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"])
        for m in resp.get("Messages", []):
            out.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if len(out) >= expected:
            break
    return out


async def test_memory_publisher_keeps_order() -> None:
    pub = MemoryPublisher()
    await pub.publish(envelope("A"))
    await pub.publish(envelope("B"))
    assert [e.message.id for e in await pub.wait_for(2)] == ["A", "B"]


async def test_sqs_publisher_group_dedup_body(sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path) -> None:
    sqs, url = fifo
    pub = SqsPublisher(url, spool_dir=tmp_path, endpoint_url=sqs_endpoint)
    await pub.start()
    try:
        env = envelope("A1", chat="15557770001@s.whatsapp.net")
        await pub.publish(env)
        await pub.publish(env)  # a re-emit: SQS drops it by its dedup id
    finally:
        await pub.stop()
    msgs = receive_all(sqs, url, 1)
    assert len(msgs) == 1
    m = msgs[0]
    assert m["Attributes"]["MessageGroupId"] == env.group_id == "s1:88887770001@lid"
    assert m["Attributes"]["MessageDeduplicationId"] == env.event_id
    assert InboundEnvelope.model_validate_json(m["Body"]) == env
    assert not (tmp_path / SPOOL_FILE).exists()


async def test_concurrent_publishes_share_batches_and_keep_each_chats_order(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    sqs, url = fifo
    pub = SqsPublisher(url, spool_dir=tmp_path, endpoint_url=sqs_endpoint)
    await pub.start()
    chats = ["88887770001@lid", "15557770001@s.whatsapp.net"]
    envs = [envelope(f"C{i:02d}", chat=chats[i % 2]) for i in range(30)]
    try:
        # Callers of many sessions publish at once: each call returns once its own entry is in SQS.
        await asyncio.gather(*(pub.publish(e) for e in envs))
        assert pub.sent == 30 and pub.published == 30
        assert pub.batches < 30, "every envelope took its own call: nothing was batched"
    finally:
        await pub.stop()
    msgs = receive_all(sqs, url, 30)
    ids = [InboundEnvelope.model_validate_json(m["Body"]).message.id for m in msgs]
    assert sorted(ids) == sorted(e.message.id for e in envs)
    # Both chats map to one group (the LID is canonical): SQS hands them back in publish order.
    assert ids == [e.message.id for e in envs]
    assert not (tmp_path / SPOOL_FILE).exists()


async def test_entries_queued_at_stop_are_spooled_not_lost(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    pub = SqsPublisher(fifo[1], spool_dir=tmp_path, endpoint_url=sqs_endpoint)
    await pub.start()
    calls = [asyncio.ensure_future(pub.publish(envelope(f"S{i}"))) for i in range(15)]
    await asyncio.sleep(0)  # the calls are queued; the sender has not sent them all
    await pub.stop()
    await asyncio.gather(*calls)  # every call returned: sent, or durable in the spool
    spooled = (tmp_path / SPOOL_FILE).read_text().splitlines() if (tmp_path / SPOOL_FILE).exists() else []
    assert pub.sent + len(spooled) >= 15


async def test_too_large_is_refused(sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path) -> None:
    pub = SqsPublisher(fifo[1], spool_dir=tmp_path, endpoint_url=sqs_endpoint)
    await pub.start()
    try:
        with pytest.raises(PublishError):
            await pub.publish(envelope("BIG", text="x" * (1024 * 1024)))
    finally:
        await pub.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def tcp_proxy(port: int, target: str) -> AsyncIterator[None]:
    """Forward 127.0.0.1:port to the target endpoint (the 'healed' network)."""
    t = urlparse(target)

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(t.hostname, t.port)
        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_spool_while_sqs_is_down_then_drained_in_order(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    sqs, url = fifo
    port = free_port()
    pub = SqsPublisher(
        url, spool_dir=tmp_path, endpoint_url=f"http://127.0.0.1:{port}", backoff_initial_s=0.05, backoff_max_s=0.2
    )
    await pub.start()
    try:
        envs = [envelope(f"M{i}") for i in range(5)]
        for e in envs:
            await pub.publish(e)  # returns: durably spooled
        assert pub.spool_depth == 5
        lines = (tmp_path / SPOOL_FILE).read_text().splitlines()
        assert [json.loads(x)["dedup"] for x in lines] == [e.event_id for e in envs]
        async with tcp_proxy(port, sqs_endpoint):
            async with asyncio.timeout(20):
                while pub.spool_depth:  # noqa: ASYNC110 - the drainer keeps no event for tests
                    await asyncio.sleep(0.05)
            await pub.publish(envelope("M5"))  # direct again
    finally:
        await pub.stop()
    msgs = receive_all(sqs, url, 6)
    assert [InboundEnvelope.model_validate_json(m["Body"]).message.id for m in msgs] == [f"M{i}" for i in range(6)]
    assert not (tmp_path / SPOOL_FILE).exists()


async def test_spool_left_by_a_previous_run_is_drained_at_start(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    sqs, url = fifo
    e = envelope("OLD")
    (tmp_path / SPOOL_FILE).write_text(
        json.dumps({"group": "s1:x", "dedup": e.event_id, "body": e.model_dump_json()}) + "\n" + '{"torn": '
    )
    pub = SqsPublisher(url, spool_dir=tmp_path, endpoint_url=sqs_endpoint, backoff_initial_s=0.05)
    await pub.start()
    try:
        async with asyncio.timeout(10):
            while pub.spool_depth:  # noqa: ASYNC110 - the drainer keeps no event for tests
                await asyncio.sleep(0.05)
    finally:
        await pub.stop()
    msgs = receive_all(sqs, url, 1)
    assert [InboundEnvelope.model_validate_json(m["Body"]).message.id for m in msgs] == ["OLD"]
