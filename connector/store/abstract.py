"""Store interfaces. Values are the bridge's JSON (BufferJSON form) and must come back exactly as stored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

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


class ReplyLog(ABC):
    """Which replies were already sent (DESIGN section 5): checked before sending an ``outbound.fifo`` message and
    written before it is deleted, so a redelivered reply is not sent twice."""

    @abstractmethod
    async def sent_message_id(self, reply_id: str) -> str | None:
        """The WhatsApp message id the reply was sent as, or ``None`` if it was not sent (or its record expired)."""

    @abstractmethod
    async def record_sent(self, reply_id: str, message_id: str) -> None:
        """Remember that ``reply_id`` went out as ``message_id``. Durable on return."""


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
