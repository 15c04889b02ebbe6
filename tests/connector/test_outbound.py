"""The outbound consumer against moto's SQS: replies are sent once, in their chat's order, when their session can;
they wait without being received again, and what cannot be sent reaches the DLQ with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest

from connector.chatstate import ChatState, ChatStates, ChatStateSettings
from connector.config import OutboundSettings
from connector.contracts import OutboundReply, OutboundTyping, RawKey, reply_id, whatsapp_message_id
from connector.errors import SessionNotOpen, SessionNotReady, SidecarTimeout
from connector.messagecache import MessageCache
from connector.outbound import Held, OutboundConsumer
from connector.replies import Replies, message_content
from connector.session import Readiness
from connector.store import MemoryReplyLog, SentReply
from connector.types import SessionId
from tests.connector.test_store import Recording

QUICK = OutboundSettings(
    wait_time_s=1, visibility_s=2, extend_s=2, renew_before_s=1.0, tick_s=0.1, retry_base_s=0.05, retry_max_s=0.2
)
"""The queue hides a received message for 2 s (``queues``); held ones are extended when 1 s is left."""


class FakeSessions:
    """The session manager as the consumer sees it: each session's readiness (default ready), and its sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.readiness: dict[str, Readiness] = {}
        self.fail: list[Exception] = []
        """Errors the next sends raise, one each."""
        self.send_delay = 0.0
        self.open = True
        self.events: list[tuple[str, str]] = []
        """Sends, chat states and read marks in the order they were made: ``("send", text)``, ``("composing", to)``,
        ``("paused", to)``, ``("read", message id)``."""

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
        await asyncio.sleep(self.send_delay)
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append({"session": sid, "to": to, "text": text, "message_id": message_id, "quoted": quoted})
        self.events.append(("send", text))
        return message_id or "GEN"

    async def send_chat_state(self, sid: SessionId, to: str, state: ChatState) -> None:
        if self.readiness.get(sid, Readiness.READY) is not Readiness.READY:
            raise SessionNotOpen(f"session {sid} is not open")
        self.events.append((state, to))

    async def mark_read(self, sid: SessionId, key: dict[str, Any]) -> None:
        self.events.append(("read", key["id"]))

    def has_open_sessions(self) -> bool:
        return self.open

    async def reply_readiness(self, sid: SessionId) -> Readiness:
        return self.readiness.get(sid, Readiness.READY)

    def texts(self) -> list[str]:
        return [s["text"] for s in self.sent]


@pytest.fixture
def queues(sqs_endpoint: str) -> Iterator[tuple[Any, str, str]]:
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint)
    name = uuid.uuid4().hex[:12]
    fifo = {"FifoQueue": "true"}
    dlq = sqs.create_queue(QueueName=f"out-dlq-{name}.fifo", Attributes=fifo)["QueueUrl"]
    url = sqs.create_queue(QueueName=f"out-{name}.fifo", Attributes={**fifo, "VisibilityTimeout": "2"})["QueueUrl"]
    yield sqs, url, dlq
    sqs.delete_queue(QueueUrl=url)
    sqs.delete_queue(QueueUrl=dlq)


def reply(n: int, *, session: str = "s1", to: str = "88887770001@lid", quoted: bool = False) -> OutboundReply:
    rid = reply_id(f"ev-{n}", 0)
    key = RawKey(remoteJid=to, id="Q1", fromMe=False) if quoted else None
    return OutboundReply(reply_id=rid, event_id=f"ev-{n}", session_id=session, to=to, text=f"reply {n}", quoted=key)


def enqueue(sqs: Any, url: str, *replies: OutboundReply | OutboundTyping | str) -> None:
    for r in replies:
        body = r if isinstance(r, str) else r.model_dump_json()
        group = "s1:88887770001@lid" if isinstance(r, str) else f"{r.session_id}:{r.to}"
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=uuid.uuid4().hex)


def depth(sqs: Any, url: str, *, visible_only: bool = False) -> int:
    names = ["ApproximateNumberOfMessages"] + ([] if visible_only else ["ApproximateNumberOfMessagesNotVisible"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attrs[n]) for n in names)


