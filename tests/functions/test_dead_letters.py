"""The inbound function's side of dead letters and its metrics, against DynamoDB Local, moto's SQS and the test
chatbot: what a DLQ entry carries, how a copy the dead-letter tool put back is treated, and the EMF counts."""

from __future__ import annotations

import json
import time
from types import ModuleType
from typing import Any

import pytest

from connector.contracts import REDRIVE_ATTRIBUTE, ChatbotReply, OutboundReply
from functions.inbound import metrics
from functions.inbound.answers import AnswerStore
from tests.functions.conftest import Aws, LambdaContext, fresh, golden, sqs_event, sqs_record
from tests.support.chatbot import Answer, ChatbotServer

OK: dict[str, list[dict[str, str]]] = {"batchItemFailures": []}


def emf_lines(out: str) -> list[dict[str, Any]]:
    """The EMF documents among the JSON lines on stdout (Powertools' log lines are there too)."""
    found = []
    for line in out.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            found.append(doc)
    return found


def counted(out: str, name: str) -> float:
    return sum(sum(doc.get(name, [])) for doc in emf_lines(out))


def redriven(record: dict[str, Any]) -> dict[str, Any]:
    record["messageAttributes"] = {
        REDRIVE_ATTRIBUTE: {"stringValue": "inbound:abc", "dataType": "String", "stringListValues": []}
    }
    return record


def test_the_same_malformed_body_in_two_messages_is_two_dead_letters(
    handler: ModuleType, aws: Aws, lambda_context: LambdaContext
) -> None:
    # the body alone identified a dead letter before: a second message with the same body was dropped by SQS
    body = f"not json {time.time_ns()}"
    first, second = sqs_record(body), sqs_record(body)

    assert handler.lambda_handler(sqs_event(first), lambda_context) == OK
    assert handler.lambda_handler(sqs_event(second), LambdaContext()) == OK

    dead = aws.drain("INBOUND_QUEUE_DLQ_URL")
    assert sorted(m["MessageAttributes"]["source_message_id"]["StringValue"] for m in dead) == sorted(
        [first["messageId"], second["messageId"]]
    )


def test_a_retried_move_of_the_same_record_is_one_dead_letter(
    handler: ModuleType, aws: Aws, lambda_context: LambdaContext
) -> None:
    record = sqs_record(f"not json {time.time_ns()}")
    assert handler.lambda_handler(sqs_event(record), lambda_context) == OK
    assert handler.lambda_handler(sqs_event(record), LambdaContext()) == OK
    assert len(aws.drain("INBOUND_QUEUE_DLQ_URL")) == 1


def test_a_redriven_copy_uses_the_answer_an_earlier_attempt_stored(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    # GIVEN an event whose answer was stored by an attempt that then failed (and the event went to the DLQ)
    envelope = fresh(golden("pn"))
    store = AnswerStore(aws.dynamodb, "wa-relay-idempotency", ttl_s=600)
    assert store.put(envelope.event_id, [ChatbotReply(text="stored answer")])

    # WHEN the dead-letter tool's copy arrives: a new SQS message (receive count 1) marked as redriven
    assert handler.lambda_handler(sqs_event(redriven(sqs_record(envelope))), lambda_context) == OK

    # THEN the bot is not asked again and the stored answer is sent
    assert chatbot.calls == []
    [message] = aws.drain("OUTBOUND_QUEUE_URL")
    assert OutboundReply.model_validate_json(message["Body"]).text == "stored answer"


def test_without_the_redrive_mark_a_first_delivery_asks_the_bot(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    """The control for the test above: a first delivery does not read the answer store."""
    envelope = fresh(golden("pn"))
    AnswerStore(aws.dynamodb, "wa-relay-idempotency", ttl_s=600).put(envelope.event_id, [ChatbotReply(text="old")])
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK
    assert len(chatbot.calls) == 1
    assert OutboundReply.model_validate_json(aws.drain("OUTBOUND_QUEUE_URL")[0]["Body"]).text != "old"


def test_a_permanent_rejection_is_counted_once(
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    lambda_context: LambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rejected, answered = fresh(golden("pn")), fresh(golden("pn"))
    chatbot.respond = lambda body: (
        Answer(403, body={"error": "no"}) if body["event_id"] == rejected.event_id else Answer(204, body=b"")
    )
    capsys.readouterr()

    assert handler.lambda_handler(sqs_event(sqs_record(rejected), sqs_record(answered)), lambda_context) == OK
    first = capsys.readouterr().out
    # a redelivery returns the stored outcome: not asked again, not counted again
    assert handler.lambda_handler(sqs_event(sqs_record(rejected, receive_count=2)), LambdaContext()) == OK
    second = capsys.readouterr().out

    [doc] = emf_lines(first)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "wa-relay"
    assert {"Name": "ChatbotRejected", "Unit": "Count"} in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    assert doc["service"] == "wa-relay"
    assert counted(first, "ChatbotRejected") == 1
    assert emf_lines(second) == [], "an invocation that counted nothing writes no metrics line"
    assert len(chatbot.calls_for(rejected.event_id)) == 1


def test_stale_skips_have_a_counter_for_the_function_to_call(capsys: pytest.CaptureFixture[str]) -> None:
    # the maximum message age is applied by the function's logic; this is the counter it calls per skipped event
    capsys.readouterr()
    metrics.stale_skipped()
    metrics.stale_skipped()
    metrics.flush()
    out = capsys.readouterr().out
    assert counted(out, "StaleSkipped") == 2
    assert metrics.metrics.metric_set == {}, "flushed: the next invocation starts from zero"
