"""The events publisher: a sink of the ``EventHub`` that hands what ``EVENTS_URL`` receives
(``WEBHOOK_EVENT_KINDS``) to ``events.fifo``, from where the events function (``functions/events``) POSTs it.

``MessageGroupId`` = ``event.group_id`` (one group per session), ``MessageDeduplicationId`` = ``event.id``, body =
the event's JSON.

Decisions:
- **The hub calls sinks synchronously**, from whatever emits (a session's state write), so taking an event is an
  append to a buffer in memory and never waits; one sender task drains it with ``SendMessageBatch``.
- **Order per session holds by construction.** The buffer keeps one queue per session, and a batch takes at most
  the head event of each session (up to ``SQS_BATCH_MAX`` sessions and ``SQS_BODY_MAX_BYTES``). A head leaves its
  queue only once SQS accepted it, so a failed call or an entry SQS refused is sent again before anything after
  it of its session; and no batch ever holds two events of one session, so a partial failure cannot let a later
  one into SQS ahead of an earlier one. The price is one call per event for a single busy session (a burst of
  delivery receipts), which is tens per second: far more than one account produces.
- **Retries** back off from ``backoff_initial_s`` doubling to ``backoff_max_s`` while SQS fails (the events wait
  in the buffer; SQS drops a copy it already took by its dedup id within five minutes). An entry SQS refuses as
  invalid, or one over SQS's size limit, can never be sent: it is logged at ERROR and dropped, not retried forever.
- **The buffer is bounded** (``max_buffered`` events): beyond it a new event is dropped and counted
  (``wa_relay_events_dropped_total``), so an SQS outage costs events, never the connector's memory.
- **``stop()`` flushes** for up to ``stop_flush_s``: it runs after the session manager's stop, whose last state
  changes (``stopped``) are among what it sends.

The window left open: events still in the buffer when the process dies without a stop (SIGKILL, OOM, power loss)
are lost; normally that is the last few milliseconds of events, since the sender sends each as soon as it arrives,
and during an SQS outage everything buffered since it began. Not closed on purpose: a spool on disk like the
inbound publisher's would cost an fsync per state change for events that describe the present. After a restart the
sessions start again and report their states afresh, so a receiver that tracks states converges; a lost
``message.delivered`` or ``message.read`` stays lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from contextlib import AsyncExitStack
from typing import Any

from connector.aws import SQS_INVALID_CODES, describe_error
from connector.contracts import WEBHOOK_EVENT_KINDS, RelayEvent
from connector.resources import SQS_BATCH_MAX, SQS_BODY_MAX_BYTES
from connector.tasks import cancel, spawn


class EventQueue:
    """Call it with each ``RelayEvent`` (``hub.add_sink(queue)``); ``start()`` / ``stop()`` around the app's life."""

    def __init__(
        self,
        queue_url: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        session: Any = None,
        max_buffered: int = 10_000,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stop_flush_s: float = 5.0,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.log = logging.getLogger("wa_relay.publish.events")
        self.queue_url = queue_url
        self.region = region
        self.endpoint_url = endpoint_url
        self._session = session
        self.max_buffered = max_buffered
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stop_flush_s = stop_flush_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.sent = 0
        """Events SQS accepted."""
        self.dropped = 0
        """Events dropped: the buffer was full, or SQS can never take them (invalid, too large)."""
        self.errors = 0
        """Failed ``SendMessageBatch`` calls and entries SQS refused (each retried, unless dropped as invalid)."""
        self._sessions: OrderedDict[str, deque[tuple[RelayEvent, str]]] = OrderedDict()
        """Per message group (session), in arrival order: each event and its JSON body."""
        self._buffered = 0
        self._overflowing = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._sender: asyncio.Task[None] | None = None
        self._client: Any = None
        self._stack: AsyncExitStack | None = None

    @property
    def buffered(self) -> int:
        """Events waiting for SQS."""
        return self._buffered

    # ---- the sink ----

    def __call__(self, event: RelayEvent) -> None:
        if event.kind not in WEBHOOK_EVENT_KINDS:
            return
        body = event.model_dump_json()
        if len(body.encode()) > SQS_BODY_MAX_BYTES:
            self.dropped += 1
            self.log.error("event %s (%s) is larger than SQS takes; dropped", event.id, event.kind)
            return
        if self._buffered >= self.max_buffered:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                self.log.error("events buffer full (%d): dropping new events until SQS takes some", self._buffered)
            return
        self._sessions.setdefault(event.group_id, deque()).append((event, body))
        self._buffered += 1
        self._wake.set()

    # ---- lifecycle ----

    async def start(self) -> None:
        import aioboto3  # type: ignore[import-untyped]  # here: a memory-backed app never loads it
        from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

        from connector.aws import open_client

        self._client, self._stack = await open_client(
            self._session or aioboto3.Session(),
            "sqs",
            region=self.region,
            endpoint_url=self.endpoint_url,
            config=BotoConfig(
                connect_timeout=self.connect_timeout_s,
                read_timeout=self.read_timeout_s,
                retries={"mode": "standard", "total_max_attempts": 2},
            ),
        )
        self._stopping = False
        self._sender = spawn(self._send_forever(), name="events-sender")

    async def stop(self) -> None:
        """Send what is buffered for up to ``stop_flush_s``, then stop (idempotent, safe after a failed start)."""
        self._stopping = True
        self._wake.set()
        if self._sender is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._sender), self.stop_flush_s)
            await cancel(self._sender)
            self._sender = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._client = None
        if self._buffered:
            self.log.warning("stopped with %d events not sent to SQS; they are lost", self._buffered)

    # ---- the sender ----

    async def _send_forever(self) -> None:
        backoff = self.backoff_initial_s
        while True:
            if not self._buffered:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if await self._send_heads():
                backoff = self.backoff_initial_s
                continue
            if self._stopping and backoff >= self.stop_flush_s:
                return  # SQS keeps failing; stop() reports what is left
            await asyncio.sleep(backoff)
            backoff = min(self.backoff_max_s, backoff * 2)

    def _heads(self) -> list[tuple[str, RelayEvent, str]]:
        """The head event of each session, oldest sessions first, as many as one call takes."""
        batch: list[tuple[str, RelayEvent, str]] = []
        size = 0
        for group, events in self._sessions.items():
            event, body = events[0]
            length = len(body.encode())
            if len(batch) == SQS_BATCH_MAX or (batch and size + length > SQS_BODY_MAX_BYTES):
                break
            batch.append((group, event, body))
            size += length
        return batch

    def _taken(self, group: str) -> None:
        events = self._sessions[group]
        events.popleft()
        self._buffered -= 1
        if events:
            self._sessions.move_to_end(group)  # the others' heads go first next time
        else:
            del self._sessions[group]
        if self._overflowing and self._buffered < self.max_buffered:
            self._overflowing = False
            self.log.warning("events buffer has room again (%d dropped so far)", self.dropped)

    async def _send_heads(self) -> bool:
        """One ``SendMessageBatch`` of the sessions' heads; whether all were taken."""
        batch = self._heads()
        try:
            response = await self._client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": body, "MessageGroupId": group, "MessageDeduplicationId": event.id}
                    for i, (group, event, body) in enumerate(batch)
                ],
            )
        except Exception as e:
            self.errors += 1
            self.log.warning("sending %d events to SQS failed (%s); retrying", len(batch), describe_error(e, 200))
            return False
        failed = {int(f["Id"]): f for f in response.get("Failed", [])}
        for i, (group, event, _) in enumerate(batch):
            failure = failed.get(i)
            if failure is None:
                self.sent += 1
                self._taken(group)
                continue
            self.errors += 1
            code = str(failure.get("Code", "?"))
            if code in SQS_INVALID_CODES:
                self.dropped += 1
                self.log.error("SQS refused event %s (%s) as invalid (%s); dropped", event.id, event.kind, code)
                self._taken(group)
            else:
                self.log.warning("SQS refused event %s (%s); retrying", event.id, code)
        return not failed
