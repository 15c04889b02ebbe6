"""One dead letter as the tool sees it, whichever source it comes from, the selection filters, and what putting it
back on its queue means (``plan_redrive``). Pure: no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from connector.contracts import (
    DEAD_LETTER_REASON,
    REDRIVE_ATTRIBUTE,
    InboundEnvelope,
    OutboundReply,
    jid_user,
    message_group_id,
)
from connector.publish.spool import Entry, parse_line
from connector.resources import SQS_BODY_MAX_BYTES

Source = Literal["inbound", "outbound", "spool"]
SOURCES: tuple[Source, ...] = ("inbound", "outbound", "spool")
Target = Literal["inbound", "outbound"]

SQS_ID_MAX = 128
_SQS_ID = re.compile(r"[\x21-\x7e]{1,128}")
"""What SQS accepts as a ``MessageGroupId`` or ``MessageDeduplicationId``: 1 to 128 printable ASCII characters."""
_SQS_BODY_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters SQS refuses in a message body (its allowed set is #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD,
#x10000 to #x10FFFF)."""
_STRING = "String"


@dataclass(frozen=True)
class DeadLetter:
    source: Source
    id: str
    """The SQS message id in a DLQ; for a rejected spool entry, a digest of its stored line."""
    body: str
    reason: str
    """Why it is here: the ``reason`` attribute the relay set, ``redrive: N receives`` for what SQS moved through the
    queue's redrive policy, ``rejected by SQS`` for a spool entry."""
    origin: str
    """The queue it came from (``inbound``, ``outbound``), or ``spool``."""
    detail: str | None = None
    session: str | None = None
    chats: tuple[str, ...] = ()
    """The chat in every form the entry names it (as addressed first, then its LID and phone number)."""
    event_id: str | None = None
    reply_id: str | None = None
    group: str | None = None
    """The ``MessageGroupId`` a copy put back gets: the chat's group."""
    at: float | None = None
    """Unix seconds the age filters measure from: when the connector received the WhatsApp message (inbound
    envelopes), else when the entry reached the DLQ; ``None`` when neither is known."""
    dead_at: float | None = None
    """Unix seconds the entry reached the DLQ (a FIFO DLQ's ``SentTimestamp``)."""
    receive_count: int | None = None
    """How often its queue delivered it before it was dead-lettered, when known."""
    problem: str | None = None
    """Why its body is not what its queue carries (it cannot be put back as it is); ``None`` when it is."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Its message attributes (string values)."""
    sqs: Mapping[str, str] = field(default_factory=dict)
    """The DLQ's system attributes (``SentTimestamp``, ``MessageGroupId``, ``ApproximateReceiveCount`` …)."""
    stored: bytes | None = None
    """A spool entry's line as stored (what is taken out of the file)."""
    spool_dedup: str | None = None
    """A spool entry's ``MessageDeduplicationId`` as the publisher chose it (the ``event_id``)."""

    @property
    def chat(self) -> str | None:
        return self.chats[0] if self.chats else None

    def age_s(self, now: float) -> float | None:
        return None if self.at is None else max(0.0, now - self.at)

    def summary(self, now: float) -> dict[str, Any]:
        """What ``list`` shows: everything but the body (message text stays out of listings)."""
        age = self.age_s(now)
        return {
            "source": self.source,
            "id": self.id,
            "reason": self.reason,
            "origin": self.origin,
            "detail": self.detail,
            "session": self.session,
            "chat": self.chat,
            "event_id": self.event_id,
            "reply_id": self.reply_id,
            "age_s": None if age is None else round(age),
            "dead_at": self.dead_at,
            "receive_count": self.receive_count,
            "redrivable": self.problem is None,
            "problem": self.problem,
        }

    def full(self, now: float) -> dict[str, Any]:
        """What ``show`` shows: the summary, every form of the chat, the attributes and the body."""
        return {
            **self.summary(now),
            "chats": list(self.chats),
            "group": self.group,
            "at": self.at,
            "attributes": dict(self.attributes),
            "sqs": dict(self.sqs),
            "body": self.body,
        }


# ---- reading entries ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    session: str | None = None
    chats: tuple[str, ...] = ()
    event_id: str | None = None
    reply_id: str | None = None
    group: str | None = None
    at: float | None = None
    problem: str | None = None


