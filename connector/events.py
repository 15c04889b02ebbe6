"""Lifecycle and message-status events (``connector.contracts.RelayEvent``): made here from what the sessions do,
and handed to whoever listens: the server-sent event streams of ``GET /v1/events`` (the dashboard, the CLI) and the
sinks (the ``events.fifo`` publisher, whose function posts them to ``EVENTS_URL``).

Decisions:
- Session state, QR and stale changes are seen by one hook on ``Session`` attribute writes (``Session.watcher``)
  rather than at each of the many places that change a state, so no transition can be missed by a new code path.
- A stream is a bounded queue per subscriber. A subscriber that falls that far behind is ended, not allowed to grow
  the connector's memory: it reconnects with ``Last-Event-ID`` and is replayed what the history still holds, or told
  ``reset`` (reload the list) when the gap is longer than the history.
- Sequence numbers (``id:`` of a server-sent event) belong to this connector process; the event's own ``id`` is the
  stable one, for de-duplication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from connector.contracts import RelayEvent, RelayEventKind, relay_event_id
from connector.session import LastError, Session, SessionState

log = logging.getLogger("wa_relay.events")

HISTORY = 1000
"""Events kept for ``Last-Event-ID`` replays."""
SUBSCRIBER_BACKLOG = 1000
"""Events a stream may fall behind before it is ended."""

QR_FIRST_VALID_S = 60
QR_NEXT_VALID_S = 20
"""How long WhatsApp keeps a QR reference valid (Baileys' ``qrTimeout``: the first QR 60 s, each next one 20 s);
after the last reference the QR window closes."""

WA_STATUS = {3: "message.delivered", 4: "message.read", 5: "message.read"}
"""``proto.WebMessageInfo.Status`` of a ``messages.update``: DELIVERY_ACK, READ, PLAYED (a voice note played is read
too). SERVER_ACK is not reported: ``message.sent`` is emitted when the send call returns, which is after it."""

Sink = Callable[[RelayEvent], None]


class Reset:
    """In a stream: events were missed (the history no longer reaches back to ``Last-Event-ID``)."""


Item = tuple[int, RelayEvent]
"""A sequence number and its event."""


class Subscription:
    def __init__(self, hub: EventHub, backlog: int) -> None:
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue(backlog)
        self._hub = hub

    async def get(self) -> Item | None:
        """The next event; ``None`` once the stream fell too far behind and was ended."""
        return await self.queue.get()

    def close(self) -> None:
        self._hub._unsubscribe(self.queue)


class EventHub:
    def __init__(self, history: int = HISTORY, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self.boot = uuid.uuid4().hex
        self.seq = 0
        """Events emitted so far; the last one's sequence number."""
        self._history: deque[Item] = deque(maxlen=history)
        self._streams: set[asyncio.Queue[Item | None]] = set()
        self._backlog = backlog
        self._sinks: list[Sink] = []
        self._sending: dict[tuple[str, str | None], int] = {}
        self._reported_errors: dict[str, LastError] = {}
        self._held: dict[tuple[str, str | None], list[tuple[Any, dict[str, Any], tuple[object, ...]]]] = {}
        self.closed = False
        """Shutting down: new streams end at once."""
        self.streams_ended = 0
        """Streams ended because they fell too far behind (``/metrics``)."""

    @property
    def streams(self) -> int:
        """Subscribers now (open ``GET /v1/events`` streams)."""
        return len(self._streams)

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def emit(
        self, kind: RelayEventKind, session_id: str, data: dict[str, Any], *, key: tuple[object, ...] | None = None
    ) -> RelayEvent:
        """``key`` identifies the event across emissions (a message's status); without it the event is unique."""
        self.seq += 1
        event = RelayEvent(
            id=relay_event_id(kind, session_id, *(key if key is not None else (self.boot, self.seq))),
            kind=kind,
            session_id=session_id,
            at=int(time.time() * 1000),
            data=data,
        )
        item = (self.seq, event)
        self._history.append(item)
        for q in list(self._streams):
            try:
                q.put_nowait(item)
            except asyncio.QueueFull:
                self._streams.discard(q)
                self.streams_ended += 1
                self._end(q)
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:
                log.exception("an events sink failed on %s", kind)
        return event

    def subscribe(self, after: int | None = None) -> tuple[list[Item | Reset], Subscription]:
        """A stream from now on, and what it missed since sequence ``after`` (``Reset`` first when the history no
        longer reaches back that far). Both are taken at once, so nothing falls between them."""
        sub = Subscription(self, self._backlog)
        if self.closed:
            self._end(sub.queue)
        else:
            self._streams.add(sub.queue)
        missed: list[Item | Reset] = []
        if after is not None and after < self.seq:
            oldest = self._history[0][0] if self._history else self.seq + 1
            if after + 1 < oldest:
                missed.append(Reset())
            missed.extend(item for item in self._history if item[0] > after)
        return missed, sub

    def _unsubscribe(self, queue: asyncio.Queue[Item | None]) -> None:
        self._streams.discard(queue)

    def close_streams(self) -> None:
        """End every stream (the connector is shutting down): an open stream would otherwise hold the HTTP server's
        graceful shutdown for its whole timeout, long enough for the process to be killed before it closed its
        sockets and released its leases."""
        self.closed = True
        for q in list(self._streams):
            self._end(q)
        self._streams.clear()

    @staticmethod
    def _end(q: asyncio.Queue[Item | None]) -> None:
        if q.full():
            q.get_nowait()  # room for the end marker
        q.put_nowait(None)

    # ---- what the sessions do ----

    def watch(self, session: Session) -> None:
        session.watcher = self._changed

    def _changed(self, s: Session, name: str, old: Any) -> None:
        if name == "state":
            state = s.state
            kind: RelayEventKind = (
                "session.logged_out"
                if state == SessionState.LOGGED_OUT
                else "session.conflict"
                if state == SessionState.CONFLICT
                else "session.state"
            )
            data: dict[str, Any] = {"state": state.value, "previous": old.value if old is not None else None}
            data["me"] = {"pn": s.me.pn, "lid": s.me.lid}
            # An error is reported with the first state change after it was recorded, not again with every later
            # one (a logout's "stopped" must not repeat the 515 restart of the pairing before it).
            error = s.last_error
            if error is not None and state != SessionState.OPEN and self._reported_errors.get(s.id) is not error:
                self._reported_errors[s.id] = error
                data["last_error"] = {"code": error.code, "message": error.message}
            self.emit(kind, s.id, data)
        elif name == "qr" and s.qr:
            valid_s = QR_FIRST_VALID_S if not old else QR_NEXT_VALID_S
            self.emit(
                "session.qr",
                s.id,
                {"qr": s.qr, "valid_s": valid_s, "expires_at": int((time.time() + valid_s) * 1000)},
            )
        elif name == "stale_since":
            stale = s.stale_since is not None
            data = {"stale": stale}
            if stale:
                data["since"] = int((s.stale_since or 0) * 1000)
            self.emit("session.stale", s.id, data)

    def created(self, s: Session) -> None:
        self.emit("session.created", s.id, {"state": s.state.value})

    def deleted(self, session_id: str) -> None:
        self._reported_errors.pop(session_id, None)
        self.emit("session.deleted", session_id, {})

    def received(self, s: Session, count: int, chats: list[str]) -> None:
        """``chats``: where they were written (the jids, as addressed), so the dashboard's feed can say from whom."""
        self.emit("message.received", s.id, {"count": count, "total": s.received_total, "chats": chats})

    def sent(self, s: Session, message_id: str, to: str) -> None:
        self.emit(
            "message.sent",
            s.id,
            {"message_id": message_id, "to": to, "total": s.sent_total},
            key=("sent", message_id),
        )

    @contextlib.contextmanager
    def sending(self, session_id: str, message_id: str | None) -> Iterator[None]:
        """Around a send, until its ``sent``: the contact's phone can confirm delivery before the send call returns,
        and a receiver must not see a message delivered before it was sent. Receipts for the message (for every
        message of the session, when its id is not known before the send) are held until then, in their order."""
        key = (session_id, message_id)
        self._sending[key] = self._sending.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._sending.pop(key) - 1
            if left:
                self._sending[key] = left
            else:
                for kind, data, event_key in self._held.pop(key, []):
                    self.emit(kind, session_id, data, key=event_key)

    def statuses(self, session_id: str, updates: list[dict[str, Any]]) -> None:
        """A ``messages.update`` from Baileys: the delivery and read receipts of what the account sent."""
        for u in updates:
            key = u.get("key") or {}
            status = (u.get("update") or {}).get("status")
            kind = WA_STATUS.get(status) if isinstance(status, int) else None
            message_id = key.get("id")
            if kind is None or not key.get("fromMe") or not isinstance(message_id, str):
                continue
            data = {"message_id": message_id, "to": key.get("remoteJid")}
            held = next((k for k in ((session_id, message_id), (session_id, None)) if k in self._sending), None)
            if held is not None:
                self._held.setdefault(held, []).append((kind, data, (kind, message_id)))
            else:
                self.emit(kind, session_id, data, key=(kind, message_id))  # type: ignore[arg-type]
