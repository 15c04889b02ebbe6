"""The HTTP API's request and response bodies (DESIGN section 8). These models are the contract: handlers parse
requests and render responses through them, and the OpenAPI document (``connector.api.openapi``) is generated from
them, so what the document declares is exactly what the API accepts and answers."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from connector.contracts import (
    SETTINGS_CHAT_LIST_MAX,
    ChatbotUrl,
    ChatName,
    ChatsMode,
    GroupsMode,
    MaxMessageAge,
    RateLimit,
)
from connector.session import Session, SessionState
from connector.sidecar.types import SESSION_ID_PATTERN
from connector.stale import STALE_GUIDANCE

TEXT_MAX = 65536
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,128}$"
"""1 to 128 visible ASCII characters (a UUID, a ULID, an order number …): what ``Idempotency-Key`` accepts."""
PHONE_PATTERN = r"^\s*\+?(?:[ ()-]*[0-9]){7,15}[ ()-]*$"
"""7 to 15 digits with the country code, optionally after ``+``, with spaces, dashes or parentheses between them."""
JID_PATTERN = r"[0-9A-Za-z._-]+(?::[0-9]+)?@(?:s\.whatsapp\.net|lid|g\.us|broadcast|newsletter)"
TO_PATTERN = rf"^\s*(?:{JID_PATTERN}|\+?(?:[ ()-]*[0-9]){{7,15}}[ ()-]*)\s*$"
"""A jid, kept exactly as given (a LID chat stays a LID chat), or a phone number as in ``PHONE_PATTERN``."""


def digits(phone: str) -> str:
    return re.sub(r"[^0-9]", "", phone)


def to_jid(to: str) -> str:
    """A jid as given (without surrounding whitespace); a phone number becomes its phone-number jid."""
    to = to.strip()
    return to if "@" in to else f"{digits(to)}@s.whatsapp.net"


class Body(BaseModel):
    # Unknown fields are ignored: a client may send more than this version reads.
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---- requests ----


class CreateSession(Body):
    session_id: str = Field(
        pattern=SESSION_ID_PATTERN, description="Your name for the linked account", examples=["my-phone"]
    )


class PairingCodeRequest(Body):
    phone: str = Field(
        pattern=PHONE_PATTERN, description="The account's phone number, with country code", examples=["+1 555 000 1111"]
    )


class SendMessage(Body):
    to: str = Field(
        pattern=TO_PATTERN,
        description="A jid exactly as the chat is addressed, or a phone number",
        examples=["123456789012345@lid", "15557770001@s.whatsapp.net", "+1 555 777 0001"],
    )
    text: str = Field(
        min_length=1, max_length=TEXT_MAX, pattern=r"\S", description="Not only whitespace", examples=["Hello!"]
    )
    quoted_id: str | None = Field(None, description="Quote this recently seen message (sent unquoted if unknown)")


class SettingsPatch(Body):
    """A JSON merge patch (RFC 7396) of a session's bot settings: a field left out keeps its value, ``null`` resets it
    to its default, a list replaces the whole list."""

    chats: ChatsMode | None = Field(None, description="Which chats the bot answers: all, only chat_list, all but it")
    chat_list: list[ChatName] | None = Field(
        None,
        max_length=SETTINGS_CHAT_LIST_MAX,
        description="Jids or phone numbers (stored normalised); a contact matches in its phone-number and LID form",
        examples=[["+1 555 777 0001", "123456789012345@lid"]],
    )
    groups: GroupsMode | None = Field(
        None,
        description="Answer in groups: off, on, or only when a message mentions the account; null: the "
        "deployment's FORWARD_GROUPS",
    )
    max_message_age_s: MaxMessageAge | None = Field(
        None, description="Older messages are not answered (0: no limit); null: the deployment's MAX_MESSAGE_AGE_S"
    )
    chatbot_url: ChatbotUrl | None = Field(
        None, description="This session's chatbot (same secret); null: the deployment's CHATBOT_URL"
    )
    rate_chat_per_minute: RateLimit | None = Field(
        None,
        description="Messages of one chat answered per minute at most (the rest are not sent to the bot); "
        "null: no limit",
    )
    rate_chat_per_hour: RateLimit | None = Field(None, description="The same per hour; null: no limit")
    rate_session_per_minute: RateLimit | None = Field(
        None, description="Messages of all the session's chats answered per minute at most; null: no limit"
    )
    rate_session_per_hour: RateLimit | None = Field(None, description="The same per hour; null: no limit")


# ---- responses ----


class Me(Body):
    pn: str | None = None
    lid: str | None = None


class LastErrorView(Body):
    code: int | None
    message: str
    at: int = Field(description="Unix seconds")


class OwnerView(Body):
    id: str
    until: int | None = Field(description="Unix seconds: the owner's lease lasts at least until then")


class MessageCounts(Body):
    received: int = Field(description="Messages from others received since the connector started")
    sent: int = Field(description="Messages sent since the connector started")


class SessionView(Body):
    id: str
    state: SessionState
    me: Me
    messages: MessageCounts
    last_message_at: int | None = Field(None, description="Unix seconds of the last message received")
    stale: bool = Field(description="Open, but WhatsApp stopped delivering to it; see guidance")
    qr: str | None = Field(None, description="The QR to scan (states qr and pairing_code)")
    last_error: LastErrorView | None = None
    held_until: int | None = Field(
        None, description="Unix seconds: held back by the flap breaker until then (state reconnecting)"
    )
    owner: OwnerView | None = Field(
        None, description="Another connector holds the session's lease (state stopped); acquisition is retried"
    )
    stale_since: int | None = None
    stale_reason: str | None = None
    guidance: str | None = Field(None, description="What to do about a stale session")

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Optional fields appear only when they apply: a client sees ``qr`` only while there is one, and so on.
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def of(cls, s: Session) -> SessionView:
        stale = s.stale_since is not None
        error = s.last_error
        return cls(
            id=s.id,
            state=s.state,
            me=Me(pn=s.me.pn, lid=s.me.lid),
            messages=MessageCounts(received=s.received_total, sent=s.sent_total),
            last_message_at=int(s.last_message_at) if s.last_message_at else None,
            stale=stale,
            qr=s.qr or None,
            last_error=LastErrorView(code=error.code, message=error.message, at=error.at) if error else None,
            held_until=int(s.held_until) if s.held_until is not None else None,
            owner=OwnerView(id=s.owner, until=int(s.owner_until) if s.owner_until else None) if s.owner else None,
            stale_since=int(s.stale_since) if s.stale_since is not None else None,
            stale_reason=s.stale_reason if stale else None,
            guidance=STALE_GUIDANCE if stale else None,
        )


SessionList = Annotated[list[SessionView], Field()]


class Deleted(Body):
    deleted: Literal[True] = True


class LoggedOut(Body):
    logged_out: Literal[True] = True
    unlinked: bool = Field(
        description="Whether the device was unlinked on WhatsApp; if not (the socket was not open), remove it "
        "under Linked devices on the phone"
    )


class Qr(Body):
    qr: str


class PairingCode(Body):
    code: str = Field(description="Type it on the phone under Linked devices > Link with phone number")


class MessageAccepted(Body):
    message_id: str


class Health(Body):
    status: Literal["ok"] = "ok"


class Ready(Body):
    status: Literal["ready"] = "ready"
    bridge_pid: int | None


class ErrorDetail(Body):
    code: str
    message: str


class ErrorBody(Body):
    error: ErrorDetail
