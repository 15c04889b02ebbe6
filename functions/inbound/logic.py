"""One inbound record: parse → filter → (once per ``event_id``) resolve LID/PN → ask the chatbot → queue replies.

Decisions written down here:
- Filtering happens before the idempotency record is taken, so a skipped event never uses up its ``event_id``.
  Skipped: own messages (``from_me``), ``status@broadcast``, broadcast lists, newsletters, protocol messages,
  reactions and other content-free kinds (poll votes, pins, keep-in-chat, key distribution), messages without content,
  and groups unless ``FORWARD_GROUPS`` is on. ``upsert_type`` is not filtered: an ``append`` from a contact (e.g.
  delivered while the connector was offline) still deserves an answer.
- Each session's settings (``settings.py``, cached 30 s) come next, still before the idempotency record, and only for
  an event no rule above skipped (those need no read): ``chats`` (allowlist/denylist, matched on the chat's jid, phone
  number and LID, so a contact listed in one form is found in the other), ``groups`` (overrides ``FORWARD_GROUPS``;
  ``mentioned``: only group messages that @-mention the account, by its phone number or LID),
  ``max_message_age_s`` (overrides ``MAX_MESSAGE_AGE_S``, also for a late answer) and ``chatbot_url`` (overrides
  ``CHATBOT_URL``; the secret stays the deployment's). A group is decided by its own jid in the list, not by who
  wrote in it.
- A session's rate limits (``ratelimit.py``: per chat and per session, per minute and per hour) are applied inside
  ``relay``, right before the bot would be asked, unlike the filters above: a message over the limit completes its
  ``event_id`` (no reply, logged and counted as ``RateLimited``), so a redelivery of it is not answered later, when
  the window has room again, out of the blue. Only a first delivery counts: a redelivery was counted by the attempt
  that failed (a message is counted at most once, and one whose first attempt died before counting is let through).
- ``relay`` runs at most once per ``event_id`` within ``DEDUP_TTL_S`` (Powertools idempotency, key prefix
  ``wa-inbound``): a redelivery after success returns the stored outcome without calling the bot; an exception
  releases the record, so the retry runs again (replies keep their dedup ids, so SQS drops copies within 5 minutes).
- The chatbot's answer is stored before its replies are queued (``answers.py``) and looked up on a redelivery, so a
  failure to queue the replies or to complete the idempotency record does not ask the bot a second time.
- A message older than ``MAX_MESSAGE_AGE_S`` (its WhatsApp timestamp) is not answered: skipped before the bot is
  asked, and an answer that comes after it got that old (an outage) is not sent; both are logged and counted.
- A permanent chatbot rejection (4xx, invalid 200 body) completes the record with an ERROR log line and no reply:
  redelivery would be rejected again.
- Malformed bodies go to the inbound DLQ (reason ``malformed``, what is wrong as ``detail``) and the record counts as
  processed; if that send fails the record fails (it stays on the queue and reaches the DLQ through the redrive
  policy anyway).
- A copy the dead-letter tool put back (``REDRIVE_ATTRIBUTE``) counts as a redelivery: an answer an earlier attempt
  stored is used instead of asking the chatbot again.
- Permanent rejections are counted (``metrics``, EMF).
- Replies are addressed to ``chat.jid`` exactly as received and grouped like the inbound chat
  (``envelope.group_id``, the group the publisher used).
- A ``202`` (the bot answers later) is recorded for the late-answer function (``functions/late/pending.py``: the
  chat, group and message key its replies need) before the record completes; if that write fails the record
  fails, since without it the late answer could never be sent.
- Right before the chatbot is asked (so never for a skipped event, a deduplicated redelivery or an answer reused
  from an earlier attempt), a typing message goes to the chat's group on ``outbound.fifo`` (``TYPING_INDICATOR``),
  ahead of the replies, bounded by the time this invocation waits for the bot; an answer without replies (204,
  202, a rejection) is followed by a ``paused`` one, so "typing…" does not outlast it. Failing to queue either is
  logged and otherwise ignored: it must never cost the contact the answer. With ``READ_RECEIPTS`` each reply
  names the contact's message (``mark_read``), which the connector marks read once the first reply is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from pydantic import ValidationError

from connector.contracts import (
    REDRIVE_ATTRIBUTE,
    BotSettings,
    ChatbotRequest,
    ChatRef,
    InboundEnvelope,
    OutboundReply,
    OutboundTyping,
    SenderRef,
    jid_user,
    lid_map_key_for_lid,
    lid_map_key_for_pn,
    reply_id,
)
from connector.resources import INBOUND_RESERVE_S
from functions.inbound import metrics
from functions.inbound.answers import AnswerStore
from functions.inbound.chatbot import LATER, Chatbot
from functions.inbound.errors import ChatbotRejected, ReplySendError
from functions.inbound.lidmap import LidMap
from functions.inbound.models import describe_invalid, parse_body
from functions.inbound.queues import MALFORMED, DeadLetterQueue, ReplyQueue
from functions.inbound.ratelimit import RateLimiter
from functions.inbound.retries import OutagePolicy, Visibility, exhausted, reason_of, receive_count
from functions.inbound.settings import DEFAULTS, SessionSettings
from functions.late.pending import PendingAnswers

logger = Logger(service="wa-relay", child=True)

IDEMPOTENCY_KEY_PREFIX = "wa-inbound"
"""Stable across renames of the function or this module (otherwise they would silently reset dedup)."""
RESERVE_S = float(INBOUND_RESERVE_S)
"""Time kept back from the chatbot for what follows its answer: storing it, queueing the replies and completing the
idempotency record (each one AWS call, ``AWS_CLIENT_CONFIG`` bounds it)."""
AWS_CLIENT_CONFIG = BotoConfig(
    connect_timeout=1.0, read_timeout=3.0, retries={"mode": "standard", "total_max_attempts": 2}
)
"""Explicit and short (botocore's defaults are 60 s and more attempts): one call, retry included, must fit in
``RESERVE_S``, or a stalled DynamoDB or SQS call after the chatbot answered would run the invocation into its
timeout with the idempotency record still in progress (tests/functions checks the bound)."""


PERMANENT_FAILURE = "chatbot rejected event permanently"

NO_CONTENT_TYPES = {
    "protocolMessage": "protocol message",
    "reactionMessage": "reaction",
    "encReactionMessage": "reaction",
    "pollUpdateMessage": "poll vote",
    "pinInChatMessage": "pin",
    "keepInChatMessage": "keep in chat",
    "senderKeyDistributionMessage": "key distribution",
    "messageContextInfo": "no content",
    "unknown": "no content",
}

RelayOnce = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Deps:
    chatbot: Chatbot
    lid_map: LidMap
    replies: ReplyQueue
    dead_letters: DeadLetterQueue
    relay_once: RelayOnce
    """``relay`` behind the idempotency utility (``idempotent_relay``)."""
    answers: AnswerStore
    forward_groups: bool = False
    typing_indicator: bool = True
    read_receipts: bool = True
    outage: OutagePolicy = field(default_factory=OutagePolicy)
    max_age_s: float = 3600.0
    """A message older than this (by its WhatsApp timestamp) is not answered: before the bot is asked, or when its
    answer comes after an outage. 0: no limit."""
    visibility: Visibility | None = None
    """Delays a failed chat's retry (``retries.py``); ``None``: the queue's visibility timeout does."""
    settings: SessionSettings | None = None
    """Per-session settings; ``None``: every session has the defaults (the deployment's behaviour)."""
    rate_limiter: RateLimiter | None = None
    """Counts what the bot is asked per chat and session; ``None``: no limits are applied."""
    session_settings: BotSettings = DEFAULTS
    """The settings of the session being handled (``for_session``)."""

    def for_session(self, settings: BotSettings) -> Deps:
        """These deps with what ``settings`` override: groups, maximum age and the chatbot's URL."""
        return replace(
            self,
            session_settings=settings,
            forward_groups=self.forward_groups if settings.groups is None else settings.groups != "off",
            max_age_s=self.max_age_s if settings.max_message_age_s is None else float(settings.max_message_age_s),
            chatbot=self.chatbot if settings.chatbot_url is None else self.chatbot.at(settings.chatbot_url),
        )

    pending: PendingAnswers | None = None
    """Where a ``202`` is recorded for the late-answer function; ``None``: a late answer cannot be taken."""


def idempotent_relay(config: IdempotencyConfig, persistence: BasePersistenceLayer) -> RelayOnce:
    """``relay``, run at most once per ``envelope.event_id`` (``config.event_key_jmespath`` = ``"event_id"``)."""
    return idempotent_function(  # type: ignore[no-any-return]
        relay,
        data_keyword_argument="envelope",
        config=config,
        persistence_store=persistence,
        key_prefix=IDEMPOTENCY_KEY_PREFIX,
    )


# ---- one record ----------------------------------------------------------------------------------------------------


def handle_record(record: SQSRecord, deps: Deps, *, remaining_ms: int) -> dict[str, Any] | None:
    """Everything for one SQS record; raises to fail it (SQS redelivers it, or skips its group in this batch)."""
    # Per thread: the records of different chats are handled at the same time (batch.py).
    logger.thread_safe_clear_keys()
    deadline = time.monotonic() + remaining_ms / 1000 - RESERVE_S
    try:
        envelope = parse_body(record.body)
    except ValidationError as e:
        reject_malformed(record, describe_invalid(e), deps)
        return None
    logger.thread_safe_append_keys(
        correlation_id=envelope.message.id,
        session_id=envelope.session_id,
        event_id=envelope.event_id,
        chat_jid=envelope.chat.jid,
    )
    # A copy the dead-letter tool put back is a new SQS message, but an earlier attempt may have stored the answer.
    receives = receive_count(record)
    redelivered = receives > 1 or REDRIVE_ATTRIBUTE in (record.get("messageAttributes") or {})
    if receives > deps.outage.max_receives:
        # Earlier invocations died with it before they could decide (timeouts, crashes): a loop to break.
        give_up(record, envelope, "too_many_receives", f"{receives} receives", deps)
        return None
    try:
        return handle(envelope, deps, deadline=deadline, redelivered=redelivered)
    except Exception as e:
        why = exhausted(record, deps.outage)
        if why is None:
            raise
        give_up(record, envelope, reason_of(e), f"{type(e).__name__}: {e}; {why}", deps)
        return None


def give_up(record: SQSRecord, envelope: InboundEnvelope, reason: str, detail: str, deps: Deps) -> None:
    """The record has failed for too long: to the inbound DLQ, in its chat's group, with the reason."""
    logger.error("record moved to the DLQ", extra={"reason": reason, "detail": detail})
    deps.dead_letters.send(
        record.body,
        reason=reason,
        detail=detail,
        source_message_id=record.message_id,
        group=record.attributes.message_group_id or envelope.group_id,
        session=envelope.session_id,
        receive_count=str(receive_count(record)),
    )


def reject_malformed(record: SQSRecord, reason: str, deps: Deps) -> None:
    logger.error(
        "malformed inbound record, moving it to the DLQ",
        extra={"reason": reason, "sqs_message_id": record.message_id, "body_bytes": len(record.body.encode())},
    )
    deps.dead_letters.send(
        record.body,
        reason=MALFORMED,
        detail=reason,
        source_message_id=record.message_id,
        receive_count=record.attributes.approximate_receive_count or "",
    )


def handle(
    envelope: InboundEnvelope, deps: Deps, *, deadline: float, redelivered: bool = False
) -> dict[str, Any] | None:
    # Groups are decided below, with the session's settings: nothing else here needs them (nor their read).
    reason = skip_reason(envelope, forward_groups=True)
    if not reason:
        settings = deps.settings.get(envelope.session_id) if deps.settings is not None else DEFAULTS
        deps = deps.for_session(settings)
        reason = settings_reason(envelope, settings, forward_groups=deps.forward_groups)
    if not reason and (reason := stale(envelope, deps.max_age_s)):
        metrics.stale_skipped()
    if reason:
        logger.info("event skipped", extra={"reason": reason, "message_type": envelope.message.type})
        return None
    done: list[dict[str, Any]] = []
    try:
        return deps.relay_once(envelope=envelope, deps=deps, deadline=deadline, redelivered=redelivered, done=done)
    except IdempotencyPersistenceLayerError as e:
        if not done:
            raise
        # The event was relayed (its replies are queued) and only completing its idempotency record failed. A
        # retry would find the record in progress, wait for it to expire and then ask the bot again: the work is
        # done, so the record is not failed. A later copy of the event, after the in-progress record expired,
        # would be answered again: the window this leaves, instead of a certain second answer.
        logger.warning("event relayed, but its idempotency record could not be completed", extra={"error": str(e)})
        return done[0]


def settings_reason(envelope: InboundEnvelope, settings: BotSettings, *, forward_groups: bool) -> str | None:
    """Why the session's settings (``forward_groups``: theirs or the deployment's) keep the bot out of this chat."""
    if envelope.chat.is_group or envelope.chat.jid.endswith("@g.us"):
        if settings.groups is None and not forward_groups:
            return "group (FORWARD_GROUPS is off)"
        if not settings.answers_group(forward_groups, envelope.message.mentions, envelope.me):
            return f"group (groups: {settings.groups})"
    if not settings.answers_chat(envelope.chat.jid, envelope.chat.pn, envelope.chat.lid):
        return f"chat not answered ({settings.chats})"
    return None


def stale(envelope: InboundEnvelope, max_age_s: float) -> str | None:
    """Why a message is too old to be answered now (a stale answer is worse than none), or ``None``."""
    age = time.time() - envelope.message.timestamp
    if max_age_s and age > max_age_s:
        return f"stale: {age:.0f} s old, over MAX_MESSAGE_AGE_S ({max_age_s:.0f} s)"
    return None


def skip_reason(envelope: InboundEnvelope, *, forward_groups: bool) -> str | None:
    """Why this event is not for the chatbot, or ``None`` when it is."""
    jid = envelope.chat.jid
    if envelope.from_me or envelope.key.fromMe:
        return "own message"
    if jid == "status@broadcast":
        return "status broadcast"
    if jid.endswith("@broadcast"):
        return "broadcast list"
    if jid.endswith("@newsletter"):
        return "newsletter"
    if (envelope.chat.is_group or jid.endswith("@g.us")) and not forward_groups:
        return "group (FORWARD_GROUPS is off)"
    kind = envelope.message.type
    if kind in NO_CONTENT_TYPES:
        return NO_CONTENT_TYPES[kind]
    if kind == "text" and not (envelope.message.text or "").strip():
        return "no content"
    return None


# ---- once per event_id ---------------------------------------------------------------------------------------------


def relay(
    *,
    envelope: InboundEnvelope,
    deps: Deps,
    deadline: float,
    redelivered: bool = False,
    done: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Resolve, ask (or reuse the answer a failed earlier attempt stored), enqueue. The return value is stored in the
    idempotency record: keep it tiny and text-free. ``done`` receives it too, so the caller can tell a failure to
    store it from a failure to relay."""
    outcome = _relay(envelope=envelope, deps=deps, deadline=deadline, redelivered=redelivered)
    if done is not None:
        done.append(outcome)
    return outcome


def _relay(*, envelope: InboundEnvelope, deps: Deps, deadline: float, redelivered: bool) -> dict[str, Any]:
    chat, sender = resolve_parties(envelope, deps.lid_map)
    request = ChatbotRequest(
        event_id=envelope.event_id,
        session_id=envelope.session_id,
        chat=chat,
        sender=sender,
        message=envelope.message,
        me=envelope.me,
    )
    answers = deps.answers.get(envelope.event_id) if redelivered else None
    typing = False
    if answers is not None:
        logger.info("answer of an earlier attempt reused", extra={"replies": len(answers)})
    else:
        if not redelivered and (why := rate_limited(envelope, chat, deps)):
            logger.info("event not answered", extra={"reason": why})
            metrics.rate_limited()
            return {"status": 429, "replies": 0, "rate_limited": True}
        logger.debug("asking chatbot", extra={"text": envelope.message.text, "message_type": envelope.message.type})
        typing = deps.typing_indicator and queue_typing(envelope, deps, "composing", deadline=deadline)
        try:
            answer = deps.chatbot.ask(request, deadline=deadline)
        except ChatbotRejected as e:
            # Deliberately completes the record: asking again would be rejected again (DESIGN section 6).
            logger.error(PERMANENT_FAILURE, extra={"status": e.status, "event_id": envelope.event_id, "error": str(e)})
            metrics.chatbot_rejected()
            if typing:
                queue_typing(envelope, deps, "paused", deadline=deadline)
            return {"status": e.status, "replies": 0, "rejected": True}
        if answer is LATER:
            expect_late(envelope, deps)
            if typing:
                queue_typing(envelope, deps, "paused", deadline=deadline)
            logger.info("chatbot answers later")
            return {"status": 202, "replies": 0}
        answers = answer
        if answers:
            deps.answers.put(envelope.event_id, answers)
        elif typing:
            queue_typing(envelope, deps, "paused", deadline=deadline)
    if answers and (why := stale(envelope, deps.max_age_s)):
        # The bot answered after an outage: the contact has moved on, and an answer now would confuse more than help.
        logger.info("answer not sent", extra={"reason": why, "replies": len(answers)})
        metrics.stale_skipped()
        if typing:
            queue_typing(envelope, deps, "paused", deadline=deadline)
        return {"status": 200, "replies": 0, "stale": True}
    replies = [
        OutboundReply(
            reply_id=reply_id(envelope.event_id, index),
            event_id=envelope.event_id,
            session_id=envelope.session_id,
            to=envelope.chat.jid,
            text=answer.text,
            quoted=envelope.key if answer.quote else None,
            mark_read=envelope.key if deps.read_receipts else None,
        )
        for index, answer in enumerate(answers)
    ]
    if replies:
        deps.replies.send(envelope.group_id, replies)
    logger.info("event relayed", extra={"replies": len(replies)})
    return {"status": 200 if replies else 204, "replies": len(replies)}


def rate_limited(envelope: InboundEnvelope, chat: ChatRef, deps: Deps) -> str | None:
    """Which of the session's rate limits is full (the message is then not counted), or ``None`` (it is counted)."""
    if deps.rate_limiter is None:
        return None
    canonical = chat.jid if chat.is_group else (chat.lid or chat.jid)
    return deps.rate_limiter.take(envelope.session_id, canonical, deps.session_settings)


def expect_late(envelope: InboundEnvelope, deps: Deps) -> None:
    """Record what the bot's late answer to ``envelope`` needs (raises when it cannot be recorded)."""
    if deps.pending is None:
        logger.warning("chatbot answered 202, but no late-answer path is configured: its answer cannot be sent")
        return
    deps.pending.expect(envelope, mark_read=deps.read_receipts, max_age_s=deps.max_age_s)


def queue_typing(
    envelope: InboundEnvelope, deps: Deps, state: Literal["composing", "paused"], *, deadline: float
) -> bool:
    """Queue a typing message for the chat; whether it was queued. Shown at most until ``deadline`` (monotonic), the
    time this invocation waits for the chatbot."""
    expires_at = int((time.time() + max(0.0, deadline - time.monotonic())) * 1000)
    typing = OutboundTyping(
        event_id=envelope.event_id,
        session_id=envelope.session_id,
        to=envelope.chat.jid,
        state=state,
        expires_at=expires_at,
    )
    try:
        deps.replies.send_typing(envelope.group_id, typing)
    except ReplySendError as e:
        logger.warning("typing message not queued", extra={"state": state, "error": str(e)})
        return False
    return True


def resolve_parties(envelope: InboundEnvelope, lid_map: LidMap) -> tuple[ChatRef, SenderRef]:
    """Chat and sender with the missing half of their PN/LID pair filled in from lid_map (the chat's ``jid`` is
    never changed; groups have no PN/LID of their own)."""
    chat, sender = envelope.chat, envelope.sender
    parties: list[ChatRef | SenderRef] = [sender] if chat.is_group else [chat, sender]
    keys: set[str] = set()
    for party in parties:
        pn, lid = _known(party)
        if lid and not pn:
            keys.add(lid_map_key_for_lid(lid))
        elif pn and not lid:
            keys.add(lid_map_key_for_pn(pn))
    found = lid_map.lookup(sorted(keys)) if keys else {}

    def complete(party: Any) -> Any:
        pn, lid = _known(party)
        if lid and not pn:
            pn = found.get(lid_map_key_for_lid(lid))
        elif pn and not lid:
            lid = found.get(lid_map_key_for_pn(pn))
        if (pn, lid) == (party.pn, party.lid):
            return party
        return party.model_copy(update={"pn": pn, "lid": lid})

    resolved_chat = chat if chat.is_group else complete(chat)
    return resolved_chat, complete(sender)


def _known(party: ChatRef | SenderRef) -> tuple[str | None, str | None]:
    """The bare PN and LID a party already carries, counting its jid."""
    pn, lid = party.pn, party.lid
    if not pn and party.jid.endswith("@s.whatsapp.net"):
        pn = f"{jid_user(party.jid)}@s.whatsapp.net"
    if not lid and party.jid.endswith("@lid"):
        lid = f"{jid_user(party.jid)}@lid"
    return pn, lid
