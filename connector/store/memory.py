"""In-memory ``AuthStore`` for tests and a store-less development run. Values are kept as JSON text, so what comes
back is a fresh copy of exactly what was stored, as with the DynamoDB store."""

from __future__ import annotations

import json
from typing import Any

from connector.store.abstract import AuthStore
from connector.types import SessionId


class MemoryAuthStore(AuthStore):
    def __init__(self) -> None:
        self._creds: dict[SessionId, str] = {}
        self._keys: dict[SessionId, dict[tuple[str, str], str]] = {}

    async def get_creds(self, session: SessionId) -> dict[str, Any] | None:
        raw = self._creds.get(session)
        return json.loads(raw) if raw is not None else None

    async def put_creds(self, session: SessionId, creds: dict[str, Any]) -> None:
        self._creds[session] = json.dumps(creds)

    async def get_keys(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        items = self._keys.get(session, {})
        return {i: json.loads(items[(type, i)]) for i in ids if (type, i) in items}

    async def set_keys(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        items = self._keys.setdefault(session, {})
        for type, values in data.items():
            for key_id, value in values.items():
                if value is None:
                    items.pop((type, key_id), None)
                else:
                    items[(type, key_id)] = json.dumps(value)

    async def delete_session(self, session: SessionId) -> None:
        self._creds.pop(session, None)
        self._keys.pop(session, None)

    def key_ids(self, session: SessionId, type: str) -> list[str]:
        """Ids stored for one type (tests inspect what the bridge wrote)."""
        return [i for (t, i) in self._keys.get(session, {}) if t == type]
