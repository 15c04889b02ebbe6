"""The session manager: runs every linked WhatsApp account through the bridge and applies the connection policy.

``Relay`` implements the bridge's ``BridgeHost`` (key store, creds, ``getMessage`` and events) and holds the
``BridgeClient`` rather than extending it. It owns:

- the session registry and states (DESIGN section 7): ``starting → qr | pairing_code → connecting → open``, plus
  ``reconnecting``, ``logged_out``, ``conflict``, ``stopped``;
- the ``StartQueue`` (``connector/startqueue.py``): every connect (boot, API create, reconnect after backoff, bridge
  restart, lease takeover) goes through it, one at a time, ``SESSION_START_INTERVAL_S`` plus jitter apart. The only
  exception is 515 (restart required after pairing), which reconnects at once (``StartQueue.connect_now``);
- the close-code policy (DESIGN section 7): 515 restart now from stored creds; 401/403/411/419 logged out (lease
  released, creds and keys wiped, WARNING, ``wa_relay_logged_out_total``); 440 conflict (no reconnect, ERROR,
  ``wa_relay_conflicts_total``); 408 while waiting for a QR scan or pairing code = pairing expired (stopped, wiped:
  unregistered creds, or creds carrying the ``me`` a pairing-code request sets, would otherwise be started again and
  try to *log in* an identity that was never registered); anything else reconnects with exponential backoff and
  jitter capped at ``RECONNECT_MAX_S``. Every unrequested close feeds the flap breaker: more than ``FLAP_MAX`` closes in
  ``FLAP_WINDOW_S`` hold the session back for ``FLAP_HOLD_S`` (``held_until`` in the API, ERROR log);
- leases (DESIGN section 7, ``connector/lease.py``): before each connect the session's lease is acquired (which
  also fences the auth store). A session another connector owns is shown as ``stopped`` with ``owner``
  ``{id, until}`` and ``last_error`` "owned by …", and acquisition is retried when that lease can expire (takeover).
  A lost lease (the keeper's ``on_lost``, or ``LeaseLost`` from a fenced key/creds write) closes the socket at
  once and goes the same way. Logout and delete release the lease; ``delete_session`` removes every item;
- stale detection: an ``open`` session that received nothing (no event from the bridge and no frame on its socket,
  ``lastReceivedAt`` in ``session.list``) for ``STALE_AFTER_S``, or no message for ``STALE_MESSAGES_AFTER_S`` (0 =
  off), is flagged ``stale`` with re-link guidance. It is a flag, not a state: the socket may still be fine;
- publishing: every upserted message (``notify`` and ``append``) becomes an ``InboundEnvelope`` for the publisher,
  except the echo of a message this connector sent itself;
- the LID map, fed from ``lid-mapping.update``, message alt jids, ``lid-mapping`` key writes, ``me`` on open,
  ``messaging-history.set`` mappings and contacts. A LID-map failure is logged and never fails the caller;
- ``message.get``: a bounded LRU of recently seen message contents (``MESSAGE_CACHE_SIZE`` entries over all sessions,
  including our own sends, which Baileys re-emits as ``append`` upserts). Baileys asks for a message when a recipient
  requests a retry, normally within seconds; an older message is answered ``None`` and Baileys then cannot re-send it
  (the recipient sees "waiting for this message");
- bridge supervision: when the bridge process exits, it is restarted with linear backoff (STYLE rule 6) and every
  session that should run is queued again, from its stored creds (no QR). More than ``BRIDGE_MAX_CRASHES`` exits
  without a stable run (``bridge_stable_s``) in between call ``on_fatal(EXIT_BRIDGE_CRASHLOOP)``: ``python -m
  connector`` then stops and exits with that code, and the orchestrator restarts the whole connector.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from connector.contracts import Account, InboundEnvelope, jid_user
from connector.errors import (
    LeaseLost,
    PublishError,
    SessionExists,
    SessionGone,
    SessionNotFound,
    SessionNotOpen,
    SessionNotReady,
    SessionOwnedElsewhere,
    SidecarError,
    SidecarNotConnected,
)
from connector.inbound import account_from_me, build_envelope, is_lid, is_pn, lid_pairs, pn_lid
from connector.publish.abstract import InboundPublisher
from connector.sidecar.errors import NoSocket, SocketExists
from connector.sidecar.types import (
    ConnectionUpdate,
    LidMappingUpdate,
    MessageKey,
    MessageSendResult,
    MessagesUpsert,
    SessionListResult,
    SessionStartResult,
    WireModel,
)
from connector.startqueue import FlapBreaker, StartQueue, backoff
from connector.store.abstract import AuthStore, Lease, LeaseStore, LidMapStore
from connector.tasks import cancel, spawn
from connector.types import Jid, SessionId

OWN_SENDS_SIZE = 10_000
"""Our own sends remembered so their echo is not published (needed for seconds; a missed one is only dropped later
by the function)."""
LID_PAIR_CACHE_SIZE = 50_000
"""LID/PN pairs remembered as written (about 200 bytes each: 10 MB at most)."""
MESSAGE_CACHE_SIZE = 5000


_K = TypeVar("_K")
_V = TypeVar("_V")


def _lru_put(cache: OrderedDict[_K, _V], key: _K, value: _V, limit: int) -> None:
    """Put ``key`` as the most recent entry of ``cache`` and drop the oldest beyond ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


