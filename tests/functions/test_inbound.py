"""The inbound function end to end against DynamoDB Local, moto's SQS and the test chatbot.

GIVEN an SQS FIFO event, WHEN the handler runs, THEN assert exactly what the chatbot received, what landed on
``outbound.fifo`` (or the DLQ), what the idempotency table holds and the exact ``batchItemFailures``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import replace
from types import ModuleType

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.exceptions import ClientError

from connector.contracts import (
    ChatbotReply,
    InboundEnvelope,
    OutboundReply,
    OutboundTyping,
    message_group_id,
    parse_outbound,
    reply_id,
    typing_id,
)
from functions.inbound import logic
from functions.inbound.answers import AnswerStore
from functions.inbound.queues import DeadLetterQueue, ReplyQueue
from infra.local.runner import sqs_record as runner_record
from tests.functions.conftest import (
    SECRET,
    Aws,
    LambdaContext,
    Wire,
    counted,
    fresh,
    golden,
    group_of,
    load,
    sqs_event,
    sqs_record,
)
from tests.support.chatbot import Answer, ChatbotServer

OK: dict[str, list[dict[str, str]]] = {"batchItemFailures": []}


def failures(*records: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}


def outbound_on(aws: Aws) -> list[tuple[dict[str, str], OutboundReply | OutboundTyping]]:
    """Everything on ``outbound.fifo`` (replies and typing messages), in queue order, drained."""
    return [(m["Attributes"], parse_outbound(m["Body"])) for m in aws.drain("OUTBOUND_QUEUE_URL")]


def replies_on(aws: Aws) -> list[tuple[dict[str, str], OutboundReply]]:
    return [(a, body) for a, body in outbound_on(aws) if isinstance(body, OutboundReply)]


def kinds(outbound: list[tuple[dict[str, str], OutboundReply | OutboundTyping]]) -> list[str]:
    return [body.state if isinstance(body, OutboundTyping) else "reply" for _, body in outbound]


# ---- the happy path ------------------------------------------------------------------------------------------------


def test_golden_event_reaches_the_chatbot_and_its_reply_matches_the_golden_body(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(MAX_MESSAGE_AGE_S="0")  # the golden message's timestamp is fixed, so old
    # GIVEN the golden FIFO event for a PN contact's text, and a bot that quotes its echo
    event = load("sqs.inbound.fifo.json")
    envelope = golden("pn")
    aws.dynamodb.delete_item(
        TableName="wa-relay-idempotency", Key={"id": {"S": _idempotency_key(envelope.event_id)}}
    )  # the golden event id is fixed: forget an earlier run of this test
    chatbot.respond = lambda body: Answer(
        body={"replies": [{"text": f"echo: {body['message']['text']}", "quote": True}]}
    )

    # WHEN
    result = handler.lambda_handler(event, lambda_context)

    # THEN
    assert result == OK
    [call] = chatbot.calls
    assert call.signature_valid
    assert call.headers["X-Relay-Event-Id"] == envelope.event_id
    assert call.headers["Content-Type"] == "application/json"
    assert call.body == {
        "event_id": envelope.event_id,
        "session_id": "s1",
        "chat": envelope.chat.model_dump(mode="json"),
        "sender": envelope.sender.model_dump(mode="json"),
        "message": envelope.message.model_dump(mode="json"),
        "me": envelope.me.model_dump(mode="json"),
    }
    [(attributes, reply)] = replies_on(aws)
    assert reply == OutboundReply.model_validate(load("outbound.reply.json"))
    assert attributes["MessageGroupId"] == event["Records"][0]["attributes"]["MessageGroupId"] == "s1:88887770001@lid"
    assert attributes["MessageDeduplicationId"] == reply_id(envelope.event_id, 0)


def test_pn_contact_without_lid_gets_the_lid_from_lid_map(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"), **{"chat.lid": None, "sender.lid": None, "key.remoteJidAlt": None})
    aws.put_lid_pair("88887770001@lid", "15557770001@s.whatsapp.net")

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    [call] = chatbot.calls
    assert call.signature_valid
    assert call.body["event_id"] == envelope.event_id
    assert call.body["sender"]["pn"] == call.body["chat"]["pn"] == "15557770001@s.whatsapp.net"
    assert call.body["sender"]["lid"] == call.body["chat"]["lid"] == "88887770001@lid"
    assert call.body["message"]["text"] == "hi from alice (pn)"
    [(attributes, reply)] = replies_on(aws)
    assert reply.to == "15557770001@s.whatsapp.net"
    assert reply.text == "echo: hi from alice (pn)"
    assert reply.quoted is None
    assert attributes["MessageGroupId"] == message_group_id("s1", "15557770001@s.whatsapp.net") == group_of(envelope)


def test_lid_sender_gets_the_phone_number_from_lid_map_and_the_reply_stays_on_the_lid_chat(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("lid-only"))
    assert envelope.sender.pn is None
    aws.put_lid_pair("88887770002@lid", "15557770002@s.whatsapp.net")

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    [call] = chatbot.calls
    assert call.body["sender"] == {
        "jid": "88887770002@lid",
        "pn": "15557770002@s.whatsapp.net",
        "lid": "88887770002@lid",
        "push_name": "Bob",
    }
    assert call.body["chat"]["jid"] == "88887770002@lid"
    assert call.body["chat"]["pn"] == "15557770002@s.whatsapp.net"
    [(attributes, reply)] = replies_on(aws)
    assert reply.to == "88887770002@lid"
    assert attributes["MessageGroupId"] == "s1:88887770002@lid"
    assert attributes["MessageDeduplicationId"] == reply.reply_id == reply_id(envelope.event_id, 0)


def test_unmapped_lid_is_sent_without_a_phone_number(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("lid-only"), **{"chat.jid": "77770000001@lid", "chat.lid": "77770000001@lid"})
    envelope = envelope.model_copy(
        update={"sender": envelope.sender.model_copy(update={"jid": "77770000001@lid", "lid": "77770000001@lid"})}
    )
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK
    [call] = chatbot.calls
    assert call.body["sender"]["pn"] is None
    assert call.body["sender"]["lid"] == "77770000001@lid"


def test_several_replies_keep_their_order_and_ids(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    texts = [f"part {i}" for i in range(12)]  # more than one SendMessageBatch
    chatbot.script = [Answer(body={"replies": [{"text": t} for t in texts]})]

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    got = replies_on(aws)
    assert [r.text for _, r in got] == texts
    assert [a["MessageDeduplicationId"] for a, _ in got] == [reply_id(envelope.event_id, i) for i in range(12)]


@pytest.mark.parametrize("status", [202, 204])
def test_no_reply_statuses(
    status: int, handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    chatbot.script = [Answer(status=status, body=b"")]
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK
    assert len(chatbot.calls) == 1
    assert replies_on(aws) == []
    assert aws.idempotency_item(envelope.event_id)["status"]["S"] == "COMPLETED"


# ---- dedup ---------------------------------------------------------------------------------------------------------


def test_same_event_twice_calls_the_chatbot_once(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK
    assert kinds(outbound_on(aws)) == ["composing", "reply"]
    # a redelivery (new SQS message id, e.g. republished by the connector after a reconnect)
    assert handler.lambda_handler(sqs_event(sqs_record(envelope, receive_count=2)), LambdaContext()) == OK

    assert len(chatbot.calls) == 1
    assert outbound_on(aws) == [], "the redelivery queues neither a reply nor typing"
    item = aws.idempotency_item(envelope.event_id)
    assert item is not None
    assert item["status"]["S"] == "COMPLETED"
    assert "hi from alice" not in json.dumps(item)  # the stored outcome carries no message text


def test_replies_that_could_not_be_queued_are_sent_on_the_retry_without_asking_the_bot_again(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    record = sqs_record(envelope)
    chatbot.respond = lambda body: Answer(body={"replies": [{"text": f"answered {len(chatbot.calls)}"}]})
    working = handler.deps.replies
    missing = aws.queues["OUTBOUND_QUEUE_URL"].replace("outbound", "no-such-queue")
    handler.deps = replace(handler.deps, replies=ReplyQueue(aws.sqs, missing, sleep=lambda _s: None))
    assert handler.lambda_handler(sqs_event(record), lambda_context) == failures(record)
    assert len(chatbot.calls) == 1 and replies_on(aws) == []
    assert aws.idempotency_item(envelope.event_id) is None, "the failed attempt released the event"

    handler.deps = replace(handler.deps, replies=working)
    assert handler.lambda_handler(sqs_event(sqs_record(envelope, receive_count=2)), LambdaContext()) == OK
    assert len(chatbot.calls) == 1, "the stored answer was used"
    [(_, reply)] = outbound_on(aws)  # no typing: the bot is not asked
    assert isinstance(reply, OutboundReply)
    assert reply.reply_id == reply_id(envelope.event_id, 0) and reply.text == "answered 1"


def test_without_a_stored_answer_a_redelivery_asks_the_bot(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    """The control for the test above: a redelivery of an event nobody answered calls the chatbot."""
    envelope = fresh(golden("pn"))
    assert handler.lambda_handler(sqs_event(sqs_record(envelope, receive_count=3)), lambda_context) == OK
    assert len(chatbot.calls) == 1 and len(replies_on(aws)) == 1


def test_same_event_twice_in_one_batch_calls_the_chatbot_once(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    assert handler.lambda_handler(sqs_event(sqs_record(envelope), sqs_record(envelope)), lambda_context) == OK
    assert len(chatbot.calls) == 1


def test_expired_but_not_yet_deleted_record_counts_as_absent(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK
    # GIVEN the record's TTL passed but DynamoDB has not reaped it yet
    aws.dynamodb.update_item(
        TableName="wa-relay-idempotency",
        Key={"id": {"S": _idempotency_key(envelope.event_id)}},
        UpdateExpression="SET expiration = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 10)}},
    )
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), LambdaContext()) == OK
    assert len(chatbot.calls_for(envelope.event_id)) == 2


def test_dedup_window_comes_from_DEDUP_TTL_S(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(DEDUP_TTL_S="3600")
    envelope = fresh(golden("pn"))
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK
    expiration = int(aws.idempotency_item(envelope.event_id)["expiration"]["N"])
    assert abs(expiration - (time.time() + 3600)) < 60


def test_in_progress_elsewhere_fails_the_record_without_calling_the_bot(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    now = time.time()
    aws.dynamodb.put_item(
        TableName="wa-relay-idempotency",
        Item={
            "id": {"S": _idempotency_key(envelope.event_id)},
            "status": {"S": "INPROGRESS"},
            "expiration": {"N": str(int(now) + 3600)},
            "in_progress_expiration": {"N": str(int(now * 1000) + 60_000)},
        },
    )
    record = sqs_record(envelope)
    other = sqs_record(fresh(golden("lid")))
    assert handler.lambda_handler(sqs_event(record, other), lambda_context) == failures(record)
    assert chatbot.calls_for(envelope.event_id) == []


def test_an_invocation_killed_during_the_call_gets_the_bot_asked_again_only_after_its_time_ran_out(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    """The bound the README states: a killed invocation leaves its record in progress until the invocation's own
    time would have run out (Powertools sets it from the remaining time); a redelivery before that does not ask the
    bot, one after it asks once. This writes the record a killed invocation leaves, as Powertools writes it."""
    envelope = fresh(golden("pn"))
    key = {"id": {"S": _idempotency_key(envelope.event_id)}}
    now = time.time()
    item = {**key, "status": {"S": "INPROGRESS"}, "expiration": {"N": str(int(now) + 3600)}}

    def killed(in_progress_until_ms: int) -> None:
        aws.dynamodb.put_item(
            TableName="wa-relay-idempotency",
            Item={**item, "in_progress_expiration": {"N": str(in_progress_until_ms)}},
        )

    killed(int(now * 1000) + 30_000)  # the killed invocation would still be running
    early = sqs_record(envelope, receive_count=2)
    assert handler.lambda_handler(sqs_event(early), lambda_context) == failures(early)
    assert chatbot.calls_for(envelope.event_id) == []

    killed(int(now * 1000) - 1)  # its time is up: it is dead for sure
    late = sqs_record(envelope, receive_count=3)
    assert handler.lambda_handler(sqs_event(late), lambda_context) == OK
    assert len(chatbot.calls_for(envelope.event_id)) == 1 and len(replies_on(aws)) == 1
    again = sqs_record(envelope, receive_count=4)
    assert handler.lambda_handler(sqs_event(again), lambda_context) == OK
    assert len(chatbot.calls_for(envelope.event_id)) == 1, "completed: never asked a third time"


# ---- chatbot failures ----------------------------------------------------------------------------------------------


def test_500_500_200_is_one_call_sequence_and_one_reply(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    chatbot.script = [Answer(500), Answer(503), Answer(200)]

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    assert len(chatbot.calls) == 3
    assert all(c.signature_valid for c in chatbot.calls)
    assert {c.headers["X-Relay-Event-Id"] for c in chatbot.calls} == {envelope.event_id}
    assert len(replies_on(aws)) == 1


@pytest.mark.parametrize("retry_after", ["1", "http-date"])
def test_429_retry_after_is_honoured(
    retry_after: str, handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    if retry_after == "http-date":
        from email.utils import formatdate

        retry_after = formatdate(time.time() + 2, usegmt=True)  # whole seconds: waits 1 to 2 s
    chatbot.script = [Answer(429, body={"error": "slow down"}, headers={"Retry-After": retry_after})]

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    first, second = chatbot.calls
    assert second.at - first.at >= 0.9  # the jittered backoff alone would be at most 0.05 s here
    assert len(replies_on(aws)) == 1


def test_retry_after_beyond_the_remaining_time_fails_the_record_at_once(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws
) -> None:
    envelope = fresh(golden("pn"))
    busy = Answer(503, headers={"Retry-After": "60"})
    chatbot.respond = lambda body: busy if body["event_id"] == envelope.event_id else Answer()
    record = sqs_record(envelope)
    other = sqs_record(fresh(golden("lid")))
    started = time.monotonic()

    result = handler.lambda_handler(sqs_event(record, other), LambdaContext(remaining_ms=20_000))

    assert result == failures(record)
    assert time.monotonic() - started < 5
    assert len(chatbot.calls_for(envelope.event_id)) == 1
    assert aws.idempotency_item(envelope.event_id) is None  # released: the redelivery runs again


def test_400_is_permanent_no_retry_no_reply_and_the_record_completes(
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    envelope = fresh(golden("pn"))
    chatbot.script = [Answer(400, body={"error": "bad"})]

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    assert len(chatbot.calls) == 1
    assert replies_on(aws) == []
    [line] = [r for r in caplog.records if r.getMessage() == "chatbot rejected event permanently"]
    assert line.levelno == logging.ERROR
    assert line.status == 400  # type: ignore[attr-defined]
    assert line.event_id == envelope.event_id  # type: ignore[attr-defined]
    # a redelivery does not ask again
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), LambdaContext()) == OK
    assert len(chatbot.calls) == 1


def test_invalid_json_from_the_bot_is_a_logged_permanent_failure(
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    envelope = fresh(golden("pn"))
    chatbot.script = [Answer(200, body=b"<html>oops</html>")]

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    assert len(chatbot.calls) == 1
    assert replies_on(aws) == []
    [line] = [r for r in caplog.records if r.getMessage() == "chatbot rejected event permanently"]
    assert line.levelno == logging.ERROR
    assert line.status == 200  # type: ignore[attr-defined]


def test_a_call_that_timed_out_is_not_asked_again_at_once_and_fails_only_the_rest_of_its_chat(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(CHATBOT_TIMEOUT_S="0.3", CHATBOT_MAX_ATTEMPTS="3")
    slow = fresh(golden("pn"), **{"message.text": "slow"})
    later_same_chat = fresh(golden("pn"), **{"message.text": "after slow"})
    other_chat = fresh(golden("lid"))
    chatbot.respond = lambda body: Answer(delay_s=1.0) if body["message"]["text"] == "slow" else Answer()
    records = [sqs_record(slow), sqs_record(later_same_chat), sqs_record(other_chat)]
    assert records[0]["attributes"]["MessageGroupId"] == records[1]["attributes"]["MessageGroupId"]

    result = handler.lambda_handler(sqs_event(*records), lambda_context)

    assert result == failures(records[0], records[1])
    # the bot got the request and may still be answering it: asking again now would make it answer twice
    assert len(chatbot.calls_for(slow.event_id)) == 1
    assert chatbot.calls_for(later_same_chat.event_id) == []
    assert len(chatbot.calls_for(other_chat.event_id)) == 1
    assert [r.event_id for _, r in replies_on(aws)] == [other_chat.event_id]
    assert aws.idempotency_item(slow.event_id) is None
    assert aws.idempotency_item(later_same_chat.event_id) is None


def test_connection_refused_is_retried_then_fails_the_record(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(CHATBOT_URL="http://127.0.0.1:9/chat", CHATBOT_MAX_ATTEMPTS="2")
    envelope = fresh(golden("pn"))
    record = sqs_record(envelope)
    assert handler.lambda_handler(sqs_event(record), lambda_context) == failures(record)
    assert aws.idempotency_item(envelope.event_id) is None


# ---- malformed bodies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("this is not json {", "body is not JSON"),
        ('{"type": "inbound.message", "v": 1, "event_id": "x"}', "body is not a valid InboundEnvelope"),
        ('{"type": "inbound.message", "v": 2}', "body is not a valid InboundEnvelope"),
    ],
)
def test_malformed_body_goes_to_the_dlq_and_the_record_counts_as_processed(
    body: str,
    reason: str,
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = body.replace("{", "{" + f'"nonce": "{time.time_ns()}", ', 1) if body.startswith("{") else body + "!" * 3
    record = sqs_record(body)

    assert handler.lambda_handler(sqs_event(record), lambda_context) == OK

    assert chatbot.calls == []
    [dead] = aws.drain("INBOUND_QUEUE_DLQ_URL")
    assert dead["Body"] == body
    assert dead["Attributes"]["MessageGroupId"] == "malformed"
    assert dead["Attributes"]["MessageDeduplicationId"] == record["messageId"]
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert attributes.pop("detail").startswith(reason)
    assert attributes == {
        "reason": "malformed",
        "origin": "inbound",
        "receive_count": "1",
        "source_message_id": record["messageId"],
    }
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert body not in json.dumps(line.__dict__, default=str)


def test_malformed_body_that_cannot_reach_the_dlq_fails_the_record(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    missing = aws.queues["INBOUND_QUEUE_DLQ_URL"].replace("inbound-dlq", "no-such-queue")
    handler.deps = replace(handler.deps, dead_letters=DeadLetterQueue(aws.sqs, missing))
    bad = sqs_record(f"garbage {time.time_ns()}", group="s1:garbage")
    good = sqs_record(fresh(golden("pn")))

    assert handler.lambda_handler(sqs_event(bad, good), lambda_context) == failures(bad)
    assert len(chatbot.calls) == 1


# ---- filters -------------------------------------------------------------------------------------------------------


SKIPPED = {
    "from_me": {"from_me": True, "key.fromMe": True},
    "status_broadcast": {"chat.jid": "status@broadcast", "key.remoteJid": "status@broadcast", "key.remoteJidAlt": None},
    "broadcast_list": {"chat.jid": "1234567@broadcast", "key.remoteJid": "1234567@broadcast", "key.remoteJidAlt": None},
    "newsletter": {"chat.jid": "120363@newsletter", "key.remoteJid": "120363@newsletter", "key.remoteJidAlt": None},
    "reaction": {"message.type": "reactionMessage", "message.text": "👍"},
    "protocol": {"message.type": "protocolMessage", "message.text": None},
    "no_content": {"message.type": "text", "message.text": None},
    "group": {
        "chat": {"jid": "120363000000000001@g.us", "pn": None, "lid": None, "is_group": True},
        "key.remoteJid": "120363000000000001@g.us",
        "key.remoteJidAlt": None,
        "key.participant": "88887770001@lid",
    },
}


@pytest.mark.parametrize("kind", sorted(SKIPPED))
def test_skipped_kinds_never_reach_the_bot_nor_take_the_event_id(
    kind: str,
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    envelope = fresh(golden("pn"), **SKIPPED[kind])

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    assert chatbot.calls == []
    assert outbound_on(aws) == [], "no reply, and no typing either"
    assert aws.idempotency_item(envelope.event_id) is None
    [line] = [r for r in caplog.records if r.getMessage() == "event skipped"]
    assert line.levelno == logging.INFO
    assert line.reason  # type: ignore[attr-defined]


def test_groups_are_forwarded_when_FORWARD_GROUPS_is_on(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(FORWARD_GROUPS="true")
    envelope = fresh(golden("pn"), **SKIPPED["group"])
    envelope = envelope.model_copy(
        update={"sender": envelope.sender.model_copy(update={"jid": "88887770001@lid", "pn": None})}
    )
    aws.put_lid_pair("88887770001@lid", "15557770001@s.whatsapp.net")

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    [call] = chatbot.calls
    assert call.body["chat"] == {"jid": "120363000000000001@g.us", "pn": None, "lid": None, "is_group": True}
    assert call.body["sender"]["pn"] == "15557770001@s.whatsapp.net"
    [(attributes, reply)] = replies_on(aws)
    assert reply.to == "120363000000000001@g.us"
    assert attributes["MessageGroupId"] == "s1:120363000000000001@g.us"


def test_a_skipped_stub_does_not_block_the_real_message_with_the_same_id(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    real = fresh(golden("pn"))
    stub = real.model_copy(update={"message": real.message.model_copy(update={"type": "unknown", "text": None})})
    assert stub.event_id == real.event_id

    assert handler.lambda_handler(sqs_event(sqs_record(stub)), lambda_context) == OK
    assert handler.lambda_handler(sqs_event(sqs_record(real)), LambdaContext()) == OK

    assert len(chatbot.calls_for(real.event_id)) == 1


# ---- logging -------------------------------------------------------------------------------------------------------


def test_text_only_at_debug_and_never_the_secret_or_signature(
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    envelope = fresh(golden("pn"), **{"message.text": "a very private sentence"})
    chatbot.script = [Answer(500), Answer(200)]

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    signature = chatbot.calls[0].headers["X-Relay-Signature"]
    for record in caplog.records:
        dumped = json.dumps(record.__dict__, default=str) + record.getMessage()
        assert SECRET not in dumped
        assert signature.split("v1=")[1] not in dumped
        if "a very private sentence" in dumped:
            assert record.levelno == logging.DEBUG, record.getMessage()
    assert any("a very private sentence" in json.dumps(r.__dict__, default=str) for r in caplog.records)
    relayed = [r for r in caplog.records if r.getMessage() == "event relayed"]
    assert relayed


def _idempotency_key(event_id: str) -> str:
    return f"wa-inbound#{hashlib.md5(json.dumps(event_id).encode()).hexdigest()}"


def test_the_answer_store_refuses_what_an_item_cannot_hold_and_forgets_at_expiry(aws: Aws) -> None:
    store = AnswerStore(aws.dynamodb, "wa-relay-idempotency", ttl_s=60)
    event_id = f"answers-{time.time_ns()}"
    huge = [ChatbotReply(text="x" * 65536) for _ in range(7)]  # 448 KiB: valid for the contract, too big for an item
    assert store.put(event_id, huge) is False and store.get(event_id) is None
    small = [ChatbotReply(text="one"), ChatbotReply(text="two", quote=True)]
    assert store.put(event_id, small) is True and store.get(event_id) == small
    expired = AnswerStore(aws.dynamodb, "wa-relay-idempotency", ttl_s=-1)
    assert expired.put(event_id, small) and expired.get(event_id) is None, (
        "expired but not yet deleted counts as absent"
    )
    broken = AnswerStore(aws.dynamodb, "no-such-table", ttl_s=60)
    assert broken.put(event_id, small) is False and broken.get(event_id) is None


# ---- chats of a batch in parallel ----------------------------------------------------------------------------------


def test_the_chats_of_a_batch_are_answered_in_parallel_each_in_order_with_its_own_log_keys(
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
) -> None:
    jids = [f"1555000{n:04d}@s.whatsapp.net" for n in range(4)]
    chats = [fresh(golden("pn"), **{"chat.jid": jid, "chat.lid": None, "key.remoteJid": jid, "key.remoteJidAlt": None})
             for jid in jids]  # fmt: skip
    later = fresh(chats[0], **{"message.text": "second in chat 0"})
    chatbot.respond = lambda body: Answer(delay_s=1.0, body={"replies": [{"text": f"re {body['message']['text']}"}]})
    records = [sqs_record(e) for e in [*chats, later]]
    assert len({r["attributes"]["MessageGroupId"] for r in records}) == 4
    # Powertools formats a line (and reads the keys of its thread) as it is emitted: a handler of our own sees that.
    lines = io.StringIO()
    out = logging.StreamHandler(lines)
    out.setFormatter(handler.logger.registered_formatter)
    logging.getLogger("wa-relay").addHandler(out)
    started = time.monotonic()

    try:
        assert handler.lambda_handler(sqs_event(*records), lambda_context) == OK
    finally:
        logging.getLogger("wa-relay").removeHandler(out)

    elapsed = time.monotonic() - started
    # one after another this would take 5 s; in parallel the slowest chat (two answers) sets the pace
    assert elapsed < 3.5, elapsed
    calls = [c.body["event_id"] for c in chatbot.calls]
    assert sorted(calls) == sorted(e.event_id for e in [*chats, later])
    assert calls.index(chats[0].event_id) < calls.index(later.event_id), "a chat stays in order"
    assert len(replies_on(aws)) == 5
    relayed = [json.loads(line) for line in lines.getvalue().splitlines() if '"event relayed"' in line]
    by_message_id = {e.message.id: e.event_id for e in [*chats, later]}
    # keys set per thread did not leak into another chat's lines
    assert sorted(line["event_id"] for line in relayed) == sorted(by_message_id.values())
    for line in relayed:
        assert by_message_id[line["correlation_id"]] == line["event_id"]


def test_a_failing_chat_fails_alone_and_its_later_records_are_not_attempted(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    bad = fresh(golden("pn"), **{"message.text": "bad"})
    bad_later = fresh(bad, **{"message.text": "after bad"})
    good = fresh(golden("lid"))
    chatbot.respond = lambda body: (
        Answer(503, headers={"Retry-After": "600"}) if body["message"]["text"] == "bad" else Answer()
    )
    records = [sqs_record(bad), sqs_record(good), sqs_record(bad_later)]
    assert handler.lambda_handler(sqs_event(*records), lambda_context) == failures(records[0], records[2])
    assert chatbot.calls_for(bad_later.event_id) == [] and len(chatbot.calls_for(good.event_id)) == 1


# ---- outages -------------------------------------------------------------------------------------------------------


def _received(aws: Aws, *envelopes: InboundEnvelope) -> list[dict[str, object]]:
    """The envelopes put on the real inbound queue and received from it: records with live receipt handles."""
    url = aws.queues["INBOUND_QUEUE_URL"]
    aws.drain("INBOUND_QUEUE_URL")
    for envelope in envelopes:
        aws.sqs.send_message(QueueUrl=url, MessageBody=envelope.model_dump_json(), MessageGroupId=group_of(envelope),
                             MessageDeduplicationId=f"{envelope.event_id}-{time.time_ns()}")  # fmt: skip
    got = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1)
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return [runner_record(m, arn) for m in got["Messages"]]


def test_a_chat_the_bot_cannot_answer_is_hidden_for_the_backoff_instead_of_burning_receives(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(INBOUND_QUEUE_URL=aws.queues["INBOUND_QUEUE_URL"], RETRY_BASE_S="3", CHATBOT_MAX_ATTEMPTS="1")
    first = fresh(golden("pn"), **{"message.text": "one"})
    second = fresh(first, **{"message.text": "two"})
    chatbot.respond = lambda body: Answer(503)
    records = _received(aws, first, second)
    assert [json.loads(str(r["body"]))["message"]["text"] for r in records] == ["one", "two"]

    assert handler.lambda_handler(sqs_event(*records), lambda_context) == failures(*records)

    url = aws.queues["INBOUND_QUEUE_URL"]
    assert aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None, "hidden, both"
    time.sleep(3.0)  # 3 s of backoff since the failure, plus a margin
    # Both come back. (Their order cannot be checked here: moto, unlike SQS, hands out a FIFO group's messages made
    # visible by a visibility change out of order; the local runner works around it, see infra/local/runner.py.)
    back = [json.loads(m["Body"])["message"]["text"] for m in aws.drain("INBOUND_QUEUE_URL")]
    assert sorted(back) == ["one", "two"]
    assert aws.drain("INBOUND_QUEUE_DLQ_URL") == []


def test_a_record_failing_past_the_outage_budget_goes_to_the_dlq_with_its_reason_in_its_chats_group(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(CHATBOT_OUTAGE_BUDGET_S="600", CHATBOT_MAX_ATTEMPTS="1")
    envelope = fresh(golden("pn"))
    chatbot.respond = lambda body: Answer(503)
    fresh_record = sqs_record(envelope)
    assert handler.lambda_handler(sqs_event(fresh_record), lambda_context) == failures(fresh_record)
    assert aws.drain("INBOUND_QUEUE_DLQ_URL") == [], "within the budget: retried, not dead-lettered"

    old = sqs_record(envelope, receive_count=7, age_s=601)
    assert handler.lambda_handler(sqs_event(old), lambda_context) == OK
    [dead] = aws.drain("INBOUND_QUEUE_DLQ_URL")
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["reason"] == "chatbot_unavailable" and attributes["origin"] == "inbound"
    assert "503" in attributes["detail"] and "budget" in attributes["detail"]
    assert dead["Attributes"]["MessageGroupId"] == group_of(envelope)
    assert InboundEnvelope.model_validate_json(dead["Body"]).event_id == envelope.event_id


def test_a_record_that_keeps_killing_its_invocation_is_dead_lettered_before_the_bot_is_asked(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    looping = sqs_record(fresh(golden("pn")), receive_count=51)
    assert handler.lambda_handler(sqs_event(looping), lambda_context) == OK
    assert chatbot.calls == []
    [dead] = aws.drain("INBOUND_QUEUE_DLQ_URL")
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "too_many_receives"


# ---- stale messages ------------------------------------------------------------------------------------------------


def test_a_message_older_than_the_maximum_age_is_not_answered_before_or_after_the_bot(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = wire(MAX_MESSAGE_AGE_S="600", CHATBOT_TIMEOUT_S="5")
    capsys.readouterr()
    old = fresh(golden("pn"), **{"message.timestamp": int(time.time()) - 601})
    assert handler.lambda_handler(sqs_event(sqs_record(old)), lambda_context) == OK
    assert chatbot.calls == [] and replies_on(aws) == []
    assert aws.idempotency_item(old.event_id) is None, "a skip does not use up the event id"

    # the bot answers, but only after the message got too old (an outage): the answer is not sent
    ageing = fresh(golden("pn"), **{"message.timestamp": int(time.time()) - 598})  # 598-599 s old when asked
    chatbot.respond = lambda body: Answer(delay_s=3.0)
    assert handler.lambda_handler(sqs_event(sqs_record(ageing)), lambda_context) == OK
    assert len(chatbot.calls) == 1 and replies_on(aws) == []
    item = aws.idempotency_item(ageing.event_id)
    assert item is not None and item["status"]["S"] == "COMPLETED", "answered, so not asked again"
    assert counted(capsys.readouterr().out, "StaleSkipped") == 2, "both counted"

    young = fresh(golden("pn"))
    chatbot.respond = lambda body: Answer()
    assert handler.lambda_handler(sqs_event(sqs_record(young)), lambda_context) == OK
    assert len(replies_on(aws)) == 1, "the control: a fresh message is answered"


# ---- typing and read receipts --------------------------------------------------------------------------------------


def queued(aws: Aws) -> int:
    attrs = aws.sqs.get_queue_attributes(
        QueueUrl=aws.queues["OUTBOUND_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def test_typing_is_queued_in_the_chats_group_before_the_bot_is_asked_and_replies_name_the_message_to_mark_read(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("lid"))
    waiting: list[int] = []

    def respond(body: dict[str, object]) -> Answer:
        waiting.append(queued(aws))
        return Answer(body={"replies": [{"text": "one"}, {"text": "two", "quote": True}]})

    chatbot.respond = respond
    before = time.time() * 1000

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    assert waiting == [1], "the typing message was on outbound.fifo while the bot was working"
    outbound = outbound_on(aws)
    assert kinds(outbound) == ["composing", "reply", "reply"]
    (attributes, typing), *replies = outbound
    assert isinstance(typing, OutboundTyping)
    assert attributes["MessageGroupId"] == envelope.group_id == replies[0][0]["MessageGroupId"]
    assert attributes["MessageDeduplicationId"] == typing_id(envelope.event_id, "composing")
    assert typing_id(envelope.event_id, "composing") not in {a["MessageDeduplicationId"] for a, _ in replies}
    assert (typing.event_id, typing.session_id, typing.to) == (envelope.event_id, "s1", envelope.chat.jid)
    # bounded by the time this invocation waits for the bot: 30 s left minus the reserve
    # shown while this invocation may wait for the bot: its 30 s remaining less the reserve kept for what follows
    assert before + 30_000 - 10_000 - 1_000 < typing.expires_at < time.time() * 1000 + 30_000
    for _, reply in replies:
        assert isinstance(reply, OutboundReply)
        assert reply.mark_read == envelope.key, "every reply names the message; the connector marks it once"


@pytest.mark.parametrize(
    "answer",
    [Answer(204, body=b""), Answer(202, body=b""), Answer(400, body={"error": "no"})],
    ids=["204", "202", "400"],
)
def test_an_answer_without_replies_stops_the_typing(
    answer: Answer, handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    envelope = fresh(golden("pn"))
    chatbot.script = [answer]

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    outbound = outbound_on(aws)
    assert kinds(outbound) == ["composing", "paused"]
    assert outbound[1][0]["MessageDeduplicationId"] == typing_id(envelope.event_id, "paused")
    assert outbound[1][0]["MessageGroupId"] == envelope.group_id


def test_typing_and_read_receipts_can_be_switched_off(
    wire: Wire, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    handler = wire(TYPING_INDICATOR="false", READ_RECEIPTS="off")
    envelope = fresh(golden("pn"))

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    [(_, reply)] = outbound_on(aws)
    assert isinstance(reply, OutboundReply) and reply.mark_read is None


class NoSingleSends:
    """An SQS client whose ``send_message`` fails (typing messages), while batches (replies) go through."""

    def __init__(self, sqs: object) -> None:
        self._sqs = sqs

    def send_message(self, **_: object) -> None:
        from botocore.exceptions import EndpointConnectionError

        raise EndpointConnectionError(endpoint_url="https://sqs.invalid")

    def __getattr__(self, name: str) -> object:
        return getattr(self._sqs, name)


def test_a_typing_message_that_cannot_be_queued_does_not_keep_the_contact_from_the_answer(
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    envelope = fresh(golden("pn"))
    url = aws.queues["OUTBOUND_QUEUE_URL"]
    handler.deps = replace(handler.deps, replies=ReplyQueue(NoSingleSends(aws.sqs), url, sleep=lambda _s: None))

    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK

    assert len(chatbot.calls) == 1
    assert kinds(outbound_on(aws)) == ["reply"]
    assert [r for r in caplog.records if r.getMessage() == "typing message not queued"]


# ---- an idempotency record that cannot be completed ----------------------------------------------------------------


class FailingUpdates:
    """A DynamoDB client whose ``update_item`` fails (Powertools completes its record with it): a throttled moment."""

    def __init__(self, dynamodb: object) -> None:
        self._dynamodb = dynamodb

    def update_item(self, **kwargs: object) -> None:
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
        )

    def __getattr__(self, name: str) -> object:
        return getattr(self._dynamodb, name)


def test_an_event_relayed_whose_record_cannot_be_completed_is_not_retried_so_the_bot_is_asked_once(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    persistence = DynamoDBPersistenceLayer(table_name="wa-relay-idempotency", boto3_client=FailingUpdates(aws.dynamodb))
    handler.deps = replace(handler.deps, relay_once=logic.idempotent_relay(handler.idempotency, persistence))
    envelope = fresh(golden("pn"))
    record = sqs_record(envelope)

    # the replies went out; failing the record now would only get the bot asked again once the record expires
    assert handler.lambda_handler(sqs_event(record), lambda_context) == OK
    assert len(chatbot.calls) == 1 and len(replies_on(aws)) == 1
    item = aws.idempotency_item(envelope.event_id)
    assert item is not None and item["status"]["S"] == "INPROGRESS", "the completion did fail"
