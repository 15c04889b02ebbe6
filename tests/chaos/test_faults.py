"""The AWS fault interceptor answers what botocore retries, and the chaos chatbot records what its caller got."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import urllib3

from tests.bench.proxy import DropConnection
from tests.chaos.chatbot import ChaosResponder, tag_of
from tests.chaos.faults import AwsFaults
from tests.chaos.schedule import Fault
from tests.support.chatbot import ChatbotServer


def fault(kind: str, service: str = "dynamodb", rate: float = 1.0, latency_s: float = 0.0) -> Fault:
    return Fault(0, "aws", 0.0, component="connector", service=service, aws_kind=kind, rate=rate, latency_s=latency_s)


@pytest.mark.parametrize(
    ("service", "kind", "statuses", "types"),
    [
        ("dynamodb", "throttle", {400}, {"ProvisionedThroughputExceededException", "ThrottlingException"}),
        ("sqs", "throttle", {400, 403}, {"RequestThrottled", "ThrottlingException"}),
        ("dynamodb", "5xx", {500, 503}, {"InternalServerError", "ServiceUnavailable"}),
        ("sqs", "5xx", {500, 503}, {"InternalError", "ServiceUnavailable"}),
    ],
)
async def test_throttles_and_server_errors_are_the_real_ones(
    service: str, kind: str, statuses: set[int], types: set[str]
) -> None:
    faults = AwsFaults(seed=1)
    faults.start(fault(kind, service))
    answers = [await faults("connector", service, "Op") for _ in range(40)]
    assert {a.status for a in answers if a is not None} == statuses
    assert {json.loads(a.text)["__type"].rpartition("#")[2] for a in answers if a is not None} == types  # type: ignore[union-attr]
    assert sum(faults.injected.values()) == 40
    assert await faults("function", service, "Op") is None, "other components are untouched"


async def test_rate_and_end() -> None:
    faults = AwsFaults(seed=2)
    f = fault("5xx", rate=0.5)
    faults.start(f)
    hits = sum([await faults("connector", "dynamodb", "Op") is not None for _ in range(200)])
    assert 60 < hits < 140
    faults.end(fault("5xx", rate=0.5))  # an equal but different fault does not end it
    assert faults.active("connector", "dynamodb") is f
    faults.end(f)
    assert await faults("connector", "dynamodb", "Op") is None


async def test_latency_waits_and_reset_drops() -> None:
    faults = AwsFaults(seed=3)
    faults.start(fault("latency", latency_s=0.2))
    t = time.monotonic()
    assert await faults("connector", "dynamodb", "Op") is None
    assert time.monotonic() - t >= 0.2
    faults.start(fault("reset"))
    with pytest.raises(DropConnection):
        await faults("connector", "dynamodb", "Op")


async def test_a_blackhole_holds_the_call_until_it_ends_then_drops_it() -> None:
    faults = AwsFaults(seed=4)
    f = fault("blackhole")
    faults.start(f)
    held = asyncio.create_task(faults("connector", "dynamodb", "Op"))
    await asyncio.sleep(0.2)
    assert not held.done()
    threading.Thread(target=faults.end, args=(f,)).start()
    with pytest.raises(DropConnection):
        await asyncio.wait_for(held, 2)


def test_the_responder_echoes_the_tag_and_fails_in_its_windows() -> None:
    bot = ChaosResponder(stall_s=1)
    body = {"message": {"text": "chaos s0/c1/7"}}
    assert tag_of("chaos s0/c1/7") == "s0/c1/7" and tag_of("hello") is None
    assert bot(body).body == {"replies": [{"text": "ack s0/c1/7"}]}
    expected = {"fail500": 500, "fail503": 503, "fail503-retry-after": 503, "stall": 200, "garbage": 200}
    for window, status in expected.items():
        bot.window = window
        answer = bot(body)
        assert (answer.status, answer.label) == (status, window)
    bot.window = "fail503-retry-after"
    assert bot(body).headers == {"Retry-After": "1"}


def test_an_answer_written_after_the_caller_gave_up_is_not_delivered() -> None:
    server = ChatbotServer("secret")
    bot = ChaosResponder(stall_s=0.6)
    server.respond = bot
    server.start()
    try:
        http = urllib3.PoolManager(retries=False)
        body = json.dumps({"event_id": "e1", "message": {"text": "chaos s0/c0/1"}}).encode()
        headers = {"X-Relay-Event-Id": "e1"}
        assert http.request("POST", server.url, body=body, headers=headers).status == 200
        bot.window = "stall"
        with pytest.raises(urllib3.exceptions.TimeoutError):
            http.request("POST", server.url, body=body, headers=headers, timeout=0.2)
        deadline = time.monotonic() + 5
        while server.calls[-1].answered_at == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        first, stalled = server.calls
        assert (first.event_id, first.status, first.label, first.delivered) == ("e1", 200, "ok", True)
        assert (stalled.status, stalled.label, stalled.delivered) == (200, "stall", False)
    finally:
        server.stop()
