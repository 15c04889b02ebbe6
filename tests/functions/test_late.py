"""The late-answer function against DynamoDB Local, moto's SQS and the inbound function: a bot answers ``202``, then
posts its replies to the Function URL handler.

GIVEN an event the bot answered ``202`` (through the real inbound handler), WHEN a signed late answer is posted
(Function URL event shape), THEN assert the HTTP answer and exactly what landed on ``outbound.fifo``.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
import time
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from connector.contracts import InboundEnvelope, OutboundReply, parse_outbound, reply_id
from functions.inbound.chatbot import sign
from functions.late.logic import LATE_INDEX_BASE
from tests.functions.conftest import SECRET, Aws, LambdaContext, Wire, fresh, golden, sqs_event, sqs_record
from tests.support.chatbot import Answer, ChatbotServer

OK: dict[str, list[dict[str, str]]] = {"batchItemFailures": []}


def url_event(
    body: bytes, *, signature: str | None = None, method: str = "POST", base64_encoded: bool = False
) -> dict[str, Any]:
    """What a Lambda Function URL passes (payload format 2.0), with a signature made now unless given."""
    headers = {"content-type": "application/json"}
    headers["x-relay-signature"] = signature if signature is not None else sign(SECRET, body, int(time.time()))
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": "/"}},
        "body": base64.b64encode(body).decode() if base64_encoded else body.decode(),
        "isBase64Encoded": base64_encoded,
    }


def late_body(event_id: str, *texts: str, quote: bool = True) -> bytes:
    return json.dumps({"event_id": event_id, "replies": [{"text": t, "quote": quote} for t in texts]}).encode()


def call(late: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = late.lambda_handler(event, LambdaContext(function_name="wa-relay-late"))
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def late(wire: Wire, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The late handler, imported with the same environment as the inbound one (``wire`` sets it), no lookup grace."""
    wire()
    name = "functions.late.handler"
    module = importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)
    monkeypatch.setattr(module, "deps", replace(module.deps, lookup_grace_s=0.0))
    return module


def answered_later(wire: Wire, chatbot: ChatbotServer, aws: Aws, envelope: InboundEnvelope, **env: str) -> None:
    """The inbound function hands ``envelope`` to a bot that answers 202."""
    handler = wire(**env)
    chatbot.script = [Answer(202, body=b"")]
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), LambdaContext()) == OK
    aws.drain("OUTBOUND_QUEUE_URL")  # the typing messages


def replies_on(aws: Aws) -> list[tuple[dict[str, str], OutboundReply]]:
    out = []
    for message in aws.drain("OUTBOUND_QUEUE_URL"):
        body = parse_outbound(message["Body"])
        if isinstance(body, OutboundReply):
            out.append((message["Attributes"], body))
    return out


