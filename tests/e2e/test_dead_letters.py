"""A dead letter round trip through every real part: a message the chatbot cannot answer within the outage budget goes
to the inbound DLQ with its reason; once the bot is back, ``wa-relay-dlq redrive`` puts it back and the contact gets
the answer, once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.stack import LocalStack
from tests.e2e.conftest import Api, ConnectorProcess
from tests.support.chatbot import Answer, ChatbotServer
from tests.support.deadletters import Tool
from tests.support.wasim import WasimClient, new_person

pytestmark = pytest.mark.e2e

BUDGET_S = "4"


@pytest.fixture(scope="module", autouse=True)
def short_outage_budget() -> Iterator[None]:
    """Set before this module's stack loads the function (it reads its settings at import), restored after."""
    saved = os.environ.get("CHATBOT_OUTAGE_BUDGET_S")
    os.environ["CHATBOT_OUTAGE_BUDGET_S"] = BUDGET_S
    yield
    if saved is None:
        os.environ.pop("CHATBOT_OUTAGE_BUDGET_S", None)
    else:
        os.environ["CHATBOT_OUTAGE_BUDGET_S"] = saved


def tool_for(local: LocalStack) -> Tool:
    """The tool as an operator runs it against this stack (it runs its own event loop: call it in a thread)."""
    return Tool(local.sqs_endpoint, dict(local.queue_urls), local.data_dir / "spool")


async def listed(tool: Tool, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(tool, "list", "--queue", "inbound", "--json")
        assert result.code == 0, result.err
        if (entries := result.json()) or time.monotonic() > deadline:
            return list(entries)
        await asyncio.sleep(0.5)


async def test_a_message_past_its_outage_budget_is_dead_lettered_and_redriven_answered_once(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    me, dora = new_person(), new_person()
    await api.link(wasim, "dlq-trip", me)
    await wasim.add_contact(dora, "Dora")
    tool = tool_for(stack[0])
    chatbot.respond = lambda body: Answer(503, label="down")
    seq = await wasim.last_seq()
    try:
        await wasim.send_text(dora, me, "answer me after the outage", addressing="lid")
        [entry] = await listed(tool, timeout=90)
        assert entry["reason"] == "chatbot_unavailable" and entry["origin"] == "inbound"
        assert entry["session"] == "dlq-trip" and "budget" in entry["detail"]
        asked = [c for c in chatbot.calls if c.body["message"].get("text") == "answer me after the outage"]
        assert asked and all(c.label == "down" for c in asked)

        chatbot.respond = lambda body: Answer(body={"replies": [{"text": f"echo: {body['message']['text']}"}]})
        redrive = await asyncio.to_thread(tool, "redrive", "--queue", "inbound", "--session", "dlq-trip")
        assert redrive.code == 0, redrive.err
        out = await wasim.wait_event(
            "message.outgoing", {"account": me.phone, "text": "echo: answer me after the outage"}, after=seq, timeout=60
        )
        assert out["data"]["stanza_to"] == dora.lid_jid, "answered in the chat as addressed"
        again = await asyncio.to_thread(tool, "redrive", "--queue", "inbound", "--session", "dlq-trip")
        assert again.code == 0, again.err
        await asyncio.sleep(5)  # time for a second answer to show up, if a redrive could make one
    finally:
        chatbot.respond = lambda body: Answer()

    replies = [e for e in await wasim.events("message.outgoing", after=seq) if e["data"].get("account") == me.phone]
    assert [e["data"]["text"] for e in replies] == ["echo: answer me after the outage"], "delivered once"
    assert await listed(tool, timeout=0) == [], "the DLQ is empty again"
