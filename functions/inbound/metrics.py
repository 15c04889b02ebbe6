"""The function's counters: CloudWatch embedded metric format (EMF) through Powertools Metrics.

Decision: EMF, not log lines with a ``metric`` key. In Lambda, CloudWatch Logs turns every EMF line into metric data
points by itself: no ``PutMetricData`` call, no IAM permission and no metric filter in Terraform, and an alarm can
watch the metric directly. Offline (tests, ``make up``'s runner) an EMF line is only a JSON line on stdout: nothing
is sent anywhere, and the tests read the counts there.

Counts are collected during an invocation and written once at its end (``flush``, called by the handler), as one line
and only when something was counted. An invocation killed before its end loses its counts; the Lambda's own
``Errors``/``Duration`` metrics show such kills.

Metrics (namespace ``wa-relay``, dimension ``service`` = ``wa-relay``):
- ``ChatbotRejected``: events the chatbot refused for good (a 4xx other than 408/429, or an invalid 200 body): no
  reply, never asked again.
- ``StaleSkipped``: events whose answer came, or would come, too late to be sent (older than the maximum message
  age), so no reply was sent.
- ``RateLimited``: events not sent to the chatbot because a session's rate limit (per chat or per session) was full.
"""

from __future__ import annotations

import threading

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "wa-relay"
SERVICE = "wa-relay"
CHATBOT_REJECTED = "ChatbotRejected"
STALE_SKIPPED = "StaleSkipped"
RATE_LIMITED = "RateLimited"

metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_lock = threading.Lock()
"""Records may be handled on several threads; Powertools' metric set is a plain shared dict."""


def count(name: str, value: int = 1) -> None:
    with _lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def chatbot_rejected() -> None:
    """One event the chatbot rejected permanently."""
    count(CHATBOT_REJECTED)


def stale_skipped() -> None:
    """One event not replied to because it was older than the maximum message age."""
    count(STALE_SKIPPED)


def rate_limited() -> None:
    """One event not sent to the chatbot because a rate limit of its session was full."""
    count(RATE_LIMITED)


def flush() -> None:
    """Write what this invocation counted as one EMF line (nothing when it counted nothing)."""
    with _lock:
        if metrics.metric_set:
            metrics.flush_metrics()
