"""One event record: parse → ``POST`` it, signed, to ``EVENTS_URL`` → delivered, retried later, or dead-lettered.

Decisions written down here:
- **The request is the chatbot call's twin.** Body: the ``RelayEvent`` JSON; headers ``X-Relay-Signature:
  t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` over exactly the bytes sent (the chatbot's secret and
  ``functions.inbound.chatbot.sign``, computed afresh per attempt) and ``X-Relay-Event-Id`` = the event's stable id.
- **2xx is delivered.** 408, 429, 5xx, a refused connection and a timeout mean "later": the record fails, and
  with it every later record of its session in the batch (``functions.inbound.batch``: one message group per
  session), so a session's events arrive in order. Its retry waits a backoff (``retry_delay_s``: 5 s doubling to
  15 min, or the receiver's ``Retry-After`` when longer) set with ``ChangeMessageVisibility``. Asking again at once
  is pointless when a receiver is down, and a POST that may have reached it is harmless to repeat: receivers
  de-duplicate by id. After ``EVENTS_QUEUE``'s ``maxReceiveCount`` (about three hours of that) SQS moves the head
  event to the DLQ and the session moves on.
- **Any other status is permanent** (a 4xx: the receiver refuses this event; a 3xx: redirects are not followed, a
  POST must not turn into a GET): the event goes to the events DLQ at once with reason ``rejected`` and the status as
  detail, in its session's group (a redrive replays a session in order), and the session's next events go on: one
  event a receiver cannot take must not hold back everything after it for hours.
- **A body that is not a ``RelayEvent``** goes to the DLQ with reason ``malformed`` (what is wrong as detail, never
  the body) and the record completes: it can never be delivered, so retrying it would only loop.
- **A POST starts only when its whole timeout fits in the invocation**; otherwise the record fails with no delay
  and the next invocation takes it.
- **Never the body in a log line** above DEBUG: a ``session.qr`` event carries the QR reference, which links an
  account to whoever renders it within its window.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import urllib3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from connector.contracts import RelayEvent
from functions.events.errors import OutOfTime, ReceiverRejected, ReceiverUnavailable
from functions.inbound.chatbot import EVENT_ID_HEADER, SIGNATURE_HEADER, retry_after_seconds, sign
from functions.inbound.models import describe_invalid
from functions.inbound.queues import MALFORMED, MALFORMED_GROUP, DeadLetterQueue
from functions.inbound.retries import SQS_VISIBILITY_MAX_S, receive_count

logger = Logger(service="wa-relay", child=True)

ORIGIN = "events"
"""The ``origin`` attribute of this function's dead letters."""
REJECTED = "rejected"
RETRYABLE = frozenset({408, 429})
RESPONSE_READ_MAX_BYTES = 64 * 1024
"""What is read of an answer (and ignored) so its connection can be reused; a longer answer closes it instead."""
RESERVE_S = 3.0
"""Kept back from the invocation for what follows a POST (a DLQ send)."""
RETRY_BASE_S = 5.0
RETRY_MAX_S = 900.0

http = urllib3.PoolManager(num_pools=2, maxsize=10, retries=False)
"""One pool per execution environment (keep-alive to the receiver), one connection per session a batch posts to."""


class Receiver:
    """``POST`` events to ``EVENTS_URL``; raises ``ReceiverUnavailable`` (try later) or ``ReceiverRejected``
    (never)."""

    def __init__(
        self, url: str, secret: str, *, timeout_s: float = 5.0, pool: urllib3.PoolManager | None = None
    ) -> None:
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self._pool = pool or http

    def __repr__(self) -> str:
        return f"Receiver({self.url!r})"

    def post(self, event: RelayEvent, *, deadline: float) -> int:
        """The receiver's 2xx status; ``deadline`` is a ``time.monotonic()`` value the POST may not outlast."""
        if deadline - time.monotonic() < self.timeout_s:
            raise OutOfTime("not enough time left in this invocation for a whole POST")
        body = event.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event.id,
            SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
        }
        try:
            response = self._pool.request(
                "POST", self.url, body=body, headers=headers, timeout=urllib3.Timeout(total=self.timeout_s),
                retries=False, redirect=False, preload_content=False,
            )  # fmt: skip
            complete = False
            try:
                complete = len(response.read(RESPONSE_READ_MAX_BYTES + 1)) <= RESPONSE_READ_MAX_BYTES
            finally:
                # An unread remainder would poison the pooled connection: close it instead of returning it.
                if complete:
                    response.release_conn()
                else:
                    response.close()
        except urllib3.exceptions.HTTPError as e:
            raise ReceiverUnavailable(f"EVENTS_URL not reachable or no answer: {type(e).__name__}") from e
        status = response.status
        if 200 <= status < 300:
            return status
        if status in RETRYABLE or status >= 500:
            raise ReceiverUnavailable(
                f"EVENTS_URL answered {status}",
                status=status,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        raise ReceiverRejected(f"EVENTS_URL answered {status}", status=status)


@dataclass(frozen=True)
class Deps:
    receiver: Receiver
    dead_letters: DeadLetterQueue


def handle_record(record: SQSRecord, deps: Deps, *, remaining_ms: int) -> None:
    """One record; raises to fail it (and the rest of its session in this batch)."""
    logger.thread_safe_clear_keys()  # per thread: the sessions of a batch are handled at the same time
    deadline = time.monotonic() + remaining_ms / 1000 - RESERVE_S
    try:
        event = RelayEvent.model_validate_json(record.body)
    except ValidationError as e:
        detail = describe_invalid(e, "RelayEvent")
        logger.error("malformed event record, moving it to the DLQ",
                     extra={"detail": detail, "sqs_message_id": record.message_id})  # fmt: skip
        deps.dead_letters.send(
            record.body,
            reason=MALFORMED,
            detail=detail,
            source_message_id=record.message_id,
            group=MALFORMED_GROUP,
            receive_count=str(receive_count(record)),
        )
        return
    logger.thread_safe_append_keys(event_id=event.id, session_id=event.session_id, kind=event.kind)
    logger.debug("posting event", extra={"body": record.body})
    try:
        status = deps.receiver.post(event, deadline=deadline)
    except ReceiverRejected as e:
        logger.error("EVENTS_URL refused the event for good; moving it to the DLQ", extra={"status": e.status})
        deps.dead_letters.send(
            record.body,
            reason=REJECTED,
            detail=str(e),
            source_message_id=record.message_id,
            group=record.attributes.message_group_id or event.group_id,
            session=event.session_id,
            receive_count=str(receive_count(record)),
        )
        return
    logger.info("event delivered", extra={"status": status})


def retry_delay_s(error: BaseException, receives: int) -> float:
    """How long a record the receiver did not take stays hidden before its next attempt."""
    if isinstance(error, OutOfTime):
        return 0.0  # nothing failed: this invocation only had no time left for it
    delay = min(RETRY_MAX_S, RETRY_BASE_S * 2.0 ** max(0, receives - 1))
    delay += random.uniform(0, delay / 10)  # spreads the retries of one outage
    if isinstance(error, ReceiverUnavailable) and error.retry_after is not None:
        delay = max(delay, error.retry_after)
    return min(delay, SQS_VISIBILITY_MAX_S)
