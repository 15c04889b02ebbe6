"""The events function against moto's SQS and a real local HTTP receiver: each ``RelayEvent`` on ``events.fifo`` is
POSTed, signed, to ``EVENTS_URL``; what the receiver does not take is retried in order per session; what it refuses
for good, and what is not an event, goes to the events DLQ with its reason.

Records reach the handler the way they do on AWS and in ``make up``: sent to the queue, received and settled by the
local event source mapping (``infra.local.runner``), one ``run_once`` per invocation.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from connector.contracts import DEAD_LETTER_REASON, RelayEvent, relay_event_id
from connector.resources import EVENTS_FUNCTION_TIMEOUT_S, EVENTS_QUEUE
from functions.events.config import EventsConfig
from functions.events.errors import EventsConfigError, OutOfTime, ReceiverUnavailable
from functions.events.logic import retry_delay_s
from infra.local.emulators import free_port
from infra.local.runner import BatchResult, EventSourceRunner
from tests.functions.conftest import SECRET, Aws
from tests.support.chatbot import Answer, ChatbotServer, valid_signature

Receiver = ChatbotServer
OK = Answer(status=200, body={})
"""The test chatbot records every POST with its headers and whether its signature is valid: a receiver as well."""


@pytest.fixture
def receiver(chatbot: ChatbotServer) -> Receiver:
    chatbot.respond = lambda body: Answer(status=204)
    return chatbot


def event(session_id: str, kind: str = "session.state", **data: Any) -> RelayEvent:
    return RelayEvent(
        id=relay_event_id(kind, session_id, uuid.uuid4().hex),
        kind=kind,  # type: ignore[arg-type]
        session_id=session_id,
        at=int(time.time() * 1000),
        data=data or {"state": "open"},
    )


def session() -> str:
    return f"ev-{uuid.uuid4().hex[:8]}"


Wire = Callable[..., EventSourceRunner]


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch, aws: Aws, sqs_endpoint: str, receiver: Receiver) -> Wire:
    """The handler imported with the test environment (plus ``overrides``), behind a local event source mapping
    that releases failed records at once (``retry_delay_s=0``) so a test decides when the next invocation runs."""
    aws.drain(EVENTS_QUEUE.env)
    aws.drain(EVENTS_QUEUE.dlq_env)

    def wire(**overrides: str) -> EventSourceRunner:
        env = {
            "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
            "EVENTS_URL": receiver.url,
            "CHATBOT_SECRET": SECRET,
            EVENTS_QUEUE.env: aws.queues[EVENTS_QUEUE.env],
            EVENTS_QUEUE.dlq_env: aws.queues[EVENTS_QUEUE.dlq_env],
            "EVENTS_TIMEOUT_S": "2",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
            **overrides,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("CHATBOT_SECRET_ARN", raising=False)
        handler = _load("functions.events.handler")
        url = aws.queues[EVENTS_QUEUE.env]
        arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return EventSourceRunner(
            aws.sqs, url, arn, handler.lambda_handler, function_timeout_s=EVENTS_FUNCTION_TIMEOUT_S,
            function_name="wa-relay-events", retry_delay_s=0, wait_time_s=0,
        )  # fmt: skip

    return wire


def _load(name: str) -> ModuleType:
    return importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)


def publish(aws: Aws, *events: RelayEvent | tuple[str, str]) -> None:
    """On ``events.fifo`` as the connector sends them; a ``(group, body)`` pair is sent as it is."""
    for item in events:
        group, body, dedup = (
            (item.group_id, item.model_dump_json(), item.id)
            if isinstance(item, RelayEvent)
            else (item[0], item[1], uuid.uuid4().hex)
        )
        aws.sqs.send_message(
            QueueUrl=aws.queues[EVENTS_QUEUE.env], MessageBody=body, MessageGroupId=group,
            MessageDeduplicationId=dedup,
        )  # fmt: skip


def invoke(runner: EventSourceRunner) -> BatchResult:
    result = runner.run_once(wait_time_s=1)
    assert result is not None, "nothing was received"
    return result


def delivered(receiver: Receiver) -> list[str]:
    """Event ids the receiver answered 2xx, in arrival order."""
    return [c.headers["X-Relay-Event-Id"] for c in receiver.calls if 200 <= c.status < 300]


def dead_letters(aws: Aws) -> list[tuple[dict[str, str], str]]:
    """``(attributes, body)`` of everything on the events DLQ, drained."""
    out = []
    for m in aws.drain(EVENTS_QUEUE.dlq_env):
        attributes = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
        out.append((attributes, m["Body"]))
    return out


def queue_empty(aws: Aws) -> bool:
    url = aws.queues[EVENTS_QUEUE.env]
    attrs = aws.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


# ---- delivery ----


def test_an_event_is_posted_signed_with_its_id_and_deleted(wire: Wire, aws: Aws, receiver: Receiver) -> None:
    runner = wire()
    e = event(session(), "session.qr", qr="2@secret-ref", valid_s=60)
    publish(aws, e)

    result = invoke(runner)

    assert result.retried == [] and len(result.deleted) == 1
    [call] = receiver.calls
    assert call.headers["X-Relay-Event-Id"] == e.id
    assert call.headers["Content-Type"] == "application/json"
    assert RelayEvent.model_validate_json(call.raw) == e
    # The receiver's verification: valid with the chatbot secret over exactly these bytes, invalid otherwise.
    assert call.signature_valid
    assert valid_signature(SECRET, call.headers["X-Relay-Signature"], call.raw)
    assert not valid_signature("another-secret-0123456789", call.headers["X-Relay-Signature"], call.raw)
    assert not valid_signature(SECRET, call.headers["X-Relay-Signature"], call.raw.replace(b"open", b"shut") + b" ")
    assert queue_empty(aws)


def test_a_500_is_retried_and_the_session_stays_in_order(wire: Wire, aws: Aws, receiver: Receiver) -> None:
    runner = wire()
    sid = session()
    first, second = event(sid, state="connecting"), event(sid, state="open")
    publish(aws, first, second)
    receiver.script = [Answer(status=500)]

    failed = invoke(runner)
    # The first failed, and the second was held back with it (not even posted).
    assert len(failed.retried) == 2 and failed.deleted == []
    assert [c.headers["X-Relay-Event-Id"] for c in receiver.calls] == [first.id]

    done = invoke(runner)
    assert len(done.deleted) == 2 and done.retried == []
    assert delivered(receiver) == [first.id, second.id], "each once, in order"
    assert [c.status for c in receiver.calls] == [500, 204, 204]
    assert runner.run_once(wait_time_s=0) is None and queue_empty(aws)


def test_a_failing_session_holds_back_only_its_own_later_events(wire: Wire, aws: Aws, receiver: Receiver) -> None:
    runner = wire()
    a, b = session(), session()
    a1, a2, b1, b2 = event(a), event(a, state="x"), event(b), event(b, state="y")
    publish(aws, a1, b1, a2, b2)
    receiver.respond = lambda body: Answer(status=503) if body["id"] == a1.id else OK

    result = invoke(runner)

    assert len(result.received) == 4, "one batch"
    posted = [c.headers["X-Relay-Event-Id"] for c in receiver.calls]
    assert a2.id not in posted, "behind its session's failed head"
    assert delivered(receiver) == [b1.id, b2.id]
    assert len(result.retried) == 2 and len(result.deleted) == 2
    # The receiver recovers: the held session follows, in its order, and b's events are not sent again.
    receiver.respond = lambda body: OK
    invoke(runner)
    assert delivered(receiver) == [b1.id, b2.id, a1.id, a2.id]


def test_a_retry_is_delayed_by_a_backoff(wire: Wire, aws: Aws, receiver: Receiver) -> None:
    """On AWS nothing releases a failed record early: its visibility is the backoff the handler set."""
    runner = wire()
    runner.retry_delay_s = 3600  # the runner keeps it; only the handler's visibility change decides
    publish(aws, event(session()))
    receiver.script = [Answer(status=429, headers={"Retry-After": "120"})]

    invoke(runner)

    attrs = aws.sqs.get_queue_attributes(
        QueueUrl=aws.queues[EVENTS_QUEUE.env], AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert runner.run_once(wait_time_s=1) is None, "hidden for the receiver's Retry-After"
    runner.release_held(force=True)
    assert invoke(runner).deleted


def test_an_unreachable_receiver_is_retried_not_dead_lettered(wire: Wire, aws: Aws, receiver: Receiver) -> None:
    runner = wire(EVENTS_URL=f"http://127.0.0.1:{free_port()}/events")
    publish(aws, event(session()))

    result = invoke(runner)

    assert len(result.retried) == 1
    assert dead_letters(aws) == []


def test_retry_delays_back_off_and_honour_retry_after() -> None:
    error = ReceiverUnavailable("500", status=500)
    assert 5 <= retry_delay_s(error, 1) <= 5.5
    assert 40 <= retry_delay_s(error, 4) <= 44
    assert 900 <= retry_delay_s(error, 30) <= 990
    assert retry_delay_s(ReceiverUnavailable("429", status=429, retry_after=600), 1) == 600
    assert retry_delay_s(OutOfTime("no time"), 5) == 0


# ---- dead letters ----


def test_a_4xx_goes_to_the_dlq_with_its_reason_and_the_session_goes_on(
    wire: Wire, aws: Aws, receiver: Receiver
) -> None:
    runner = wire()
    sid = session()
    refused, after = event(sid, state="qr"), event(sid, state="open")
    publish(aws, refused, after)
    receiver.respond = lambda body: Answer(status=400) if body["id"] == refused.id else OK

    result = invoke(runner)

    assert len(result.deleted) == 2 and result.retried == []
    assert delivered(receiver) == [after.id]
    [(attributes, body)] = dead_letters(aws)
    assert attributes[DEAD_LETTER_REASON] == "rejected"
    assert attributes["origin"] == "events"
    assert attributes["session"] == sid
    assert "400" in attributes["detail"]
    assert RelayEvent.model_validate_json(body) == refused


def test_a_malformed_body_goes_to_the_dlq_and_nothing_is_posted(wire: Wire, aws: Aws, receiver: Receiver) -> None:
    runner = wire()
    good = event(session())
    publish(aws, ("x:events", '{"type": "relay.event", "v": 1, "kind": "nonsense"}'), ("y:events", "not json"), good)

    result = invoke(runner)

    assert len(result.deleted) == 3 and result.retried == []
    assert delivered(receiver) == [good.id]
    found = dead_letters(aws)
    assert sorted(a[DEAD_LETTER_REASON] for a, _ in found) == ["malformed", "malformed"]
    details = sorted(a["detail"] for a, _ in found)
    assert details[0] == "body is not JSON"
    assert details[1].startswith("body is not a valid RelayEvent (")
    assert "nonsense" not in details[1], "the detail names what is wrong, not the body"


# ---- configuration ----


def test_config_needs_url_dlq_and_exactly_one_secret() -> None:
    base = {"EVENTS_URL": "https://hooks.example/relay", EVENTS_QUEUE.dlq_env: "https://sqs/dlq", "CHATBOT_SECRET": "s"}
    assert EventsConfig.from_env(base).timeout_s == 5.0
    for broken, message in [
        ({**base, "EVENTS_URL": "ftp://x"}, "EVENTS_URL"),
        ({**base, EVENTS_QUEUE.dlq_env: ""}, EVENTS_QUEUE.dlq_env),
        ({**base, "CHATBOT_SECRET_ARN": "arn:aws:secretsmanager:x"}, "only one"),
        ({**base, "CHATBOT_SECRET": ""}, "must be set"),
        ({**base, "EVENTS_TIMEOUT_S": "0"}, "EVENTS_TIMEOUT_S"),
    ]:
        with pytest.raises(EventsConfigError, match=message):
            EventsConfig.from_env(broken, fetch_secret=lambda arn: pytest.fail("fetched"))  # type: ignore[arg-type, return-value]
    fetched = EventsConfig.from_env({**base, "CHATBOT_SECRET": "", "CHATBOT_SECRET_ARN": "arn:x"}, lambda arn: " v\n")
    assert fetched.secret == "v"


def test_the_body_is_never_logged_above_debug(
    wire: Wire, aws: Aws, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    runner = wire()
    publish(aws, event(session(), "session.qr", qr="2@do-not-log-me"))
    receiver.script = [Answer(status=500)]
    with caplog.at_level(logging.DEBUG):
        invoke(runner)
        invoke(runner)
    records = [(r.levelno, r.getMessage(), str(r.__dict__)) for r in caplog.records]
    assert any(message == "event delivered" for _, message, _ in records)
    assert any("do-not-log-me" in text for level, _, text in records if level == logging.DEBUG), "lost its teeth"
    assert not [message for level, message, text in records if level > logging.DEBUG and "do-not-log-me" in text]
