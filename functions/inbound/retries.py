"""What happens to a record that failed: retried later, without burning receives, until an outage budget runs out.

Why: SQS moves a message to the DLQ after ``maxReceiveCount`` receives, and with the queue's own visibility timeout
a chatbot that answers 5xx for a quarter of an hour used them all up: every message of that time went to the DLQ.
Now a failed record is hidden for a backoff of our choosing (``ChangeMessageVisibility``): ``base_s`` doubled per
receive, capped at ``max_s``, or the chatbot's ``Retry-After`` when it asks for longer; at once when the invocation
only ran out of time for it. So a long outage costs a few dozen receives, and ``maxReceiveCount`` (100) is only the
backstop for invocations that die before they can decide (timeouts, crashes).

The function itself moves a record to the inbound DLQ, with its reason, when the record has kept failing for longer
than ``budget_s`` since SQS first took it (``SentTimestamp``), or after ``max_receives`` receives. Its message group
in the DLQ is its chat's, so a redrive replays a chat in order.

The rest of a failed record's chat in the same batch (not attempted) is hidden for the same time: it would otherwise
come back with the queue's visibility timeout, after its head.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from connector.resources import SQS_BATCH_MAX
from functions.inbound.errors import ChatbotUnavailable, OutOfTime

logger = Logger(service="wa-relay", child=True)

SQS_VISIBILITY_MAX_S = 12 * 3600
"""SQS's limit for a message's visibility timeout."""


@dataclass(frozen=True)
class OutagePolicy:
    budget_s: float = 6 * 3600
    """How long a record keeps being retried after SQS first took it; then it goes to the DLQ with its reason."""
    base_s: float = 30.0
    max_s: float = 900.0
    max_receives: int = 50


def reason_of(error: BaseException) -> str:
    """The DLQ ``reason`` for a record that failed with ``error``."""
    if isinstance(error, ChatbotUnavailable):
        return "chatbot_unavailable"
    if isinstance(error, OutOfTime):
        return "out_of_time"
    return "failed"


def delay_s(error: BaseException, receive_count: int, policy: OutagePolicy) -> float:
    """How long the record stays hidden before its next attempt."""
    if isinstance(error, OutOfTime):
        return 0.0  # nothing failed: this invocation only had no time left for it
    backoff = min(policy.max_s, policy.base_s * 2.0 ** max(0, receive_count - 1))
    backoff += random.uniform(0, backoff / 10)  # spreads the retries of one outage
    if isinstance(error, ChatbotUnavailable) and error.retry_after is not None:
        backoff = max(backoff, error.retry_after)
    return min(backoff, SQS_VISIBILITY_MAX_S)


def age_s(record: SQSRecord, now: float | None = None) -> float:
    """Seconds since SQS first took the record (``SentTimestamp``, milliseconds)."""
    sent_ms = int(record.attributes.sent_timestamp or 0)
    if not sent_ms:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - sent_ms / 1000)


def receive_count(record: SQSRecord) -> int:
    return int(record.attributes.approximate_receive_count or "1")


def exhausted(record: SQSRecord, policy: OutagePolicy) -> str | None:
    """Why the record that just failed must not be retried again (its budget or its receives are used up), or
    ``None``."""
    age, receives = age_s(record), receive_count(record)
    if age > policy.budget_s:
        return f"failing for {age:.0f} s, over the {policy.budget_s:.0f} s budget"
    if receives >= policy.max_receives:
        return f"{receives} receives, the most allowed"
    return None


class Visibility:
    """``ChangeMessageVisibility`` on the inbound queue for records that failed (best effort: if it fails, the
    queue's own visibility timeout applies)."""

    def __init__(self, sqs: Any, queue_url: str | None) -> None:
        self._sqs = sqs
        self.queue_url = queue_url

    def hide(self, records: list[SQSRecord], seconds: float) -> None:
        if not self.queue_url or not records:
            return
        for start in range(0, len(records), SQS_BATCH_MAX):
            chunk = records[start : start + SQS_BATCH_MAX]
            entries = [
                {"Id": str(n), "ReceiptHandle": r.receipt_handle, "VisibilityTimeout": int(seconds)}
                for n, r in enumerate(chunk)
            ]
            try:
                response = self._sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as e:
                logger.warning("could not delay the retry; the queue's visibility timeout applies",
                               extra={"error": str(e), "records": len(chunk)})  # fmt: skip
                continue
            if response.get("Failed"):
                logger.warning("could not delay the retry of some records", extra={"failed": response["Failed"]})
