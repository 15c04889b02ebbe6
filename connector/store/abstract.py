"""Store interfaces. Values are the bridge's JSON (BufferJSON form) and must come back exactly as stored."""

from __future__ import annotations

from abc import ABC, abstractmethod
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
    """Creds and Signal keys of every session, as one container (the DynamoDB table is one, too)."""

    @abstractmethod
    async def delete_session(self, session: SessionId) -> None:
        """Remove the creds and every key of ``session`` (after a logout)."""