def _read_body(target: Target, body: str) -> _Body:
    model: type[BaseModel] = InboundEnvelope if target == "inbound" else OutboundReply
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as e:
        return _Body(problem=f"malformed: {describe_invalid(e, model.__name__)}")
    if isinstance(parsed, InboundEnvelope):
        chat = parsed.chat
        return _Body(
            session=parsed.session_id,
            chats=_unique(chat.jid, parsed.canonical_chat, chat.lid, chat.pn),
            event_id=parsed.event_id,
            group=parsed.group_id,
            at=parsed.received_at / 1000,
        )
    assert isinstance(parsed, OutboundReply)
    return _Body(
        session=parsed.session_id,
        chats=(parsed.to,),
        event_id=parsed.event_id,
        reply_id=parsed.reply_id,
        group=message_group_id(parsed.session_id, parsed.to),
    )


def describe_invalid(error: ValidationError, model: str) -> str:
    """Why a body did not parse, from error types and locations only (the body's text never appears)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        if item["type"] == "json_invalid":
            return "body is not JSON"
        problems.append(f"{'.'.join(str(p) for p in item['loc'])}: {item['type']}")
    shown = "; ".join(problems[:3]) + (f"; … {len(problems) - 3} more" if len(problems) > 3 else "")
    return f"body is not a valid {model} ({shown})"


def from_sqs(source: Target, message: Mapping[str, Any], *, redrive_receives: int) -> DeadLetter:
    """A message received from ``source``'s DLQ. ``redrive_receives``: the source queue's ``maxReceiveCount``, which
    is how often SQS delivered a message it moved there through the redrive policy."""
    attributes = {
        name: str(value["StringValue"])
        for name, value in (message.get("MessageAttributes") or {}).items()
        if isinstance(value, Mapping) and value.get("StringValue") is not None
    }
    sqs = {name: str(value) for name, value in (message.get("Attributes") or {}).items()}
    body = str(message.get("Body") or "")
    parsed = _read_body(source, body)
    ours = DEAD_LETTER_REASON in attributes
    dead_at = int(sqs["SentTimestamp"]) / 1000 if sqs.get("SentTimestamp", "").isdigit() else None
    count = attributes.get("receive_count", "")
    group = parsed.group
    if source == "outbound" and sqs.get("MessageGroupId") not in (None, "", "outbound"):
        group = sqs["MessageGroupId"]  # the group the reply was queued with (the chat's canonical form)
    return DeadLetter(
        source=source,
        id=str(message.get("MessageId", "")),
        body=body,
        reason=attributes[DEAD_LETTER_REASON] if ours else f"redrive: {redrive_receives} receives",
        origin=attributes.get("origin") or source,
        detail=attributes.get("detail"),
        session=attributes.get("session") or parsed.session,
        chats=parsed.chats,
        event_id=parsed.event_id,
        reply_id=parsed.reply_id,
        group=group,
        at=parsed.at if parsed.at is not None else dead_at,
        dead_at=dead_at,
        receive_count=int(count) if count.isdigit() else (None if ours else redrive_receives),
        problem=parsed.problem,
        attributes=attributes,
        sqs=sqs,
    )


def from_spool_line(stored: bytes) -> DeadLetter:
    """One line of ``inbound.spool.rejected``."""
    entry_id = hashlib.sha256(stored).hexdigest()[:32]
    entry: Entry | None = parse_line(stored) if stored.endswith(b"\n") else None
    if entry is None:
        return DeadLetter(
            source="spool",
            id=entry_id,
            body=stored.decode(errors="replace"),
            reason="rejected by SQS",
            origin="spool",
            problem="not a spool entry (a torn or damaged line)",
            stored=stored,
        )
    parsed = _read_body("inbound", entry.body)
    return DeadLetter(
        source="spool",
        id=entry_id,
        body=entry.body,
        reason="rejected by SQS",
        origin="spool",
        detail="SQS refused the entry as invalid when the spool was drained",
        session=parsed.session,
        chats=parsed.chats,
        event_id=parsed.event_id,
        group=entry.group,
        at=parsed.at,
        problem=parsed.problem,
        stored=stored,
        spool_dedup=entry.dedup,
    )


def _unique(*values: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


# ---- selecting entries --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which entries a command works on: all criteria must hold; an empty criterion holds for every entry."""

    ids: frozenset[str] = frozenset()
    """Entry ids (or unambiguous prefixes of at least 8 characters)."""
    sessions: frozenset[str] = frozenset()
    chats: frozenset[str] = frozenset()
    """A jid in any form (``…@lid``, ``…@s.whatsapp.net``, ``…@g.us``) or a bare phone number / LID user."""
    reasons: frozenset[str] = frozenset()
    """A reason (``send_failed``) or its first word (``redrive`` for ``redrive: 5 receives``)."""
    older_than_s: float | None = None
    newer_than_s: float | None = None

    @property
    def everything(self) -> bool:
        return not (self.ids or self.sessions or self.chats or self.reasons or self.older_than_s or self.newer_than_s)

    def matches(self, entry: DeadLetter, now: float) -> bool:
        if self.ids and not any(same_id(wanted, entry.id) for wanted in self.ids):
            return False
        if self.sessions and entry.session not in self.sessions:
            return False
        if self.chats and not any(same_chat(wanted, chat) for wanted in self.chats for chat in entry.chats):
            return False
        if self.reasons and not (entry.reason in self.reasons or entry.reason.split(":")[0] in self.reasons):
            return False
        age = entry.age_s(now)
        if self.older_than_s is not None and (age is None or age < self.older_than_s):
            return False
        return self.newer_than_s is None or (age is not None and age <= self.newer_than_s)