LOGGED_OUT_CODES = frozenset({401, 403, 411, 419})
RESTART_REQUIRED = 515
CONNECTION_REPLACED = 440
TIMED_OUT = 408
EXIT_BRIDGE_CRASHLOOP = 14
"""Exit code of ``python -m connector`` when the bridge keeps crashing (config errors are 11)."""
STALE_GUIDANCE = (
    "WhatsApp stopped delivering to this linked device. Keep the phone online and open WhatsApp on it; if nothing "
    "arrives within minutes, re-link: on the phone open Settings > Linked devices, remove this device, then delete "
    "and create the session here and scan the new QR (or use a pairing code)."
)


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


# ---- what the relay needs from the lease keeper (``connector.lease.LeaseKeeper`` has it; tests pass a fake) ----


class Leases(Protocol):
    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...

    async def acquire(self, session: SessionId) -> Lease | None: ...

    async def release(self, session: SessionId) -> None: ...


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

    async def list_sessions(self) -> SessionListResult: ...

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
    held_until: float | None = None
    """Unix seconds: the flap breaker holds the session back until then."""
    owner: str | None = None
    owner_until: float | None = None
    """Another connector owns the session (its lease), until then at least; acquisition is retried."""
    wiped: bool = False
    """Creds and keys were deleted (logged out, pairing expired): late writes from the bridge are refused."""
    stored: bool = False
    """Its creds were in the store (found at boot or by discovery, or saved since): if they are gone at the next
    connect, another connector deleted the session, and it must not come back here as a fresh QR."""
    opened_at: float = 0.0
    last_event_at: float = 0.0
    last_message_at: float = 0.0
    stale_since: float | None = None
    stale_reason: str | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("wa_relay.relay"))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "state": self.state.value, "me": {"pn": self.me.pn, "lid": self.me.lid}}
        if self.qr:
            out["qr"] = self.qr
        if self.last_error:
            out["last_error"] = self.last_error.as_dict()
        if self.held_until is not None:
            out["held_until"] = int(self.held_until)
        if self.owner is not None:
            out["owner"] = {"id": self.owner, "until": int(self.owner_until) if self.owner_until else None}
        out["stale"] = self.stale_since is not None
        if self.stale_since is not None:
            out["stale_since"] = int(self.stale_since)
            out["stale_reason"] = self.stale_reason
            out["guidance"] = STALE_GUIDANCE
        return out


