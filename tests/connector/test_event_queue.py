"""The events publisher (``connector.publish.events.EventQueue``) against moto's SQS server: every event for
``EVENTS_URL`` reaches ``events.fifo`` once, in order per session, through outages and partial failures; a full
buffer drops and counts; ``stop()`` flushes; and in the app it is a sink of the hub that stops after the sessions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aiohttp.test_utils import TestClient, TestServer

from connector.api import EVENT_QUEUE_KEY
from connector.app import Stores, create_app
from connector.config import Config
from connector.contracts import RelayEvent, relay_event_id
from connector.publish import MemoryPublisher
from connector.publish.events import EventQueue
from tests.connector.fakes import FakeBridge

KEY = "k3J9x2Lq8Vn5Rt7Wz4Yb"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def fifo(sqs_endpoint: str) -> Iterator[tuple[Any, str]]:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint)
    url = sqs.create_queue(
        QueueName=f"events-{uuid.uuid4().hex[:12]}.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"}
    )["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def event(session_id: str, n: int, kind: str = "session.state") -> RelayEvent:
    return RelayEvent(
        id=relay_event_id(kind, session_id, uuid.uuid4().hex),
        kind=kind,  # type: ignore[arg-type]
        session_id=session_id,
        at=int(time.time() * 1000),
        data={"n": n},
    )


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Everything on the queue, in the order SQS hands it out (FIFO: in order within each group)."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]).get(
            "Messages", []
        )
        if not got:
            return out
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        out.extend(got)


def by_session(messages: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for m in messages:
        e = RelayEvent.model_validate_json(m["Body"])
        assert m["Attributes"]["MessageGroupId"] == e.group_id
        assert m["Attributes"]["MessageDeduplicationId"] == e.id
        out.setdefault(e.session_id, []).append(e.data["n"])
    return out


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def publisher(url: str, endpoint: str, **kw: Any) -> EventQueue:
    return EventQueue(url, endpoint_url=endpoint, backoff_initial_s=0.05, backoff_max_s=0.2, **kw)


async def test_events_reach_the_queue_once_in_order_per_session(sqs_endpoint: str, fifo: tuple[Any, str]) -> None:
    sqs, url = fifo
    q = publisher(url, sqs_endpoint)
    await q.start()
    try:
        for n in range(30):
            q(event(f"s{n % 3}", n))
        q(event("s0", 99, "message.received"))  # the dashboard's counter only: not for EVENTS_URL
        await until(lambda: q.sent == 30)
    finally:
        await q.stop()
    assert by_session(receive_all(sqs, url)) == {f"s{i}": list(range(i, 30, 3)) for i in range(3)}
    assert (q.sent, q.dropped, q.errors, q.buffered) == (30, 0, 0, 0)


async def test_an_sqs_outage_loses_nothing_and_doubles_nothing(sqs_endpoint: str, fifo: tuple[Any, str]) -> None:
    sqs, url = fifo
    # SQS refuses every call at first (the queue is not there), as it would through an outage.
    q = publisher(url.replace("events-", "missing-"), sqs_endpoint)
    await q.start()
    try:
        for n in range(12):
            q(event(f"s{n % 2}", n))
        await until(lambda: q.errors >= 3)
        assert q.sent == 0 and q.buffered == 12
        q.queue_url = url  # the outage ends
        for n in range(12, 16):
            q(event(f"s{n % 2}", n))
        await until(lambda: q.sent == 16)
    finally:
        await q.stop()
    assert by_session(receive_all(sqs, url)) == {"s0": list(range(0, 16, 2)), "s1": list(range(1, 16, 2))}
    assert q.dropped == 0


async def test_an_entry_sqs_refuses_is_sent_again_before_its_sessions_next(
    sqs_endpoint: str, fifo: tuple[Any, str]
) -> None:
    sqs, url = fifo
    q = publisher(url, sqs_endpoint)
    await q.start()
    real = q._client.send_message_batch
    refused: list[str] = []

    async def flaky(**kw: Any) -> dict[str, Any]:
        # The first entry of s0 is refused once (throttled) without reaching the queue; the rest go through.
        entries = kw["Entries"]
        victim = next((e for e in entries if e["MessageGroupId"].startswith("s0") and not refused), None)
        if victim is None:
            return await real(**kw)  # type: ignore[no-any-return]
        refused.append(victim["MessageDeduplicationId"])
        response = await real(**{**kw, "Entries": [e for e in entries if e is not victim]})
        failure = {"Id": victim["Id"], "Code": "ThrottlingException", "SenderFault": False, "Message": "slow"}
        return {**response, "Failed": [*response.get("Failed", []), failure]}

    q._client.send_message_batch = flaky
    try:
        for n in range(8):
            q(event(f"s{n % 2}", n))
        await until(lambda: q.sent == 8)
    finally:
        await q.stop()
    assert len(refused) == 1 and q.errors == 1
    assert by_session(receive_all(sqs, url)) == {"s0": [0, 2, 4, 6], "s1": [1, 3, 5, 7]}


async def test_a_full_buffer_drops_new_events_and_counts_them(sqs_endpoint: str, fifo: tuple[Any, str]) -> None:
    sqs, url = fifo
    q = publisher(url, sqs_endpoint, max_buffered=5)
    for n in range(8):  # before start: nothing drains the buffer
        q(event("s0", n))
    assert (q.buffered, q.dropped) == (5, 3)
    await q.start()
    try:
        await until(lambda: q.sent == 5)
        q(event("s0", 8))  # room again
        await until(lambda: q.sent == 6)
    finally:
        await q.stop()
    assert by_session(receive_all(sqs, url)) == {"s0": [0, 1, 2, 3, 4, 8]}


async def test_stop_flushes_what_is_buffered(sqs_endpoint: str, fifo: tuple[Any, str]) -> None:
    sqs, url = fifo
    q = publisher(url, sqs_endpoint)
    await q.start()
    for n in range(25):
        q(event(f"s{n % 5}", n))
    await q.stop()
    assert q.sent == 25 and q.buffered == 0
    assert sum(len(v) for v in by_session(receive_all(sqs, url)).values()) == 25
    await q.stop()  # idempotent


async def test_the_app_publishes_the_hubs_events_and_stops_after_the_sessions(
    sqs_endpoint: str, fifo: tuple[Any, str]
) -> None:
    sqs, url = fifo
    cfg = Config(
        api_key=KEY, store_backend="memory", session_start_interval_s=0, session_start_jitter_s=0,
        events_queue_url=url, aws_endpoint_url=sqs_endpoint,
    )  # fmt: skip
    app = create_app(cfg, stores=Stores.memory(), publisher=MemoryPublisher(), bridge=FakeBridge)
    async with TestClient(TestServer(app)) as c:
        assert (await c.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)).status == 201
        queue = c.app[EVENT_QUEUE_KEY]
        await until(lambda: queue.sent >= 1)
        text = await (await c.get("/metrics", headers=AUTH)).text()
        assert f"wa_relay_events_sent_total {queue.sent}" in text
        assert "wa_relay_events_dropped_total 0" in text
    events = [RelayEvent.model_validate_json(m["Body"]) for m in receive_all(sqs, url)]
    assert events[0].kind == "session.created"
    # The manager's stop changed the session's state after the test client left: that event was still sent.
    assert events[-1].kind == "session.state" and events[-1].data["state"] == "stopped"


def test_without_an_events_queue_there_is_no_publisher() -> None:
    app = create_app(Config(api_key=KEY, store_backend="memory"), stores=Stores.memory(), bridge=FakeBridge)
    assert EVENT_QUEUE_KEY not in app
