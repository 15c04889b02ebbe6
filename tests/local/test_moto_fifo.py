"""The local SQS (moto, through ``infra.local.moto_sqs``) hands out a FIFO group in order after visibility changes,
as SQS does: the chaos suite's order checks rely on it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.local.emulators import MotoServer, running


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    with running(MotoServer()) as endpoint:
        yield boto3.client(
            "sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )


def fifo(sqs: Any, name: str) -> str:
    url: str = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    for n in (1, 2, 3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", MessageGroupId="g", MessageDeduplicationId=f"{name}{n}")
    return url


def receive(sqs: Any, url: str, count: int, wait_s: int = 0) -> list[dict[str, Any]]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count, WaitTimeSeconds=wait_s)
    return list(got.get("Messages", []))


def hide(sqs: Any, url: str, messages: list[dict[str, Any]], seconds: int) -> None:
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds} for i, m in
               enumerate(messages)]  # fmt: skip
    sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def test_a_group_whose_messages_become_visible_together_comes_back_in_order(sqs: Any) -> None:
    url = fifo(sqs, "together")
    taken = receive(sqs, url, 10)
    assert [m["Body"] for m in taken] == ["m1", "m2", "m3"]
    hide(sqs, url, taken, 1)  # a failed batch, retried later (what the inbound function does)
    time.sleep(1.3)
    assert [m["Body"] for m in receive(sqs, url, 1)] == ["m1"]


def test_a_long_poll_that_began_while_the_group_was_in_flight_sees_it_released_in_order(sqs: Any) -> None:
    url = fifo(sqs, "longpoll")
    taken = receive(sqs, url, 10)
    hide(sqs, url, taken, 2)
    # Started while all three are in flight, the poll is still waiting when they become visible again.
    assert [m["Body"] for m in receive(sqs, url, 10, wait_s=5)] == ["m1", "m2", "m3"]
