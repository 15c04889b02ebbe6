"""The local event source mapping against moto's SQS: batches, partial failures, retries, the DLQ, event shape."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

from connector.resources import INBOUND_QUEUE
from infra.local.runner import EventSourceRunner, LocalLambdaContext, failed_message_ids


class Queue:
    """A fresh FIFO queue with a FIFO DLQ and the inbound queue's redrive policy (tests must not share messages)."""

    def __init__(self, sqs: Any) -> None:
        self.sqs = sqs
        name = uuid.uuid4().hex[:12]
        fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
        self.dlq_url = sqs.create_queue(QueueName=f"t-{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]
        dlq_arn = self.attr(self.dlq_url, "QueueArn")
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(INBOUND_QUEUE.max_receive_count)}
        self.url = sqs.create_queue(
            QueueName=f"t-{name}.fifo",
            Attributes={**fifo, "VisibilityTimeout": "180", "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        self.arn = self.attr(self.url, "QueueArn")

    def attr(self, url: str, name: str) -> str:
        return str(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])

    def send(self, body: str, group: str = "g", **kwargs: Any) -> str:
        dedup = uuid.uuid4().hex
        return str(
            self.sqs.send_message(
                QueueUrl=self.url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedup, **kwargs
            )["MessageId"]
        )

    def receive_all(self, url: str | None = None) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=url or self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
        )
        return list(response.get("Messages", []))


@pytest.fixture
def queue(sqs_endpoint: str) -> Iterator[Queue]:
    q = Queue(boto3.client("sqs", endpoint_url=sqs_endpoint))
    yield q
    q.sqs.delete_queue(QueueUrl=q.url)
    q.sqs.delete_queue(QueueUrl=q.dlq_url)


class Recorder:
    """A handler that records every event and fails the records whose body is in ``fail``."""

    def __init__(self, fail: set[str] | None = None, raise_error: bool = False) -> None:
        self.fail = fail or set()
        self.raise_error = raise_error
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.contexts.append(context)
        if self.raise_error:
            raise RuntimeError("boom")
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.fail
            ]
        }

    def bodies(self, n: int = -1) -> list[str]:
        return [r["body"] for r in self.events[n]["Records"]]


def runner(queue: Queue, handler: Any, **kwargs: Any) -> EventSourceRunner:
    kwargs.setdefault("retry_delay_s", 0)
    kwargs.setdefault("wait_time_s", 1)
    return EventSourceRunner(queue.sqs, queue.url, queue.arn, handler, **kwargs)


def test_event_has_the_shape_lambda_sends(queue: Queue) -> None:
    # GIVEN a message with a string and a binary message attribute
    msg_id = queue.send(
        '{"hello": 1}',
        group="s1:chat",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "text"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    handler = Recorder()
    # WHEN the runner delivers it
    result = runner(queue, handler, function_timeout_s=30).run_once()
    # THEN the event is a real SQS event that Powertools' model accepts, with every FIFO attribute
    assert result is not None
    assert result.received == [msg_id]
    assert result.deleted == [msg_id]
    (record,) = handler.events[0]["Records"]
    assert set(record) >= {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
        "eventSource", "eventSourceARN", "awsRegion",
    }  # fmt: skip
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp",
        "SequenceNumber", "MessageGroupId", "MessageDeduplicationId",
    }  # fmt: skip
    model = SqsRecordModel.model_validate(record)
    assert model.messageId == msg_id
    assert model.body == '{"hello": 1}'
    assert model.eventSource == "aws:sqs"
    assert model.eventSourceARN == queue.arn
    assert model.awsRegion == "us-east-1"
    assert model.attributes.MessageGroupId == "s1:chat"
    assert model.attributes.ApproximateReceiveCount == "1"
    assert model.messageAttributes["kind"].stringValue == "text"
    assert model.messageAttributes["kind"].dataType == "String"
    assert record["messageAttributes"]["blob"]["binaryValue"] == base64.b64encode(b"\x00\x01").decode()

    # and the context looks like Lambda's, counting down from the function timeout
    context = handler.contexts[0]
    assert context.function_name == "wa-relay-inbound"
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:wa-relay-inbound"
    assert isinstance(context.memory_limit_in_mb, int)
    assert context.aws_request_id
    assert 0 < context.get_remaining_time_in_millis() <= 30_000


def test_context_counts_down() -> None:
    context = LocalLambdaContext("f", timeout_s=0.3)
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    assert context.get_remaining_time_in_millis() < first <= 300
    time.sleep(0.3)
    assert context.get_remaining_time_in_millis() == 0


def test_one_failed_record_stays_and_becomes_visible_again(queue: Queue) -> None:
    # GIVEN three messages in three groups
    ids = [queue.send(body, group=body) for body in ("a", "b", "c")]
    handler = Recorder(fail={"b"})
    # WHEN the handler reports "b" as failed
    result = runner(queue, handler, retry_delay_s=0.5).run_once()
    # THEN "a" and "c" are deleted, and "b" stays in flight until its retry delay is over
    assert result is not None
    assert sorted(result.deleted) == sorted([ids[0], ids[2]])
    assert result.retried == [ids[1]]
    assert result.error is None
    assert queue.receive_all() == []


def test_failed_record_is_retried_after_the_retry_delay(queue: Queue) -> None:
    ids = [queue.send(body, group=body) for body in ("a", "b", "c")]
    handler = Recorder(fail={"b"})
    r = runner(queue, handler, retry_delay_s=0.3)
    r.run_once()
    assert r.release_held() == 0  # not yet
    time.sleep(0.35)
    assert r.release_held() == 1
    # only "b" comes back, received for the second time
    (again,) = queue.receive_all()
    assert again["MessageId"] == ids[1]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"


