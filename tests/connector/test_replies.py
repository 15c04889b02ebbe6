"""Sending once and keeping the record: the content kept for retries, and the API's ``Idempotency-Key``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connector.contracts import api_reply_id, whatsapp_message_id
from connector.errors import IdempotencyKeyReused, SessionNotOpen, StoreError
from connector.replies import Replies, message_content
from connector.store import MemoryReplyLog, SentReply
from connector.types import SessionId
from tests.connector.fakes import OPEN, S1, Harness, wa_message

CONTACT = "88887770001@lid"


class FlakyLog(MemoryReplyLog):
    """A reply log whose writes fail while ``down``."""

    down = False

    async def record_sent(self, sent: SentReply) -> None:
        if self.down:
            raise StoreError("table unreachable")
        await super().record_sent(sent)


@pytest.fixture
async def relay() -> AsyncIterator[tuple[Harness, Replies, FlakyLog]]:
    log = FlakyLog()
    h = await Harness(reply_log=log).start("s1")
    await h.bridge.emit("connection.update", "s1", OPEN)
    yield h, Replies(h.manager, log, h.manager.messages), log
    await h.manager.stop()


@pytest.mark.parametrize(
    ("quoted", "quoted_message", "context"),
    [
        (None, None, None),
        ({"remoteJid": CONTACT, "id": "Q1"}, None, {"stanzaId": "Q1", "participant": CONTACT}),
        (
            {"remoteJid": "123@g.us", "participant": "5@lid", "id": "Q2"},
            {"conversation": "what time?"},
            {"stanzaId": "Q2", "participant": "5@lid", "quotedMessage": {"conversation": "what time?"}},
        ),
        (  # only the quoted content is copied: not the quote inside it, not its context info
            {"remoteJid": CONTACT, "id": "Q3"},
            {
                "messageContextInfo": {"deviceListMetadata": {}},
                "extendedTextMessage": {"text": "re: re:", "contextInfo": {"stanzaId": "OLD"}},
            },
            {"stanzaId": "Q3", "participant": CONTACT, "quotedMessage": {"extendedTextMessage": {"text": "re: re:"}}},
        ),
        ({"remoteJid": CONTACT, "fromMe": True, "id": "Q4"}, None, {"stanzaId": "Q4"}),  # Baileys names us itself
    ],
    ids=["plain", "quote", "group-quote", "quote-of-a-quote", "own-message"],
)
def test_message_content_is_what_baileys_sends_for_a_text(
    quoted: dict[str, Any] | None, quoted_message: dict[str, Any] | None, context: dict[str, Any] | None
) -> None:
    expected: dict[str, Any] = {"text": "it is noon"}
    if context is not None:
        expected["contextInfo"] = context
    assert message_content("it is noon", quoted, quoted_message) == {"extendedTextMessage": expected}


async def test_a_send_is_recorded_with_its_content_and_the_quoted_message(
    relay: tuple[Harness, Replies, FlakyLog],
) -> None:
    h, replies, log = relay
    incoming = wa_message(CONTACT, "Q1", message={"conversation": "what time?"})
    await h.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": [incoming]})
    sent = await replies.send(S1, CONTACT, "noon", message_id="3EB0AAA", quoted_id="Q1", reply_id="r1")
    assert h.bridge.sent[0]["quoted"] == {"key": incoming["key"]}
    await replies.record(sent)
    assert await log.get_sent(S1, "3EB0AAA") == SentReply(
        S1,
        "3EB0AAA",
        CONTACT,
        message_content("noon", incoming["key"], {"conversation": "what time?"}),
        reply_id="r1",
    )


async def test_a_quote_too_large_to_keep_is_left_out_and_then_the_content(
    relay: tuple[Harness, Replies, FlakyLog], caplog: pytest.LogCaptureFixture
) -> None:
    h, replies, _ = relay
    huge = wa_message(CONTACT, "BIG", message={"conversation": "q" * 300_000})
    await h.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": [huge]})
    sent = await replies.send(S1, CONTACT, "a" * 200_000, quoted_id="BIG")
    assert sent.content == message_content("a" * 200_000, huge["key"], None)
    sent = await replies.send(S1, CONTACT, "a" * 500_000)  # longer than WhatsApp allows; an outbound body can be
    assert sent.content is None
    assert "too large to keep for retries" in caplog.text


async def test_api_send_without_a_key_is_recorded_and_a_failed_record_is_only_logged(
    relay: tuple[Harness, Replies, FlakyLog], caplog: pytest.LogCaptureFixture
) -> None:
    h, replies, log = relay
    first = await replies.send_request(S1, CONTACT, "one")
    assert (await log.get_sent(S1, first)) is not None
    log.down = True
    second = await replies.send_request(S1, CONTACT, "two")
    assert second and len(h.bridge.sent) == 2, "sent, and the client is not told to send it again"
    assert "not recorded for retries" in caplog.text


async def test_one_key_sends_once_even_after_a_restart(relay: tuple[Harness, Replies, FlakyLog]) -> None:
    h, replies, log = relay
    first = await replies.send_request(S1, CONTACT, "pay 5", key="order-17")
    assert first == whatsapp_message_id(api_reply_id("s1", "order-17"))
    assert await replies.send_request(S1, CONTACT, "pay 5", key="order-17") == first
    restarted = Replies(h.manager, log, h.manager.messages)  # a new process: only the log is shared
    assert await restarted.send_request(S1, CONTACT, "pay 5", key="order-17") == first
    assert [s["message_id"] for s in h.bridge.sent] == [first]
    other = await replies.send_request(S1, CONTACT, "pay 5", key="order-18")
    assert other != first and len(h.bridge.sent) == 2


async def test_one_key_with_another_request_is_refused(relay: tuple[Harness, Replies, FlakyLog]) -> None:
    h, replies, _ = relay
    await replies.send_request(S1, CONTACT, "pay 5", key="k1")
    others = [(CONTACT, "pay 6", None), ("1555@s.whatsapp.net", "pay 5", None), (CONTACT, "pay 5", "Q")]
    for to, text, quoted_id in others:
        with pytest.raises(IdempotencyKeyReused):
            await replies.send_request(S1, to, text, quoted_id=quoted_id, key="k1")
    assert len(h.bridge.sent) == 1


async def test_the_same_key_in_another_session_is_another_message(relay: tuple[Harness, Replies, FlakyLog]) -> None:
    h, replies, _ = relay
    await h.manager.create(SessionId("s2"))
    await h.bridge.wait_calls("start", 2)
    await h.bridge.emit("connection.update", "s2", OPEN)
    a = await replies.send_request(S1, CONTACT, "hi", key="k")
    b = await replies.send_request(SessionId("s2"), CONTACT, "hi", key="k")
    assert a != b and len(h.bridge.sent) == 2


async def test_concurrent_requests_with_one_key_send_once(relay: tuple[Harness, Replies, FlakyLog]) -> None:
    h, replies, _ = relay
    gate = asyncio.Event()
    send = h.bridge.send_message

    async def slow_send(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await send(*args, **kwargs)

    h.bridge.send_message = slow_send  # type: ignore[method-assign]
    tasks = [asyncio.create_task(replies.send_request(S1, CONTACT, "once", key="k")) for _ in range(3)]
    await asyncio.sleep(0.05)
    gate.set()
    ids = await asyncio.gather(*tasks)
    assert len(set(ids)) == 1 and len(h.bridge.sent) == 1
    assert len(replies._keys) == 0, "no lock is left behind"


async def test_a_keyed_send_that_failed_or_was_not_recorded_is_sent_on_retry(
    relay: tuple[Harness, Replies, FlakyLog],
) -> None:
    h, replies, log = relay
    h.bridge.not_open.add("s1")
    with pytest.raises(SessionNotOpen):
        await replies.send_request(S1, CONTACT, "hi", key="k")
    h.bridge.not_open.clear()
    log.down = True
    with pytest.raises(StoreError):  # sent, but the client cannot know: it retries with the same key
        await replies.send_request(S1, CONTACT, "hi", key="k")
    log.down = False
    again = await replies.send_request(S1, CONTACT, "hi", key="k")
    assert [s["message_id"] for s in h.bridge.sent] == [again, again], "the same WhatsApp message: the phone drops it"
    assert await replies.send_request(S1, CONTACT, "hi", key="k") == again
    assert len(h.bridge.sent) == 2
