"""One late answer: verify → parse → look the event up → accept once → queue the replies on ``outbound.fifo``.

Decisions written down here:
- **The HMAC is the authentication.** The bot signs the raw body exactly as the relay signs its requests to the bot
  (``X-Relay-Signature: t=<unix>,v1=<hex HMAC-SHA256(CHATBOT_SECRET, "<t>.<body>")>``), with the same secret. A
  missing or wrong signature, or a ``t`` more than ``SIGNATURE_TOLERANCE_S`` (5 min) from now either way, is
  ``401``: a captured request cannot be replayed later, and within the window a replay only repeats an accepted
  answer, which sends nothing new.
- **Errors** are JSON ``{"error": {"code", "message"}}`` like the connector's API: ``400`` not JSON, ``422`` not a
  valid ``LateAnswer``, ``404`` unknown or expired event (the bot never answered it ``202``, or it is older than
  ``DEDUP_TTL_S``), ``409`` another late answer was accepted for it, ``410`` the message is older than
  ``MAX_MESSAGE_AGE_S`` as the inbound function was configured (a stale answer is worse than none, as for
  immediate answers), ``503`` AWS failed for a moment (post the same body again).
- **A post can overtake the 202.** The inbound function records the event when the ``202`` reaches it; a bot that
  posts at once may be a few milliseconds earlier. So an unknown event is looked up again for ``lookup_grace_s``
  (2 s) before the answer is ``404``; only signed requests get that far.
- **Threaded, de-duplicated and ordered like an immediate answer.** Replies go to the chat as addressed, in the
  chat's message group, quoting the contact's message when ``quote`` is set and marking it read when read receipts
  were on for it. Their ids are ``reply_id(event_id, LATE_INDEX_BASE + i)``: stable for the event, so the same post
  twice is sent once (SQS drops the copy within 5 minutes, the connector's send records after that), and apart from
  the immediate replies' indexes (at most 20), so they can never be taken for each other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from connector.contracts import ChatbotReply, LateAnswer, OutboundReply, reply_id
from functions.inbound.queues import ReplyQueue
from functions.late.pending import Pending, PendingAnswers

logger = Logger(service="wa-relay", child=True)

SIGNATURE_TOLERANCE_S = 300
LATE_INDEX_BASE = 1000
"""Index of the first late reply in ``reply_id``: far above the immediate replies' 0-19."""
LOOKUP_GRACE_S = 2.0
LOOKUP_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


def error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})


@dataclass(frozen=True)
class Deps:
    secret: str = field(repr=False)
    pending: PendingAnswers
    replies: ReplyQueue
    lookup_grace_s: float = LOOKUP_GRACE_S
    sleep: Callable[[float], None] = time.sleep


def verify_signature(secret: str, header: str | None, body: bytes, now: float) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its ``t`` is within the tolerance of ``now``."""
    if not header:
        return False
    parts = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def digest(replies: list[ChatbotReply]) -> str:
    """What makes two late answers "the same": their replies, in order (not the request's bytes or signature)."""
    canonical = json.dumps([r.model_dump() for r in replies], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def late_replies(pending: Pending, replies: list[ChatbotReply]) -> list[OutboundReply]:
    return [
        OutboundReply(
            reply_id=reply_id(pending.event_id, LATE_INDEX_BASE + index),
            event_id=pending.event_id,
            session_id=pending.session_id,
            to=pending.to,
            text=answer.text,
            quoted=pending.key if answer.quote else None,
            mark_read=pending.key if pending.mark_read else None,
        )
        for index, answer in enumerate(replies)
    ]


def handle(body: bytes, signature: str | None, deps: Deps, *, now: float | None = None) -> Response:
    """The response to one posted late answer. Raises ``PendingStoreError``/``ReplySendError`` when AWS fails (the
    handler answers ``503``)."""
    now = time.time() if now is None else now
    if not verify_signature(deps.secret, signature, body, now):
        return error(401, "bad_signature", "missing, invalid or expired X-Relay-Signature")
    try:
        json.loads(body)
    except ValueError:
        return error(400, "invalid_json", "the body is not JSON")
    try:
        answer = LateAnswer.model_validate_json(body)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['type']}"
            for item in e.errors(include_url=False, include_input=False, include_context=False)[:5]
        )
        return error(422, "invalid_body", f"expected {{event_id, replies: [{{text, quote}}]}}: {problems}")
    logger.append_keys(event_id=answer.event_id)
    pending = lookup(answer.event_id, deps)
    if pending is None:
        return error(404, "unknown_event", "no 202 answer is pending for this event_id (unknown or expired)")
    if pending.stale_after and now > pending.stale_after:
        logger.info("late answer not sent: the message is too old", extra={"replies": len(answer.replies)})
        return error(410, "stale", "the message is older than the relay's maximum message age")
    if not deps.pending.claim(answer.event_id, digest(answer.replies)):
        return error(409, "already_answered", "another late answer was accepted for this event_id")
    replies = late_replies(pending, answer.replies)
    if replies:
        deps.replies.send(pending.group_id, replies)
    logger.info("late answer queued", extra={"replies": len(replies), "session_id": pending.session_id})
    return Response(200, {"event_id": answer.event_id, "replies": len(replies)})


def lookup(event_id: str, deps: Deps) -> Pending | None:
    """The pending record, waiting up to ``deps.lookup_grace_s`` for one the inbound function is still writing."""
    give_up = time.monotonic() + deps.lookup_grace_s
    while True:
        found = deps.pending.get(event_id)
        if found is not None or time.monotonic() >= give_up:
            return found
        deps.sleep(LOOKUP_INTERVAL_S)
