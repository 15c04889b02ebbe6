"""Fixtures for the inbound function: event JSON, a Lambda context, the test chatbot, and the handler wired to
DynamoDB Local and moto's SQS (the session fixtures of ``tests/conftest.py``)."""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from connector.contracts import InboundEnvelope, event_id
from tests.support.chatbot import ChatbotServer

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
SECRET = "test-chatbot-secret-0123456789"


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def golden(name: str) -> InboundEnvelope:
    return InboundEnvelope.model_validate(load(f"inbound.message.{name}.json"))


def fresh(envelope: InboundEnvelope, **changes: Any) -> InboundEnvelope:
    """``envelope`` with a new WhatsApp message id (so a new ``event_id``), sent now, plus ``changes`` (dotted keys
    allowed)."""
    data = envelope.model_dump(mode="json")
    msg_id = "3EB0" + uuid.uuid4().hex[:16].upper()
    data["message"]["id"] = data["key"]["id"] = msg_id
    data["message"]["timestamp"] = int(time.time())
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    key = data["key"]
    draft = InboundEnvelope.model_validate(data)
    data["event_id"] = event_id(data["session_id"], draft.canonical_chat, key["fromMe"], key.get("participant"), msg_id)
    return InboundEnvelope.model_validate(data)


def group_of(envelope: InboundEnvelope) -> str:
    return envelope.group_id


def sqs_record(
    body: InboundEnvelope | str, *, group: str | None = None, receive_count: int = 1, age_s: float = 0.0
) -> dict[str, Any]:
    """A real-shaped FIFO SQS record (from ``sqs.inbound.fifo.json``) carrying ``body``, first taken by SQS
    ``age_s`` ago."""
    record = copy.deepcopy(load("sqs.inbound.fifo.json")["Records"][0])
    text = body if isinstance(body, str) else body.model_dump_json()
    record["messageId"] = str(uuid.uuid4())
    record["body"] = text
    record["md5OfBody"] = hashlib.md5(text.encode()).hexdigest()
    attributes = record["attributes"]
    attributes["ApproximateReceiveCount"] = str(receive_count)
    attributes["SentTimestamp"] = str(int((time.time() - age_s) * 1000))
    attributes["SequenceNumber"] = str(18849496460467696128 + uuid.uuid4().int % 10**6)
    if isinstance(body, InboundEnvelope):
        attributes["MessageGroupId"] = group or group_of(body)
        attributes["MessageDeduplicationId"] = body.event_id
    else:
        attributes["MessageGroupId"] = group or "s1:unknown"
        attributes["MessageDeduplicationId"] = hashlib.sha256(text.encode()).hexdigest()
    return record


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


@dataclass
class LambdaContext:
    function_name: str = "wa-relay-inbound"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:wa-relay-inbound"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture(scope="session")
def chatbot_server() -> Iterator[ChatbotServer]:
    server = ChatbotServer(SECRET)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chatbot(chatbot_server: ChatbotServer) -> Iterator[ChatbotServer]:
    chatbot_server.reset()
    yield chatbot_server
    chatbot_server.reset()


@dataclass
class Aws:
    dynamodb: Any
    sqs: Any
    queues: dict[str, str]

    def drain(self, env_name: str) -> list[dict[str, Any]]:
        """Receive and delete everything on a queue (with message attributes)."""
        url = self.queues[env_name]
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not got:
                return out
            for message in got:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            out.extend(got)

    def idempotency_item(self, event: str) -> dict[str, Any] | None:
        key = f"wa-inbound#{hashlib.md5(json.dumps(event).encode()).hexdigest()}"
        item = self.dynamodb.get_item(TableName="wa-relay-idempotency", Key={"id": {"S": key}}, ConsistentRead=True)
        return item.get("Item")

    def put_lid_pair(self, lid: str, pn: str) -> None:
        table = "wa-relay-lid-map"
        lid_user, pn_user = lid.split("@")[0], pn.split("@")[0]
        self.dynamodb.put_item(TableName=table, Item={"pk": {"S": f"lid#{lid_user}"}, "pn": {"S": pn}})
        self.dynamodb.put_item(TableName=table, Item={"pk": {"S": f"pn#{pn_user}"}, "lid": {"S": lid}})


@pytest.fixture
def aws(dynamodb_endpoint: str, sqs_endpoint: str, queue_urls: dict[str, str]) -> Aws:
    aws = Aws(
        boto3.client("dynamodb", endpoint_url=dynamodb_endpoint),
        boto3.client("sqs", endpoint_url=sqs_endpoint),
        queue_urls,
    )
    for name in ("OUTBOUND_QUEUE_URL", "INBOUND_QUEUE_DLQ_URL"):
        aws.drain(name)
    return aws


Wire = Callable[..., ModuleType]


@pytest.fixture
def wire(
    monkeypatch: pytest.MonkeyPatch,
    aws: Aws,
    dynamodb_endpoint: str,
    sqs_endpoint: str,
    chatbot: ChatbotServer,
) -> Wire:
    """Imports the handler module with the test environment (plus ``overrides``), as Lambda would at cold start."""

    def wire(**overrides: str) -> ModuleType:
        env = {
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
            "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
            "CHATBOT_URL": chatbot.url,
            "CHATBOT_SECRET": SECRET,
            "OUTBOUND_QUEUE_URL": aws.queues["OUTBOUND_QUEUE_URL"],
            "INBOUND_QUEUE_DLQ_URL": aws.queues["INBOUND_QUEUE_DLQ_URL"],
            "CHATBOT_TIMEOUT_S": "2",
            "CHATBOT_RETRY_BASE_S": "0.01",
            "CHATBOT_RETRY_MAX_S": "0.05",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
            **overrides,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        name = "functions.inbound.handler"
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)

    return wire


@pytest.fixture
def handler(wire: Wire) -> ModuleType:
    return wire()


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