def same_id(wanted: str, entry_id: str) -> bool:
    """Whether the id a user gave (whole, or a prefix of at least 8 characters) names ``entry_id``."""
    return wanted == entry_id or (len(wanted) >= 8 and entry_id.startswith(wanted))


def same_chat(wanted: str, jid: str) -> bool:
    """Whether ``wanted`` (as a user types it) names the chat ``jid``."""
    if "@" in wanted:
        same_server = wanted.split("@", 1)[1] == jid.split("@")[-1]
        return wanted == jid or (same_server and jid_user(wanted) == jid_user(jid))  # device suffixes aside
    return wanted.lstrip("+") == jid_user(jid)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` → seconds."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 15m, 2h, 3d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


# ---- putting entries back -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A copy of a dead letter for its queue."""

    entry: DeadLetter
    target: Target
    body: str
    group: str
    dedup: str
    marker: str
    """The ``REDRIVE_ATTRIBUTE`` value: ``<source>:<entry id>``."""

    def message_attributes(self) -> dict[str, dict[str, str]]:
        return {REDRIVE_ATTRIBUTE: {"DataType": _STRING, "StringValue": self.marker}}

    @property
    def size(self) -> int:
        """What counts against SQS's message size: the body and each attribute's name, type and value."""
        return len(self.body.encode()) + len(REDRIVE_ATTRIBUTE) + len(_STRING) + len(self.marker.encode())


def redrive_dedup_id(source: Source, key: str, entry_id: str) -> str:
    """The ``MessageDeduplicationId`` of a DLQ entry's copy: the same for every attempt to put back this one entry
    (a retry after a crash between sending and deleting is dropped by SQS for five minutes), and never the original
    id, which SQS may still remember from the failed delivery and would silently drop the copy for."""
    return hashlib.sha256(json.dumps(["rd1", source, key, entry_id]).encode()).hexdigest()


def plan_redrive(entry: DeadLetter) -> Outgoing | str:
    """The copy to send, or why there is none."""
    if entry.problem is not None:
        return entry.problem
    target: Target = "outbound" if entry.source == "outbound" else "inbound"
    key = entry.reply_id if target == "outbound" else entry.event_id
    if not key or not entry.group:
        return "no event or reply id in the body"
    # A spool entry was never accepted by SQS: the publisher's own id (the event id) can only match a live copy.
    spooled = entry.source == "spool"
    dedup = (entry.spool_dedup or key) if spooled else redrive_dedup_id(entry.source, key, entry.id)
    out = Outgoing(entry, target, entry.body, entry.group, dedup, f"{entry.source}:{entry.id}")
    if out.size > SQS_BODY_MAX_BYTES:
        return f"{out.size} bytes, over SQS's limit of {SQS_BODY_MAX_BYTES}"
    if bad := _SQS_BODY_INVALID.search(entry.body):
        return f"the body holds a character SQS refuses (U+{ord(bad.group()):04X})"
    for name, value in (("MessageGroupId", out.group), ("MessageDeduplicationId", out.dedup)):
        if not _SQS_ID.fullmatch(value):
            return f"{name} is not 1 to {SQS_ID_MAX} printable ASCII characters"
    return out
