"""In-memory stores for tests and a store-less development run. Values are kept as JSON text, so what comes back is a
fresh copy of exactly what was stored, as with the DynamoDB stores. Every method runs without awaiting anything, so
each one is atomic under asyncio (like one DynamoDB call)."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from connector.contracts import BotSettings, jid_user
from connector.errors import LeaseLost, StoreError
from connector.store.abstract import (
    AuthStore,
    Lease,
    LeaseStore,
    LidMapStore,
    ReplyLog,
    SentReply,
    SettingsStore,
    decode_content,
    encode_content,
)
from connector.types import SessionId


class MemoryLeaseStore(LeaseStore):
    def __init__(self) -> None:
        self._leases: dict[SessionId, Lease] = {}

    async def acquire(self, session: SessionId, owner: str, ttl_s: float) -> Lease | None:
        now = time.time()
        current = self._leases.get(session)
        if current is None:
            token = 1
        elif current.owner == owner:
            token = current.token
        elif current.expires_at < now:
            token = current.token + 1
        else:
            return None
        lease = Lease(session, owner, token, now + ttl_s)
        self._leases[session] = lease
        return lease

    async def renew(self, lease: Lease, ttl_s: float) -> Lease:
        current = self._leases.get(lease.session)
        if (
            current is None
            or current.owner != lease.owner
            or current.token != lease.token
            or current.expires_at <= 0  # released: given up, not renewed
        ):
            raise LeaseLost(f"lease of {lease.session} (token {lease.token}) is no longer held by {lease.owner}")
        renewed = dataclasses.replace(current, expires_at=time.time() + ttl_s)
        self._leases[lease.session] = renewed
        return renewed

    async def release(self, lease: Lease) -> None:
        current = self._leases.get(lease.session)
        if current is not None and current.owner == lease.owner and current.token == lease.token:
            self._leases[lease.session] = dataclasses.replace(current, expires_at=0.0)

    async def get_lease(self, session: SessionId) -> Lease | None:
        return self._leases.get(session)

    def held_by(self, session: SessionId, lease: Lease) -> bool:
        """Whether the session's lease item still carries ``lease``'s owner and token (what fencing checks; not the
        expiry, as on DynamoDB)."""
        current = self._leases.get(session)
        return current is not None and (current.owner, current.token) == (lease.owner, lease.token)

    def delete(self, session: SessionId) -> None:
        """Remove the session's lease item (the auth store does, with the rest of a deleted session)."""
        self._leases.pop(session, None)


class MemoryAuthStore(AuthStore):
    """Fenced against ``leases`` (a ``MemoryLeaseStore``, created if not given: share it with the lease keeper).
    Fencing behaves as on DynamoDB: a fenced write checks the lease's owner and token (not its expiry) and, if they
    differ, raises ``LeaseLost`` before changing anything."""

    def __init__(self, leases: MemoryLeaseStore | None = None) -> None:
        self.leases = leases if leases is not None else MemoryLeaseStore()
        self._creds: dict[SessionId, str] = {}
        self._keys: dict[SessionId, dict[tuple[str, str], str]] = {}
        self._fences: dict[SessionId, Lease] = {}

    def fence(self, session: SessionId, lease: Lease | None) -> None:
        if lease is None:
            self._fences.pop(session, None)
        else:
            self._fences[session] = lease

    def _check_fence(self, session: SessionId, what: str) -> Lease | None:
        fence = self._fences.get(session)
        if fence is None:
            return None
        if not self.leases.held_by(session, fence):
            raise LeaseLost(f"failed to save {what} of {session}: the lease (token {fence.token}) is lost")
        return fence

    # ---- creds and keys ----

    async def get_creds(self, session: SessionId) -> dict[str, Any] | None:
        raw = self._creds.get(session)
        return json.loads(raw) if raw is not None else None

    async def put_creds(self, session: SessionId, creds: dict[str, Any]) -> None:
        try:
            text = json.dumps(creds)
        except (TypeError, ValueError) as e:
            raise StoreError(f"failed to save creds of {session}: not JSON") from e
        self._check_fence(session, "creds")
        self._creds[session] = text

    async def get_keys(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        items = self._keys.get(session, {})
        return {i: json.loads(items[(type, i)]) for i in ids if (type, i) in items}

    async def set_keys(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        # Encode everything before changing anything: a failing write changes nothing.
        writes: dict[tuple[str, str], str | None] = {}
        for type, values in data.items():
            for key_id, value in values.items():
                try:
                    writes[(type, key_id)] = None if value is None else json.dumps(value)
                except (TypeError, ValueError) as e:
                    raise StoreError(f"failed to save {type} {key_id} of {session}: not JSON") from e
        if not writes:
            return
        self._check_fence(session, f"{len(writes)} keys")
        items = self._keys.setdefault(session, {})
        for key, text in writes.items():
            if text is None:
                items.pop(key, None)
            else:
                items[key] = text

    async def delete_session(self, session: SessionId) -> None:
        """Every item of the session, the lease last (only if still ours when fenced), as the DynamoDB store."""
        fence = self._check_fence(session, "the deletion")
        self._creds.pop(session, None)
        self._keys.pop(session, None)
        if fence is None or self.leases.held_by(session, fence):
            self.leases.delete(session)

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
        self._sent: dict[tuple[str, str], tuple[SentReply, bytes | None, float]] = {}
        """``(session, message id)`` → the record without its content, the content's JSON, expiry (Unix s)."""

    async def get_sent(self, session: SessionId, message_id: str) -> SentReply | None:
        entry = self._sent.get((session, message_id))
        if entry is None or entry[2] <= time.time():
            return None
        record, content, _ = entry
        return dataclasses.replace(record, content=decode_content(content) if content is not None else None)

    async def record_sent(self, sent: SentReply) -> None:
        content = encode_content(sent.content) if sent.content is not None else None
        record = dataclasses.replace(sent, content=None)
        self._sent[(sent.session, sent.message_id)] = (record, content, time.time() + self.ttl_s)


class MemorySettingsStore(SettingsStore):
    def __init__(self) -> None:
        self._json: dict[str, str] = {}

    async def get_settings(self, session: SessionId) -> BotSettings | None:
        raw = self._json.get(session)
        return None if raw is None else BotSettings.model_validate_json(raw)

    async def put_settings(self, session: SessionId, settings: BotSettings) -> None:
        self._json[session] = settings.model_dump_json()

    async def delete_settings(self, session: SessionId) -> None:
        self._json.pop(session, None)
