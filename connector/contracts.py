"""Wire contracts between the connector, the Lambda functions and the chatbot (DESIGN sections 5 and 6).

Imports only pydantic and the standard library, so the Lambda bundle can import it. Every queue body carries
``type`` and ``v``; golden examples live in ``tests/fixtures/events/``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator

CONTRACT_VERSION = 1


class Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---- pieces -----------------------------------------------------------------------------------------------------


class Account(Contract):
    """The linked account itself (``me``): bare jids without device."""

    pn: str | None = None
    lid: str | None = None


class ChatRef(Contract):
    jid: str
    """The chat exactly as WhatsApp addressed it (``remoteJid``): replies go here, a LID chat stays a LID chat."""
    pn: str | None = None
    lid: str | None = None
    is_group: bool = False


class SenderRef(Contract):
    jid: str
    pn: str | None = None
    lid: str | None = None
    push_name: str | None = None


class QuotedRef(Contract):
    id: str
    text: str | None = None


class MessageRef(Contract):
    id: str
    type: str
    """``text`` for conversation/extendedText; otherwise the Baileys message field name (``imageMessage`` …)."""
    text: str | None = None
    timestamp: int
    quoted: QuotedRef | None = None
    mentions: list[str] = Field(default_factory=list)
    """Bare jids the message @-mentions (Baileys' ``contextInfo.mentionedJid``, phone-number or LID form as the
    sender's client wrote them): how a group message addresses the account, for the ``mentioned`` groups setting."""


class RawKey(Contract):
    """The Baileys message key as received (kept for replies that quote and for read receipts)."""

    remoteJid: str
    fromMe: bool = False
    id: str
    participant: str | None = None
    remoteJidAlt: str | None = None
    participantAlt: str | None = None
    addressingMode: Literal["pn", "lid"] | None = None


# ---- queue bodies -----------------------------------------------------------------------------------------------


class InboundEnvelope(Contract):
    """Body of one ``inbound.fifo`` message: one WhatsApp message event."""

    type: Literal["inbound.message"] = "inbound.message"
    v: Literal[1] = 1
    event_id: str
    session_id: str
    upsert_type: Literal["notify", "append"]
    received_at: int
    """Unix milliseconds when the connector saw the event."""
    me: Account
    from_me: bool
    chat: ChatRef
    sender: SenderRef
    message: MessageRef
    key: RawKey

    @property
    def canonical_chat(self) -> str:
        """The chat under one name whichever form WhatsApp used: a group as it is, a contact by its LID when known."""
        return self.chat.jid if self.chat.is_group else (self.chat.lid or self.chat.jid)

    @property
    def group_id(self) -> str:
        """The ``MessageGroupId`` of its chat in ``inbound.fifo`` and of its replies in ``outbound.fifo``."""
        return message_group_id(self.session_id, self.canonical_chat)


class OutboundReply(Contract):
    """Body of one ``outbound.fifo`` message: one reply for the connector to send."""

    type: Literal["outbound.reply"] = "outbound.reply"
    v: Literal[1] = 1
    reply_id: str
    """Stable across redelivery: ``reply_id(event_id, index)``; the WhatsApp message id is derived from it."""
    event_id: str | None
    """The inbound event this answers (``None`` for a message sent through the API)."""
    session_id: str
    to: str
    """The jid exactly as the chat was addressed."""
    text: str
    quoted: RawKey | None = None
    mark_read: RawKey | None = None
    """The contact's message to mark read once this reply is sent (``None``: none, or read receipts are off). Every
    reply to one message carries it; the connector marks the message once."""


class OutboundTyping(Contract):
    """Body of one ``outbound.fifo`` control message: the chatbot is working on ``event_id`` (``composing``: show
    "typing…" in the chat) or finished without a reply (``paused``). Queued in the chat's message group, so the
    connector sees it before the replies it precedes. Best effort: the connector drops what it cannot show."""

    type: Literal["outbound.typing"] = "outbound.typing"
    v: Literal[1] = 1
    event_id: str
    session_id: str
    to: str
    """The jid exactly as the chat was addressed (the replies' ``to``)."""
    state: Literal["composing", "paused"] = "composing"
    expires_at: int
    """Unix milliseconds after which "typing…" is no longer shown, reply or not: when the function stops waiting
    for the chatbot."""


def _outbound_type(body: Any) -> str:
    """A body without ``type`` is a reply: replies did not always have to say so."""
    kind = body.get("type") if isinstance(body, dict) else getattr(body, "type", None)
    return "outbound.typing" if kind == "outbound.typing" else "outbound.reply"


OutboundBody = Annotated[
    Annotated[OutboundReply, Tag("outbound.reply")] | Annotated[OutboundTyping, Tag("outbound.typing")],
    Discriminator(_outbound_type),
]
"""Any ``outbound.fifo`` body."""

_OUTBOUND = TypeAdapter[OutboundReply | OutboundTyping](OutboundBody)


def parse_outbound(body: str | bytes) -> OutboundReply | OutboundTyping:
    """An ``outbound.fifo`` body as its model; ``ValidationError`` (``json_invalid`` for non-JSON) otherwise."""
    return _OUTBOUND.validate_json(body)


# ---- lifecycle and message-status events (DESIGN section 7) ----------------------------------------------------

RelayEventKind = Literal[
    "session.created",
    "session.deleted",
    "session.state",
    "session.qr",
    "session.stale",
    "session.logged_out",
    "session.conflict",
    "message.received",
    "message.sent",
    "message.delivered",
    "message.read",
]
"""``session.state`` is every change of a session's state but two: the change into ``logged_out`` and into
``conflict`` have kinds of their own (what a receiver most often alerts on), with the same ``data``. Every kind
whose ``data`` has ``state`` carries the state it changed to, so a receiver tracking states reads ``data.state`` of
all of them."""

WEBHOOK_EVENT_KINDS: frozenset[str] = frozenset(get_args(RelayEventKind)) - {"message.received"}
"""What goes to ``EVENTS_URL``. ``message.received`` only counts messages for the dashboard's live feed: the
messages themselves reach the chatbot through ``inbound.fifo``."""


class RelayEvent(Contract):
    """A session lifecycle or message-status event: one ``events.fifo`` body, one POST to ``EVENTS_URL`` (signed
    like the chatbot call), one server-sent event of ``GET /v1/events``. Never message text or key material."""

    type: Literal["relay.event"] = "relay.event"
    v: Literal[1] = 1
    id: str
    """Stable: a receiver that sees the same id twice (at-least-once delivery) drops the second. Status events of one
    message derive it from the message id, so a receipt WhatsApp reports again gets the same id too."""
    kind: RelayEventKind
    session_id: str
    at: int
    """Unix milliseconds when the connector saw it."""
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def group_id(self) -> str:
        """``MessageGroupId`` in ``events.fifo``: one session's events in order, sessions in parallel."""
        return message_group_id(self.session_id, "events")


def relay_event_id(*parts: object) -> str:
    """The id of a ``RelayEvent`` from what identifies it (64 hex chars, an SQS dedup id)."""
    return _digest("rv1", *parts)


# ---- dead letters ------------------------------------------------------------------------------------------------

DEAD_LETTER_REASON = "reason"
"""Message attribute of a DLQ entry the relay moved itself: why, as a short code (``malformed``, ``send_failed`` …).
The other attributes it may carry: ``origin`` (the queue the message came from: ``inbound``, ``outbound``),
``session``, ``detail`` (what went wrong, never message text) and ``receive_count``. Entries SQS moved through the
queue's redrive policy carry none of them."""
DEAD_LETTER_ATTRIBUTES = (DEAD_LETTER_REASON, "origin", "session", "detail", "receive_count")
REDRIVE_ATTRIBUTE = "redrive"
"""Message attribute of a message the dead-letter tool put back on its queue (``<source>:<dead letter id>``). The
inbound function treats such a message as a redelivery: it looks for an answer an earlier attempt stored before it
asks the chatbot."""


# ---- the chatbot (DESIGN section 6) -----------------------------------------------------------------------------


class ChatbotRequest(Contract):
    event_id: str
    session_id: str
    chat: ChatRef
    sender: SenderRef
    message: MessageRef
    me: Account


class ChatbotReply(Contract):
    text: str = Field(min_length=1, max_length=65536)
    quote: bool = False


class ChatbotResponse(Contract):
    replies: list[ChatbotReply] = Field(default_factory=list, max_length=20)


class LateAnswer(Contract):
    """What a bot that answered ``202`` posts later to the late-answer URL (``functions/late``), signed like the
    relay's own requests: the replies to ``event_id``, sent like an immediate answer's (same chat, quoting and
    grouping)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_id: str = Field(min_length=1, max_length=128)
    replies: list[ChatbotReply] = Field(max_length=20)


# ---- ids --------------------------------------------------------------------------------------------------------


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def event_id(session_id: str, chat_jid: str, from_me: bool, participant: str | None, message_id: str) -> str:
    """Stable id of one WhatsApp message event: the same message re-emitted by Baileys (reconnect, offline
    ``append``, retry resend) gets the same id. ``chat_jid`` and ``participant`` must be canonical (the LID when it
    is known, ``InboundEnvelope.canonical_chat``), so a re-emit that swaps the PN and LID forms still matches. 64 hex
    chars (SQS dedup ids ≤ 128)."""
    return _digest("ev1", session_id, chat_jid, bool(from_me), participant or "", message_id)


def reply_id(event_id: str, index: int) -> str:
    """Id of the ``index``-th reply to ``event_id``: the ``outbound.fifo`` dedup id, and what its WhatsApp message id
    (the send record's key) is derived from."""
    return _digest("re1", event_id, index)


def typing_id(event_id: str, state: str) -> str:
    """The ``outbound.fifo`` dedup id of the typing message ``state`` for ``event_id`` (never a reply's id)."""
    return _digest("ty1", event_id, state)


def api_reply_id(session_id: str, idempotency_key: str) -> str:
    """Id of what an API request sends with ``Idempotency-Key: <idempotency_key>``: the same key for the same session
    is the same WhatsApp message (``whatsapp_message_id``), however often and whenever it is retried; another
    session's same key is another message."""
    return _digest("ik1", session_id, idempotency_key)


def whatsapp_message_id(reply_id: str) -> str:
    """The WhatsApp message id a reply is sent with, derived from its reply id, so a re-send after a crash is the
    same WhatsApp message (the contact's phone drops the duplicate). Same shape as Baileys' own ids."""
    return "3EB0" + reply_id[:20].upper()


def message_group_id(session_id: str, chat: str) -> str:
    """``MessageGroupId`` of a chat: one chat is ordered, chats run in parallel. At most 128 characters."""
    group = f"{session_id}:{chat}"
    return group if len(group) <= 128 else _digest("g1", group)


# ---- LID map keys (lid_map table) -------------------------------------------------------------------------------


def jid_user(jid: str) -> str:
    """``15551234567:3@s.whatsapp.net`` → ``15551234567``: the user part without device or server."""
    return jid.split("@", 1)[0].split(":", 1)[0]


def lid_map_key_for_lid(lid: str) -> str:
    return f"lid#{jid_user(lid)}"


def lid_map_key_for_pn(pn: str) -> str:
    return f"pn#{jid_user(pn)}"


# ---- per-session settings (settings table) ------------------------------------------------------------------------

SETTINGS_CHAT_LIST_MAX = 1000
"""Chats one allowlist or denylist may name: the whole settings item stays far below DynamoDB's 400 KB."""
SETTINGS_MAX_AGE_S_MAX = 7 * 86400
SETTINGS_CHAT_PATTERN = (
    r"^ *(?:[0-9A-Za-z._-]+(?::[0-9]+)?@(?:s\.whatsapp\.net|lid|g\.us)|\+?(?:[ ()-]*[0-9]){5,20}[ ()-]*) *$"
)
"""A contact or group jid (a device part is dropped), or a phone number with its country code. Spaces, not any
whitespace: the API checks the pattern with pydantic's regex engine and ``normalise_chat`` with Python's, and the two
agree on a literal space but not on every Unicode space."""
SETTINGS_CHATBOT_URL_PATTERN = (
    r"^(?:https://[0-9A-Za-z.-]+|http://(?:127\.0\.0\.1|localhost))(?::[0-9]{1,5})?(?:/[!-~]*)?$"
)
"""https only: the chatbot request carries message text. Plain http only to this machine (the local stack's bot)."""
_CHAT_RE = re.compile(SETTINGS_CHAT_PATTERN.removeprefix("^").removesuffix("$"))


def normalise_chat(chat: str) -> str:
    """A chat as settings store and compare it: a bare jid without device (``15551234567@s.whatsapp.net``,
    ``123…@lid``, ``123-456@g.us``); a phone number (``+1 555-123 4567``) becomes its phone-number jid. ``ValueError``
    for anything ``SETTINGS_CHAT_PATTERN`` refuses."""
    if not _CHAT_RE.fullmatch(chat):
        raise ValueError(f"neither a jid nor a phone number: {chat[:64]!r}")
    chat = chat.strip(" ")
    if "@" in chat:
        user, server = chat.split("@", 1)
        return f"{user.split(':', 1)[0]}@{server}"
    return "".join(c for c in chat if c.isdigit()) + "@s.whatsapp.net"


ChatName = Annotated[str, Field(pattern=SETTINGS_CHAT_PATTERN, max_length=128)]
ChatbotUrl = Annotated[str, Field(pattern=SETTINGS_CHATBOT_URL_PATTERN, max_length=2048)]
MaxMessageAge = Annotated[int, Field(ge=0, le=SETTINGS_MAX_AGE_S_MAX, strict=True)]
"""Strict: the API must not take ``"60"`` or ``true`` for a number its document says is an integer."""
RateLimit = Annotated[int, Field(ge=1, le=100_000, strict=True)]
ChatsMode = Literal["all", "allowlist", "denylist"]
GroupsMode = Literal["off", "on", "mentioned"]


class BotSettings(BaseModel):
    """How the bot behaves for one session; the connector's API writes them, the inbound function applies them.

    ``None`` means "the deployment's setting": ``groups`` follows ``FORWARD_GROUPS`` (``on``/``off``),
    ``max_message_age_s`` follows ``MAX_MESSAGE_AGE_S``, ``chatbot_url`` follows ``CHATBOT_URL`` (the secret is the
    deployment's either way). ``chats`` decides on the contact's chat and on a group's own jid alike; a contact
    listed by phone number matches its LID chat too (the envelope carries both forms when known)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chats: ChatsMode = "all"
    """Which chats the bot answers: every one, only those in ``chat_list``, or all but those in it."""
    chat_list: list[ChatName] = Field(default_factory=list, max_length=SETTINGS_CHAT_LIST_MAX)
    """Jids or phone numbers, stored normalised (``normalise_chat``)."""
    groups: GroupsMode | None = None
    max_message_age_s: MaxMessageAge | None = None
    """Messages older than this are not answered; 0: no limit."""
    chatbot_url: ChatbotUrl | None = None
    rate_chat_per_minute: RateLimit | None = None
    """At most this many messages of one chat are answered per minute (the rest are not sent to the bot); ``None``:
    no limit. The same for an hour, and for all the session's chats together."""
    rate_chat_per_hour: RateLimit | None = None
    rate_session_per_minute: RateLimit | None = None
    rate_session_per_hour: RateLimit | None = None

    @field_validator("chat_list")
    @classmethod
    def _normalise_list(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalise_chat(c) for c in value))

    def answers_group(self, forward_groups: bool, mentions: list[str], me: Account) -> bool:
        """Whether a group message is answered: ``groups`` (``forward_groups`` when unset), and for ``mentioned`` only
        if it mentions the account in either of its forms."""
        if self.groups is None:
            return forward_groups
        if self.groups == "mentioned":
            mine = {f"{jid_user(j)}@{j.split('@', 1)[1]}" for j in (me.pn, me.lid) if j and "@" in j}
            return any(f"{jid_user(j)}@{j.split('@', 1)[1]}" in mine for j in mentions if "@" in j)
        return self.groups == "on"

    def answers_chat(self, *forms: str | None) -> bool:
        """Whether ``chats``/``chat_list`` let the bot answer the chat known under ``forms`` (jid, pn, lid)."""
        if self.chats == "all":
            return True
        names = set()
        for form in forms:
            if form:
                try:
                    names.add(normalise_chat(form))
                except ValueError:
                    continue
        listed = not names.isdisjoint(self.chat_list)
        return listed if self.chats == "allowlist" else not listed


def settings_key(session_id: str) -> str:
    """The settings table's ``pk`` of a session's ``BotSettings`` (its ``settings`` attribute holds their JSON)."""
    return f"settings#{session_id}"
