"""Recently seen messages of every session, bounded, for Baileys' ``getMessage`` (the bridge's ``message.get``) and
for replies that quote a message by its id.

Baileys asks for a message when a recipient requests a retry (its decryption failed), normally within seconds; an
older message is answered ``None`` and Baileys then cannot re-send it (the recipient sees "waiting for this
message"). Our own sends are in it too: Baileys emits them back as ``append`` upserts.
"""

from __future__ import annotations

from typing import Any

from connector.lru import Lru
from connector.types import SessionId


class MessageCache:
    def __init__(self, size: int) -> None:
        self._entries: Lru[tuple[SessionId, str], tuple[dict[str, Any], dict[str, Any]]] = Lru(size)

    def remember(self, session: SessionId, key: dict[str, Any], message: dict[str, Any]) -> None:
        if key.get("id"):
            self._entries.put((session, key["id"]), (key, message))

    def content(self, session: SessionId, message_id: str) -> dict[str, Any] | None:
        entry = self._entries.get((session, message_id))
        return dict(entry[1]) if entry is not None else None

    def key(self, session: SessionId, message_id: str) -> dict[str, Any] | None:
        entry = self._entries.get((session, message_id))
        return entry[0] if entry is not None else None
