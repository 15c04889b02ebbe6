"""The queue watch follows a message and its reply through SQS by their tags, from the calls the proxy forwarded."""

from __future__ import annotations

import json

from tests.chaos.queues import HISTORY_MAX, QueueWatch

INBOUND = "http://127.0.0.1:1/123456789012/wa-relay-inbound.fifo"
OUTBOUND = "http://127.0.0.1:1/123456789012/wa-relay-outbound.fifo"


def call(watch: QueueWatch, component: str, op: str, request: dict[str, object], response: object = None) -> None:
    body = json.dumps(response).encode() if response is not None else b""
    watch(component, "sqs", op, json.dumps(request).encode(), 200, body)


def test_a_message_and_its_reply_are_followed_by_tag() -> None:
    watch = QueueWatch()
    envelope = json.dumps({"event_id": "e", "message": {"text": "chaos s0/c1/3"}})
    reply = json.dumps({"reply_id": "r", "text": "ack s0/c1/3"})
    call(watch, "connector", "SendMessageBatch", {"QueueUrl": INBOUND, "Entries": [{"MessageBody": envelope}]})
    received = {"Messages": [{"Body": envelope, "ReceiptHandle": "h1", "Attributes": {"ApproximateReceiveCount": "1"}}]}
    call(watch, "function", "ReceiveMessage", {"QueueUrl": INBOUND}, received)
    call(watch, "function", "DeleteMessageBatch", {"QueueUrl": INBOUND, "Entries": [{"ReceiptHandle": "h1"}]})
    call(watch, "function", "SendMessageBatch", {"QueueUrl": OUTBOUND, "Entries": [{"MessageBody": reply}]})
    for count in ("1", "2"):
        got = {
            "Messages": [
                {"Body": reply, "ReceiptHandle": f"r{count}", "Attributes": {"ApproximateReceiveCount": count}}
            ]
        }
        call(watch, "connector", "ReceiveMessage", {"QueueUrl": OUTBOUND}, got)
    call(
        watch,
        "connector",
        "ChangeMessageVisibility",
        {"QueueUrl": OUTBOUND, "ReceiptHandle": "r1", "VisibilityTimeout": 0},
    )
    call(watch, "connector", "DeleteMessage", {"QueueUrl": OUTBOUND, "ReceiptHandle": "r2"})
    steps = [line.split(" ", 1)[1] for line in watch.of("s0/c1/3")]
    assert steps == [
        "inbound: sent by the connector (batch)",
        "inbound: received by the function (receive 1)",
        "inbound: deleted by the function",
        "outbound: sent by the function (batch)",
        "outbound: received by the connector (receive 1)",
        "outbound: received by the connector (receive 2)",
        "outbound: visibility set to 0 s by the connector",
        "outbound: deleted by the connector",
    ]


def test_failed_calls_other_services_and_endless_loops_are_kept_short() -> None:
    watch = QueueWatch()
    body = json.dumps({"text": "ack s0/c0/1"})
    watch("connector", "sqs", "SendMessage", json.dumps({"QueueUrl": OUTBOUND, "MessageBody": body}).encode(), 500, b"")
    watch("connector", "dynamodb", "PutItem", b"{}", 200, b"{}")
    assert watch.of("s0/c0/1") == []
    for _ in range(HISTORY_MAX + 10):
        call(watch, "connector", "SendMessage", {"QueueUrl": OUTBOUND, "MessageBody": body})
    assert len(watch.of("s0/c0/1")) == HISTORY_MAX + 1
