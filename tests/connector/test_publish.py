from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
from aiohttp.test_utils import TestClient, TestServer

from connector.app import Stores, create_app, make_publisher
from connector.config import Config, load_config
from connector.contracts import Account, InboundEnvelope
from connector.errors import ConfigError, PublishError
from connector.inbound import build_envelope
from connector.publish import MemoryPublisher
from connector.publish import sqs as sqs_module
from connector.publish.spool import LEGACY_FILE, Entry
from connector.publish.sqs import SqsPublisher
from connector.sidecar.types import WAMessage
from tests.connector.fakes import FakeBridge, wa_message
from tests.connector.test_spool import DiskFault

API_KEY = "k3J9x2Lq8Vn5Rt7Wz4Yb"

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


def spooled(spool_dir: Path) -> list[dict[str, str]]:
    """Every entry in the spool's segments, oldest first (read straight from the files)."""
    lines = [line for p in sorted(spool_dir.glob("inbound.*.spool")) for line in p.read_bytes().splitlines()]
    return [json.loads(line) for line in lines]


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
    assert spooled(tmp_path) == []


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
    assert spooled(tmp_path) == []


async def test_entries_queued_at_stop_are_spooled_not_lost(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    pub = SqsPublisher(fifo[1], spool_dir=tmp_path, endpoint_url=sqs_endpoint)
    await pub.start()
    calls = [asyncio.ensure_future(pub.publish(envelope(f"S{i}"))) for i in range(15)]
    await asyncio.sleep(0)  # the calls are queued; the sender has not sent them all
    await pub.stop()
    await asyncio.gather(*calls)  # every call returned: sent, or durable in the spool
    assert pub.sent + len(spooled(tmp_path)) >= 15


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
        assert [x["dedup"] for x in spooled(tmp_path)] == [e.event_id for e in envs]
        async with tcp_proxy(port, sqs_endpoint):
            async with asyncio.timeout(20):
                while pub.spool_depth:  # noqa: ASYNC110 - the drainer keeps no event for tests
                    await asyncio.sleep(0.05)
            await pub.publish(envelope("M5"))  # direct again
    finally:
        await pub.stop()
    msgs = receive_all(sqs, url, 6)
    assert [InboundEnvelope.model_validate_json(m["Body"]).message.id for m in msgs] == [f"M{i}" for i in range(6)]
    assert spooled(tmp_path) == []


async def test_spool_left_by_a_previous_run_is_drained_at_start(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    sqs, url = fifo
    e = envelope("OLD")
    (tmp_path / LEGACY_FILE).write_text(
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


# ---- the spool under faults: disk full, spool full, slow SQS, restarts, backlogs ----


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling the publisher's state is what these tests observe
            await asyncio.sleep(0.02)


class RecordingClient:
    """Wraps the publisher's SQS client: records each ``SendMessageBatch`` (its dedup ids) and can delay it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[list[str]] = []
        self.delay = 0.0
        self.hang_after: int | None = None
        """Calls after this many never answer (the process is killed during them)."""

    async def send_message_batch(self, **kwargs: Any) -> Any:
        self.calls.append([e["MessageDeduplicationId"] for e in kwargs["Entries"]])
        if self.hang_after is not None and len(self.calls) > self.hang_after:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay)
        return await self.client.send_message_batch(**kwargs)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[RecordingClient]:
    """Every SQS client a publisher opens from now on, wrapped (one per ``start``)."""
    opened: list[RecordingClient] = []
    real = sqs_module.open_client

    async def open_client(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        client, stack = await real(*args, **kwargs)
        opened.append(RecordingClient(client))
        return opened[-1], stack

    monkeypatch.setattr(sqs_module, "open_client", open_client)
    return opened


def down(url: str, spool_dir: Path, **kwargs: Any) -> tuple[SqsPublisher, int]:
    """A publisher whose SQS endpoint is a closed port (``tcp_proxy`` on it heals the network)."""
    port = free_port()
    pub = SqsPublisher(
        url, spool_dir=spool_dir, endpoint_url=f"http://127.0.0.1:{port}", backoff_initial_s=0.05,
        backoff_max_s=0.2, **kwargs,
    )  # fmt: skip
    return pub, port


async def down_with_backlog(url: str, spool_dir: Path, prefix: str, count: int) -> tuple[SqsPublisher, int]:
    """``down``, started, with ``<prefix>00`` … spooled (each ``publish`` returned)."""
    pub, port = down(url, spool_dir)
    await pub.start()
    for i in range(count):
        await pub.publish(envelope(f"{prefix}{i:02d}"))
    return pub, port


def ids(msgs: list[dict[str, Any]]) -> list[str]:
    return [InboundEnvelope.model_validate_json(m["Body"]).message.id for m in msgs]


@pytest.mark.parametrize("call", ["write", "fsync"])
async def test_a_full_disk_holds_envelopes_unacknowledged_and_nothing_is_lost_once_space_returns(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    sqs, url = fifo
    pub, port = down(url, tmp_path)
    await pub.start()
    fault = DiskFault(monkeypatch, tmp_path, call)
    try:
        futures = [await pub.enqueue(envelope(f"D{i}")) for i in range(5)]
        await wait_until(lambda: pub.spool_write_errors >= 3)  # retried, and no task died of it
        assert not any(f.done() for f in futures), "acknowledged without being durable"
        assert pub.degraded is not None and "No space left" in pub.degraded
        fault.on = False
        await asyncio.wait_for(asyncio.gather(*futures), 5)
        assert pub.degraded is None and pub.spool_depth == 5
        async with tcp_proxy(port, sqs_endpoint):
            await wait_until(lambda: pub.spool_depth == 0, 20)
    finally:
        fault.on = False
        await pub.stop()
    assert ids(receive_all(sqs, url, 5)) == [f"D{i}" for i in range(5)]


async def test_a_full_spool_holds_envelopes_and_readyz_says_degraded(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    sqs, url = fifo
    line = len(Entry("s1:88887770001@lid", envelope("F0").event_id, envelope("F0").model_dump_json()).line())
    pub, port = down(url, tmp_path, spool_max_bytes=3 * line + 10)
    cfg = Config(api_key=API_KEY, store_backend="memory", session_start_interval_s=0, session_start_jitter_s=0)
    app = create_app(cfg, stores=Stores.memory(), publisher=pub, bridge=FakeBridge)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/readyz")).status == 200
        futures = [await pub.enqueue(envelope(f"F{i}")) for i in range(6)]
        await wait_until(lambda: pub.degraded is not None)
        await asyncio.sleep(0.3)
        assert [f.done() for f in futures] == [True] * 3 + [False] * 3
        resp = await client.get("/readyz")
        assert resp.status == 503
        error = (await resp.json())["error"]
        assert error["code"] == "degraded" and "full" in error["message"]
        text = await (await client.get("/metrics")).text()
        assert "wa_relay_publisher_degraded 1" in text and "wa_relay_spool_depth 3" in text
        assert f"wa_relay_spool_bytes {pub.spool_bytes}" in text and pub.spool_bytes > 0
        assert "wa_relay_spool_write_errors_total 0" in text, "a full spool is not a disk error"
        async with tcp_proxy(port, sqs_endpoint):
            await asyncio.wait_for(asyncio.gather(*futures), 20)
            await wait_until(lambda: pub.spool_depth == 0, 20)
        assert (await client.get("/readyz")).status == 200
    assert ids(receive_all(sqs, url, 6)) == [f"F{i}" for i in range(6)]


async def test_a_slow_sqs_spills_to_the_spool_after_the_bounded_wait_and_sends_once(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path, clients: list[RecordingClient]
) -> None:
    sqs, url = fifo
    pub = SqsPublisher(url, spool_dir=tmp_path, endpoint_url=sqs_endpoint, spool_after_s=0.2, backoff_initial_s=0.05)
    await pub.start()
    clients[0].delay = 1.5
    try:
        started = asyncio.get_running_loop().time()
        futures = [await pub.enqueue(envelope(f"L{i}")) for i in range(3)]
        await asyncio.wait_for(asyncio.gather(*futures), 1.0)  # from the spool, before SQS answered
        assert asyncio.get_running_loop().time() - started < 1.0
        assert pub.spool_depth == 3
        clients[0].delay = 0
        await wait_until(lambda: pub.spool_depth == 0)
    finally:
        await pub.stop()
    assert pub.sent == 3, f"the late batch was sent again from the spool: {clients[0].calls}"
    assert ids(receive_all(sqs, url, 3)) == ["L0", "L1", "L2"]


async def test_a_restart_mid_drain_resumes_from_the_cursor_repeating_at_most_one_batch(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path, clients: list[RecordingClient]
) -> None:
    sqs, url = fifo
    first, _ = await down_with_backlog(url, tmp_path, "R", 35)
    await first.stop()
    event_ids = [envelope(f"R{i:02d}").event_id for i in range(35)]

    killed = SqsPublisher(url, spool_dir=tmp_path, endpoint_url=sqs_endpoint)
    await killed.start()
    clients[-1].hang_after = 1  # the first batch is sent, the process dies during the second
    await wait_until(lambda: len(clients[-1].calls) == 2)
    await killed.stop()

    resumed = SqsPublisher(url, spool_dir=tmp_path, endpoint_url=sqs_endpoint)
    await resumed.start()
    try:
        await wait_until(lambda: resumed.spool_depth == 0)
    finally:
        await resumed.stop()
    assert clients[-1].calls[0] == clients[-2].calls[1] == event_ids[10:20], "resumes with the batch in flight"
    assert [x for call in clients[-1].calls for x in call] == event_ids[10:]
    assert ids(receive_all(sqs, url, 35)) == [f"R{i:02d}" for i in range(35)]
    assert spooled(tmp_path) == []


async def test_a_backlog_drains_in_full_batches_with_new_envelopes_behind_it(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path, clients: list[RecordingClient]
) -> None:
    sqs, url = fifo
    pub, port = await down_with_backlog(url, tmp_path, "B", 45)
    try:
        clients[0].delay = 0.1
        async with tcp_proxy(port, sqs_endpoint):
            await wait_until(lambda: pub.batches > 0, 20)
            await asyncio.gather(*(pub.publish(envelope(f"N{i}")) for i in range(5)))
            assert pub.spool_depth > 5, "new envelopes waited for the backlog instead of going behind it on disk"
            await wait_until(lambda: pub.spool_depth == 0, 20)
    finally:
        await pub.stop()
    assert pub.batches <= 6, f"{pub.batches} calls for 50 envelopes: {[len(c) for c in clients[0].calls]}"
    assert ids(receive_all(sqs, url, 50)) == [f"B{i:02d}" for i in range(45)] + [f"N{i}" for i in range(5)]


@pytest.mark.parametrize("limit", ["max_pending", "max_pending_bytes"])
async def test_memory_is_bounded_and_enqueue_waits_for_room(
    fifo: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    size = len(envelope("W0").model_dump_json().encode())
    pub, _ = down(fifo[1], tmp_path, **{limit: 3 if limit == "max_pending" else 3 * size + 10})
    await pub.start()
    fault = DiskFault(monkeypatch, tmp_path, "write")
    try:
        futures = [await pub.enqueue(envelope(f"W{i}")) for i in range(3)]
        fourth = asyncio.ensure_future(pub.enqueue(envelope("W3")))
        await asyncio.sleep(0.3)
        assert not fourth.done(), "the memory queue grew past its bound"
        fault.on = False
        futures.append(await asyncio.wait_for(fourth, 5))
        await asyncio.wait_for(asyncio.gather(*futures), 5)
    finally:
        fault.on = False
        await pub.stop()
    assert [x["dedup"] for x in spooled(tmp_path)] == [envelope(f"W{i}").event_id for i in range(4)]


async def test_the_legacy_spool_is_drained_before_new_envelopes(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path
) -> None:
    sqs, url = fifo
    old = [envelope(f"OLD{i}") for i in range(3)]
    (tmp_path / LEGACY_FILE).write_text(
        "".join(json.dumps({"group": "s1:88887770001@lid", "dedup": e.event_id, "body": e.model_dump_json()}) + "\n"
                for e in old)
    )  # fmt: skip
    pub = SqsPublisher(url, spool_dir=tmp_path, endpoint_url=sqs_endpoint, backoff_initial_s=0.05)
    await pub.start()
    try:
        assert pub.spool_depth == 3 and not (tmp_path / LEGACY_FILE).exists()
        await pub.publish(envelope("NEW"))
        await wait_until(lambda: pub.spool_depth == 0)
    finally:
        await pub.stop()
    assert ids(receive_all(sqs, url, 4)) == ["OLD0", "OLD1", "OLD2", "NEW"]


def test_spool_settings_are_read_validated_and_handed_to_the_publisher() -> None:
    base = {"CONNECTOR_API_KEY": API_KEY, "STORE_BACKEND": "memory", "INBOUND_QUEUE_URL": "http://q/in.fifo"}
    cfg = load_config(base)
    assert (cfg.spool_max_bytes, cfg.spool_after_s) == (1 << 30, 2.0)
    pub = make_publisher(load_config({**base, "SPOOL_MAX_BYTES": str(1 << 20), "SPOOL_AFTER_S": "0.5"}))
    assert isinstance(pub, SqsPublisher)
    assert (pub.spool.max_bytes, pub.spool_after_s) == (1 << 20, 0.5)
    for name, value in [("SPOOL_MAX_BYTES", "1000"), ("SPOOL_AFTER_S", "0"), ("SPOOL_MAX_BYTES", "1G")]:
        with pytest.raises(ConfigError, match=name):
            load_config({**base, name: value})


async def test_at_stop_the_batch_in_flight_and_callers_waiting_for_room_are_spooled_in_order(
    sqs_endpoint: str, fifo: tuple[Any, str], tmp_path: Path, clients: list[RecordingClient]
) -> None:
    pub = SqsPublisher(fifo[1], spool_dir=tmp_path, endpoint_url=sqs_endpoint, spool_after_s=30, max_pending=2)
    await pub.start()
    clients[0].hang_after = 0
    futures = [await pub.enqueue(envelope(f"T{i}")) for i in range(2)]
    await wait_until(lambda: len(clients[0].calls) == 1)  # in flight, unanswered
    waiting = asyncio.ensure_future(pub.enqueue(envelope("T2")))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await pub.stop()
    futures.append(await waiting)
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert [x["dedup"] for x in spooled(tmp_path)] == [envelope(f"T{i}").event_id for i in range(3)]