class Relay:
    def __init__(
        self,
        bridge_factory: BridgeFactory,
        auth: AuthStore,
        lid_map: LidMapStore,
        publisher: InboundPublisher,
        *,
        leases: Leases | None = None,
        lease_store: LeaseStore | None = None,
        lease_ttl_s: float = 30.0,
        start_interval_s: float = 3.0,
        start_jitter_s: float = 2.0,
        backoff_initial_s: float = 2.0,
        backoff_max_s: float = 300.0,
        flap_max: int = 5,
        flap_window_s: float = 600.0,
        flap_hold_s: float = 1800.0,
        stale_after_s: float = 600.0,
        stale_messages_after_s: float = 0.0,
        stale_check_s: float | None = None,
        bridge_restart_step_s: float = 2.0,
        bridge_restart_max_s: float = 30.0,
        bridge_max_crashes: int = 5,
        bridge_stable_s: float = 60.0,
        message_cache_size: int = MESSAGE_CACHE_SIZE,
    ) -> None:
        self.log = logging.getLogger("wa_relay.relay")
        self.auth = auth
        self.lid_map = lid_map
        self.publisher = publisher
        self.leases = leases
        self.lease_store = lease_store
        self.lease_ttl_s = lease_ttl_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stale_after_s = stale_after_s
        self.stale_messages_after_s = stale_messages_after_s
        active = [x for x in (stale_after_s, stale_messages_after_s) if x > 0]
        self.stale_check_s = stale_check_s or (min(30.0, max(0.05, min(active) / 4)) if active else 0.0)
        self.bridge_restart_step_s = bridge_restart_step_s
        self.bridge_restart_max_s = bridge_restart_max_s
        self.bridge_max_crashes = bridge_max_crashes
        self.bridge_stable_s = bridge_stable_s
        self.message_cache_size = message_cache_size
        self.sessions: dict[SessionId, Session] = {}
        self.queue = StartQueue(self._connect, interval=start_interval_s, jitter=start_jitter_s, log=self.log)
        self.breaker = FlapBreaker(max_closes=flap_max, window_s=flap_window_s, hold_s=flap_hold_s)
        self.bridge: Bridge = bridge_factory(self)
        self.ready = False
        self.on_fatal: Callable[[int], None] = self._fatal_default
        self.fatal_code: int | None = None
        # counters for /metrics
        self.events_published = 0
        self.replies_sent = 0
        self.bridge_restarts = 0
        self.logged_out_total = 0
        self.conflicts_total = 0
        self.leases_lost_total = 0
        self.stale_total = 0
        self._messages: OrderedDict[tuple[SessionId, str], dict[str, Any]] = OrderedDict()
        self._own_sends: OrderedDict[tuple[SessionId, str], None] = OrderedDict()
        """Ids of messages this connector sent (bounded by ``OWN_SENDS_SIZE``). Baileys emits each of our sends back
        as a ``fromMe`` upsert; publishing it cost an SQS send, a poll, a delete and a function invocation per reply,
        only for the function to drop it as "own message" (``make bench``, AWS calls section). Messages the account
        sent from the phone or another device are still published."""
        self._lid_pairs_stored: OrderedDict[tuple[str, str], None] = OrderedDict()
        """LID/PN pairs this process wrote to the LID map, most recent last (bounded by ``LID_PAIR_CACHE_SIZE``).
        Every message of a chat carries the same pair in its alt jids; writing it again for each message was two
        DynamoDB items per message for nothing (``make bench``, AWS calls section). A LID↔PN pair does not change,
        and a new pair for the same LID or PN is a different key here, so it is still written."""
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._stale_watch: asyncio.Task[None] | None = None
        self._discovery: asyncio.Task[None] | None = None
        self._deleting: set[SessionId] = set()

    # ---- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.bridge.start()
        self._supervisor = spawn(self._supervise(), name="bridge-supervisor")
        for sid in await self.auth.list_sessions():
            self._adopt(sid)
        self.queue.start()
        if self.stale_check_s > 0:
            self._stale_watch = spawn(self._watch_stale(), name="stale-watch")
        if self.leases is not None:
            self._discovery = spawn(self._discover(), name="session-discovery")
        self.ready = True
        self.log.info("relay started; %d stored sessions queued", len(self.sessions))

    async def stop(self) -> None:
        self._stopping = True
        self.ready = False
        await cancel(self._supervisor)
        self._supervisor = None
        await cancel(self._stale_watch)
        self._stale_watch = None
        await cancel(self._discovery)
        self._discovery = None
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

    @property
    def bridge_pid(self) -> int | None:
        """The Node process id while it runs (``BridgeClient.process.pid``; ``None`` for fakes)."""
        pid = getattr(getattr(self.bridge, "process", None), "pid", None)
        return pid if isinstance(pid, int) and self.bridge.connected else None

    def _new_session(self, sid: SessionId) -> Session:
        return Session(id=sid, log=self.log.getChild(sid))

    def _fatal_default(self, code: int) -> None:
        self.log.critical("fatal: exit code %d requested, but nothing is wired to stop the process", code)

    # ---- the session API (used by api.py) -----------------------------------------------------------------

    def has_open_sessions(self) -> bool:
        return any(s.state == SessionState.OPEN for s in self.sessions.values())

    def list_sessions(self) -> list[Session]:
        return [self.sessions[k] for k in sorted(self.sessions)]

    def get(self, sid: SessionId) -> Session:
        try:
            return self.sessions[sid]
        except KeyError:
            raise SessionNotFound(f"no session {sid}") from None

    def _adopt(self, sid: SessionId) -> None:
        """Queue a session found in the store (at boot, or later by discovery)."""
        if sid not in self.sessions:
            s = self._new_session(sid)
            s.stored = True
            self.sessions[sid] = s
        self.queue.put(sid)

    async def _discover(self) -> None:
        """With leases, several connectors share the tables: one that started earlier learns here of sessions
        created on another one since, so it can take them over if their owner dies (DESIGN section 7)."""
        while True:
            await asyncio.sleep(self.lease_ttl_s)
            try:
                stored = await self.auth.list_sessions()
            except Exception as e:
                self.log.warning("listing stored sessions failed (%s); retried later", e)
                continue
            for sid in stored:
                if sid not in self.sessions and sid not in self._deleting:
                    self.log.info("session %s found in the store; watching it", sid)
                    self._adopt(sid)

    async def create(self, sid: SessionId) -> Session:
        """A new session: started with no creds, so the bridge generates them and shows a QR. An id whose session
        was logged out or wiped (pairing expired) may be created again: it starts clean."""
        old = self.sessions.get(sid)
        if old is not None and not (old.wiped and old.state in TERMINAL):
            raise SessionExists(f"session {sid} already exists")
        if old is None and await self.auth.get_creds(sid) is not None:
            raise SessionExists(f"session {sid} already exists")
        if old is not None:
            await cancel(old.retry)
            await self.auth.delete_session(sid)  # anything written since the wipe
        self.breaker.forget(sid)
        s = self._new_session(sid)
        self.sessions[sid] = s
        self.queue.put(sid)
        s.log.info("session created; queued for its first connect (QR)")
        return s

    async def delete(self, sid: SessionId) -> None:
        """Stop the socket (without logging out on WhatsApp), release the lease, wipe creds, keys and lease item.

        Refused (409) while another connector owns the session: wiping its keys from here would break the socket
        that connector runs."""
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
                await cancel(s.retry)
                s.retry = None
                s.state = SessionState.STOPPED
            await self._stop_socket(sid)
            await self._wipe(sid)
        finally:
            self._deleting.discard(sid)
        self.breaker.forget(sid)
        self.log.info("session %s deleted (creds, keys and lease removed)", sid)

    async def logout(self, sid: SessionId) -> None:
        """Unlink the device on WhatsApp (when the socket is open), then forget the session like ``delete``."""
        s = self.get(sid)
        if s.owner is not None:
            raise SessionOwnedElsewhere(f"session {sid} is owned by connector {s.owner}; log it out there")
        if s.state == SessionState.OPEN:
            try:
                await self.bridge.logout(sid)
            except SessionNotReady as e:
                s.log.warning("logout on WhatsApp not possible (%s); wiping locally only", e)
        else:
            s.log.info("not open (%s): nothing to unlink on WhatsApp; wiping locally", s.state.value)
        await self.delete(sid)

    async def request_pairing_code(self, sid: SessionId, phone: str) -> str:
        """Only while the QR window is open (states ``qr`` and ``pairing_code``; baileys-v7.md section 3.1: the
        socket must be in its registration stage, i.e. after the first ``qr``). A new request in ``pairing_code``
        replaces the previous code (e.g. a mistyped phone number)."""
        s = self.get(sid)
        if s.state not in (SessionState.QR, SessionState.PAIRING_CODE):
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
        s = self.get(sid)
        if s.owner is not None:
            raise SessionOwnedElsewhere(f"session {sid} is owned by connector {s.owner}")
        if s.state != SessionState.OPEN:
            raise SessionNotOpen(f"session {sid} is {s.state.value}, not open")
        if quoted is None and quoted_id:
            cached = self._messages.get((sid, quoted_id))
            if cached is not None:
                quoted = cached["key"]
            else:
                s.log.info("quoted message %s not in the cache; sending without the quote", quoted_id)
        if message_id:
            # Before the send: Baileys emits the echo upsert before the bridge answers.
            self._own_send(sid, message_id)
        result = await self.bridge.send_message(
            sid,
            Jid(to),
            {"text": text},
            message_id=message_id,
            quoted={"key": quoted} if quoted else None,
        )
        self.replies_sent += 1
        sent_id = result.key.id or message_id or ""
        if sent_id and sent_id != message_id:
            self._own_send(sid, sent_id)  # an id Baileys chose: its echo may already have been published
        s.log.info("message %s sent to %s", sent_id, to)
        return sent_id

    # ---- connecting ---------------------------------------------------------------------------------------

    def _wants_connect(self, s: Session) -> bool:
        if s.held_until is not None and s.held_until > time.time():
            return False
        return s.state not in TERMINAL or s.owner is not None

    async def _connect(self, sid: SessionId) -> bool:
        """Start one socket from the stored creds (none = new session → QR). False if nothing was started."""
        s = self.sessions.get(sid)
        if s is None or self._stopping or not self._wants_connect(s):
            return False
        if not self.bridge.connected:
            s.state = SessionState.RECONNECTING
            s.log.info("bridge down; the session is started again when it is back")
            return False
        if self.leases is not None:
            try:
                lease = await self.leases.acquire(sid)
            except Exception as e:
                self._record_error(s, None, f"lease acquisition failed: {e}")
                s.log.warning("lease acquisition failed (%s); retrying with backoff", e)
                self._schedule_reconnect(s)
                return False
            if lease is None:
                await self._owned_elsewhere(s)
                return False
            if s.owner is not None:
                s.log.info("lease acquired (token %d); taking the session over", lease.token)
                s.owner = s.owner_until = None
                s.state = SessionState.STARTING
        creds = await self.auth.get_creds(sid)
        if creds is None and s.stored:
            # Another connector deleted (or logged out) the session while we only watched it. Starting it now
            # would generate new creds and show a QR nobody asked for.
            s.log.info("its creds are gone from the store (deleted elsewhere); forgetting the session")
            self.sessions.pop(sid, None)
            if self.leases is not None:
                try:
                    await self.leases.release(sid)
                except Exception as e:
                    s.log.warning("releasing the lease failed: %s", e)
            return False
        s.wiped = False
        if s.state not in (SessionState.STARTING, SessionState.RECONNECTING):
            s.state = SessionState.CONNECTING
        s.log.info("connecting (%s creds)", "stored" if creds else "new")
        try:
            await self.bridge.start_session(sid, creds)
        except SocketExists:
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
        except (NoSocket, SidecarNotConnected):
            pass
        except SidecarError as e:
            self.log.warning("stopping the socket of %s failed: %s", sid, e)

    async def _wipe(self, sid: SessionId) -> None:
        """Release the lease, then delete every item of the session (creds, keys, lease) from the auth table."""
        if self.leases is not None:
            try:
                await self.leases.release(sid)
            except Exception as e:
                self.log.warning("releasing the lease of %s failed: %s", sid, e)
        await self.auth.delete_session(sid)

    def _backoff(self, failures: int) -> float:
        return backoff(failures, initial=self.backoff_initial_s, cap=self.backoff_max_s)

    def _later(self, s: Session, delay: float, why: str) -> None:
        """Queue the session again after ``delay`` seconds (one pending timer per session)."""

        async def later() -> None:
            await asyncio.sleep(delay)
            s.retry = None
            if self.sessions.get(s.id) is not s or self._stopping:
                return
            if s.held_until is not None and s.held_until <= time.time():
                s.held_until = None
                s.log.info("flap hold over; queued again")
            if self._wants_connect(s):
                self.queue.put(s.id)

        if s.retry is not None:
            s.retry.cancel()
        s.retry = spawn(later(), name=f"{why}-{s.id}")

    def _schedule_reconnect(self, s: Session) -> None:
        s.failures += 1
        delay = self._backoff(s.failures)
        s.state = SessionState.RECONNECTING
        s.log.info("reconnecting in %.1fs (attempt %d)", delay, s.failures)
        self._later(s, delay, "reconnect")

    def _hold(self, s: Session, until: float) -> None:
        s.held_until = until
        s.state = SessionState.RECONNECTING
        self.queue.discard(s.id)
        message = (
            f"flapping: more than {self.breaker.max_closes} closes within {int(self.breaker.window_s)}s; held back "
            f"until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))}"
        )
        code = s.last_error.code if s.last_error else None
        self._record_error(s, code, message)
        s.log.error("%s (last close %s)", message, code)
        self._later(s, max(0.0, until - time.time()), "flap-hold")

    def _record_error(self, s: Session, code: int | None, message: str) -> None:
        s.last_error = LastError(code=code, message=message, at=int(time.time()))

    # ---- leases -------------------------------------------------------------------------------------------

    async def _owned_elsewhere(self, s: Session) -> None:
        """Another connector holds the session's lease: show it and try again when that lease could expire."""
        lease: Lease | None = None
        if self.lease_store is not None:
            try:
                lease = await self.lease_store.get_lease(s.id)
            except Exception as e:
                s.log.warning("reading the lease failed: %s", e)
        owner = lease.owner if lease is not None else "another connector"
        until = lease.expires_at if lease is not None else time.time() + self.lease_ttl_s
        if s.owner != owner:
            s.log.info("owned by %s until %s; not started here, acquisition retried", owner, int(until))
        s.owner, s.owner_until = owner, until
        s.state = SessionState.STOPPED
        s.qr = None
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
        self._record_error(s, None, f"owned by {owner} until {when}")
        delay = min(self.lease_ttl_s, max(1.0, until - time.time())) + random.uniform(0, 1.0)
        self._later(s, delay, "lease-retry")

    async def on_lease_lost(self, sid: SessionId) -> None:
        """The keeper's ``on_lost`` (and ``LeaseLost`` from a fenced write): close the socket at once, show the
        session as owned elsewhere, and retry acquisition (takeover once that lease expires)."""
        s = self.sessions.get(sid)
        if s is None or self._stopping or s.owner is not None:
            return
        self.leases_lost_total += 1
        s.owner, s.owner_until = "another connector", time.time() + self.lease_ttl_s
        s.state = SessionState.STOPPED
        s.qr = None
        self.queue.discard(sid)
        s.log.error("lease lost: another connector owns this session now; closing the socket at once")
        await self._stop_socket(sid)
        await self._owned_elsewhere(s)

    # ---- BridgeHost: storage calls ------------------------------------------------------------------------

    def _writable(self, session: SessionId) -> None:
        s = self.sessions.get(session)
        if s is None or s.wiped:
            raise SessionGone(f"session {session} was deleted or wiped; write refused")

    def _fenced(self, session: SessionId, e: LeaseLost) -> SessionGone:
        spawn(self.on_lease_lost(session), name=f"lease-lost-{session}")
        return SessionGone(f"session {session}: lease lost; write refused")

    async def keys_get(self, session: SessionId, type: str, ids: list[str]) -> dict[str, Any]:
        return await self.auth.get_keys(session, type, ids)

    async def keys_set(self, session: SessionId, data: dict[str, dict[str, Any]]) -> None:
        self._writable(session)
        try:
            await self.auth.set_keys(session, data)
        except LeaseLost as e:
            raise self._fenced(session, e) from e
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
        self._writable(session)
        try:
            await self.auth.put_creds(session, creds)
        except LeaseLost as e:
            raise self._fenced(session, e) from e
        if (s := self.sessions.get(session)) is not None:
            s.stored = True

    async def message_get(self, session: SessionId, key: MessageKey) -> dict[str, Any] | None:
        entry = self._messages.get((session, key.id or ""))
        if entry is None:
            self.log.info("message.get for %s of %s: not in the cache", key.id, session)
            return None
        self._messages.move_to_end((session, key.id or ""))
        message = entry["message"]
        return dict(message) if isinstance(message, dict) else None

    def _own_send(self, session: SessionId, message_id: str) -> None:
        _lru_put(self._own_sends, (session, message_id), None, OWN_SENDS_SIZE)

    def _remember(self, session: SessionId, key: dict[str, Any], message: dict[str, Any]) -> None:
        msg_id = key.get("id")
        if not msg_id:
            return
        _lru_put(self._messages, (session, msg_id), {"key": key, "message": message}, self.message_cache_size)

    async def _feed_lid_map(self, pairs: list[tuple[str, str]], source: str) -> None:
        unique: list[tuple[str, str]] = sorted(set(pairs) - self._lid_pairs_stored.keys())
        if not unique:
            return
        try:
            await self.lid_map.put_pairs(unique)
        except Exception as e:
            self.log.warning("LID map write of %d pairs from %s failed: %s", len(unique), source, e)
            return
        for pair in unique:
            _lru_put(self._lid_pairs_stored, pair, None, LID_PAIR_CACHE_SIZE)

    # ---- BridgeHost: events -------------------------------------------------------------------------------

    async def on_event(self, event: str, session: SessionId | None, data: WireModel | dict[str, Any]) -> None:
        if session is None:
            return
        s = self.sessions.get(session)
        if s is not None:
            s.last_event_at = time.time()
        try:
            if isinstance(data, ConnectionUpdate):
                await self._on_connection(session, data)
            elif isinstance(data, MessagesUpsert):
                if s is not None and data.messages:
                    s.last_message_at = s.last_event_at
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
            s.held_until = None
            s.opened_at = time.time()
            self._clear_stale(s)
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
        self._clear_stale(s)
        if self._stopping or u.requested or self.sessions.get(s.id) is not s or s.owner is not None:
            if s.state not in TERMINAL:
                s.state = SessionState.STOPPED
            s.log.info("closed on request")
            return
        was = s.state
        s.qr = None
        self._record_error(s, code, reason or f"connection closed ({code})")
        if code in LOGGED_OUT_CODES:
            s.state = SessionState.LOGGED_OUT
            s.me = Account()
            s.wiped = True
            self.logged_out_total += 1
            self.queue.discard(s.id)
            await cancel(s.retry)
            s.log.warning(
                "logged out by WhatsApp (%s: %s); creds, keys and lease wiped, re-pairing needed", code, reason
            )
            await self._wipe(s.id)
            return
        if code == CONNECTION_REPLACED:
            s.state = SessionState.CONFLICT
            self.conflicts_total += 1
            self.queue.discard(s.id)
            await cancel(s.retry)
            s.log.error(
                "connection replaced (440): another client runs this session; not reconnecting. Check that only "
                "one connector owns it, then restart the connector"
            )
            return
        if was in (SessionState.QR, SessionState.PAIRING_CODE) and code != RESTART_REQUIRED:
            # The pairing never completed: its creds are unregistered (and a pairing-code request set creds.me,
            # so a reconnect would try to log in an identity WhatsApp never registered). Always start clean.
            s.wiped = True
            s.stored = False  # wiped here, on purpose: the fresh QR below is wanted
            await self._wipe(s.id)
            if code == TIMED_OUT:
                s.state = SessionState.STOPPED
                self._record_error(s, code, "pairing expired: the QR window ended before pairing; create it again")
                s.log.warning("pairing expired (QR refs ended); session stopped and its unregistered creds wiped")
                return
            s.log.warning("closed during pairing (%s: %s); creds reset, a fresh QR follows", code, reason)
        hold = self.breaker.record(s.id)
        if hold is not None:
            self._hold(s, hold)
        elif code == RESTART_REQUIRED:
            s.log.info("restart required (515); reconnecting now from the stored creds")
            s.state = SessionState.CONNECTING
            await cancel(s.retry)
            spawn(self.queue.connect_now(s.id), name=f"restart-{s.id}")
        else:
            s.log.warning("connection closed (%s: %s)", code, reason)
            self._schedule_reconnect(s)

    async def _on_upsert(self, sid: SessionId, u: MessagesUpsert) -> None:
        """Hand each message's envelope to the publisher in order, without waiting for each to reach SQS.

        The session's lane handles its next event while the publisher sends: waiting here made one session publish
        one message per SQS round trip (``make bench``). Waiting would not make anything more durable either: the
        bridge does not wait for the connector before Baileys acknowledges a message to WhatsApp, and an envelope
        in the publisher's queue is exactly as volatile as an event still in the lane. Order is kept: the publisher
        sends (or spools) envelopes in the order they were enqueued. The LID map is fed first, so the function
        finds the pair when it resolves the event."""
        s = self.sessions.get(sid)
        me = s.me if s is not None else Account()
        pairs = [pair for msg in u.messages for pair in lid_pairs(msg)]
        await self._feed_lid_map(pairs, "message keys")
        for msg in u.messages:
            if msg.message is not None:
                self._remember(sid, msg.key.model_dump(exclude_none=True), msg.message)
            if msg.key.fromMe and (sid, msg.key.id or "") in self._own_sends:
                self.log.debug("echo of our own send %s not published", msg.key.id)
                continue
            envelope = build_envelope(msg, session_id=sid, me=me, upsert_type=u.type)
            if envelope is None:
                continue
            try:
                done = await self.publisher.enqueue(envelope)
            except PublishError as e:
                self.log.error("event %s (chat %s) not published: %s", envelope.event_id, envelope.chat.jid, e)
                continue
            done.add_done_callback(functools.partial(self._published, envelope, u.type))

    def _published(self, envelope: InboundEnvelope, upsert_type: str, done: asyncio.Future[None]) -> None:
        if done.cancelled() or done.exception() is not None:
            # Only at shutdown: the publisher spools what it has not sent, so this is not a loss.
            self.log.warning("event %s: publishing interrupted (%s)", envelope.event_id, done)
            return
        self.events_published += 1
        self.log.info(
            "event %s published (chat %s, %s, %s)",
            envelope.event_id,
            envelope.chat.jid,
            envelope.message.type,
            upsert_type,
        )

    # ---- stale detection ----------------------------------------------------------------------------------

    def _clear_stale(self, s: Session) -> None:
        if s.stale_since is not None:
            s.log.info("no longer stale")
        s.stale_since = None
        s.stale_reason = None

    async def check_stale(self, now: float | None = None) -> None:
        """One pass of stale detection over the open sessions (the watch task runs it every ``stale_check_s``)."""
        now = time.time() if now is None else now
        received: dict[str, float] = {}
        if self.stale_after_s > 0 and self.bridge.connected:
            try:
                for info in (await self.bridge.list_sessions()).sessions:
                    if info.lastReceivedAt:
                        received[info.session] = info.lastReceivedAt / 1000.0
            except Exception as e:
                self.log.info("session.list for stale detection failed: %s", e)
        for s in self.sessions.values():
            if s.state != SessionState.OPEN:
                self._clear_stale(s)
                continue
            reason = None
            last = max(s.opened_at, s.last_event_at, received.get(s.id, 0.0))
            last_message = max(s.opened_at, s.last_message_at)
            if self.stale_after_s > 0 and now - last > self.stale_after_s:
                reason = f"nothing received from WhatsApp for {int(now - last)}s while open"
            elif self.stale_messages_after_s > 0 and now - last_message > self.stale_messages_after_s:
                reason = f"no message delivered for {int(now - last_message)}s while open"
            if reason is None:
                self._clear_stale(s)
            elif s.stale_since is None:
                s.stale_since, s.stale_reason = now, reason
                self.stale_total += 1
                s.log.warning("stale: %s. %s", reason, STALE_GUIDANCE)

    async def _watch_stale(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.stale_check_s)
            try:
                await self.check_stale()
            except Exception:
                self.log.exception("stale detection failed")

    # ---- bridge supervision -------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            started_at = time.monotonic()
            await self.bridge.wait_closed()
            if self._stopping:
                return
            if time.monotonic() - started_at > self.bridge_stable_s:
                failures = 0
            self.ready = False
            for s in self.sessions.values():
                if s.state not in TERMINAL:
                    s.state = SessionState.RECONNECTING
                    s.qr = None
                self._clear_stale(s)
            while not self._stopping:
                failures += 1
                if failures > self.bridge_max_crashes:
                    self.fatal_code = EXIT_BRIDGE_CRASHLOOP
                    self.log.critical(
                        "the bridge exited %d times in a row without a stable run; giving up (exit code %d)",
                        failures - 1,
                        EXIT_BRIDGE_CRASHLOOP,
                    )
                    self.on_fatal(EXIT_BRIDGE_CRASHLOOP)
                    return
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
                if s.state not in TERMINAL and (s.held_until is None or s.held_until <= time.time()):
                    await cancel(s.retry)
                    s.retry = None
                    s.held_until = None
                    self.queue.put(sid)
            self.ready = True
            self.log.info("bridge restarted; %d sessions queued", len(self.queue))
