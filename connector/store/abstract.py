"""Store interfaces. Values are the bridge's JSON (BufferJSON form) and must come back exactly as stored."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from connector.contracts import BotSettings
from connector.resources import DYNAMODB_ITEM_MAX_BYTES
from connector.types import SessionId


class CredsStore(ABC):
    @abstractmethod
    async def get_creds(self, session: SessionId) -> dict[str, Any] | None:
        """The creds last put for ``session``; ``None`` if none were ever put (or they were deleted)."""

    @abstractmethod
    async def put_creds(self, session: SessionId, creds: dict[str, Any]) -> None:
        """Replace the whole creds object. Returns only once the write is durable; raises ``StoreError`` otherwise."""


class SignalKeyStore(ABC):
    @abstractmethod
    async def get_keys(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        """Values of the given ids of one key type. A missing id is left out of the result, not an error."""

    @abstractmethod
    async def set_keys(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        """Write ``{type: {id: value}}``; a ``None`` value deletes that id. Any type is accepted (Baileys adds types
        between releases). Returns only once every write is durable; raises ``StoreError`` otherwise."""


class AuthStore(CredsStore, SignalKeyStore):
    """Creds and Signal keys of every session, as one container (the DynamoDB table is one, too).

    Fencing: after ``fence(session, lease)``, every write of that session (keys, creds, deletes) is conditioned on
    the session's lease item (which the ``LeaseStore`` keeps) still carrying ``lease.token`` and ``lease.owner``; a
    write that fails the condition raises ``LeaseLost`` and changes nothing. Two connectors writing one session's
    Signal keys break its ratchets (Bad MAC), so a connector that lost the lease must not write at all, not even a
    write it started before the loss. ``fence(session, None)`` removes the fence."""

    def fence(self, session: SessionId, lease: Lease | None) -> None:
        """Condition every later write of ``session`` on ``lease`` (see the class docstring)."""

    @abstractmethod
    async def delete_session(self, session: SessionId) -> None:
        """Remove the creds, every key and, last, the lease item of ``session`` (after a logout: nothing of it is
        left). Fenced, the lease item is removed only if it still carries the fence's owner and token."""

    @abstractmethod
    async def list_sessions(self) -> list[SessionId]:
        """Every session that has creds stored (the connector starts these at boot)."""


class LidMapStore(ABC):
    """PN ↔ LID pairs, fed from every source the connector sees (``lid-mapping.update``, message alt jids,
    ``lid-mapping`` key writes) and read by the inbound function. Jids are stored normalised: bare user, no
    device (``15551234567@s.whatsapp.net``, ``123456789012345@lid``)."""

    @abstractmethod
    async def put_pairs(self, pairs: list[tuple[str, str]]) -> None:
        """Store ``(lid, pn)`` pairs in both directions. Durable on return; raises ``StoreError`` otherwise."""

    @abstractmethod
    async def pn_for_lids(self, lids: list[str]) -> dict[str, str]:
        """``{lid: pn}`` for the LIDs that have a known phone number (missing ones are left out)."""

    @abstractmethod
    async def lid_for_pns(self, pns: list[str]) -> dict[str, str]:
        """``{pn: lid}`` for the phone numbers that have a known LID (missing ones are left out)."""


class SettingsStore(ABC):
    """Each session's ``BotSettings`` (what the inbound function applies), written through the connector's API."""

    @abstractmethod
    async def get_settings(self, session: SessionId) -> BotSettings | None:
        """The settings last put for ``session``; ``None`` if none were (or they were deleted)."""

    @abstractmethod
    async def put_settings(self, session: SessionId, settings: BotSettings) -> None:
        """Replace the session's settings. Durable on return; raises ``StoreError`` otherwise."""

    @abstractmethod
    async def delete_settings(self, session: SessionId) -> None:
        """Forget the session's settings (it falls back to the defaults); nothing happens if there are none."""


SENT_RECORD_MAX_BYTES = DYNAMODB_ITEM_MAX_BYTES - 4096
"""What one send record may hold (content, recipient, ids), so its DynamoDB item stays under the 400 KB limit with
room for the key, the attribute names, the TTL and zlib's overhead. A text is at most 65,536 characters (WhatsApp's
limit, the API's ``TEXT_MAX``); its JSON is at most 6 bytes a character (a control character escaped as ``\\u00XX``),
384 KiB, so the content of any such text fits without counting on compression."""
SENT_MESSAGE_ID_MAX = 256
"""Longer message ids are never recorded (WhatsApp's are 16 to 40 characters), so looking one up needs no read."""


