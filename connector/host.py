"""The bridge's host: what the Node bridge asks its parent for, and where its events go (``BridgeHost`` in
``connector.sidecar.client``).

- ``keys.get`` / ``keys.set`` / ``creds.save``: the auth store, durable before the answer (DESIGN section 4). A write
  for a session that was deleted, wiped or never known, or that has no socket running (its socket closed), is
  refused (``SessionGone``), so a late write cannot bring keys back after a wipe or land after a newer socket read
  the keys. Writes still in flight are counted per session, so the manager can wait for them (``quiesce``) before it
  starts the next socket: a write the bridge gave up waiting for may still be running here. A write the store's
  fence rejects (``LeaseLost``: another connector owns the session now) is refused as well, and the session manager
  is told at once so it closes the socket.
- ``message.get``: Baileys' ``getMessage`` for retries, answered from the message cache, else from the reply log's
  send records (what this connector sent, with its content, for the log's TTL): a retry the contact's phone asks
  for after a restart (or after the bounded cache forgot the message) can still be answered.
- events: ``connection.update`` goes to the session manager (state and close policy); ``messages.upsert`` to the
  ingest (→ the inbound queue), counted; ``messages.update`` (delivery and read receipts of what the account sent)
  to the event hub (``connector.events``); LID/PN pairs from every event that carries them to the LID feed. A
  failing handler is logged and never stops the bridge's event lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from connector.contracts import Account
from connector.errors import LeaseLost, SessionGone, StoreError
from connector.events import EventHub
from connector.ingest import Ingest
from connector.lidfeed import LidFeed
from connector.messagecache import MessageCache
from connector.session import Session
from connector.sidecar.types import (
    ConnectionUpdate,
    LidMappingUpdate,
    MessageKey,
    MessagesUpdate,
    MessagesUpsert,
    WireModel,
)
from connector.store.abstract import AuthStore, ReplyLog
from connector.tasks import spawn
from connector.types import SessionId

log = logging.getLogger("wa_relay.host")

KEYS_GET_PATIENCE_S = 20.0
"""Within the bridge's 30 s call timeout, so the bridge still gets an answer."""


class SessionEvents(Protocol):
    """What the host reports to the session manager."""

    async def on_connection(self, session: SessionId, update: ConnectionUpdate) -> None: ...

    async def on_lease_lost(self, session: SessionId) -> None: ...


class RelayHost:
    def __init__(
        self,
        sessions: Mapping[SessionId, Session],
        auth: AuthStore,
        events: SessionEvents,
        *,
        ingest: Ingest,
        lid_feed: LidFeed,
        messages: MessageCache,
        sent: ReplyLog | None = None,
        hub: EventHub | None = None,
    ) -> None:
        self.sessions = sessions
        self.auth = auth
        self.events = events
        self.ingest = ingest
        self.lid_feed = lid_feed
        self.messages = messages
        self._writes: dict[SessionId, int] = {}
        self._quiet = asyncio.Condition()
        self.sent = sent
        self.hub = hub or EventHub()

    # ---- storage calls ----

    async def keys_get(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        """Retried on store errors for up to ``KEYS_GET_PATIENCE_S``: Baileys does not retry a failed read, it fails
        the message being decrypted (a NACK), and WhatsApp delivers that one again only at the next login, after the
        chat's later messages: a throttled moment must not reorder a chat."""
        deadline = time.monotonic() + KEYS_GET_PATIENCE_S
        delay = 0.1
        while True:
            try:
                return await self.auth.get_keys(session, type, ids)
            except StoreError as e:
                if time.monotonic() + delay > deadline:
                    raise
                log.info("reading %s keys of %s failed (%s); retried in %.1fs", type, session, e, delay)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def keys_set(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        async with self._writing(session):
            try:
                await self.auth.set_keys(session, data)
            except LeaseLost as e:
                raise self._fenced(session) from e
        await self.lid_feed.feed_key_writes(data)

    async def creds_save(self, session: SessionId, creds: dict[str, Any]) -> None:
        async with self._writing(session):
            try:
                await self.auth.put_creds(session, creds)
            except LeaseLost as e:
                raise self._fenced(session) from e
        if (s := self.sessions.get(session)) is not None:
            s.stored = True

    async def quiesce(self, session: SessionId, timeout: float) -> bool:
        """Wait until no key or creds write of ``session`` is in flight; False if one still is after ``timeout``."""
        async with self._quiet:
            try:
                await asyncio.wait_for(self._quiet.wait_for(lambda: not self._writes.get(session)), timeout)
            except TimeoutError:
                return False
        return True

    @contextlib.asynccontextmanager
    async def _writing(self, session: SessionId) -> AsyncIterator[None]:
        self._writable(session)
        self._writes[session] = self._writes.get(session, 0) + 1
        try:
            yield
        finally:
            left = self._writes.pop(session) - 1
            if left:
                self._writes[session] = left
            async with self._quiet:
                self._quiet.notify_all()

    async def message_get(self, session: SessionId, key: MessageKey) -> dict[str, Any] | None:
        message_id = key.id or ""
        content = self.messages.content(session, message_id)
        if content is None and self.sent is not None and message_id:
            try:
                record = await self.sent.get_sent(session, message_id)
            except StoreError as e:
                log.warning("message.get for %s of %s: the reply log failed (%s)", message_id, session, e)
                record = None
            content = record.content if record is not None else None
        if content is None:
            log.info("message.get for %s of %s: not in the cache nor among our sends", message_id, session)
        return content

    def _writable(self, session: SessionId) -> None:
        s = self.sessions.get(session)
        if s is None or s.wiped:
            raise SessionGone(f"session {session} was deleted or wiped; write refused")
        if not s.socket_live:
            raise SessionGone(f"session {session} has no socket running (it closed); write refused")

    def _fenced(self, session: SessionId) -> SessionGone:
        spawn(self.events.on_lease_lost(session), name=f"lease-lost-{session}")
        return SessionGone(f"session {session}: lease lost; write refused")

    # ---- events ----

    async def on_event(self, event: str, session: SessionId | None, data: WireModel | dict[str, Any]) -> None:
        if session is None:
            return
        s = self.sessions.get(session)
        if s is not None:
            s.last_event_at = time.time()
        try:
            if isinstance(data, ConnectionUpdate):
                await self.events.on_connection(session, data)
            elif isinstance(data, MessagesUpsert):
                if s is not None and data.messages:
                    s.last_message_at = s.last_event_at
                await self.ingest.on_upsert(session, s.me if s is not None else Account(), data)
                if s is not None and (theirs := [m for m in data.messages if not m.key.fromMe]):
                    s.received_total += len(theirs)
                    self.hub.received(s, len(theirs), sorted({m.key.remoteJid for m in theirs if m.key.remoteJid}))
                folded = [m for m in data.messages if m.key.fromMe and m.status is not None]
                if folded:
                    updates = [{"key": m.key.model_dump(), "update": {"status": m.status}} for m in folded]
                    self.hub.statuses(session, updates)
            elif isinstance(data, MessagesUpdate):
                self.hub.statuses(session, data.updates)
            elif isinstance(data, LidMappingUpdate):
                await self.lid_feed.feed([(data.lid, data.pn)], event)
            elif isinstance(data, dict):
                await self.lid_feed.feed_event(event, data)
        except Exception:
            log.exception("handling %s of %s failed", event, session)