def test_handler_exception_retries_the_whole_batch(queue: Queue) -> None:
    ids = [queue.send(body, group=body) for body in ("a", "b")]
    result = runner(queue, Recorder(raise_error=True)).run_once()
    assert result is not None
    assert result.deleted == []
    assert sorted(result.retried) == sorted(ids)
    assert result.error == "RuntimeError: boom"
    assert sorted(m["MessageId"] for m in queue.receive_all()) == sorted(ids)


def test_timeout_fails_the_whole_batch(queue: Queue) -> None:
    ids = [queue.send("slow")]

    def slow(event: dict[str, Any], context: Any) -> None:
        time.sleep(0.3)

    result = runner(queue, slow, function_timeout_s=0.2).run_once()
    assert result is not None
    assert result.retried == ids
    assert result.error is not None
    assert result.error.startswith("Task timed out")


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}])
def test_responses_that_mean_full_success(response: Any) -> None:
    assert failed_message_ids(response, ["m1"]) == set()


@pytest.mark.parametrize(
    "response",
    [
        "ok",
        {"batchItemFailures": "m1"},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemId": "m1"}]},
        {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
    ],
)
def test_responses_that_fail_the_whole_batch(response: Any) -> None:
    assert failed_message_ids(response, ["m1", "m2"]) is None


def test_fifo_group_keeps_its_order_with_powertools(queue: Queue) -> None:
    # GIVEN one chat (one group) with three messages, and the processor the inbound function uses
    ids = [queue.send(body, group="s1:chat") for body in ("m0", "m1", "m2")]
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    seen: list[str] = []
    failing = {"m1"}

    def record_handler(record: Any) -> None:
        seen.append(record.body)
        if record.body in failing:
            failing.discard(record.body)
            raise ValueError("transient")

    def handler(event: dict[str, Any], context: Any) -> Any:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    r = runner(queue, handler)
    # WHEN m1 fails once
    first = r.run_once()
    # THEN m0 is deleted, m1 and m2 (the rest of the group) come back, in order, and then succeed
    assert first is not None
    assert first.deleted == [ids[0]]
    assert first.retried == ids[1:]
    second = r.run_once()
    assert second is not None
    assert second.received == ids[1:]
    assert second.deleted == ids[1:]
    assert seen == ["m0", "m1", "m1", "m2"]
    assert r.run_once(wait_time_s=0) is None


def test_record_failing_max_receive_count_times_ends_in_the_dlq(queue: Queue) -> None:
    # GIVEN a message that always fails, next to one that succeeds
    poison = queue.send("poison", group="g1")
    good = queue.send("good", group="g2")
    handler = Recorder(fail={"poison"})
    r = runner(queue, handler)
    # WHEN the runner keeps retrying it
    for _ in range(INBOUND_QUEUE.max_receive_count + 2):
        r.run_once(wait_time_s=0)
    # THEN it was tried max_receive_count times, and then SQS (moto) moved it to the DLQ
    assert sum(b == "poison" for e in handler.events for b in (r["body"] for r in e["Records"])) == (
        INBOUND_QUEUE.max_receive_count
    )
    assert [b for e in handler.events for b in (r["body"] for r in e["Records"])].count("good") == 1
    assert queue.receive_all() == []
    (dead,) = queue.receive_all(queue.dlq_url)
    assert dead["MessageId"] == poison != good
    assert dead["Body"] == "poison"


def test_batch_size_is_respected(queue: Queue) -> None:
    for n in range(7):
        queue.send(f"m{n}", group=f"g{n}")
    handler = Recorder()
    r = runner(queue, handler, batch_size=3)
    sizes = []
    while (result := r.run_once(wait_time_s=0)) is not None:
        sizes.append(len(result.received))
    assert max(sizes) <= 3
    assert sum(sizes) == 7


def test_batch_size_limits() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        EventSourceRunner(None, "u", "arn:aws:sqs:us-east-1:1:q.fifo", Recorder(), batch_size=11)
    with pytest.raises(ValueError, match="batching window"):
        EventSourceRunner(None, "u", "arn:aws:sqs:us-east-1:1:q.fifo", Recorder(), max_batching_window_s=1)
    EventSourceRunner(None, "u", "arn:aws:sqs:us-east-1:1:q", Recorder(), batch_size=100, max_batching_window_s=1)


def test_loop_survives_a_failing_batch_and_stops(queue: Queue) -> None:
    # GIVEN a running poller whose handler raises on its first call
    calls: list[list[str]] = []
    done = threading.Event()

    def handler(event: dict[str, Any], context: Any) -> None:
        calls.append([r["body"] for r in event["Records"]])
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        done.set()

    r = runner(queue, handler, retry_delay_s=0.1)
    r.start()
    try:
        queue.send("x")
        # THEN the loop logs the failure, retries, and the second call succeeds
        assert done.wait(15)
    finally:
        r.stop()
    assert calls == [["x"], ["x"]]
    assert r._thread is None
    assert queue.receive_all() == []
    r.stop()  # idempotent


def test_stop_releases_held_messages(queue: Queue) -> None:
    msg_id = queue.send("x")
    r = runner(queue, Recorder(fail={"x"}), retry_delay_s=60)
    r.run_once()
    assert queue.receive_all() == []
    r.stop()
    assert [m["MessageId"] for m in queue.receive_all()] == [msg_id]