def encode_content(content: dict[str, Any]) -> bytes:
    """The JSON in which a send record keeps a message: UTF-8, not ASCII-escaped (so its size is the text's UTF-8
    size), lone surrogates kept as they came in."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def decode_content(raw: bytes) -> dict[str, Any]:
    content = json.loads(raw.decode("utf-8", "surrogatepass"))
    if not isinstance(content, dict):
        raise ValueError("the content is not a JSON object")
    return content


@dataclass(frozen=True)
class SentReply:
    """One message this connector sent (an ``outbound.fifo`` reply or an API send), as the reply log keeps it.
    Construction checks the bounds above (``ValueError``), so every record the log accepts fits in one item."""

    session: SessionId
    message_id: str
    """The WhatsApp message id it went out as: with ``session``, the record's key."""
    to: str
    content: dict[str, Any] | None = None
    """The message as sent (Baileys' ``proto.IMessage`` JSON), what ``getMessage`` answers when the contact's phone
    asks for a retry; ``None`` if it was not kept."""
    reply_id: str | None = None
    """The reply it carried: the ``outbound.fifo`` reply id, or the id derived from an API request's
    ``Idempotency-Key``; ``None`` for an API send without one."""
    request: str | None = None
    """A digest of the API request sent with an ``Idempotency-Key``: a retry of that key with another request is
    refused rather than answered with this message."""

    def __post_init__(self) -> None:
        if not 0 < len(self.message_id) <= SENT_MESSAGE_ID_MAX:
            raise ValueError(f"a message id of 1 to {SENT_MESSAGE_ID_MAX} characters, not {len(self.message_id)}")
        size = sum(len(v.encode("utf-8", "surrogatepass")) for v in (self.to, self.reply_id, self.request) if v)
        size += len(encode_content(self.content)) if self.content is not None else 0
        if size > SENT_RECORD_MAX_BYTES:
            raise ValueError(f"send record of {self.message_id} is {size} bytes, over {SENT_RECORD_MAX_BYTES}")


class ReplyLog(ABC):
    """What this connector sent (DESIGN section 5), one record per WhatsApp message, for as long as the log's TTL.

    A record is written once the message is out and before its ``outbound.fifo`` message is deleted (or the API
    answers), so a redelivered reply or a retried API request finds it and is not sent again; and it carries the
    message's content, so Baileys' ``getMessage`` can still re-send it for a retry after the connector restarted."""

    @abstractmethod
    async def get_sent(self, session: SessionId, message_id: str) -> SentReply | None:
        """The record of ``message_id`` sent by ``session``; ``None`` if there is none, it expired (a record past
        its TTL that DynamoDB has not deleted yet counts as absent) or the id is longer than
        ``SENT_MESSAGE_ID_MAX``."""

    @abstractmethod
    async def record_sent(self, sent: SentReply) -> None:
        """Keep ``sent`` (replacing any record of the same session and message id). Durable on return; raises
        ``StoreError`` otherwise."""


@dataclass(frozen=True)
class Lease:
    """Ownership of one session by one connector (DESIGN section 7). ``token`` is the fencing token: it grows on every
    change of owner, and every auth write of the session is conditioned on it."""

    session: SessionId
    owner: str
    token: int
    expires_at: float
    """Unix seconds."""


class LeaseStore(ABC):
    """The lease item of each session (in the auth table: ``pk`` = session, ``sk`` = ``lease``)."""

    @abstractmethod
    async def acquire(self, session: SessionId, owner: str, ttl_s: float) -> Lease | None:
        """Take the lease if it is free, expired or already ``owner``'s, for ``ttl_s`` seconds. A change of owner
        gets a token greater than any the lease item had (a deleted session starts again at 1). ``None`` while
        another owner holds an unexpired lease."""

    @abstractmethod
    async def renew(self, lease: Lease, ttl_s: float) -> Lease:
        """Extend a lease we hold (same token). Raises ``LeaseLost`` if owner or token no longer match."""

    @abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give the lease up (it expires now) if it is still ours; nothing happens otherwise."""

    @abstractmethod
    async def get_lease(self, session: SessionId) -> Lease | None:
        """The current lease item (possibly expired), or ``None`` if the session never had one."""
