"""A WhatsApp message reaches the chatbot and the reply reaches the contact, through every real part."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import boto3
import pytest

from connector.contracts import OutboundReply, reply_id, whatsapp_message_id
from functions.inbound.chatbot import sign
from functions.late.logic import LATE_INDEX_BASE
from infra.local.stack import LocalStack
from tests.e2e.conftest import CHATBOT_SECRET, Api, ConnectorProcess
from tests.support.chatbot import Answer, ChatbotServer
from tests.support.wasim import Person, WasimClient, new_person

pytestmark = pytest.mark.e2e


async def answered(chatbot: ChatbotServer, text: str, timeout: float = 60.0) -> list[Any]:
    """The chatbot calls whose message text is ``text`` (waits for the first one)."""
    for _ in range(int(timeout * 10)):
        calls = [c for c in chatbot.calls if c.body["message"].get("text") == text]
        if calls:
            return calls
        await asyncio.sleep(0.1)
    raise AssertionError(f"the chatbot never received {text!r}")


async def outbound_drained(local: LocalStack, timeout: float = 30.0) -> None:
    sqs = boto3.client("sqs", endpoint_url=local.sqs_endpoint)
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    for _ in range(int(timeout * 10)):
        attrs = sqs.get_queue_attributes(QueueUrl=local.queue_urls["OUTBOUND_QUEUE_URL"], AttributeNames=names)
        if all(attrs["Attributes"][n] == "0" for n in names):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("outbound.fifo did not drain")


async def linked(api: Api, wasim: WasimClient, sid: str) -> tuple[Person, Person]:
    me, contact = new_person(), new_person()
    await api.link(wasim, sid, me)
    await wasim.add_contact(contact, f"Contact of {sid}")
    return me, contact


async def test_pn_contact_is_answered_on_its_pn_jid(api: Api, wasim: WasimClient, chatbot: ChatbotServer) -> None:
    me, alice = await linked(api, wasim, "e2e-pn")
    seq = await wasim.last_seq()

    await wasim.send_text(alice, me, "hello bot, by phone number", addressing="pn")

    call = (await answered(chatbot, "hello bot, by phone number"))[0]
    assert call.signature_valid
    assert call.headers.get("X-Relay-Event-Id") == call.body["event_id"]
    assert call.body["session_id"] == "e2e-pn"
    assert call.body["sender"]["pn"] == alice.jid and call.body["sender"]["lid"] == alice.lid_jid
    assert call.body["chat"]["jid"] == alice.jid
    out = await wasim.wait_event(
        "message.outgoing", {"account": me.phone, "text": "echo: hello bot, by phone number"}, after=seq, timeout=60
    )
    assert out["data"]["to"] == alice.phone and out["data"]["stanza_to"] == alice.jid


async def test_lid_contact_is_answered_on_its_lid_jid(api: Api, wasim: WasimClient, chatbot: ChatbotServer) -> None:
    me, bob = await linked(api, wasim, "e2e-lid")
    seq = await wasim.last_seq()

    await wasim.send_text(bob, me, "hello bot, by lid", addressing="lid")

    call = (await answered(chatbot, "hello bot, by lid"))[0]
    assert call.body["chat"]["jid"] == bob.lid_jid
    assert call.body["sender"]["pn"] == bob.jid
    out = await wasim.wait_event(
        "message.outgoing", {"account": me.phone, "text": "echo: hello bot, by lid"}, after=seq, timeout=60
    )
    assert out["data"]["stanza_to"] == bob.lid_jid, "a LID chat stays a LID chat"


async def test_a_redelivered_message_reaches_the_chatbot_once(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer
) -> None:
    me, carol = await linked(api, wasim, "e2e-dup")
    seq = await wasim.last_seq()
    await wasim.send_text(carol, me, "only once please", msg_id="3EB0E2EDUPLICATE00001")
    await answered(chatbot, "only once please")
    # The phone sends the same message again (same id): Baileys emits it again, with the same key.
    await wasim.send_text(carol, me, "only once please", msg_id="3EB0E2EDUPLICATE00001")
    await wasim.wait_event("receipt", {"account": me.phone}, after=seq, timeout=30)
    await asyncio.sleep(3)

    calls = [c for c in chatbot.calls if c.body["message"].get("text") == "only once please"]
    assert len(calls) == 1, [c.body["event_id"] for c in calls]


async def test_lid_mapping_update_feeds_the_lid_map_and_the_function_resolves_the_sender(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    me, _ = await linked(api, wasim, "e2e-lidmap")
    dora = new_person()
    await wasim.add_contact(dora, "Dora")

    await wasim.lid_mapping(me, lid=dora.lid_jid, pn=dora.jid)

    table = boto3.resource("dynamodb", endpoint_url=stack[0].dynamodb_endpoint).Table(stack[0].tables["LID_MAP_TABLE"])
    for _ in range(100):
        by_lid = table.get_item(Key={"pk": f"lid#{dora.lid}"}, ConsistentRead=True).get("Item")
        by_pn = table.get_item(Key={"pk": f"pn#{dora.phone}"}, ConsistentRead=True).get("Item")
        if by_lid and by_pn:
            break
        await asyncio.sleep(0.1)
    assert by_lid and by_lid["pn"] == dora.jid
    assert by_pn and by_pn["lid"] == dora.lid_jid

    # Dora writes from her LID with no phone number attached: only the LID map can tell the chatbot who she is.
    await wasim.send_text(dora, me, "who am I?", addressing="lid", alt=False)
    call = (await answered(chatbot, "who am I?"))[0]
    assert call.body["sender"]["lid"] == dora.lid_jid
    assert call.body["sender"]["pn"] == dora.jid


async def test_the_contact_sees_typing_while_a_slow_bot_works_then_the_reply_and_a_read_receipt(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer
) -> None:
    me, fay = await linked(api, wasim, "e2e-typing")
    seq = await wasim.last_seq()
    chatbot.script[:] = [Answer(delay_s=4.0)]  # an LLM thinking: echoes after 4 s

    sent = await wasim.send_text(fay, me, "think it over", addressing="lid")

    composing = await wasim.wait_event(
        "chatstate", {"account": me.phone, "to": fay.phone, "state": "composing"}, after=seq, timeout=60
    )
    paused = await wasim.wait_event(
        "chatstate", {"account": me.phone, "to": fay.phone, "state": "paused"}, after=composing["seq"], timeout=30
    )
    reply = await wasim.wait_event(
        "message.outgoing", {"account": me.phone, "text": "echo: think it over"}, after=paused["seq"], timeout=30
    )
    read = await wasim.wait_event(
        "receipt", {"account": me.phone, "type": "read", "ids": [sent["id"]]}, after=reply["seq"], timeout=30
    )
    call = (await answered(chatbot, "think it over"))[0]
    assert composing["data"]["stanza_to"] == fay.lid_jid, "in the chat as it was addressed"
    assert composing["at"] / 1000 < call.answered_at, "shown while the bot was still working"
    assert read["data"]["to"] == fay.lid_jid
    assert reply["data"]["stanza_to"] == fay.lid_jid
    states = [e["data"]["state"] for e in await wasim.events("chatstate", after=seq) if e["data"]["to"] == fay.phone]
    assert states[-1] == "paused" and set(states[:-1]) == {"composing"}, states
    presence = [e for e in await wasim.events("presence", after=seq) if e["data"]["account"] == me.phone]
    assert not [e for e in presence if e["data"]["type"] == "available"], "the account is never announced online"


async def test_a_202_bots_late_answer_reaches_the_contact_once_quoted_and_threaded(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    local = stack[0]
    me, hal = await linked(api, wasim, "e2e-late")
    seq = await wasim.last_seq()
    chatbot.script[:] = [Answer(202, body=b"")]  # "I'll get back to you"

    sent = await wasim.send_text(hal, me, "answer me later", addressing="lid")
    call = (await answered(chatbot, "answer me later"))[0]
    event = call.body["event_id"]
    body = json.dumps({"event_id": event, "replies": [{"text": "my considered answer", "quote": True}]}).encode()
    # The bot posts its answer, then again (it timed out waiting for our 200, say): the same body, signed anew.
    for _ in range(2):
        signature = sign(CHATBOT_SECRET, body, int(time.time()))
        headers = {"Content-Type": "application/json", "X-Relay-Signature": signature}
        async with api.http.post(local.late_url, data=body, headers=headers) as resp:
            assert (resp.status, await resp.json()) == (200, {"event_id": event, "replies": 1})

    out = await wasim.wait_event(
        "message.outgoing", {"account": me.phone, "text": "my considered answer"}, after=seq, timeout=60
    )
    assert out["data"]["stanza_to"] == hal.lid_jid, "in the chat as it was addressed"
    assert out["data"]["id"] == whatsapp_message_id(reply_id(event, LATE_INDEX_BASE))
    context = out["data"]["message"]["extendedTextMessage"]["contextInfo"]
    assert context["stanzaId"] == sent["id"], "quotes the contact's message"
    await wasim.wait_event(
        "receipt", {"account": me.phone, "type": "read", "ids": [sent["id"]]}, after=out["seq"], timeout=30
    )
    await outbound_drained(local)
    await asyncio.sleep(2)
    outgoing = [e for e in await wasim.events("message.outgoing", after=seq) if e["data"]["account"] == me.phone]
    assert [e["data"]["text"] for e in outgoing] == ["my considered answer"], "exactly once, and nothing else"
    assert len(chatbot.calls_for(event)) == 1


async def test_chatbot_errors_retry_then_one_reply_and_4xx_is_final(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer, caplog: pytest.LogCaptureFixture
) -> None:
    me, erin = await linked(api, wasim, "e2e-retry")
    seq = await wasim.last_seq()

    chatbot.script[:] = [Answer(500), Answer(500)]
    await wasim.send_text(erin, me, "flaky bot")
    await wasim.wait_event("message.outgoing", {"account": me.phone, "text": "echo: flaky bot"}, after=seq, timeout=60)
    assert len([c for c in chatbot.calls if c.body["message"].get("text") == "flaky bot"]) == 3
    replies = await wasim.events("message.outgoing", after=seq)
    assert [e["data"]["text"] for e in replies if e["data"]["account"] == me.phone] == ["echo: flaky bot"]

    seq = await wasim.last_seq()
    chatbot.script[:] = [Answer(400, {"error": "no"})]
    await wasim.send_text(erin, me, "rejected")
    await answered(chatbot, "rejected")
    await asyncio.sleep(3)
    assert len([c for c in chatbot.calls if c.body["message"].get("text") == "rejected"]) == 1, "4xx is not retried"
    assert not [e for e in await wasim.events("message.outgoing", after=seq) if e["data"]["account"] == me.phone]
    rejected = [r for r in caplog.records if r.getMessage() == "chatbot rejected event permanently"]
    assert rejected and rejected[-1].levelname == "ERROR", "a permanent failure is logged"


async def test_connector_sigkill_restart_logs_in_from_dynamodb_alone(
    api: Api, wasim: WasimClient, chatbot: ChatbotServer, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    local, connector = stack
    me, frank = await linked(api, wasim, "e2e-kill")
    seq = await wasim.last_seq()
    await wasim.send_text(frank, me, "before the kill")
    await wasim.wait_event("message.outgoing", {"account": me.phone, "text": "echo: before the kill"}, after=seq,
                           timeout=60)  # fmt: skip

    # Kill at a quiet moment: the reply is sent, recorded and deleted from outbound.fifo. (A kill between
    # Baileys sending a stanza and committing its ratchet is a different test: the contact's phone then needs a
    # retry receipt round, which the simulator does not play yet.)
    await outbound_drained(local)
    connector.kill()
    # A reply queued while the connector is down waits for its session to come back, and goes out once.
    event = "e2e-ev-while-down"
    text = "queued while the connector was down"
    queued = OutboundReply(reply_id=reply_id(event, 0), event_id=event, session_id="e2e-kill", to=frank.jid, text=text)
    boto3.client("sqs", endpoint_url=local.sqs_endpoint).send_message(
        QueueUrl=local.queue_urls["OUTBOUND_QUEUE_URL"],
        MessageBody=queued.model_dump_json(),
        MessageGroupId=f"e2e-kill:{frank.jid}",
        MessageDeduplicationId=queued.reply_id,
    )
    connector.start()

    states: list[str] = []
    for _ in range(600):
        status, body = await api.call("GET", "/v1/sessions/e2e-kill")
        if status == 200:
            if not states or states[-1] != body["state"]:
                states.append(body["state"])
            if body["state"] == "open":
                break
        await asyncio.sleep(0.1)
    assert states[-1] == "open" and "qr" not in states, states
    await wasim.wait_event("message.outgoing", {"account": me.phone, "text": text}, after=seq, timeout=60)
    before_kill, seq = seq, await wasim.last_seq()
    await wasim.send_text(frank, me, "after the kill")
    # Up to one outbound visibility timeout later: the killed connector's last long poll may have taken the reply.
    await wasim.wait_event("message.outgoing", {"account": me.phone, "text": "echo: after the kill"}, after=seq,
                           timeout=90)  # fmt: skip

    # Baileys issues our privacy token (tctoken) fire-and-forget after a 1:1 send, so give it a moment.
    table = boto3.resource("dynamodb", endpoint_url=local.dynamodb_endpoint).Table(local.tables["AUTH_TABLE"])
    wanted = {"lid-mapping", "device-list", "tctoken", "session"}
    for _ in range(100):
        items = table.query(KeyConditionExpression="pk = :s", ExpressionAttributeValues={":s": "e2e-kill"},
                            ConsistentRead=True)["Items"]  # fmt: skip
        types = {str(i["sk"]).split("#")[1] for i in items if str(i["sk"]).startswith("key#")}
        if wanted <= types:
            break
        await asyncio.sleep(0.1)
    assert wanted <= types, sorted(types)
    assert len([e for e in await wasim.events("message.outgoing", after=before_kill) if e["data"]["text"] == text]) == 1


async def test_an_api_send_retried_with_its_idempotency_key_reaches_the_contact_once(
    api: Api, wasim: WasimClient, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    me, gina = await linked(api, wasim, "e2e-idem")
    seq = await wasim.last_seq()
    url = f"{api.base}/v1/sessions/e2e-idem/messages"
    headers = {**api.headers, "Idempotency-Key": "e2e-order-1"}
    ids = []
    for _ in range(3):  # the client timed out twice and retried
        async with api.http.post(url, json={"to": gina.jid, "text": "sent once"}, headers=headers) as resp:
            assert resp.status == 202, await resp.text()
            ids.append((await resp.json())["message_id"])
    assert len(set(ids)) == 1
    await wasim.wait_event("message.outgoing", {"account": me.phone, "text": "sent once"}, after=seq, timeout=60)
    await asyncio.sleep(2)
    outgoing = [e for e in await wasim.events("message.outgoing", after=seq) if e["data"]["text"] == "sent once"]
    assert len(outgoing) == 1

    # What message.get answers from after a restart: the send record, with the message, in DynamoDB.
    local = stack[0]
    table = boto3.resource("dynamodb", endpoint_url=local.dynamodb_endpoint).Table(local.tables["IDEMPOTENCY_TABLE"])
    item = table.get_item(Key={"id": f"send#e2e-idem#{ids[0]}"}, ConsistentRead=True).get("Item")
    assert item and item["to"] == gina.jid and item["content"] and item["request"]


async def test_a_reply_for_a_session_that_does_not_exist_goes_to_the_dlq_at_once_with_its_reason(
    api: Api, wasim: WasimClient, stack: tuple[LocalStack, ConnectorProcess]
) -> None:
    local = stack[0]
    await linked(api, wasim, "e2e-dlq")  # a connector with no open session takes nothing off the queue
    sqs = boto3.client("sqs", endpoint_url=local.sqs_endpoint)
    reply = OutboundReply(
        reply_id=reply_id("e2e-ev-nobody", 0), event_id="e2e-ev-nobody", session_id="nobody-here", to="1@lid", text="x"
    )
    sqs.send_message(
        QueueUrl=local.queue_urls["OUTBOUND_QUEUE_URL"],
        MessageBody=reply.model_dump_json(),
        MessageGroupId="nobody-here:1@lid",
        MessageDeduplicationId=reply.reply_id,
    )
    dlq = local.queue_urls["OUTBOUND_QUEUE_DLQ_URL"]
    for _ in range(30):  # at once, not through the redrive after maxReceiveCount receives
        msgs = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        dead = [m for m in msgs.get("Messages", []) if reply.reply_id in m["Body"]]
        if dead:
            break
    assert dead, "not in the DLQ within 30 s"
    attributes = {k: v["StringValue"] for k, v in dead[0]["MessageAttributes"].items()}
    assert attributes["reason"] == "session_unknown" and attributes["origin"] == "outbound"
    assert attributes["session"] == "nobody-here" and attributes["receive_count"] == "1"


async def test_api_rejects_bad_requests_with_json_errors(api: Api) -> None:
    status, body = await api.call("GET", "/v1/sessions", key=False)
    assert status == 401 and body["error"]["code"]
    api_wrong = Api(api.http, api.base, "not-the-right-key-at-all")
    status, body = await api_wrong.call("GET", "/v1/sessions")
    assert status == 401 and body["error"]["code"]
    status, body = await api.call("GET", "/v1/sessions/nobody-here")
    assert status == 404 and body["error"]["code"]
    status, body = await api.call("POST", "/v1/sessions", {"session_id": "bad id!"})
    assert status == 422 and body["error"]["message"]
    status, body = await api.call("POST", "/v1/sessions", {"wrong": "field"})
    assert status == 422 and body["error"]["code"]
    status, body = await api.call("POST", "/v1/sessions/nobody-here/messages", {"to": "123", "text": "x"})
    assert status in (404, 422) and body["error"]["code"]
