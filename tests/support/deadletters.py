"""Helpers for the dead-letter tool's tests: a private set of relay queues on the test moto server (FIFO, with FIFO
DLQs and the redrive policy of ``connector.resources``), envelopes, and the tool run as a user runs it."""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.contracts import (
    Account,
    ChatRef,
    InboundEnvelope,
    MessageRef,
    RawKey,
    SenderRef,
    event_id,
)
from connector.deadletters.cli import main
from connector.resources import INBOUND_QUEUE, OUTBOUND_QUEUE


def make_queues(sqs: Any) -> dict[str, str]:
    """``{INBOUND_QUEUE_URL: url, INBOUND_QUEUE_DLQ_URL: url, OUTBOUND_…}`` of new queues with unique names."""
    name = uuid.uuid4().hex[:10]
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    urls: dict[str, str] = {}
    for spec in (INBOUND_QUEUE, OUTBOUND_QUEUE):
        short = spec.env.removesuffix("_QUEUE_URL").lower()
        dlq = sqs.create_queue(QueueName=f"{short}-dlq-{name}.fifo", Attributes=fifo)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(spec.max_receive_count)}
        urls[spec.env] = sqs.create_queue(
            QueueName=f"{short}-{name}.fifo",
            Attributes={**fifo, "VisibilityTimeout": "30", "RedrivePolicy": json.dumps(policy)},
        )["QueueUrl"]
        urls[spec.dlq_env] = dlq
    return urls


def drop_queues(sqs: Any, urls: dict[str, str]) -> None:
    for url in urls.values():
        sqs.delete_queue(QueueUrl=url)


def dead_letter_by_redrive_policy(sqs: Any, url: str, body: str, group: str, dedup: str) -> None:
    """Send a message and fail it until the queue's redrive policy (maxReceiveCount receives) moves it to the DLQ."""
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedup)
    for _ in range(INBOUND_QUEUE.max_receive_count):
        got = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=0).get("Messages", [])
        assert len(got) == 1
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=0).get("Messages", []) == []


def take_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receive and delete everything on a queue, in order, with all attributes."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return out
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        out.extend(got)


def depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def envelope(
    msg_id: str | None = None,
    *,
    session: str = "s1",
    lid_user: str = "88887770001",
    pn_user: str = "15557770001",
    received_at: float | None = None,
    text: str = "hello",
) -> InboundEnvelope:
    """A contact's text addressed by phone number (its LID known), received ``received_at`` (unix s, default now)."""
    msg_id = msg_id or "3EB0" + uuid.uuid4().hex[:16].upper()
    pn, lid = f"{pn_user}@s.whatsapp.net", f"{lid_user}@lid"
    return InboundEnvelope(
        event_id=event_id(session, lid, False, None, msg_id),
        session_id=session,
        upsert_type="notify",
        received_at=int((time.time() if received_at is None else received_at) * 1000),
        me=Account(pn="15550001111@s.whatsapp.net", lid="99990001111@lid"),
        from_me=False,
        chat=ChatRef(jid=pn, pn=pn, lid=lid),
        sender=SenderRef(jid=pn, pn=pn, lid=lid, push_name="Alice"),
        message=MessageRef(id=msg_id, type="text", text=text, timestamp=int(time.time())),
        key=RawKey(remoteJid=pn, id=msg_id, remoteJidAlt=lid, addressingMode="pn"),
    )


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Tool:
    """``wa-relay-dlq`` with the connector's variables pointing at the test queues and spool."""

    endpoint: str
    urls: dict[str, str]
    spool_dir: Path
    dedup_ttl_s: int = 86400

    @property
    def env(self) -> dict[str, str]:
        return {
            **self.urls,
            "SPOOL_DIR": str(self.spool_dir),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "DEDUP_TTL_S": str(self.dedup_ttl_s),
        }

    def __call__(self, *argv: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), self.env, out=out, err=err, wait_s=0)
        return Result(code, out.getvalue(), err.getvalue())