def dead_letters(sqs: Any, dlq: str) -> list[dict[str, Any]]:
    """The DLQ's messages: body, and each message attribute as a plain string."""
    out = []
    for _ in range(3):
        msgs = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
            "Messages", []
        )
        for m in msgs:
            attrs = {k: v["StringValue"] for k, v in (m.get("MessageAttributes") or {}).items()}
            out.append({"body": m["Body"], **attrs})
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
        if not msgs:
            break
    return out


async def until(pred: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polls state outside this process (SQS)
            await asyncio.sleep(0.05)


class Calls(Recording):
    """Records what each call returned, too."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.returned: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)

        async def recorded(**kwargs: Any) -> Any:
            result = await call(**kwargs)
            self.returned.append((name, result))
            return result

        return recorded

    def received(self) -> Counter[str]:
        """How often each message was received."""
        return Counter(
            m["MessageId"] for n, r in self.returned if n == "receive_message" for m in r.get("Messages", [])
        )


class CountingLog(MemoryReplyLog):
    reads = 0
    records = 0

    async def get_sent(self, session: SessionId, message_id: str) -> SentReply | None:
        self.reads += 1
        return await super().get_sent(session, message_id)

    async def record_sent(self, sent: SentReply) -> None:
        self.records += 1
        await super().record_sent(sent)


@contextlib.asynccontextmanager
async def consuming(
    url: str,
    dlq: str | None,
    sessions: FakeSessions,
    endpoint: str,
    settings: OutboundSettings = QUICK,
    chat_states: ChatStates | None = None,
) -> AsyncIterator[tuple[OutboundConsumer, CountingLog, Calls]]:
    """A started consumer whose SQS calls are recorded."""
    log = CountingLog()
    replies = Replies(sessions, log, MessageCache(100))
    c = OutboundConsumer(url, sessions, replies, settings, dlq_url=dlq, endpoint_url=endpoint, chat_states=chat_states)
    await c.start()
    c._client = calls = Calls(c._client)
    try:
        yield c, log, calls
    finally:
        await c.stop()


async def test_sends_with_derived_id_records_and_deletes(sqs_endpoint: str, queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    replies = [reply(1), reply(2, quoted=True), reply(3)]
    enqueue(sqs, url, *replies)
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, log, _):
        await until(lambda: len(sessions.sent) == 3)
        await until(lambda: depth(sqs, url) == 0)
    assert sessions.texts() == ["reply 1", "reply 2", "reply 3"]  # one group: in order
    assert sessions.sent[0]["to"] == "88887770001@lid"
    assert sessions.sent[0]["message_id"] == whatsapp_message_id(replies[0].reply_id)
    assert sessions.sent[1]["quoted"] == {"remoteJid": "88887770001@lid", "fromMe": False, "id": "Q1"}
    for r in replies:
        record = await log.get_sent(SessionId("s1"), whatsapp_message_id(r.reply_id))
        assert record is not None and record.reply_id == r.reply_id
        assert record.content == message_content(r.text, r.quoted.model_dump() if r.quoted else None, None)
    assert c.held == 0


async def test_redelivered_sent_reply_is_not_sent_again(sqs_endpoint: str, queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    r = reply(7)
    enqueue(sqs, url, r)
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, log, _):
        await log.record_sent(SentReply(SessionId("s1"), whatsapp_message_id(r.reply_id), r.to))  # before a crash
        await until(lambda: c.duplicates == 1)
        await until(lambda: depth(sqs, url) == 0)
    assert sessions.sent == []


async def test_malformed_body_goes_to_the_dlq_with_its_reason(
    sqs_endpoint: str, queues: tuple[Any, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sqs, url, dlq = queues
    bad = json.dumps({"type": "outbound.reply", "v": 1, "text": "SECRET-TEXT"})
    enqueue(sqs, url, bad)
    sessions = FakeSessions()
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, _, _):
        await until(lambda: c.malformed == 1)
        await until(lambda: depth(sqs, url) == 0)
    [dead] = dead_letters(sqs, dlq)
    assert dead["body"] == bad
    assert (dead["reason"], dead["origin"], dead["receive_count"]) == ("malformed", "outbound", "1")
    assert dead["detail"].startswith("reply_id: ") and "SECRET" not in dead["detail"]
    assert "session" not in dead
    assert "malformed" in caplog.text and "SECRET-TEXT" not in caplog.text
    assert sessions.sent == []


async def test_a_reply_waits_for_its_session_kept_invisible_and_received_once(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    """A session coming back after a restart takes longer than the queue's visibility (2 s here): its replies wait
    in flight, in order, while another session's reply goes out; none is received twice or dead-lettered."""
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.readiness["s1"] = Readiness.WAIT
    enqueue(sqs, url, reply(1), reply(2), reply(3, session="s2"))
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, log, calls):
        await until(lambda: sessions.texts() == ["reply 3"])
        await asyncio.sleep(5)  # 2.5 times the visibility timeout
        assert log.reads == 2, "read once for each group's first reply, not at every look at the session"
        assert sessions.texts() == ["reply 3"] and c.held == 2
        sessions.readiness["s1"] = Readiness.READY
        await until(lambda: len(sessions.sent) == 3)
        await until(lambda: depth(sqs, url) == 0)
    assert sessions.texts() == ["reply 3", "reply 1", "reply 2"] and log.reads == 3
    assert sorted(calls.received().values()) == [1, 1, 1], "a waiting reply is never received again"
    assert c.extended >= 4 and c.handed_back == 0
    assert dead_letters(sqs, dlq) == []


