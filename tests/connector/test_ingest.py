"""Inbound messages from ``messages.upsert`` to the publisher: what is published, in which order, what is not
(stubs, the echo of our own sends), and that message text never reaches the logs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from connector.contracts import InboundEnvelope
from connector.publish import MemoryPublisher
from connector.sidecar.types import MessageKey
from tests.connector.fakes import OPEN, S1, Harness, wa_message


async def test_notify_and_append_are_published_stubs_are_not(harness: Harness) -> None:
    await harness.start("s1")
    await harness.bridge.emit("connection.update", "s1", OPEN)
    await harness.bridge.emit(
        "messages.upsert",
        "s1",
        {"type": "notify", "messages": [wa_message("88887770001@lid", "A", alt="15557770001@s.whatsapp.net")]},
    )
    await harness.bridge.emit(
        "messages.upsert",
        "s1",
        {
            "type": "append",
            "messages": [
                wa_message("88887770001@lid", "STUB", stub=2),
                wa_message("15557770001@s.whatsapp.net", "B", from_me=True),
            ],
        },
    )
    assert isinstance(harness.publisher, MemoryPublisher)
    envs = harness.publisher.envelopes
    assert [(x.message.id, x.upsert_type) for x in envs] == [("A", "notify"), ("B", "append")]
    assert envs[0].me.pn == "15550001111@s.whatsapp.net"
    await asyncio.sleep(0)  # counted when the publisher reports them durable (a done-callback)
    assert harness.manager.ingest.published == 2


class SlowPublisher(MemoryPublisher):
    """Takes envelopes at once; they become durable only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    async def enqueue(self, envelope: InboundEnvelope) -> asyncio.Future[None]:
        await self.publish(envelope)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(done)
        return done


async def test_a_session_does_not_wait_for_each_message_to_reach_the_queue() -> None:
    slow = SlowPublisher()
    h = await Harness(publisher=slow).start("s1")
    try:
        for n in range(3):
            message = wa_message("88887770001@lid", f"M{n}", alt="15557770001@s.whatsapp.net")
            await h.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": [message]})
        assert [x.message.id for x in slow.envelopes] == ["M0", "M1", "M2"]  # in order, none of them durable yet
        assert h.manager.ingest.published == 0
        for done in slow.pending:
            done.set_result(None)
        await asyncio.sleep(0)
        assert h.manager.ingest.published == 3
    finally:
        await h.manager.stop()


async def test_upsert_logs_ids_never_text(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await harness.start("s1")
    message: dict[str, Any] = wa_message("1@s.whatsapp.net", "A", message={"conversation": "SECRETX"})
    with caplog.at_level(logging.DEBUG):
        await harness.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": [message]})
        await asyncio.sleep(0)  # logged when the publisher reports it durable (a done-callback)
    assert isinstance(harness.publisher, MemoryPublisher)
    assert harness.publisher.envelopes[0].event_id in caplog.text
    assert "SECRETX" not in caplog.text


async def test_the_echo_of_our_own_send_is_not_published_but_the_phones_own_messages_are(harness: Harness) -> None:
    await harness.start("s1")
    await harness.bridge.emit("connection.update", "s1", OPEN)
    await harness.manager.send_text(S1, "88887770001@lid", "reply", message_id="3EB0REPLY")
    api_id = await harness.manager.send_text(S1, "88887770001@lid", "from the API")  # the id Baileys chose
    echoes = [wa_message("88887770001@lid", mid, from_me=True) for mid in ("3EB0REPLY", api_id)]
    typed_on_the_phone = wa_message("88887770001@lid", "3EB0PHONE", from_me=True)
    await harness.bridge.emit("messages.upsert", "s1", {"type": "append", "messages": [*echoes, typed_on_the_phone]})
    assert isinstance(harness.publisher, MemoryPublisher)
    assert [e.message.id for e in harness.publisher.envelopes] == ["3EB0PHONE"]
    # Still answerable when a recipient asks Baileys for a retry.
    key = MessageKey(remoteJid="88887770001@lid", fromMe=True, id="3EB0REPLY")
    assert await harness.manager.host.message_get(S1, key)


async def test_a_reply_quoting_a_seen_message_carries_its_key(harness: Harness) -> None:
    await harness.start("s1")
    await harness.bridge.emit("connection.update", "s1", OPEN)
    seen = wa_message("88887770001@lid", "Q1", alt="15557770001@s.whatsapp.net")
    await harness.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": [seen]})
    await harness.manager.send_text(S1, "88887770001@lid", "yes", quoted_id="Q1")
    await harness.manager.send_text(S1, "88887770001@lid", "no", quoted_id="UNKNOWN")
    quoted = [sent["quoted"] for sent in harness.bridge.sent]
    assert quoted[0] is not None and quoted[0]["key"]["id"] == "Q1" and quoted[1] is None


async def test_a_receipt_is_released_only_once_its_message_is_durable() -> None:
    slow = SlowPublisher()
    h = await Harness(publisher=slow).start("s1")
    try:
        messages = [wa_message("88887770001@lid", f"M{n}", alt="15557770001@s.whatsapp.net") for n in range(3)]
        await h.bridge.emit("messages.upsert", "s1", {"type": "notify", "messages": messages})
        await asyncio.sleep(0.05)
        assert h.bridge.released == [], "nothing is released before it is durable"
        for done in slow.pending[:2]:
            done.set_result(None)
        slow.pending[2].cancel()  # the connector stops before the third one is durable
        await h.bridge.wait_calls("release", 1)
        await asyncio.sleep(0.05)
        assert h.bridge.released == [(S1, "M0"), (S1, "M1")]
        assert h.bridge.count("release") == 1, "released together, in one call"
    finally:
        await h.manager.stop()


async def test_messages_that_are_not_published_are_released_at_once(harness: Harness) -> None:
    await harness.start("s1")
    await harness.bridge.emit("connection.update", "s1", OPEN)
    await harness.manager.send_text(S1, "88887770001@lid", "reply", message_id="3EB0ECHO")
    upsert = {
        "type": "notify",
        "messages": [
            wa_message("88887770001@lid", "STUB", stub=2),
            wa_message("88887770001@lid", "3EB0ECHO", from_me=True),
            wa_message("88887770001@lid", "REAL"),
        ],
    }
    await harness.bridge.emit("messages.upsert", "s1", upsert)
    await harness.bridge.wait_calls("release", 1)
    await asyncio.sleep(0.05)
    assert sorted(i for _, i in harness.bridge.released) == ["REAL", "STUB"], "our own echo had no receipt"
