"""A chat's messages reach the connector in the order the contact sent them, through the real bridge and Baileys,
when the key-store reads each message makes before Baileys takes its message mutex answer at different speeds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connector.types import SessionId
from tests.conftest import StartBridge
from tests.support.flows import linked
from tests.support.wasim import WasimClient, new_person

pytestmark = pytest.mark.e2e


def texts_in_order(run: Any, session: SessionId, after: int) -> list[str]:
    out = []
    for upsert in run.host.of("messages.upsert", session)[after:]:
        for m in upsert.messages:
            msg = m.message or {}
            if text := msg.get("conversation") or (msg.get("extendedTextMessage") or {}).get("text"):
                out.append(text)
    return out


async def test_a_slow_first_read_does_not_let_later_messages_overtake(start_bridge: StartBridge, wasim: WasimClient) -> None:
    session = SessionId("order")
    run, me = await linked(start_bridge, wasim, session)
    fay = new_person()
    await wasim.add_contact(fay, "Fay")
    slow: list[str] = []

    def first_lid_read_is_slow(type: str, ids: list[str]) -> float:
        # before the mutex, each message from a LID-addressed contact migrates the contact's sessions to the LID,
        # reading its device list first; the store is slow for the first message's read only
        if type == "device-list" and not slow:
            slow.append(",".join(ids))
            return 1.5
        return 0.0

    run.host.read_delay = first_lid_read_is_slow
    before = len(run.host.of("messages.upsert", session))
    sent = [f"fay {n}" for n in range(1, 5)]
    for text in sent:
        await wasim.send_text(fay, me, text, addressing="lid")
    for _ in range(100):
        if len(texts_in_order(run, session, before)) >= len(sent):
            break
        await asyncio.sleep(0.1)
    assert slow, "the injected slow read did not happen: the test no longer exercises the race"
    assert texts_in_order(run, session, before) == sent
