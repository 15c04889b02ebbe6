"""The inbound function's side of dead letters and its metrics, against DynamoDB Local, moto's SQS and the test
chatbot: what a DLQ entry carries, how a copy the dead-letter tool put back is treated, and the EMF counts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from connector.contracts import REDRIVE_ATTRIBUTE, ChatbotReply, OutboundReply, parse_outbound
from connector.deadletters.sources import QueueSource
from functions.inbound import metrics
from functions.inbound.answers import AnswerStore
from infra.local.runner import sqs_record as runner_record
from tests.functions.conftest import Aws, LambdaContext, counted, emf_lines, fresh, golden, sqs_event, sqs_record
from tests.support.chatbot import Answer, ChatbotServer
from tests.support.deadletters import Tool, dead_letter_by_redrive_policy, depth, drop_queues, make_queues, take_all

OK: dict[str, list[dict[str, str]]] = {"batchItemFailures": []}


def replies(aws: Aws) -> list[OutboundReply]:
    """The replies on ``outbound.fifo`` (not the typing messages next to them), drained."""
    bodies = [parse_outbound(m["Body"]) for m in aws.drain("OUTBOUND_QUEUE_URL")]
    return [b for b in bodies if isinstance(b, OutboundReply)]


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
    [reply] = replies(aws)  # no typing either: the bot is not asked
    assert reply.text == "stored answer"


def test_without_the_redrive_mark_a_first_delivery_asks_the_bot(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, lambda_context: LambdaContext
) -> None:
    """The control for the test above: a first delivery does not read the answer store."""
    envelope = fresh(golden("pn"))
    AnswerStore(aws.dynamodb, "wa-relay-idempotency", ttl_s=600).put(envelope.event_id, [ChatbotReply(text="old")])
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), lambda_context) == OK
    assert len(chatbot.calls) == 1
    [reply] = replies(aws)
    assert reply.text != "old"


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


# ---- the dead-letter tool and the function: a redriven event is answered at most once ------------------------------


@pytest.fixture
def relay_queues(aws: Aws) -> Iterator[dict[str, str]]:
    urls = make_queues(aws.sqs)
    yield urls
    drop_queues(aws.sqs, urls)


@pytest.fixture
def tool(sqs_endpoint: str, relay_queues: dict[str, str], tmp_path: Path) -> Tool:
    return Tool(sqs_endpoint, relay_queues, tmp_path / "spool")


def deliver(handler: ModuleType, aws: Aws, url: str) -> list[dict[str, Any]]:
    """What an event source mapping does: every message on ``url`` to the handler, deleted when it succeeded."""
    messages = take_all(aws.sqs, url)
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for message in messages:
        assert handler.lambda_handler(sqs_event(runner_record(message, arn)), LambdaContext()) == OK
    return messages


def test_redriving_an_answered_event_does_not_ask_the_chatbot_again(
    handler: ModuleType, chatbot: ChatbotServer, aws: Aws, relay_queues: dict[str, str], tool: Tool
) -> None:
    # GIVEN an event the function answered, which nevertheless sits in the inbound DLQ (e.g. its deletion failed
    # until the redrive policy moved it)
    envelope = fresh(golden("pn"))
    assert handler.lambda_handler(sqs_event(sqs_record(envelope)), LambdaContext()) == OK
    assert len(chatbot.calls) == 1 and len(replies(aws)) == 1
    dead_letter_by_redrive_policy(
        aws.sqs, relay_queues["INBOUND_QUEUE_URL"], envelope.model_dump_json(), envelope.group_id, envelope.event_id
    )

    # WHEN it is redriven and delivered to the function
    assert tool("redrive", "--all").code == 0
    [copy] = deliver(handler, aws, relay_queues["INBOUND_QUEUE_URL"])

    # THEN the chatbot is not asked again and no second reply is queued
    assert json.loads(copy["Body"])["event_id"] == envelope.event_id
    assert len(chatbot.calls) == 1
    assert aws.drain("OUTBOUND_QUEUE_URL") == []


def test_a_failed_event_redriven_twice_is_answered_once(
    handler: ModuleType,
    chatbot: ChatbotServer,
    aws: Aws,
    relay_queues: dict[str, str],
    tool: Tool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an event the chatbot never answered (down while SQS retried it), now in the DLQ
    envelope = fresh(golden("pn"))
    dead_letter_by_redrive_policy(
        aws.sqs, relay_queues["INBOUND_QUEUE_URL"], envelope.model_dump_json(), envelope.group_id, envelope.event_id
    )

    # WHEN a redrive puts it back but dies before taking it out of the DLQ
    async def killed(self: QueueSource, entries: list[Any]) -> dict[str, str]:
        return {e.id: "killed" for e in entries}

    with monkeypatch.context() as patch:
        patch.setattr(QueueSource, "take_out", killed)
        assert tool("redrive", "--all").code == 0
    first = deliver(handler, aws, relay_queues["INBOUND_QUEUE_URL"])
    # … and it is redriven again, and once more after SQS's five minutes of deduplication (stood for here by a copy
    # under another deduplication id, which SQS cannot drop)
    [entry] = tool("list", "--json").json()
    assert tool("redrive", entry["id"]).code == 0
    aws.sqs.send_message(
        QueueUrl=relay_queues["INBOUND_QUEUE_URL"],
        MessageBody=first[0]["Body"],
        MessageGroupId=first[0]["Attributes"]["MessageGroupId"],
        MessageDeduplicationId=f"later-{time.time_ns()}",
        MessageAttributes={REDRIVE_ATTRIBUTE: {"DataType": "String", "StringValue": f"inbound:{entry['id']}"}},
    )
    second = deliver(handler, aws, relay_queues["INBOUND_QUEUE_URL"])

    # THEN the chatbot answered it once, and one reply was queued
    assert len(first) == 1 and len(second) >= 1
    assert len(chatbot.calls_for(envelope.event_id)) == 1
    assert len(replies(aws)) == 1
    assert tool("list", "--json").json() == []


def test_a_malformed_record_the_function_dead_lettered_is_listed_with_its_reason_and_not_redriven(
    wire: Any, chatbot: ChatbotServer, aws: Aws, relay_queues: dict[str, str], tool: Tool
) -> None:
    handler = wire(INBOUND_QUEUE_DLQ_URL=relay_queues["INBOUND_QUEUE_DLQ_URL"])
    record = sqs_record(f"not json {time.time_ns()}")
    assert handler.lambda_handler(sqs_event(record), LambdaContext()) == OK

    [entry] = tool("list", "--json").json()
    assert (entry["source"], entry["reason"], entry["origin"]) == ("inbound", "malformed", "inbound")
    assert (entry["detail"], entry["receive_count"], entry["redrivable"]) == ("body is not JSON", 1, False)

    result = tool("redrive", "--reason", "malformed")
    assert result.code == 1
    assert "skipped" in result.out and "malformed: body is not JSON" in result.out
    assert depth(aws.sqs, relay_queues["INBOUND_QUEUE_URL"]) == 0
    assert len(tool("list", "--json").json()) == 1, "still in the DLQ"
    assert chatbot.calls == []
