"""In-memory ``AuthStore`` for tests and a store-less development run. Values are kept as JSON text, so what comes
back is a fresh copy of exactly what was stored, as with the DynamoDB store."""

from __future__ import annotations

import json
import time
from typing import Any

from connector.contracts import jid_user
from connector.store.abstract import AuthStore, LidMapStore, ReplyLog
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

    async def list_sessions(self) -> list[SessionId]:
        return sorted(self._creds)

    def key_ids(self, session: SessionId, type: str) -> list[str]:
        """Ids stored for one type (tests inspect what the bridge wrote)."""
        return [i for (t, i) in self._keys.get(session, {}) if t == type]


class MemoryLidMapStore(LidMapStore):
    def __init__(self) -> None:
        self._pn_by_lid: dict[str, str] = {}
        self._lid_by_pn: dict[str, str] = {}

    async def put_pairs(self, pairs: list[tuple[str, str]]) -> None:
        for lid, pn in pairs:
            lid_n, pn_n = f"{jid_user(lid)}@lid", f"{jid_user(pn)}@s.whatsapp.net"
            self._pn_by_lid[lid_n] = pn_n
            self._lid_by_pn[pn_n] = lid_n

    async def pn_for_lids(self, lids: list[str]) -> dict[str, str]:
        found = {lid: self._pn_by_lid.get(f"{jid_user(lid)}@lid") for lid in lids}
        return {k: v for k, v in found.items() if v}

    async def lid_for_pns(self, pns: list[str]) -> dict[str, str]:
        found = {pn: self._lid_by_pn.get(f"{jid_user(pn)}@s.whatsapp.net") for pn in pns}
        return {k: v for k, v in found.items() if v}


class MemoryReplyLog(ReplyLog):
    def __init__(self, ttl_s: float = 86400.0) -> None:
        self.ttl_s = ttl_s
        self._sent: dict[str, tuple[str, float]] = {}

    async def sent_message_id(self, reply_id: str) -> str | None:
        entry = self._sent.get(reply_id)
        return entry[0] if entry and entry[1] > time.time() else None

    async def record_sent(self, reply_id: str, message_id: str) -> None:
        self._sent[reply_id] = (message_id, time.time() + self.ttl_s)
