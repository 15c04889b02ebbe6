"""The session manager: runs every linked WhatsApp account through the bridge (DESIGN section 7).

It owns the session registry (``connector.session``) and every change of a session's state: create, delete, logout,
pairing codes, sends, and connecting. What it builds on has a module each (README, "Architecture"): the start queue
and flap history (``startqueue``), what a close means (``policy``), when a session is queued again (``retries``),
leases (``ownership``, ``lease``), the bridge's host (``host``, with ``ingest`` and ``lidfeed``), stale detection
(``stale``) and bridge restarts (``sidecar.supervisor``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from connector.chatstate import ChatState
from connector.config import SessionSettings
from connector.contracts import Account
from connector.errors import (
    SessionExists,
    SessionNotFound,
    SessionNotOpen,
    SessionNotReady,
    SessionOwnedElsewhere,
    SidecarError,
    SidecarNotConnected,
    StoreError,
)
from connector.events import EventHub
from connector.host import RelayHost
from connector.ingest import Ingest
from connector.lidfeed import LidFeed
from connector.messagecache import MessageCache
from connector.ownership import Ownership
from connector.policy import STOPPED_BECAUSE, Action, on_close
from connector.publish.abstract import InboundPublisher
from connector.retries import Retries
from connector.session import PAIRING, TERMINAL, Readiness, Session, SessionState, reply_readiness
from connector.sidecar.client import BridgeFactory
from connector.sidecar.errors import NoSocket, SocketExists
from connector.sidecar.supervisor import BridgeSupervisor
from connector.sidecar.types import ConnectionUpdate, MessageKey
from connector.stale import StaleWatch
from connector.startqueue import FlapBreaker, StartQueue
from connector.store.abstract import AuthStore, LeaseStore, LidMapStore, ReplyLog
from connector.tasks import cancel, spawn
from connector.types import Jid, SessionId


class SessionManager:
    def __init__(
        self,
        settings: SessionSettings,
        *,
        bridge: BridgeFactory,
        auth: AuthStore,
        lid_map: LidMapStore,
        publisher: InboundPublisher,
        leases: LeaseStore | None = None,
        reply_log: ReplyLog | None = None,
        on_fatal: Callable[[int], None] | None = None,
        events: EventHub | None = None,
    ) -> None:
        """Without ``leases`` nothing fences the auth store: safe only with one connector per table. ``reply_log``
        (what ``connector.replies`` records) answers Baileys' retries for messages the message cache no longer has."""
        self.log = logging.getLogger("wa_relay.manager")
        self.settings = settings
        self.auth = auth
        self.sessions: dict[SessionId, Session] = {}
        self.events = events or EventHub()
        self.lid_feed = LidFeed(lid_map)
        self.messages = MessageCache(settings.message_cache_size)
        self.ingest = Ingest(publisher, self.lid_feed, self.messages, self)
        self.host = RelayHost(
            self.sessions,
            auth,
            self,
            ingest=self.ingest,
            lid_feed=self.lid_feed,
            messages=self.messages,
            sent=reply_log,
            hub=self.events,
        )
        self.bridge = bridge(self.host)
        self.supervisor = BridgeSupervisor(
            self.bridge,
            on_down=self._bridge_down,
            on_up=self._bridge_up,
            on_fatal=on_fatal or self._fatal_default,
            restart_step_s=settings.bridge_restart_step_s,
            restart_max_s=settings.bridge_restart_max_s,
            max_crashes=settings.bridge_max_crashes,
            stable_s=settings.bridge_stable_s,
        )
        self.stale = StaleWatch(self.sessions, self.bridge, settings)
        self.queue = StartQueue(
            self._connect,
            interval=settings.session_start_interval_s,
            jitter=settings.session_start_jitter_s,
            log=self.log,
        )
        self.breaker = FlapBreaker(
            max_closes=settings.flap_max, window_s=settings.flap_window_s, hold_s=settings.flap_hold_s
        )
        self.retries = Retries(self.queue, self.breaker, settings, self._wants_connect)
        self.ownership = Ownership.over(leases, auth, settings, self.retries, on_lost=self.on_lease_lost)
        self.ready = False
        self.replies_sent = 0
        self.logged_out_total = 0
        self.conflicts_total = 0
        self.leases_lost_total = 0
        self._stopping = False
        self._discovery: asyncio.Task[None] | None = None
        self._deleting: set[SessionId] = set()

    # ---- lifecycle ----

    async def start(self) -> None:
        """Leases first (so the first connect can take them), then the bridge, then every stored session."""
        self._stopping = False
        await self.ownership.start()
        await self.supervisor.start()
        for sid in await self.auth.list_sessions():
            self._adopt(sid)
        self.queue.start()
        await self.stale.start()
        if self.ownership.keeper is not None:
            self._discovery = spawn(self._discover(), name="session-discovery")
        self.ready = True
        self.log.info("session manager started; %d stored sessions queued", len(self.sessions))

    async def stop(self) -> None:
        """Every socket is closed before the leases are released, so no other connector drives a session while this
        one still does."""
        self._stopping = True
        self.ready = False
        await cancel(self._discovery)
        self._discovery = None
        await self.stale.stop()
        await self.queue.stop()
        for s in self.sessions.values():
            await self.retries.cancel(s)
        await self.supervisor.stop()
        await self.ownership.stop()
        for s in self.sessions.values():
            if s.state not in TERMINAL:
                s.state = SessionState.STOPPED

    @property
    def bridge_up(self) -> bool:
        return self.bridge.connected

    @property
    def bridge_pid(self) -> int | None:
        """The Node process id while it runs (``BridgeClient.process.pid``; ``None`` for fakes)."""
        pid = getattr(getattr(self.bridge, "process", None), "pid", None)
        return pid if isinstance(pid, int) and self.bridge.connected else None

    def _fatal_default(self, code: int) -> None:
        self.log.critical("fatal: exit code %d requested, but nothing is wired to stop the process", code)

    def _bridge_down(self) -> None:
        self.ready = False
        for s in self.sessions.values():
            s.socket_live = False
            if s.state not in TERMINAL:
                s.state = SessionState.RECONNECTING
                s.qr = None
            s.clear_stale()

    async def _bridge_up(self) -> None:
        for sid, s in self.sessions.items():
            if s.state not in TERMINAL and not s.held:
                await self.retries.cancel(s)
                s.held_until = None
                self.queue.put(sid)
        self.ready = True
        self.log.info("bridge restarted; %d sessions queued", len(self.queue))

    # ---- the registry ----

    def has_open_sessions(self) -> bool:
        return any(s.state == SessionState.OPEN for s in self.sessions.values())

    def list_sessions(self) -> list[Session]:
        return [self.sessions[k] for k in sorted(self.sessions)]

    def get(self, sid: SessionId) -> Session:
        try:
            return self.sessions[sid]
        except KeyError:
            raise SessionNotFound(f"no session {sid}") from None

    def _new_session(self, sid: SessionId) -> Session:
        s = Session(id=sid, log=self.log.getChild(sid))
        self.events.watch(s)
        self.sessions[sid] = s
        return s

    def _adopt(self, sid: SessionId) -> None:
        """Queue a session found in the store (at boot, or later by discovery)."""
        if sid not in self.sessions:
            self._new_session(sid).stored = True
        self.queue.put(sid)

    async def _discover(self) -> None:
        """With leases, several connectors share the tables: one that started earlier learns here of sessions
        created on another one since, so it can take them over if their owner dies (DESIGN section 7)."""
        while True:
            await asyncio.sleep(self.settings.lease_ttl_s)
            try:
                stored = await self.auth.list_sessions()
            except Exception as e:
                self.log.warning("listing stored sessions failed (%s); retried later", e)
                continue
            for sid in stored:
                if sid not in self.sessions and sid not in self._deleting:
                    self.log.info("session %s found in the store; watching it", sid)
                    self._adopt(sid)

    # ---- what the API asks for ----

    async def create(self, sid: SessionId) -> Session:
        """A new session: started with no creds, so the bridge generates them and shows a QR. An id whose session
        was logged out or wiped (pairing expired) may be created again: it starts clean."""
        old = self.sessions.get(sid)
        if old is not None and not (old.wiped and old.state in TERMINAL):
            raise SessionExists(f"session {sid} already exists")
        if old is None and await self.auth.get_creds(sid) is not None:
            raise SessionExists(f"session {sid} already exists")
        if old is not None:
            await self.retries.cancel(old)
            await self.auth.delete_session(sid)  # anything written since the wipe
        self.breaker.forget(sid)
        s = self._new_session(sid)
        self.events.created(s)
        self.queue.put(sid)
        s.log.info("session created; queued for its first connect (QR)")
        return s

    async def delete(self, sid: SessionId) -> None:
        """Stop the socket (without logging out on WhatsApp), release the lease, wipe creds, keys and lease item.

        Refused while another connector owns the session: wiping its keys from here would break the socket that
        connector runs."""
        s = self.sessions.get(sid)
        if s is None and await self.auth.get_creds(sid) is None:
            raise SessionNotFound(f"no session {sid}")
        if s is not None and s.owner is not None:
            raise SessionOwnedElsewhere(f"session {sid} is owned by connector {s.owner}; delete it there")
        self.sessions.pop(sid, None)  # from here on, writes from the bridge for it are refused
        self._deleting.add(sid)  # and discovery must not adopt it again before the store is wiped
        try:
            self.queue.discard(sid)
            if s is not None:
                await self.retries.cancel(s)
                s.state = SessionState.STOPPED
            await self._stop_socket(sid)
            await self._wipe(sid)
        except Exception as e:
            # Its items are still stored: keep showing it (stopped, with the reason) so the delete can be retried.
            kept = s or self._new_session(sid)
            self.sessions[sid] = kept
            kept.stored, kept.state = True, SessionState.STOPPED
            kept.record_error(None, f"delete failed, retry it: {e}")
            raise
        finally:
            self._deleting.discard(sid)
        self.breaker.forget(sid)
        self.events.deleted(sid)
        self.log.info("session %s deleted (creds, keys and lease removed)", sid)

    async def logout(self, sid: SessionId) -> bool:
        """Unlink the device on WhatsApp when the socket is open, then forget the session like ``delete``. Returns
        whether the device was unlinked; if not, it stays in the phone's linked devices until removed there."""
        s = self.get(sid)
        if s.owner is not None:
            raise SessionOwnedElsewhere(f"session {sid} is owned by connector {s.owner}; log it out there")
        unlinked = False
        if s.state == SessionState.OPEN:
            try:
                await self.bridge.logout(sid)
                unlinked = True
            except (SessionNotReady, SidecarNotConnected) as e:
                s.log.warning("logout on WhatsApp not possible (%s); wiping locally only", e)
        else:
            s.log.info("not open (%s): nothing to unlink on WhatsApp; wiping locally", s.state.value)
        await self.delete(sid)
        return unlinked

    async def request_pairing_code(self, sid: SessionId, phone: str) -> str:
        """Only while the QR window is open (states ``qr`` and ``pairing_code``; baileys-v7.md section 3.1: the
        socket must be in its registration stage, i.e. after the first ``qr``). A new request in ``pairing_code``
        replaces the previous code (e.g. a mistyped phone number)."""
        s = self.get(sid)
        if s.state not in PAIRING:
            raise SessionNotReady(
                f"session {sid} is {s.state.value}: a pairing code can only be requested while the QR window is open "
                "(state qr); create the session (again) and wait for state qr"
            )
        code = await self.bridge.request_pairing_code(sid, phone)
        s.state = SessionState.PAIRING_CODE
        s.log.info("pairing code issued")
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
        s = self._open_here(sid)
        if quoted is None and quoted_id:
            quoted = self.messages.key(sid, quoted_id)
            if quoted is None:
                s.log.info("quoted message %s not in the cache; sending without the quote", quoted_id)
        if message_id:
            self.ingest.own_send(sid, message_id)
        with self.events.sending(sid, message_id):
            result = await self.bridge.send_message(
                sid, Jid(to), {"text": text}, message_id=message_id, quoted={"key": quoted} if quoted else None
            )
            self.replies_sent += 1
            s.sent_total += 1
            sent_id = result.key.id or message_id or ""
            if sent_id and sent_id != message_id:
                self.ingest.own_send(sid, sent_id)  # an id Baileys chose: its echo may already have been published
            self.events.sent(s, sent_id, to)
        s.log.info("message %s sent to %s", sent_id, to)
        return sent_id

    async def send_chat_state(self, sid: SessionId, to: str, state: ChatState) -> None:
        """Show "typing…" (``composing``) or end it (``paused``) in the chat ``to`` exactly as given."""
        self._open_here(sid)
        await self.bridge.send_presence(sid, state, Jid(to))

    async def mark_read(self, sid: SessionId, key: dict[str, Any]) -> None:
        """Mark the message with this key read (a read receipt to its sender)."""
        self._open_here(sid)
        await self.bridge.send_read(sid, [MessageKey.model_validate(key)])

    def _open_here(self, sid: SessionId) -> Session:
        """The session, if it is open and this connector owns it: what every send needs."""
        s = self.get(sid)
        if s.owner is not None:
            raise SessionOwnedElsewhere(f"session {sid} is owned by connector {s.owner}")
        if s.state != SessionState.OPEN:
            raise SessionNotOpen(f"session {sid} is {s.state.value}, not open")
        return s

    async def reply_readiness(self, sid: SessionId) -> Readiness:
        """What a reply for ``sid`` can do now (``connector.session.reply_readiness``; the outbound consumer asks).
        A session not in the registry is gone unless its creds are stored and it is not being deleted: then another
        connector created it, and discovery has not brought it here yet."""
        s = self.sessions.get(sid)
        if s is not None:
            return reply_readiness(s)
        if sid in self._deleting or await self.auth.get_creds(sid) is None:
            return Readiness.UNKNOWN
        return Readiness.ELSEWHERE

    async def release_receipts(self, session: SessionId, ids: list[str]) -> None:
        """The ingest's receipt sink: these messages are durable, their held delivery receipts may go."""
        try:
            await self.bridge.release_receipts(session, ids)
        except SidecarError as e:
            # The socket (or the bridge) is gone and its held receipts with it: WhatsApp delivers those again.
            self.log.debug("releasing %d receipts of %s failed: %s", len(ids), session, e)

    # ---- connecting ----

    def _wants_connect(self, s: Session) -> bool:
        if self._stopping or self.sessions.get(s.id) is not s or s.held:
            return False
        return s.state not in TERMINAL or s.owner is not None

    async def _connect(self, sid: SessionId) -> bool:
        """Start one socket from the stored creds (none = new session → QR). False if nothing was started."""
        s = self.sessions.get(sid)
        if s is None or not self._wants_connect(s):
            return False
        if not self.bridge.connected:
            s.state = SessionState.RECONNECTING
            s.log.info("bridge down; the session is started again when it is back")
            return False
        if not await self.ownership.take(s):
            return False
        try:
            creds = await self.auth.get_creds(sid)
        except StoreError as e:
            await self.ownership.release(sid)  # while the store is unreadable from here, another connector may try
            self.retries.back_off(s, f"reading the creds failed: {e}")
            return False
        if self.sessions.get(sid) is not s:
            return False  # deleted while its lease or creds were read
        if creds is None and s.stored:
            # Another connector deleted (or logged out) the session while we only watched it. Starting it now
            # would generate new creds and show a QR nobody asked for.
            s.log.info("its creds are gone from the store (deleted elsewhere); forgetting the session")
            self.sessions.pop(sid, None)
            await self.ownership.release(sid)
            return False
        s.wiped = False
        if s.state not in (SessionState.STARTING, SessionState.RECONNECTING):
            s.state = SessionState.CONNECTING
        if not await self.host.quiesce(sid, self.settings.quiesce_s):
            # The new socket must not read keys before a write of the previous one has landed.
            self.retries.back_off(s, "a key write of the previous socket is still in flight")
            return False
        s.log.info("connecting (%s creds)", "stored" if creds else "new")
        s.socket_live = True
        try:
            await self.bridge.start_session(sid, creds)
        except SocketExists:
            s.log.info("the bridge still has a socket for it; restarting it")
            await self._stop_socket(sid)
            await self.bridge.start_session(sid, creds)
        except SidecarNotConnected:
            s.socket_live = False
            s.state = SessionState.RECONNECTING
            return False
        except Exception as e:
            s.socket_live = False
            self.retries.back_off(s, f"start failed: {e}")
            return True
        if self.sessions.get(sid) is not s:
            await self._stop_socket(sid)  # deleted while the socket was starting: it must not outlive the session
        return True

    async def _stop_socket(self, sid: SessionId) -> None:
        try:
            await self.bridge.stop_session(sid)
        except (NoSocket, SidecarNotConnected):
            pass
        except SidecarError as e:
            self.log.warning("stopping the socket of %s failed: %s", sid, e)

    async def _wipe(self, sid: SessionId) -> None:
        """Release the lease, then delete every item of the session (creds, keys, lease) from the auth table."""
        await self.ownership.release(sid)
        await self.auth.delete_session(sid)
        self.ownership.forget(sid)

    # ---- connection updates (from the host) ----

    async def on_connection(self, sid: SessionId, u: ConnectionUpdate) -> None:
        s = self.sessions.get(sid)
        if s is None:
            self.log.info("connection.update for unknown session %s ignored", sid)
            return
        if u.connection == "close":
            await self._on_close(s, u)
        elif s.apply_update(u) == SessionState.OPEN and s.me.pn and s.me.lid:
            await self.lid_feed.feed([(s.me.lid, s.me.pn)], "me")

    async def _on_close(self, s: Session, u: ConnectionUpdate) -> None:
        code, reason = u.statusCode, u.reason or ""
        s.socket_live = False
        s.clear_stale()
        requested = self._stopping or u.requested or self.sessions.get(s.id) is not s or s.owner is not None
        decision = on_close(
            code,
            requested=requested,
            pairing=s.state in PAIRING,
            recent_closes=0 if requested else self.breaker.record(s.id),
            flap_max=self.breaker.max_closes,
            creds_saved=u.credsSaved is not False,
        )
        if u.credsSaved is False:
            s.log.error("the socket closed with creds the store does not have (creds.save kept failing)")
        if decision.action is Action.STOP:
            if s.state not in TERMINAL:
                s.state = SessionState.STOPPED
            s.log.info("closed on request")
            return
        s.qr = None
        s.record_error(code, reason or f"connection closed ({code})")
        if decision.action is Action.LOG_OUT:
            await self._end(s, SessionState.LOGGED_OUT)
            s.me, s.wiped = Account(), True
            self.logged_out_total += 1
            s.log.warning("logged out by WhatsApp (%s: %s); creds, keys and lease wiped, pair again", code, reason)
            await self._wipe(s.id)
            return
        if decision.action is Action.CONFLICT:
            await self._end(s, SessionState.CONFLICT)
            self.conflicts_total += 1
            s.log.error(
                "connection replaced (440): another client runs this session; not reconnecting. Check that only "
                "one connector owns it, then restart the connector"
            )
            return
        if decision.reset_pairing:
            s.wiped, s.stored = True, False  # wiped on purpose: the fresh QR that follows is wanted
            await self._wipe(s.id)
            if decision.action in STOPPED_BECAUSE:
                s.record_error(code, STOPPED_BECAUSE[decision.action])  # first: the state's event carries it
                s.state = SessionState.STOPPED
                s.log.warning("%s (its unregistered creds wiped)", STOPPED_BECAUSE[decision.action])
                return
            s.log.warning("closed during pairing (%s: %s); creds reset, a fresh QR follows", code, reason)
        if decision.action is Action.HOLD:
            self.retries.hold(s)
        elif decision.action is Action.RECONNECT_NOW:
            s.log.info("restart required (515); reconnecting now from the stored creds")
            s.state = SessionState.CONNECTING
            await self.retries.cancel(s)
            spawn(self.queue.connect_now(s.id), name=f"restart-{s.id}")
        else:
            s.log.warning("connection closed (%s: %s)", code, reason)
            self.retries.back_off(s)

    async def _end(self, s: Session, state: SessionState) -> None:
        """Into a terminal state: nothing queues it again."""
        s.state = state
        self.queue.discard(s.id)
        await self.retries.cancel(s)

    # ---- leases ----

    async def on_lease_lost(self, sid: SessionId) -> None:
        """The keeper's ``on_lost`` (and ``LeaseLost`` from a fenced write): close the socket at once, show the
        session as owned elsewhere, and retry acquisition (takeover once that lease expires)."""
        s = self.sessions.get(sid)
        if s is None or self._stopping or s.owner is not None:
            return
        self.leases_lost_total += 1
        s.owner, s.owner_until = "another connector", time.time() + self.settings.lease_ttl_s
        s.state = SessionState.STOPPED
        s.qr = None
        self.queue.discard(sid)
        s.log.error("lease lost (taken over, or not renewed in time); closing the socket at once")
        await self._stop_socket(sid)
        await self.ownership.owned_elsewhere(s)