def test_a_late_answer_is_sent_like_an_immediate_one_and_a_repeat_sends_nothing_new(
    wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    envelope = fresh(golden("lid"))
    answered_later(wire, chatbot, aws, envelope)
    body = late_body(envelope.event_id, "thought about it", "and one more thing")

    assert call(late, url_event(body)) == (200, {"event_id": envelope.event_id, "replies": 2})
    # the bot timed out and posts the same answer again (a new signature, the same body)
    assert call(late, url_event(body, base64_encoded=True)) == (200, {"event_id": envelope.event_id, "replies": 2})

    got = replies_on(aws)
    assert [r.text for _, r in got] == ["thought about it", "and one more thing"], "sent once, in order"
    ids = [reply_id(envelope.event_id, LATE_INDEX_BASE + i) for i in range(2)]
    assert [r.reply_id for _, r in got] == ids == [a["MessageDeduplicationId"] for a, _ in got]
    assert not set(ids) & {reply_id(envelope.event_id, i) for i in range(20)}
    for attributes, reply in got:
        assert attributes["MessageGroupId"] == envelope.group_id
        assert (reply.event_id, reply.session_id, reply.to) == (envelope.event_id, "s1", envelope.chat.jid)
        assert reply.quoted == envelope.key and reply.mark_read == envelope.key
    assert len(chatbot.calls) == 1


def test_a_second_different_late_answer_is_refused(
    wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    envelope = fresh(golden("pn"))
    answered_later(wire, chatbot, aws, envelope)
    assert call(late, url_event(late_body(envelope.event_id, "first")))[0] == 200

    status, body = call(late, url_event(late_body(envelope.event_id, "changed my mind")))

    assert (status, body["error"]["code"]) == (409, "already_answered")
    assert [r.text for _, r in replies_on(aws)] == ["first"]


def test_an_inbound_redelivery_that_gets_202_again_does_not_reopen_an_answered_event(
    wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    envelope = fresh(golden("pn"))
    answered_later(wire, chatbot, aws, envelope)
    assert call(late, url_event(late_body(envelope.event_id, "first")))[0] == 200
    late.deps.pending.expect(envelope, mark_read=True, max_age_s=0)  # what a retry that got 202 again would do
    assert call(late, url_event(late_body(envelope.event_id, "second")))[0] == 409


def test_quote_false_and_read_receipts_off_are_honoured(
    wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    envelope = fresh(golden("pn"))
    answered_later(wire, chatbot, aws, envelope, READ_RECEIPTS="false")
    assert call(late, url_event(late_body(envelope.event_id, "plain", quote=False)))[0] == 200
    [(_, reply)] = replies_on(aws)
    assert reply.quoted is None and reply.mark_read is None


def test_an_empty_answer_is_accepted_and_closes_the_event(
    wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    envelope = fresh(golden("pn"))
    answered_later(wire, chatbot, aws, envelope)
    assert call(late, url_event(late_body(envelope.event_id))) == (200, {"event_id": envelope.event_id, "replies": 0})
    assert call(late, url_event(late_body(envelope.event_id, "after all")))[0] == 409
    assert replies_on(aws) == []


def test_a_message_past_the_maximum_age_is_not_answered_late(
    wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    envelope = fresh(golden("pn"), **{"message.timestamp": int(time.time()) - 50})
    answered_later(wire, chatbot, aws, envelope, MAX_MESSAGE_AGE_S="60")
    status, body = call(late, url_event(late_body(envelope.event_id, "too late")))
    assert status == 200
    aws.drain("OUTBOUND_QUEUE_URL")

    other = fresh(golden("pn"), **{"message.timestamp": int(time.time()) - 50})
    answered_later(wire, chatbot, aws, other, MAX_MESSAGE_AGE_S="60")
    late.deps.pending._dynamodb.update_item(  # the bot took 11 s too long
        TableName="wa-relay-idempotency",
        Key={"id": {"S": late.deps.pending.key(other.event_id)}},
        UpdateExpression="SET stale_after = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 1)}},
    )
    status, body = call(late, url_event(late_body(other.event_id, "too late")))
    assert (status, body["error"]["code"]) == (410, "stale")
    assert replies_on(aws) == []


def test_unknown_and_expired_events_are_404(wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws) -> None:
    status, body = call(late, url_event(late_body("no-such-event", "hello?")))
    assert (status, body["error"]["code"]) == (404, "unknown_event")

    envelope = fresh(golden("pn"))
    answered_later(wire, chatbot, aws, envelope, DEDUP_TTL_S="60")
    late.deps.pending._dynamodb.update_item(  # expired, not yet deleted by DynamoDB's TTL
        TableName="wa-relay-idempotency",
        Key={"id": {"S": late.deps.pending.key(envelope.event_id)}},
        UpdateExpression="SET expiration = :t",
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 1)}},
    )
    assert call(late, url_event(late_body(envelope.event_id, "hello?")))[0] == 404
    assert replies_on(aws) == []


def test_an_immediate_answer_leaves_nothing_to_answer_late(
    wire: Wire, late: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    handler = wire()
    envelope = fresh(golden("pn"))
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), LambdaContext()) == OK
    assert call(late, url_event(late_body(envelope.event_id, "and also")))[0] == 404


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "t=abc,v1=00",
        sign("not-the-secret", b"x", int(time.time())),
        "stale",
        "future",
    ],
    ids=["missing", "malformed", "wrong-secret", "stale", "future"],
)
def test_bad_signatures_are_401(signature: str, late: ModuleType, aws: Aws) -> None:
    body = late_body("any", "x")
    if signature in ("stale", "future"):
        signature = sign(SECRET, body, int(time.time()) + (-301 if signature == "stale" else 301))
    status, answer = call(late, url_event(body, signature=signature))
    assert (status, answer["error"]["code"]) == (401, "bad_signature")


def test_a_signature_over_other_bytes_is_401(late: ModuleType) -> None:
    body = late_body("any", "x")
    signature = sign(SECRET, body + b" ", int(time.time()))
    assert call(late, url_event(body, signature=signature))[0] == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 422),
        (b'{"event_id": "e"}', 422),
        (b'{"event_id": "e", "replies": [{"text": ""}]}', 422),
        (b'{"event_id": "e", "replies": [{"text": "x"}], "reply": 1}', 422),
        (json.dumps({"event_id": "e", "replies": [{"text": "x"}] * 21}).encode(), 422),
    ],
    ids=["not-json", "array", "no-replies", "empty-text", "unknown-field", "too-many"],
)
def test_bad_bodies_are_400_or_422(body: bytes, status: int, late: ModuleType) -> None:
    got, answer = call(late, url_event(body))
    assert got == status and answer["error"]["message"]


def test_only_post_is_taken(late: ModuleType) -> None:
    response = late.lambda_handler(url_event(b"", method="GET"), LambdaContext())
    assert (response["statusCode"], response["headers"]["Allow"]) == (405, "POST")
