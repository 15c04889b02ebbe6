"""Per-session settings through every real part: PATCHed on the connector's API, stored in DynamoDB Local, applied
by the inbound function before it asks the chatbot."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import Api
from tests.e2e.test_relay import answered, linked
from tests.support.chatbot import ChatbotServer
from tests.support.wasim import WasimClient, new_person

pytestmark = pytest.mark.e2e


async def test_an_allowlist_answers_the_listed_contact_only(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer
) -> None:
    me, listed = await linked(api, wasim, "e2e-allowlist")
    stranger = new_person()
    await wasim.add_contact(stranger, "Stranger")
    # Listed by phone number; it writes from its LID, and the envelope's phone number form still matches.
    status, body = await api.call(
        "PATCH", "/v1/sessions/e2e-allowlist/settings", {"chats": "allowlist", "chat_list": [f"+{listed.phone}"]}
    )
    assert status == 200, body
    assert body["chat_list"] == [listed.jid]
    seq = await wasim.last_seq()

    ignored = await wasim.send_text(stranger, me, "not on the list", addressing="lid")
    await wasim.send_text(listed, me, "on the list", addressing="lid")

    # The connector took the stranger's message (its phone got the receipt): only the settings kept it from the bot.
    await wasim.wait_event("receipt", {"account": me.phone, "ids": [ignored["id"]]}, after=seq, timeout=30)
    await answered(chatbot, "on the list")
    await wasim.wait_event(
        "message.outgoing", {"account": me.phone, "text": "echo: on the list"}, after=seq, timeout=60
    )
    await asyncio.sleep(3)  # the stranger's message went through the same function invocations by now
    assert not [c for c in chatbot.calls if c.body["message"].get("text") == "not on the list"]
    sent = await wasim.events("message.outgoing", after=seq)
    assert [e["data"]["text"] for e in sent if e["data"].get("to") == stranger.phone] == []
