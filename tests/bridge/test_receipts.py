"""Delivery receipts held until the connector releases them, through the real bridge and Baileys: WhatsApp (the
simulator) sees no receipt for a message before the connector says it is durable, and sees it right after."""

from __future__ import annotations

import asyncio

import pytest

from connector.types import SessionId
from tests.bridge.test_messages import linked
from tests.conftest import StartBridge
from tests.support.flows import receive_text
from tests.support.wasim import WasimClient, new_person

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
