"""Chatbots as they really are, through every real part: a bot that takes 8 s per answer, and a bot that is down for
a while. Every message is answered once, in order per chat, and nothing reaches a dead-letter queue."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import boto3
import pytest

from infra.local.stack import LocalStack
from tests.e2e.conftest import Api, ConnectorProcess
from tests.support.chatbot import Answer, ChatbotServer
from tests.support.wasim import Person, WasimClient, new_person

pytestmark = pytest.mark.e2e

ANSWER_S = 8.0


async def contacts_of(api: Api, wasim: WasimClient, sid: str, n: int) -> tuple[Person, list[Person]]:
    me = new_person()
    await api.link(wasim, sid, me)
    people = [new_person() for _ in range(n)]
    for i, person in enumerate(people):
        await wasim.add_contact(person, f"Contact {i} of {sid}")
    return me, people


async def send_round_robin(wasim: WasimClient, me: Person, people: list[Person], per_chat: int, tag: str) -> None:
    """Message k of every chat before message k+1 of any: each chat's messages in order, the chats interleaved."""
    for k in range(per_chat):
        for i, person in enumerate(people):
            await wasim.send_text(person, me, f"{tag} c{i} m{k}", addressing="lid" if i % 2 else "pn")


async def all_delivered(wasim: WasimClient, me: Person, texts: set[str], after: int, timeout: float) -> list[str]:
    """The texts the contacts received (``echo: …``), in arrival order, once all of ``texts`` arrived."""
    deadline = time.monotonic() + timeout
    while True:
        events = await wasim.events("message.outgoing", after=after)
        got = [e["data"]["text"] for e in events if e["data"].get("account") == me.phone]
        if {t.removeprefix("echo: ") for t in got} >= texts or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


def dead_letters(local: LocalStack) -> dict[str, int]:
    sqs = boto3.client("sqs", endpoint_url=local.sqs_endpoint)
    depth = {}
    for name in ("INBOUND_QUEUE_DLQ_URL", "OUTBOUND_QUEUE_DLQ_URL"):
        attrs = sqs.get_queue_attributes(
            QueueUrl=local.queue_urls[name], AttributeNames=["ApproximateNumberOfMessages"]
        )
        depth[name] = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    return depth


def check_once_and_in_order(chatbot: ChatbotServer, texts: list[str], answered_ok: set[str]) -> None:
    """One answered call per message, and per chat the answers in the order the contact sent them."""
    by_text: dict[str, list[Any]] = defaultdict(list)
    for call in chatbot.calls:
        text = call.body["message"].get("text")
        if text in set(texts):
            by_text[text].append(call)
    missing = [t for t in texts if t not in by_text]
    assert not missing, f"never asked: {missing}"
    answered = {t: [c for c in calls if c.label in answered_ok] for t, calls in by_text.items()}
    twice = {t: len(c) for t, c in answered.items() if len(c) != 1}
    assert not twice, f"answered more or less than once: {twice}"
    per_chat: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for text, calls in answered.items():
        _, chat, seq = text.split()
        per_chat[chat].append((calls[0].at, int(seq.removeprefix("m"))))
    for chat, answers in per_chat.items():
        order = [seq for _, seq in sorted(answers)]
        assert order == sorted(order), f"chat {chat} answered out of order: {order}"


async def test_a_bot_taking_8_s_per_answer_answers_50_messages_from_10_chats_once_each_in_order(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    me, people = await contacts_of(api, wasim, "llm-slow", 10)
    chatbot.respond = lambda body: Answer(
        delay_s=ANSWER_S, body={"replies": [{"text": f"echo: {body['message']['text']}"}]}, label="ok"
    )
    seq = await wasim.last_seq()
    texts = [f"slow c{i} m{k}" for k in range(5) for i in range(10)]
    try:
        await send_round_robin(wasim, me, people, 5, "slow")
        got = await all_delivered(wasim, me, set(texts), after=seq, timeout=300)
    finally:
        chatbot.respond = lambda body: Answer()

    assert sorted(t.removeprefix("echo: ") for t in got) == sorted(texts), "every reply reached its contact once"
    check_once_and_in_order(chatbot, texts, {"ok"})
    assert len([c for c in chatbot.calls if c.body["message"].get("text") in set(texts)]) == 50, "one call each"
    assert dead_letters(stack[0]) == {"INBOUND_QUEUE_DLQ_URL": 0, "OUTBOUND_QUEUE_DLQ_URL": 0}


async def test_a_bot_down_for_a_while_answers_every_message_afterwards_once_in_order(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    me, people = await contacts_of(api, wasim, "llm-down", 3)
    down_until = time.time() + 20

    def respond(body: dict[str, Any]) -> Answer:
        if time.time() < down_until:
            return Answer(503, label="down")
        return Answer(body={"replies": [{"text": f"echo: {body['message']['text']}"}]}, label="ok")

    chatbot.respond = respond
    seq = await wasim.last_seq()
    texts = [f"down c{i} m{k}" for k in range(4) for i in range(3)]
    try:
        await send_round_robin(wasim, me, people, 4, "down")
        got = await all_delivered(wasim, me, set(texts), after=seq, timeout=180)
    finally:
        chatbot.respond = lambda body: Answer()

    refused = [c for c in chatbot.calls if c.label == "down"]
    assert refused, "the outage happened while messages were waiting"
    assert sorted(t.removeprefix("echo: ") for t in got) == sorted(texts)
    check_once_and_in_order(chatbot, texts, {"ok"})
    assert dead_letters(stack[0]) == {"INBOUND_QUEUE_DLQ_URL": 0, "OUTBOUND_QUEUE_DLQ_URL": 0}
