"""Delivery receipts held until the connector releases them, through the real bridge and Baileys: WhatsApp (the
simulator) sees no receipt for a message before the connector says it is durable, and sees it right after."""

from __future__ import annotations

import asyncio

import pytest

from connector.sidecar.types import DECRYPTED_MESSAGE_TYPE
from connector.types import SessionId
from tests.conftest import StartBridge
from tests.support.bridge_host import BridgeRun
from tests.support.flows import linked, receive_text
from tests.support.wasim import Person, WasimClient, new_person

pytestmark = pytest.mark.e2e


def receipts_for(events: list[dict[str, object]], message_id: str) -> list[dict[str, object]]:
    return [e for e in events if message_id in e["data"]["ids"]]  # type: ignore[index, operator]


async def test_the_delivery_receipt_waits_for_the_release(start_bridge: StartBridge, wasim: WasimClient) -> None:
    session = SessionId("held")
    run, me = await linked(start_bridge, wasim, session)
    dora = new_person()
    await wasim.add_contact(dora, "Dora")
    seq = await wasim.last_seq()
    mark = run.host.cursor()

    sent = await wasim.send_text(dora, me, "hold my receipt")
    _, msg = await receive_text(run, session, "hold my receipt", after=mark)
    await asyncio.sleep(1.0)  # Baileys has long emitted the message: a receipt would be out by now
    assert receipts_for(await wasim.events("receipt", after=seq), sent["id"]) == []
    listed = {s.session: s for s in (await run.client.list_sessions()).sessions}
    assert listed[session].heldReceipts == 1

    assert await run.client.release_receipts(session, [sent["id"], "NOT-HELD"]) == 1
    event = await wasim.wait_event("receipt", {"account": me.phone}, after=seq, timeout=10)
    assert sent["id"] in event["data"]["ids"] and event["data"]["type"] in ("delivery", "inactive")
    assert msg.key.id == sent["id"]
    assert await run.client.release_receipts(SessionId("gone"), ["X"]) == 0, "no socket: nothing to release"


async def crash_after_decrypting(
    start_bridge: StartBridge, wasim: WasimClient, session: SessionId
) -> tuple[BridgeRun, Person, str, int]:
    """Link a session, let a contact's message be decrypted (its keys and plaintext stored) and then kill the bridge
    before the connector released the message's receipt: WhatsApp still holds the message."""
    first, me = await linked(start_bridge, wasim, session)
    eve = new_person()
    await wasim.add_contact(eve, "Eve")
    mark = first.host.cursor()
    sent = await wasim.send_text(eve, me, "decrypted, then the crash")
    await receive_text(first, session, "decrypted, then the crash", after=mark)
    pending = await wasim.request("GET", "/messages/pending", params={"account": me.phone})
    assert [p["id"] for p in pending["pending"]] == [sent["id"]], "no receipt left: the server still holds it"
    await first.client.kill()
    return first, me, sent["id"], await wasim.last_seq()


async def test_a_message_redelivered_after_its_keys_were_used_is_answered_from_the_buffer(
    start_bridge: StartBridge, wasim: WasimClient
) -> None:
    session = SessionId("buffered")
    first, me, message_id, seq = await crash_after_decrypting(start_bridge, wasim, session)
    assert first.host.store.key_ids(session, DECRYPTED_MESSAGE_TYPE), "stored with the keys the decryption used"

    second = await start_bridge(first.host)
    mark = second.host.cursor()
    await second.client.start_session(session, await second.host.store.get_creds(session))
    _, msg = await receive_text(second, session, "decrypted, then the crash", after=mark)
    assert msg.key.id == message_id
    redelivered = await wasim.wait_event("message.redelivered", {"account": me.phone, "id": message_id}, after=seq)
    assert redelivered["data"]["id"] == message_id
    listed = {s.session: s for s in (await second.client.list_sessions()).sessions}
    assert listed[session].bufferHits == 1
    assert await second.client.release_receipts(session, [message_id]) == 1
    await wasim.wait_event("message.receipted", {"account": me.phone, "id": message_id}, after=seq)
    nacks = [e for e in await wasim.events("message.ack", after=seq) if e["data"]["id"] == message_id]
    assert nacks == []


async def test_without_the_buffer_the_same_redelivery_is_lost(start_bridge: StartBridge, wasim: WasimClient) -> None:
    """The control: what Baileys alone does with that redelivery (so the test above can fail)."""
    session = SessionId("unbuffered")
    first, me, message_id, seq = await crash_after_decrypting(start_bridge, wasim, session)
    ids = first.host.store.key_ids(session, DECRYPTED_MESSAGE_TYPE)
    await first.host.store.set_keys(session, {DECRYPTED_MESSAGE_TYPE: dict.fromkeys(ids)})

    second = await start_bridge(first.host)
    mark = second.host.cursor()
    await second.client.start_session(session, await second.host.store.get_creds(session))
    nack = await wasim.wait_event("message.ack", {"account": me.phone, "id": message_id}, after=seq)
    assert nack["data"]["error"]
    texts = [m.message for u in second.host.of("messages.upsert", session)[mark:] for m in u.messages]
    assert all(t is None or "decrypted, then the crash" not in str(t) for t in texts)
