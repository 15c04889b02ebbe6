"""The session manager: runs every linked WhatsApp account through the bridge and applies the connection policy.

``Relay`` implements the bridge's ``BridgeHost`` (key store, creds, ``getMessage`` and events) and holds the
``BridgeClient`` rather than extending it. It owns:

- the session registry and states (DESIGN section 7): ``starting → qr | pairing_code → connecting → open``, plus
  ``reconnecting``, ``logged_out``, ``conflict``, ``stopped``;
- the ``StartQueue``: every connect (boot, API create, reconnect after backoff, bridge restart) goes through it, one
  at a time, ``SESSION_START_INTERVAL_S`` plus jitter apart. The only exception is 515 (restart required after
  pairing), which reconnects at once;
- the close-code policy: 515 restart now from stored creds; 401/403/411/419 logged out (creds and keys wiped,
  WARNING); 440 conflict (no reconnect, ERROR); 408 while waiting for a QR scan = pairing expired (stopped, wiped:
  unregistered creds would otherwise be started again at every boot); anything else reconnects with exponential
  backoff and jitter, capped at 5 minutes;
- publishing: every upserted message (``notify`` and ``append``) becomes an ``InboundEnvelope`` for the publisher;
- the LID map, fed from ``lid-mapping.update``, message alt jids, ``lid-mapping`` key writes, ``me`` on open,
  ``messaging-history.set`` mappings and contacts. A LID-map failure is logged and never fails the caller;
- ``message.get``: a bounded LRU of recently seen message contents (``MESSAGE_CACHE_SIZE`` entries over all sessions,
  including our own sends, which Baileys re-emits as ``append`` upserts). Baileys asks for a message when a recipient
  requests a retry, normally within seconds; an older message is answered ``None`` and Baileys then cannot re-send it
  (the recipient sees "waiting for this message");
- bridge supervision: when the bridge process exits, it is restarted with linear backoff and every session that
  should run is queued again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.contracts import Account, jid_user
from connector.errors import PublishError, RelayError
from connector.inbound import account_from_me, build_envelope, is_lid, is_pn, lid_pairs, pn_lid
from connector.publish.abstract import InboundPublisher
from connector.sidecar.errors import (
    SessionExists,
    SessionNotFound,
    SessionNotOpen,
    SidecarError,
    SidecarNotConnected,
)
from connector.sidecar.types import (
    ConnectionUpdate,
    LidMappingUpdate,
    MessageKey,
    MessageSendResult,
    MessagesUpsert,
    SessionStartResult,
    WireModel,
)
from connector.store.abstract import AuthStore, LidMapStore
from connector.tasks import cancel, spawn
from connector.types import Jid, SessionId

MESSAGE_CACHE_SIZE = 5000
LOGGED_OUT_CODES = frozenset({401, 403, 411, 419})
RESTART_REQUIRED = 515
CONNECTION_REPLACED = 440
TIMED_OUT = 408


class SessionState(enum.StrEnum):
    STARTING = "starting"
    QR = "qr"
    PAIRING_CODE = "pairing_code"
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    LOGGED_OUT = "logged_out"
    CONFLICT = "conflict"
    STOPPED = "stopped"


TERMINAL = frozenset({SessionState.LOGGED_OUT, SessionState.CONFLICT, SessionState.STOPPED})


# ---- errors the API maps to statuses ----


class SessionAlreadyExists(RelayError):
    """``create`` for a session id that is already known (HTTP 409)."""


class UnknownSession(RelayError):
    """No session with that id (HTTP 404)."""


class SessionNotReady(RelayError):
    """The session cannot do that in its current state, e.g. send while not ``open`` (HTTP 409)."""


class BridgeUnavailable(RelayError):
    """The bridge process is not running right now (HTTP 503)."""


# ---- what the relay needs from the bridge client (``BridgeClient`` has it; tests pass a fake) ----


class Bridge(Protocol):
    @property
    def connected(self) -> bool: ...

    async def start(self) -> Any: ...

    async def stop(self, timeout: float = 10.0) -> int | None: ...

    async def wait_closed(self) -> None: ...

    async def start_session(
        self, session: SessionId, creds: dict[str, Any] | None, config: Any = None
    ) -> SessionStartResult: ...

    async def stop_session(self, session: SessionId) -> None: ...

    async def logout(self, session: SessionId) -> None: ...

    async def request_pairing_code(self, session: SessionId, phone: str, code: str | None = None) -> str: ...

    async def send_message(
        self,
        session: SessionId,
        to: Jid,
        content: dict[str, Any],
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
    ) -> MessageSendResult: ...


BridgeFactory = Callable[["Relay"], Bridge]


@dataclass
class LastError:
    code: int | None
    message: str
    at: int
    """Unix seconds."""

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "at": self.at}


@dataclass
class Session:
    id: SessionId
    state: SessionState = SessionState.STARTING
    me: Account = field(default_factory=Account)
    qr: str | None = None
    last_error: LastError | None = None
    failures: int = 0
    """Closes since the last ``open`` (drives the backoff)."""
    retry: asyncio.Task[None] | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("wa_relay.relay"))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "state": self.state.value, "me": {"pn": self.me.pn, "lid": self.me.lid}}
        if self.qr:
            out["qr"] = self.qr
        if self.last_error:
            out["last_error"] = self.last_error.as_dict()
        return out


class StartQueue:
    """Connects sessions one at a time, at least ``interval`` (+ up to ``jitter``) seconds apart.

    One component on purpose: the later stagger/circuit-breaker work (connect budgets, pausing on repeated bridge
    failures) grows here without touching the policy code."""

    def __init__(
        self, connect: Callable[[SessionId], Any], *, interval: float, jitter: float, log: logging.Logger
    ) -> None:
        self._connect = connect
        self.interval = interval
        self.jitter = jitter
        self.log = log
        self._queue: asyncio.Queue[SessionId] = asyncio.Queue()
        self._queued: set[SessionId] = set()
        self._task: asyncio.Task[None] | None = None
        self.connects = 0

    def start(self) -> None:
        if self._task is None:
            self._task = spawn(self._run(), name="session-start-queue")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def put(self, session: SessionId) -> None:
        if session in self._queued:
            return
        self._queued.add(session)
        self._queue.put_nowait(session)

    def discard(self, session: SessionId) -> None:
        """Forget a queued start (the worker skips ids no longer queued)."""
        self._queued.discard(session)

    def __len__(self) -> int:
        return len(self._queued)

    async def _run(self) -> None:
        while True:
            session = await self._queue.get()
            if session not in self._queued:
                continue
            self._queued.discard(session)
            try:
                started = await self._connect(session)
            except Exception:
                self.log.exception("starting session %s failed", session)
                started = True
            if started:
                self.connects += 1
                await asyncio.sleep(self.interval + random.uniform(0, self.jitter))


class Relay:
    def __init__(
        self,
        bridge_factory: BridgeFactory,
        auth: AuthStore,
        lid_map: LidMapStore,
        publisher: InboundPublisher,
        *,
        start_interval_s: float = 3.0,
        start_jitter_s: float = 2.0,
        backoff_initial_s: float = 2.0,
        backoff_max_s: float = 300.0,
        bridge_restart_step_s: float = 2.0,
        bridge_restart_max_s: float = 30.0,
        message_cache_size: int = MESSAGE_CACHE_SIZE,
    ) -> None:
        self.log = logging.getLogger("wa_relay.relay")
        self.auth = auth
        self.lid_map = lid_map
        self.publisher = publisher
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.bridge_restart_step_s = bridge_restart_step_s
        self.bridge_restart_max_s = bridge_restart_max_s
        self.message_cache_size = message_cache_size
        self.sessions: dict[SessionId, Session] = {}
        self.queue = StartQueue(self._connect, interval=start_interval_s, jitter=start_jitter_s, log=self.log)
        self.bridge: Bridge = bridge_factory(self)
        self.ready = False
        self.events_published = 0
        self.replies_sent = 0
        self.bridge_restarts = 0
        self._messages: OrderedDict[tuple[SessionId, str], dict[str, Any]] = OrderedDict()
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.bridge.start()
        self._supervisor = spawn(self._supervise(), name="bridge-supervisor")
        for sid in await self.auth.list_sessions():
            if sid not in self.sessions:
                self.sessions[sid] = self._new_session(sid)
            self.queue.put(sid)
        self.queue.start()
        self.ready = True
        self.log.info("relay started; %d stored sessions queued", len(self.sessions))

    async def stop(self) -> None:
        self._stopping = True
        self.ready = False
        await cancel(self._supervisor)
        self._supervisor = None
        await self.queue.stop()
        for s in self.sessions.values():
            await cancel(s.retry)
            s.retry = None
        try:
            await self.bridge.stop()
        except Exception:
            self.log.exception("stopping the bridge failed")
        for s in self.sessions.values():
            if s.state not in TERMINAL:
                s.state = SessionState.STOPPED

    @property
    def bridge_up(self) -> bool:
        return self.bridge.connected

    def _new_session(self, sid: SessionId) -> Session:
        return Session(id=sid, log=self.log.getChild(sid))

    # ---- the session API (used by api.py) -----------------------------------------------------------------

    def list_sessions(self) -> list[Session]:
        return [self.sessions[k] for k in sorted(self.sessions)]

    def get(self, sid: SessionId) -> Session:
        try:
            return self.sessions[sid]
        except KeyError:
            raise UnknownSession(f"no session {sid}") from None

    async def create(self, sid: SessionId) -> Session:
        """A new session: started with no creds, so the bridge generates them and shows a QR."""
        if sid in self.sessions or await self.auth.get_creds(sid) is not None:
            raise SessionAlreadyExists(f"session {sid} already exists")
        s = self._new_session(sid)
        self.sessions[sid] = s
        self.queue.put(sid)
        s.log.info("session created; queued for its first connect (QR)")
        return s

    async def delete(self, sid: SessionId) -> None:
        """Stop the socket (without logging out on WhatsApp) and wipe the session's creds and keys."""
        s = self.sessions.pop(sid, None)
        if s is None and await self.auth.get_creds(sid) is None:
            raise UnknownSession(f"no session {sid}")
        self.queue.discard(sid)
        if s is not None:
            await cancel(s.retry)
            s.state = SessionState.STOPPED
        await self._stop_socket(sid)
        await self.auth.delete_session(sid)
        self.log.info("session %s deleted (creds and keys wiped)", sid)

    async def logout(self, sid: SessionId) -> None:
        """Unlink the device on WhatsApp, then forget the session like ``delete``."""
        s = self.get(sid)
        if s.state != SessionState.OPEN:
            raise SessionNotReady(f"session {sid} is {s.state.value}, not open")
        try:
            await self.bridge.logout(sid)
        except SessionNotOpen as e:
            raise SessionNotReady(str(e)) from e
        except SidecarNotConnected as e:
            raise BridgeUnavailable(str(e)) from e
        await self.delete(sid)

    async def request_pairing_code(self, sid: SessionId, phone: str) -> str:
        s = self.get(sid)
        try:
            code = await self.bridge.request_pairing_code(sid, phone)
        except SidecarNotConnected as e:
            raise BridgeUnavailable(str(e)) from e
        except SidecarError as e:
            if getattr(e, "code", "") in ("pairing_not_ready", "already_paired", "session_not_found"):
                raise SessionNotReady(str(e)) from e
            raise
        s.state = SessionState.PAIRING_CODE
        return code

    async def send_text(
        self,
        sid: SessionId,
        to: str,
        text: str,
        *,
        message_id: str | None = None,
        quoted: dict[str, Any] | None = None,
        quoted_id: str | None = None,
    ) -> str:
        """Send a text to ``to`` exactly as given; returns the WhatsApp message id. ``quoted`` is a message key;
        ``quoted_id`` looks the key up among recently seen messages (sent without a quote if unknown)."""
        s = self.get(sid)
        if s.state != SessionState.OPEN:
            raise SessionNotReady(f"session {sid} is {s.state.value}, not open")
        if quoted is None and quoted_id:
            cached = self._messages.get((sid, quoted_id))
            if cached is not None:
                quoted = cached["key"]
            else:
                s.log.info("quoted message %s not in the cache; sending without the quote", quoted_id)
        try:
            result = await self.bridge.send_message(
                sid,
                Jid(to),
                {"text": text},
                message_id=message_id,
                quoted={"key": quoted} if quoted else None,
            )
        except SessionNotOpen as e:
            raise SessionNotReady(str(e)) from e
        except SessionNotFound as e:
            raise SessionNotReady(str(e)) from e
        except SidecarNotConnected as e:
            raise BridgeUnavailable(str(e)) from e
        self.replies_sent += 1
        sent_id = result.key.id or message_id or ""
        s.log.info("message %s sent to %s", sent_id, to)
        return sent_id

    # ---- connecting ---------------------------------------------------------------------------------------

    async def _connect(self, sid: SessionId) -> bool:
        """Start one socket from the stored creds (none = new session → QR). False if nothing was started."""
        s = self.sessions.get(sid)
        if s is None or s.state in TERMINAL or self._stopping:
            return False
        if not self.bridge.connected:
            s.state = SessionState.RECONNECTING
            s.log.info("bridge down; the session is started again when it is back")
            return False
        creds = await self.auth.get_creds(sid)
        if s.state not in (SessionState.STARTING, SessionState.RECONNECTING):
            s.state = SessionState.CONNECTING
        s.log.info("connecting (%s creds)", "stored" if creds else "new")
        try:
            await self.bridge.start_session(sid, creds)
        except SessionExists:
            s.log.info("the bridge still has a socket for it; restarting it")
            await self._stop_socket(sid)
            await self.bridge.start_session(sid, creds)
        except SidecarNotConnected:
            s.state = SessionState.RECONNECTING
            return False
        except Exception as e:
            self._record_error(s, None, f"start failed: {e}")
            self._schedule_reconnect(s)
            return True
        return True

    async def _stop_socket(self, sid: SessionId) -> None:
        try:
            await self.bridge.stop_session(sid)
        except (SessionNotFound, SidecarNotConnected):
            pass
        except SidecarError as e:
            self.log.warning("stopping the socket of %s failed: %s", sid, e)

    def _backoff(self, failures: int) -> float:
        base: float = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** max(0, failures - 1))
        return min(self.backoff_max_s, base * random.uniform(0.5, 1.0) + random.uniform(0, self.backoff_initial_s))

    def _schedule_reconnect(self, s: Session) -> None:
        s.failures += 1
        delay = self._backoff(s.failures)
        s.state = SessionState.RECONNECTING
        s.log.info("reconnecting in %.1fs (attempt %d)", delay, s.failures)

        async def later() -> None:
            await asyncio.sleep(delay)
            s.retry = None
            if self.sessions.get(s.id) is s and s.state == SessionState.RECONNECTING:
                self.queue.put(s.id)

        if s.retry is not None:
            s.retry.cancel()
        s.retry = spawn(later(), name=f"reconnect-{s.id}")

    def _record_error(self, s: Session, code: int | None, message: str) -> None:
        s.last_error = LastError(code=code, message=message, at=int(time.time()))

    # ---- BridgeHost: storage calls ------------------------------------------------------------------------

    async def keys_get(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        return await self.auth.get_keys(session, type, ids)

    async def keys_set(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        await self.auth.set_keys(session, data)
        mapping = data.get("lid-mapping")
        if mapping:
            pairs = []
            for key_id, value in mapping.items():
                if not isinstance(value, str) or not value:
                    continue
                if key_id.endswith("_reverse"):
                    lid_user, pn_user = key_id.removesuffix("_reverse"), value
                else:
                    pn_user, lid_user = key_id, value
                pairs.append((f"{jid_user(lid_user)}@lid", f"{jid_user(pn_user)}@s.whatsapp.net"))
            await self._feed_lid_map(pairs, "lid-mapping keys")

    async def creds_save(self, session: SessionId, creds: dict[str, Any]) -> None:
        await self.auth.put_creds(session, creds)

    async def message_get(self, session: SessionId, key: MessageKey) -> dict[str, Any] | None:
        entry = self._messages.get((session, key.id or ""))
        if entry is None:
            self.log.info("message.get for %s of %s: not in the cache", key.id, session)
            return None
        self._messages.move_to_end((session, key.id or ""))
        message = entry["message"]
        return dict(message) if isinstance(message, dict) else None

    def _remember(self, session: SessionId, key: dict[str, Any], message: dict[str, Any]) -> None:
        msg_id = key.get("id")
        if not msg_id:
            return
        self._messages[(session, msg_id)] = {"key": key, "message": message}
        self._messages.move_to_end((session, msg_id))
        while len(self._messages) > self.message_cache_size:
            self._messages.popitem(last=False)

    async def _feed_lid_map(self, pairs: list[tuple[str, str]], source: str) -> None:
        unique: list[tuple[str, str]] = sorted(set(pairs))
        if not unique:
            return
        try:
            await self.lid_map.put_pairs(unique)
        except Exception as e:
            self.log.warning("LID map write of %d pairs from %s failed: %s", len(unique), source, e)

    # ---- BridgeHost: events -------------------------------------------------------------------------------

    async def on_event(self, event: str, session: SessionId | None, data: WireModel | dict[str, Any]) -> None:
        if session is None:
            return
        try:
            if isinstance(data, ConnectionUpdate):
                await self._on_connection(session, data)
            elif isinstance(data, MessagesUpsert):
                await self._on_upsert(session, data)
            elif isinstance(data, LidMappingUpdate):
                await self._feed_lid_map([(data.lid, data.pn)], event)
            elif isinstance(data, dict):
                await self._on_other(event, data)
        except Exception:
            self.log.exception("handling %s of %s failed", event, session)

    async def _on_other(self, event: str, data: dict[str, Any]) -> None:
        pairs: list[tuple[str, str]] = []
        if event == "messaging-history.set":
            for m in data.get("lidPnMappings") or []:
                if isinstance(m, dict) and is_lid(m.get("lid")) and is_pn(m.get("pn")):
                    pairs.append((str(m["lid"]), str(m["pn"])))
        elif event in ("contacts.upsert", "contacts.update"):
            for c in data.get("contacts") or []:
                if not isinstance(c, dict):
                    continue
                pn, lid = pn_lid(c.get("phoneNumber") or c.get("id"), c.get("lid") or c.get("id"))
                if pn and lid:
                    pairs.append((lid, pn))
        await self._feed_lid_map(pairs, event)

    async def _on_connection(self, sid: SessionId, u: ConnectionUpdate) -> None:
        s = self.sessions.get(sid)
        if s is None:
            self.log.info("connection.update for unknown session %s ignored", sid)
            return
        if u.qr:
            s.qr = u.qr
            if s.state != SessionState.PAIRING_CODE:
                s.state = SessionState.QR
            s.log.info("QR ready for scanning")
        if u.isNewLogin:
            s.qr = None
            s.log.info("paired (new login)")
        if u.connection == "connecting" and s.state not in (SessionState.QR, SessionState.PAIRING_CODE):
            s.state = SessionState.CONNECTING
        elif u.connection == "open":
            s.state = SessionState.OPEN
            s.qr = None
            s.failures = 0
            if u.me is not None:
                s.me = account_from_me(u.me.id, u.me.lid)
                if s.me.pn and s.me.lid:
                    await self._feed_lid_map([(s.me.lid, s.me.pn)], "me")
            s.log.info("open as %s", s.me.pn or s.me.lid)
        elif u.connection == "close":
            await self._on_close(s, u)

    async def _on_close(self, s: Session, u: ConnectionUpdate) -> None:
        code = u.statusCode
        reason = u.reason or ""
        if self._stopping or u.requested or self.sessions.get(s.id) is not s:
            if s.state not in TERMINAL:
                s.state = SessionState.STOPPED
            s.log.info("closed on request")
            return
        was = s.state
        s.qr = None
        self._record_error(s, code, reason or f"connection closed ({code})")
        if code == RESTART_REQUIRED:
            s.log.info("restart required (515); reconnecting now from the stored creds")
            s.state = SessionState.CONNECTING
            spawn(self._connect(s.id), name=f"restart-{s.id}")
        elif code in LOGGED_OUT_CODES:
            s.state = SessionState.LOGGED_OUT
            s.me = Account()
            s.log.warning("logged out by WhatsApp (%s: %s); creds and keys wiped, re-pairing needed", code, reason)
            self.queue.discard(s.id)
            await self.auth.delete_session(s.id)
        elif code == CONNECTION_REPLACED:
            s.state = SessionState.CONFLICT
            self.queue.discard(s.id)
            s.log.error(
                "connection replaced (440): another client runs this session; not reconnecting. Check that only "
                "one connector owns it, then restart the connector"
            )
        elif code == TIMED_OUT and was in (SessionState.QR, SessionState.PAIRING_CODE):
            s.state = SessionState.STOPPED
            self._record_error(s, code, "pairing expired: nobody scanned the QR in time; delete and create again")
            s.log.warning("pairing expired (no scan); session stopped and its unregistered creds wiped")
            await self.auth.delete_session(s.id)
        else:
            s.log.warning("connection closed (%s: %s)", code, reason)
            self._schedule_reconnect(s)

    async def _on_upsert(self, sid: SessionId, u: MessagesUpsert) -> None:
        s = self.sessions.get(sid)
        me = s.me if s is not None else Account()
        pairs: list[tuple[str, str]] = []
        for msg in u.messages:
            pairs += lid_pairs(msg)
            if msg.message is not None:
                self._remember(sid, msg.key.model_dump(exclude_none=True), msg.message)
            envelope = build_envelope(msg, session_id=sid, me=me, upsert_type=u.type)
            if envelope is None:
                continue
            try:
                await self.publisher.publish(envelope)
            except PublishError as e:
                self.log.error("event %s (chat %s) not published: %s", envelope.event_id, envelope.chat.jid, e)
                continue
            self.events_published += 1
            self.log.info(
                "event %s published (chat %s, %s, %s)",
                envelope.event_id,
                envelope.chat.jid,
                envelope.message.type,
                u.type,
            )
        await self._feed_lid_map(pairs, "message keys")

    # ---- bridge supervision -------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            started_at = time.monotonic()
            await self.bridge.wait_closed()
            if self._stopping:
                return
            if time.monotonic() - started_at > 60:
                failures = 0
            self.ready = False
            for s in self.sessions.values():
                if s.state not in TERMINAL:
                    s.state = SessionState.RECONNECTING
                    s.qr = None
            while not self._stopping:
                failures += 1
                delay = min(self.bridge_restart_max_s, failures * self.bridge_restart_step_s)
                self.log.error("bridge exited; restarting it in %.1fs (failure %d)", delay, failures)
                await asyncio.sleep(delay)
                try:
                    await self.bridge.start()
                except Exception as e:
                    self.log.error("bridge restart failed: %s", e)
                    continue
                break
            self.bridge_restarts += 1
            for sid, s in self.sessions.items():
                if s.state not in TERMINAL:
                    self.queue.put(sid)
            self.ready = True
            self.log.info("bridge restarted; %d sessions queued", len(self.queue))