async def test_a_slow_send_is_kept_invisible(sqs_endpoint: str, queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.send_delay = 4.0  # twice the visibility timeout
    enqueue(sqs, url, reply(1))
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, _, calls):
        await until(lambda: len(sessions.sent) == 1, timeout=15)
        await until(lambda: depth(sqs, url) == 0)
        await asyncio.sleep(0.5)
    assert list(calls.received().values()) == [1]
    assert c.extended >= 2 and len(sessions.sent) == 1


async def test_a_failing_send_is_retried_in_place_keeping_its_chats_order(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.fail = [SidecarTimeout("bridge slow"), SidecarTimeout("bridge slow")]
    enqueue(sqs, url, reply(1), reply(2), reply(3))
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, _, _):
        await until(lambda: len(sessions.sent) == 3)
        await until(lambda: depth(sqs, url) == 0)
    assert sessions.texts() == ["reply 1", "reply 2", "reply 3"]
    assert c.handed_back == 0 and c.dead_lettered == 0


async def test_a_reply_that_keeps_failing_goes_to_the_dlq_and_its_chat_goes_on(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.fail = [SidecarTimeout("no answer")] * 3
    enqueue(sqs, url, reply(1), reply(2))
    settings = dataclasses.replace(QUICK, send_attempts=3)
    async with consuming(url, dlq, sessions, sqs_endpoint, settings) as (c, _, _):
        await until(lambda: sessions.texts() == ["reply 2"])
        await until(lambda: depth(sqs, url) == 0)
    assert c.dead_lettered == 1
    [dead] = dead_letters(sqs, dlq)
    assert json.loads(dead["body"])["text"] == "reply 1"
    assert (dead["reason"], dead["session"], dead["origin"]) == ("send_failed", "s1", "outbound")
    assert dead["detail"] == "SidecarTimeout: no answer"


async def test_a_session_that_closes_under_a_send_is_waited_for_not_counted_as_a_failure(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    """Ready when asked, closed when sent (the bridge says not open): the session's next answer decides, and the
    reply is not dead-lettered for it however often that happens."""
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.fail = [SessionNotReady("session s1 is reconnecting, not open")] * 6
    enqueue(sqs, url, reply(1))
    async with consuming(url, dlq, sessions, sqs_endpoint, dataclasses.replace(QUICK, send_attempts=2)) as (c, _, _):
        await until(lambda: len(sessions.sent) == 1)
        await until(lambda: depth(sqs, url) == 0)
    assert c.dead_lettered == 0


@pytest.mark.parametrize("readiness", [Readiness.UNKNOWN, Readiness.WIPED])
async def test_a_reply_for_a_gone_session_goes_to_the_dlq_at_once(
    sqs_endpoint: str, queues: tuple[Any, str, str], readiness: Readiness
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.readiness["gone"] = readiness
    enqueue(sqs, url, reply(1, session="gone"))
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, _, calls):
        await until(lambda: c.dead_lettered == 1)
        await until(lambda: depth(sqs, url) == 0)
    [dead] = dead_letters(sqs, dlq)
    assert (dead["reason"], dead["session"], dead["origin"]) == (readiness.value, "gone", "outbound")
    assert calls.ops("change_message_visibility_batch") == [], "not handed back first"
    assert sessions.sent == []


async def test_owned_elsewhere_is_kept_for_a_takeover_then_goes_back_with_a_delay_and_a_reason(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    """Kept (not received again) while this connector may still take the session over; then handed back with a
    delay, for the owner; received ``max_receive_count`` times, it is dead-lettered here with its reason rather than
    reaching the DLQ through the redrive without one."""
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.readiness["s1"] = Readiness.ELSEWHERE
    enqueue(sqs, url, reply(1))
    settings = dataclasses.replace(QUICK, max_receive_count=3, elsewhere_wait_s=0.5, elsewhere_delay_s=1)
    async with consuming(url, dlq, sessions, sqs_endpoint, settings) as (c, _, calls):
        await until(lambda: c.dead_lettered == 1, timeout=15)
    delays = [e["VisibilityTimeout"] for kw in calls.ops("change_message_visibility_batch") for e in kw["Entries"]]
    assert [d for d in delays if d != settings.extend_s] == [1, 1] and c.handed_back == 2
    [dead] = dead_letters(sqs, dlq)
    assert (dead["reason"], dead["receive_count"]) == ("session_elsewhere", "3")


async def test_a_reply_waiting_for_a_takeover_is_sent_once_the_session_is_ours(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    """After a restart the dead connector's lease stands in the way for up to its TTL: the reply waits it out."""
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.readiness["s1"] = Readiness.ELSEWHERE
    enqueue(sqs, url, reply(1))
    async with consuming(url, dlq, sessions, sqs_endpoint, QUICK) as (c, _, calls):
        await asyncio.sleep(3 * QUICK.visibility_s)
        sessions.readiness["s1"] = Readiness.READY
        await until(lambda: len(sessions.sent) == 1)
    assert c.handed_back == 0 and c.dead_lettered == 0
    assert sorted(calls.received().values()) == [1], "received once"


async def test_beyond_max_held_replies_go_back_with_a_fixed_delay(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.readiness["s1"] = sessions.readiness["s2"] = Readiness.WAIT
    enqueue(sqs, url, reply(1), reply(2, session="s2"))
    settings = dataclasses.replace(QUICK, max_held=1, overflow_delay_s=1, max_receive_count=3)
    async with consuming(url, dlq, sessions, sqs_endpoint, settings) as (c, _, calls):
        await until(lambda: c.dead_lettered == 1, timeout=15)
        assert c.held == 1, "the other one still waits"
        sessions.readiness["s1"] = sessions.readiness["s2"] = Readiness.READY
        await until(lambda: len(sessions.sent) == 1 and c.held == 0)
    changes = [e["VisibilityTimeout"] for kw in calls.ops("change_message_visibility_batch") for e in kw["Entries"]]
    assert [d for d in changes if d != QUICK.extend_s] == [1, 1], "the same delay at every receive"
    [dead] = dead_letters(sqs, dlq)
    assert (dead["reason"], dead["receive_count"]) == ("held_limit", "3")
    assert json.loads(dead["body"])["text"] not in sessions.texts()


async def test_stop_hands_held_replies_back_at_once(sqs_endpoint: str, queues: tuple[Any, str, str]) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.readiness["s1"] = Readiness.WAIT
    enqueue(sqs, url, reply(1))
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, _, _):
        await until(lambda: c.held == 1)
    assert depth(sqs, url, visible_only=True) == 1, "visible again at once, for whoever runs next"


async def test_stop_lets_a_send_under_way_finish_and_be_recorded(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    """Cancelled mid-send, the bridge would send it anyway and the connector not record it: sent twice later."""
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.send_delay = 1.0
    enqueue(sqs, url, reply(1), reply(2))
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, log, _):
        await until(lambda: c._sending == 1)
    assert sessions.texts() == ["reply 1"], "the one under way finished; the next was not started"
    assert log.records == 1
    assert depth(sqs, url, visible_only=True) == 1, "the next one is back in the queue at once"


async def test_a_message_whose_receipt_is_refused_is_let_go_unsent() -> None:
    """Its visibility lapsed (an event loop stall, say) and someone else may have it now: not ours to send."""
    sessions = FakeSessions()
    sessions.readiness["s1"] = Readiness.WAIT

    class Refusing:
        def __init__(self) -> None:
            self.deleted: list[str] = []

        async def change_message_visibility_batch(self, **kw: Any) -> dict[str, Any]:
            return {"Failed": [{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid"} for e in kw["Entries"]]}

        async def delete_message(self, **kw: Any) -> None:
            self.deleted.append(kw["ReceiptHandle"])

    c = OutboundConsumer(
        "http://q.invalid/q.fifo", sessions, Replies(sessions, MemoryReplyLog(), MessageCache(1)), QUICK
    )
    c._client = client = Refusing()
    body = reply(1).model_dump_json()
    c.take([{"MessageId": "m1", "ReceiptHandle": "r1", "Body": body, "Attributes": {"MessageGroupId": "g"}}])
    [held] = list(c._held)
    held.visible_until = 0  # due now
    beat = asyncio.create_task(c._keep_invisible())
    try:
        await until(lambda: held.lost)
        sessions.readiness["s1"] = Readiness.READY
        await until(lambda: not c._workers)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    assert sessions.sent == [] and client.deleted == [] and c.held == 0


async def test_a_connector_with_no_open_session_leaves_the_queue_alone() -> None:
    """A standby connector must not take replies it cannot send: each receive counts towards the DLQ."""
    sessions = FakeSessions()
    sessions.open = False

    receives: list[dict[str, Any]] = []

    class CountingClient:
        async def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            receives.append(kwargs)
            await asyncio.sleep(0.05)  # as a long poll would, instead of spinning
            return {}

    consumer = OutboundConsumer(
        "http://q.invalid/q.fifo", sessions, Replies(sessions, MemoryReplyLog(), MessageCache(1))
    )
    consumer._client = CountingClient()
    task = asyncio.create_task(consumer._run())
    await asyncio.sleep(0.3)
    assert receives == [], "received while no session is open"
    sessions.open = True
    await asyncio.sleep(1.2)
    assert receives, "polls again once a session is open"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_settings_keep_a_held_message_from_lapsing() -> None:
    with pytest.raises(ValueError, match="renew_before_s"):
        OutboundSettings(visibility_s=20, renew_before_s=25)
    with pytest.raises(ValueError, match="renew_before_s"):
        OutboundSettings(tick_s=10, renew_before_s=5)
    assert Held({"ReceiptHandle": "r", "Attributes": {"ApproximateReceiveCount": "4"}}, 0).receive_count == 4


# ---- typing and read marks -----------------------------------------------------------------------------------------

BOB = "88887770002@lid"


def typing(n: int, state: str = "composing", *, to: str = BOB, for_s: float = 60.0) -> OutboundTyping:
    return OutboundTyping(
        event_id=f"ev-{n}", session_id="s1", to=to, state=state, expires_at=int((time.time() + for_s) * 1000)
    )


def answer(n: int, index: int = 0, *, to: str = BOB, read: bool = True) -> OutboundReply:
    key = RawKey(remoteJid=to, id=f"IN{n}", fromMe=False) if read else None
    text = f"reply {n}" + (f".{index}" if index else "")
    return OutboundReply(
        reply_id=reply_id(f"ev-{n}", index), event_id=f"ev-{n}", session_id="s1", to=to, text=text, mark_read=key
    )


@contextlib.asynccontextmanager
async def chat_states(sessions: FakeSessions) -> AsyncIterator[ChatStates]:
    states = ChatStates(sessions, ChatStateSettings(refresh_s=0.5, tick_s=0.05))
    await states.start()
    try:
        yield states
    finally:
        await states.stop()


async def test_typing_shows_while_the_bot_works_then_paused_the_reply_and_one_read_mark(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    enqueue(sqs, url, typing(1))
    async with (
        chat_states(sessions) as states,
        consuming(url, dlq, sessions, sqs_endpoint, chat_states=states) as (c, _, _),
    ):
        await until(lambda: states.is_typing(SessionId("s1"), BOB))
        await asyncio.sleep(1.2)  # the bot works: refreshed every 0.5 s
        enqueue(sqs, url, answer(1), answer(1, 1))
        await until(lambda: len(sessions.sent) == 2)
        await until(lambda: depth(sqs, url) == 0)
    composing = sessions.events.index(("paused", BOB))
    assert composing >= 3 and set(sessions.events[:composing]) == {("composing", BOB)}, "shown, then refreshed"
    assert sessions.events[composing:] == [("paused", BOB), ("send", "reply 1"), ("read", "IN1"), ("send", "reply 1.1")]
    assert c.typing == 1 and c.dead_lettered == 0 and states.typing_chats == 0


async def test_typing_for_a_session_that_is_not_open_is_dropped_and_its_chats_replies_wait_as_before(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    sessions.readiness["s1"] = Readiness.WAIT
    enqueue(sqs, url, typing(1), answer(1))
    async with (
        chat_states(sessions) as states,
        consuming(url, dlq, sessions, sqs_endpoint, chat_states=states) as (c, _, calls),
    ):
        await until(lambda: c.typing == 1 and c.held == 1)
        assert states.dropped == 1 and states.typing_chats == 0
        sessions.readiness["s1"] = Readiness.READY
        await until(lambda: depth(sqs, url) == 0)
    assert sessions.events == [("send", "reply 1"), ("read", "IN1")]
    assert dead_letters(sqs, dlq) == [] and c.handed_back == 0
    assert sorted(calls.received().values()) == [1, 1]


async def test_a_malformed_typing_message_is_dropped_never_dead_lettered(
    sqs_endpoint: str, queues: tuple[Any, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    enqueue(sqs, url, json.dumps({"type": "outbound.typing", "v": 1, "session_id": "s1", "to": BOB}), reply(2))
    async with (
        chat_states(sessions) as states,
        consuming(url, dlq, sessions, sqs_endpoint, chat_states=states) as (c, _, _),
    ):
        await until(lambda: len(sessions.sent) == 1)
        await until(lambda: depth(sqs, url) == 0)
    assert c.malformed == 0 and c.typing == 1
    assert dead_letters(sqs, dlq) == []
    assert "malformed typing message" in caplog.text


async def test_the_functions_paused_ends_typing_when_the_bot_gives_no_reply(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    enqueue(sqs, url, typing(1), typing(1, "paused"), typing(2, for_s=-1), typing(3, "paused"))
    async with (
        chat_states(sessions) as states,
        consuming(url, dlq, sessions, sqs_endpoint, chat_states=states) as (c, _, _),
    ):
        await until(lambda: c.typing == 4)
        await until(lambda: depth(sqs, url) == 0)
    assert sessions.events == [("composing", BOB), ("paused", BOB)], "an expired one is not shown; paused once"


async def test_without_chat_states_typing_messages_are_only_deleted(
    sqs_endpoint: str, queues: tuple[Any, str, str]
) -> None:
    sqs, url, dlq = queues
    sessions = FakeSessions()
    enqueue(sqs, url, typing(1), answer(1))
    async with consuming(url, dlq, sessions, sqs_endpoint) as (c, _, _):
        await until(lambda: depth(sqs, url) == 0)
    assert sessions.events == [("send", "reply 1")] and c.typing == 1
