"""The events webhook end to end: the real connector publishes a session's lifecycle and message-status events to
``events.fifo``, the local event source mapping runs the events function, and a receiver at ``EVENTS_URL`` gets
every one of them once, in order, signed, including across a connector restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from connector.contracts import WEBHOOK_EVENT_KINDS, RelayEvent
from infra.local.stack import LocalStack
from tests.e2e.conftest import API_KEY, CHATBOT_SECRET, Api, ConnectorProcess, stack_env
from tests.support.chatbot import Answer, Call, ChatbotServer, valid_signature
from tests.support.wasim import Person, WasimClient, WasimInfo, new_person

pytestmark = pytest.mark.e2e

SID = "e2e-events"


@pytest.fixture
def receiver() -> Iterator[ChatbotServer]:
    """``EVENTS_URL``: records every POST (the test chatbot server answers 204 to each)."""
    server = ChatbotServer(CHATBOT_SECRET)
    server.respond = lambda body: Answer(status=204)
    server.start()
    yield server
    server.stop()


def received(receiver: ChatbotServer) -> list[tuple[Call, RelayEvent]]:
    """What the receiver took (2xx), in arrival order, for this test's session."""
    out = []
    for call in list(receiver.calls):
        if 200 <= call.status < 300:
            event = RelayEvent.model_validate_json(call.raw)
            if event.session_id == SID:
                out.append((call, event))
    return out


async def until_received(receiver: ChatbotServer, what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check([e for _, e in received(receiver)]):
        if time.monotonic() > deadline:
            kinds = [(e.kind, e.data.get("state")) for _, e in received(receiver)]
            raise AssertionError(f"never received {what}; got {kinds}")
        await asyncio.sleep(0.2)


async def exchange(wasim: WasimClient, receiver: ChatbotServer, gus: Person, me: Person, text: str) -> str:
    """Gus writes, the bot answers, Gus's phone gets the answer and reads it; returns the answer's message id once
    its ``message.sent``, ``message.delivered`` and ``message.read`` reached the receiver."""
    seq = await wasim.last_seq()
    await wasim.send_text(gus, me, text)
    out = await wasim.wait_event(
        "message.outgoing", {"account": me.phone, "text": f"echo: {text}"}, after=seq, timeout=60
    )
    message_id = out["data"]["id"]
    await wasim.read(gus, me, [message_id])

    def statuses(events: list[RelayEvent]) -> bool:
        kinds = {e.kind for e in events if e.data.get("message_id") == message_id}
        return {"message.sent", "message.delivered", "message.read"} <= kinds

    await until_received(receiver, f"sent/delivered/read of {message_id}", statuses)
    return str(message_id)


async def test_every_event_arrives_once_in_order_and_signed_across_a_restart(
    wasim_info: WasimInfo, wasim: WasimClient, chatbot: ChatbotServer, receiver: ChatbotServer, tmp_path: Path
) -> None:
    me, gus = new_person(), new_person()
    await wasim.add_contact(gus, "Gus")
    log = tmp_path / "stack.log"
    with open(log, "a") as out:  # noqa: ASYNC230 - test set-up, nothing else runs on the loop yet
        local = LocalStack(
            tmp_path / "data",
            env={**stack_env(wasim_info, chatbot), "EVENTS_URL": receiver.url},
            connector=False,
            output=out,
        )
        local.start()
        connector = ConnectorProcess(local.connector_env(), local.api_url, log)
        try:
            assert local.events_runner is not None, "EVENTS_URL set: the events function runs"
            connector.start()
            async with aiohttp.ClientSession() as http:
                api = Api(http, local.api_url, API_KEY)
                await api.link(wasim, SID, me)
                first = await exchange(wasim, receiver, gus, me, "before the restart")

                before = len(received(receiver))
                connector.stop()  # SIGTERM: sessions stop, their last state changes are flushed to SQS
                await until_received(receiver, "the stop", lambda es: es[-1].data.get("state") == "stopped")
                connector.start()
                await api.wait_state(SID, "open")
                await until_received(
                    receiver, "open after the restart",
                    lambda es: any(e.data.get("state") == "open" for e in es[before:]),
                )  # fmt: skip
                second = await exchange(wasim, receiver, gus, me, "after the restart")
            dlq = boto3.client("sqs", endpoint_url=local.sqs_endpoint).get_queue_attributes(
                QueueUrl=local.queue_urls["EVENTS_QUEUE_DLQ_URL"], AttributeNames=["ApproximateNumberOfMessages"]
            )
            dead_letters = dlq["Attributes"]["ApproximateNumberOfMessages"]
        finally:
            connector.stop()
            local.stop()

    got = received(receiver)
    events = [e for _, e in got]
    # Once: no id twice (the function retries only what the receiver did not take).
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    # Signed with the chatbot secret over the exact body, with the event's id in its header.
    for call, event in got:
        assert valid_signature(CHATBOT_SECRET, call.headers.get("X-Relay-Signature"), call.raw)
        assert call.headers["X-Relay-Event-Id"] == event.id
    # In order: arrival order is the order the connector saw them in.
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert {e.kind for e in events} <= WEBHOOK_EVENT_KINDS
    # The whole life of the session: created, QR, linked, messages and their statuses, stopped, open again.
    states = [e.data["state"] for e in events if e.kind == "session.state"]
    assert events[0].kind == "session.created"
    assert any(e.kind == "session.qr" and e.data.get("qr") for e in events)
    assert states.count("open") == 2 and "stopped" in states
    assert states.index("stopped") < len(states) - 1 - states[::-1].index("open"), "open again after the stop"
    for message_id in (first, second):
        kinds = [e.kind for e in events if e.data.get("message_id") == message_id]
        # Each once, and sent first: a delivery receipt that reaches the connector before the send call returns
        # waits for the sent event (``EventHub.sending``).
        assert kinds == ["message.sent", "message.delivered", "message.read"], (message_id, kinds)
    assert dead_letters == "0", "nothing the function could not deliver"
