"""Consumer of ``outbound.fifo``: sends each reply once, in its chat's order, as soon as its session can (DESIGN
section 5).

A received message is *held* until it is deleted, dead-lettered or handed back, and stays invisible to other
receivers meanwhile: shortly before the visibility a receive gave it runs out, it is extended (``OutboundSettings``:
checked every ``tick_s``, extended when less than ``renew_before_s`` is left, to ``extend_s`` from then, ten per
call). A reply that waits for its session, or a send that is slow, is therefore never received a second time, and
waiting costs no receive towards the queue's ``maxReceiveCount``. A message whose extension is refused (its receipt
is no longer valid: it lapsed and may have been received again) is let go without being deleted.

Each reply is parsed (``OutboundReply``; a malformed one goes to the DLQ), and its WhatsApp id is derived from the
reply id (``whatsapp_message_id``: a re-send after a crash is the same WhatsApp message, which the phone drops). If
the reply log already has its send record, it went out before a crash or a redelivery and is only deleted.
Otherwise its session decides (``SessionManager.reply_readiness``):

- ready (open here): sent to ``to`` exactly as given, recorded with its content (``connector.replies``), then
  deleted. A send that fails in the bridge is retried in place with backoff, the chat's later replies behind it;
  after ``send_attempts`` failures it goes to the DLQ. Store failures (the record check, the record) are retried
  the same way without a limit: the reply is not at fault.
- wait (starting, QR, connecting, reconnecting, held back by the flap breaker, conflict, stopped): kept, and its
  session asked again every ``tick_s``. After a restart, when sessions come back one every few seconds through the
  start queue, every reply waits for its own session however long that takes. At most ``max_held`` messages are
  held; a reply that would start waiting beyond that is handed back for ``overflow_delay_s``, a fixed delay (what
  it waits for does not depend on how often it was received).
- gone (no such session here nor stored, deleted, logged out, pairing expired): to the DLQ at once.
- elsewhere (another connector holds the session's lease): kept and asked again, like a waiting one, for up to
  ``elsewhere_wait_s``: after a restart the lease of the connector that died is usually what stands in the way, and
  this connector takes the session over when it expires. Still elsewhere after that, it is handed back for
  ``elsewhere_delay_s``, for the owner to take. (Handing it back at once made the same connector receive it again
  at once, five times in a fraction of a second, into the DLQ.)

A chat is one message group. SQS delivers a group's messages in order and none of them while one is held, and here
each group is worked through in order by its own task: a reply never overtakes an earlier one of its chat, and one
chat waiting holds up no other. A reply handed back takes the rest of its group back with it, with the same delay.

Dead letters go to ``OUTBOUND_QUEUE_DLQ_URL`` (if set; else they are dropped and logged at ERROR) with their body as
it was, their group, and as message attributes ``reason`` (``malformed``, ``session_unknown``, ``session_wiped``,
``send_failed``, ``held_limit``, ``session_elsewhere``), ``origin`` = ``outbound``, ``session`` (when known),
``detail`` (what went wrong; never message text) and ``receive_count``. A message received ``max_receive_count``
times would reach the DLQ through the queue's redrive at its next receive, without a reason, so one that would be
handed back then is dead-lettered here instead, with the reason it was handed back for.

Typing messages (``OutboundTyping``, queued by the function in the chat's group ahead of the replies) are handed to
``ChatStates`` ("typing…" on or off) and deleted at once, whatever came of them: they are best effort, so one whose
session is not open here, that is malformed or that fails is dropped (never dead-lettered, never handed back), and
it never holds up the chat's replies. A reply ends "typing…" in its chat just before it is sent and, once sent,
marks the message its ``mark_read`` names read.

A connector with no open session receives nothing: a standby (or one whose sessions another connector owns) must not
take replies it cannot send. Stopping stops receiving and starting sends, lets the sends under way finish and be
recorded (for up to ``stop_grace_s``: cancelled, a send the bridge carries out anyway would be sent again after the
restart), then hands every held message back at once (visibility 0).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from pydantic import ValidationError

from connector.aws import open_client
from connector.chatstate import ChatStates
from connector.config import OutboundSettings
from connector.contracts import OutboundReply, OutboundTyping, parse_outbound, whatsapp_message_id
from connector.errors import SessionError, SidecarNotConnected, StoreError
from connector.replies import Replies
from connector.resources import SQS_BATCH_MAX
from connector.session import Readiness
from connector.store.abstract import SentReply
from connector.tasks import cancel, spawn
from connector.types import SessionId

MAX_MESSAGES = 10
RECEIVE_AT_STOP_S = 1.0
"""How long a stop waits, after the sends under way, for the receive in flight to return."""
IDLE_POLL_S = 1.0
DETAIL_MAX = 256
LET_GO = ("ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue")
"""Refusals of a visibility change that mean the receipt no longer holds the message: it lapsed (and may be
someone else's now), or it was held for SQS's 12 hours at most since its receive. Other refusals are retried."""


class ReplySessions(Protocol):
    def has_open_sessions(self) -> bool:
        """Whether any session is open here. A connector with none (a standby, or one whose sessions are all owned
        by another connector) does not take replies off the shared queue: each receive would count towards the
        DLQ's maxReceiveCount while only the owner can send them."""
        ...

    async def reply_readiness(self, sid: SessionId) -> Readiness: ...


@dataclass(eq=False)
class Held:
    """A message this connector holds, and until when (``time.monotonic()``) SQS keeps it invisible."""

    message: dict[str, Any]
    visible_until: float
    lost: bool = False
    """Its receipt was refused: let it go without deleting it."""

    @property
    def attributes(self) -> dict[str, str]:
        return self.message.get("Attributes") or {}

    @property
    def group(self) -> str:
        return self.attributes.get("MessageGroupId", "")

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount") or 1)

    @property
    def receipt(self) -> str:
        return str(self.message["ReceiptHandle"])

    @property
    def id(self) -> str:
        return str(self.message.get("MessageId", ""))


class Back(NamedTuple):
    """A message (and the rest of its group) goes back to the queue, visible again after ``delay`` seconds."""

    delay: int
    reason: str | None
    """The DLQ reason if it already was received ``max_receive_count`` times (``None``: the redrive may take it)."""


class OutboundConsumer:
    def __init__(
        self,
        queue_url: str,
        sessions: ReplySessions,
        replies: Replies,
        settings: OutboundSettings | None = None,
        *,
        dlq_url: str | None = None,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        chat_states: ChatStates | None = None,
    ) -> None:
        """Without ``chat_states`` typing messages are dropped and nothing is marked read."""
        self.log = logging.getLogger("wa_relay.outbound")
        self.queue_url = queue_url
        self.sessions = sessions
        self.replies = replies
        self.settings = settings or OutboundSettings()
        self.dlq_url = dlq_url
        self.region = region
        self.endpoint_url = endpoint_url
        self.session = session or aioboto3.Session()
        self.chat_states = chat_states
        self.sent = 0
        self.duplicates = 0
        self.malformed = 0
        self.typing = 0
        """Typing messages taken off the queue (shown or not)."""
        self.dead_lettered = 0
        self.handed_back = 0
        self.extended = 0
        self._held: set[Held] = set()
        self._groups: dict[str, deque[Held]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._sending = 0
        self._sends = asyncio.Condition()

    @property
    def held(self) -> int:
        return len(self._held)

    async def start(self) -> None:
        self._client, self._stack = await open_client(
            self.session,
            "sqs",
            region=self.region,
            endpoint_url=self.endpoint_url,
            # read_timeout must exceed the long poll's WaitTimeSeconds.
            config=BotoConfig(read_timeout=self.settings.wait_time_s + 15, connect_timeout=5),
        )
        self._tasks = [
            spawn(self._run(), name="outbound-consumer"),
            spawn(self._keep_invisible(), name="outbound-visibility"),
        ]
        self.log.info("consuming %s", self.queue_url)

    async def stop(self) -> None:
        # No receive starts after this; the one in flight is not cancelled at once: a long poll cancelled from our
        # side can still take messages on the server (it hands them to a closed connection), and those would stay
        # invisible for their whole visibility timeout. It gets the time the sends under way take, and a moment.
        self._stopping = True
        receiver = self._tasks[0] if self._tasks else None
        async with self._sends:
            try:
                await asyncio.wait_for(self._sends.wait_for(lambda: not self._sending), self.settings.stop_grace_s)
            except TimeoutError:
                self.log.warning("%d sends still under way at stop; their replies may go out twice", self._sending)
        if receiver is not None:
            try:
                await asyncio.wait_for(asyncio.shield(receiver), RECEIVE_AT_STOP_S)
            except TimeoutError:
                await cancel(receiver)
        for task in [*self._tasks, *self._workers.values()]:
            await cancel(task)
        self._tasks = []
        if self._client is not None and self._held:
            held = [h for h in self._held if not h.lost]
            self.log.info("handing %d held replies back to the queue", len(held))
            await self._change_visibility(held, 0)
        self._held.clear()
        self._groups.clear()
        self._workers.clear()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._client = None

    # ---- receiving ----

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping:
            if not self.sessions.has_open_sessions():
                await asyncio.sleep(IDLE_POLL_S)
                continue
            try:
                resp = await self._client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=MAX_MESSAGES,
                    WaitTimeSeconds=self.settings.wait_time_s,
                    MessageSystemAttributeNames=["All"],
                )
            except Exception as e:
                self.log.warning("receiving from the outbound queue failed (%s); retry in %.0fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(60.0, backoff * 2)
                continue
            backoff = 1.0
            self.take(resp.get("Messages") or [])

    def take(self, messages: list[dict[str, Any]]) -> None:
        """Hold received messages and queue each behind its group's earlier ones (a group's task starts with its
        first message and ends with its last)."""
        now = time.monotonic()
        for m in messages:
            held = Held(m, now + self.settings.visibility_s)
            self._held.add(held)
            if self._stopping:
                continue  # received as the consumer stops: handed back with the rest, not sent
            queue = self._groups.get(held.group)
            if queue is None:
                queue = self._groups[held.group] = deque()
                self._workers[held.group] = spawn(self._drain(held.group, queue), name=f"outbound-{held.group}")
            queue.append(held)

    async def _drain(self, group: str, queue: deque[Held]) -> None:
        try:
            while queue:
                back = await self._settle(queue[0])
                if back is None:
                    self._held.discard(queue.popleft())
                    continue
                rest = list(queue)
                queue.clear()
                await self._hand_back(rest, back)
        except Exception:
            self.log.exception("outbound group %s failed; its replies are handed back", group)
            rest = list(queue)
            queue.clear()
            await self._hand_back(rest, Back(self.settings.overflow_delay_s, None))
        finally:
            self._groups.pop(group, None)
            self._workers.pop(group, None)

    # ---- one reply ----

    async def _settle(self, held: Held) -> Back | None:
        """Work on one held message until it is done (``None``: deleted, dead-lettered or let go) or goes back."""
        if held.lost:
            return None
        try:
            body = parse_outbound(held.message.get("Body", ""))
        except ValidationError as e:
            first = e.errors(include_input=False)[0] if e.errors() else {"loc": (), "msg": "invalid"}
            kind, *path = first["loc"] or ("",)
            if kind == "outbound.typing":
                self.typing += 1
                self.log.warning("malformed typing message %s dropped (%s)", held.id, ".".join(map(str, path)))
                await self._delete(held)
                return None
            self.malformed += 1
            where = ".".join(str(p) for p in path) or "body"
            return await self._dead_letter(held, "malformed", f"{where}: {first['msg']}")
        if isinstance(body, OutboundTyping):
            await self._typing(body)
            await self._delete(held)
            return None
        return await self._send_reply(held, body)

    async def _typing(self, typing: OutboundTyping) -> None:
        self.typing += 1
        if self.chat_states is None or self._stopping:
            return
        sid = SessionId(typing.session_id)
        try:
            if typing.state == "composing":
                await self.chat_states.typing(sid, typing.to, typing.expires_at)
            else:
                await self.chat_states.paused(sid, typing.to)
        except Exception as e:  # best effort: the chat's replies wait behind this
            self.log.getChild(typing.session_id).warning("typing message for %s failed: %s", typing.to, e)

    async def _send_reply(self, held: Held, reply: OutboundReply) -> Back | None:
        sid = SessionId(reply.session_id)
        rlog = self.log.getChild(reply.session_id)
        message_id = whatsapp_message_id(reply.reply_id)
        failures = stalls = 0
        checked = waiting = False
        elsewhere_since: float | None = None
        while not held.lost:
            try:
                # Once is enough: while this connector holds the message, nobody else sends it.
                if not checked and await self.replies.sent(sid, message_id) is not None:
                    self.duplicates += 1
                    rlog.info("reply %s was already sent as %s; deleting the redelivery", reply.reply_id, message_id)
                    await self._delete(held)
                    return None
                checked = True
                readiness = await self.sessions.reply_readiness(sid)
            except StoreError as e:
                stalls += 1
                rlog.warning("reply %s: the store failed (%s); asked again", reply.reply_id, e)
                await asyncio.sleep(self._backoff(stalls))
                continue
            stalls = 0
            if readiness.gone:
                return await self._dead_letter(held, readiness.value, f"session {sid}: {readiness.value}", sid)
            if readiness is Readiness.ELSEWHERE:
                elsewhere_since = elsewhere_since or time.monotonic()
                if time.monotonic() - elsewhere_since >= self.settings.elsewhere_wait_s:
                    rlog.info("reply %s: its session is owned by another connector; handed back", reply.reply_id)
                    return Back(self.settings.elsewhere_delay_s, "session_elsewhere")
            else:
                elsewhere_since = None
            if readiness in (Readiness.WAIT, Readiness.ELSEWHERE):
                if not waiting:
                    if len(self._held) > self.settings.max_held:
                        n = len(self._held)
                        rlog.info("reply %s waits for its session, but %d are held; handed back", reply.reply_id, n)
                        return Back(self.settings.overflow_delay_s, "held_limit")
                    rlog.info("reply %s waits for its session to open", reply.reply_id)
                    waiting = True
                await asyncio.sleep(self.settings.tick_s)
                continue
            if self._stopping:
                return Back(0, None)
            if self.chat_states is not None:
                await self.chat_states.paused(sid, reply.to)
            self._sending += 1
            try:
                sent = await self.replies.send(
                    sid,
                    reply.to,
                    reply.text,
                    message_id=message_id,
                    quoted=reply.quoted.model_dump(exclude_none=True) if reply.quoted else None,
                    reply_id=reply.reply_id,
                )
            except (SessionError, SidecarNotConnected) as e:
                await self._send_done()
                # The session changed between the question and the send (closed, deleted, the bridge went down):
                # the next question tells what to do with the reply.
                rlog.info("reply %s not sent now (%s)", reply.reply_id, e)
                await asyncio.sleep(self.settings.tick_s)
                continue
            except Exception as e:
                await self._send_done()
                failures += 1
                if failures >= self.settings.send_attempts:
                    return await self._dead_letter(held, "send_failed", f"{type(e).__name__}: {e}", sid)
                rlog.warning("sending reply %s failed (%s); retried", reply.reply_id, e)
                await asyncio.sleep(self._backoff(failures))
                continue
            try:
                await self._record(held, sent)
            finally:
                await self._send_done()
            self.sent += 1
            rlog.info("reply %s sent as %s to %s", reply.reply_id, sent.message_id, reply.to)
            await self._delete(held)
            if self.chat_states is not None and reply.mark_read is not None:
                await self.chat_states.read(sid, reply.mark_read.model_dump(exclude_none=True))
            return None
        return None

    async def _send_done(self) -> None:
        self._sending -= 1
        async with self._sends:
            self._sends.notify_all()

    async def _record(self, held: Held, sent: SentReply) -> None:
        """The send record, retried while the message is held: deleted without it, the reply would be sent again if
        the function queued it again; left in the queue, it is received again and re-sent under the same id."""
        attempt = 0
        while not held.lost:
            try:
                await self.replies.record(sent)
                return
            except StoreError as e:
                attempt += 1
                self.log.warning("recording %s as sent failed (%s); retried", sent.message_id, e)
                await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return float(min(self.settings.retry_max_s, self.settings.retry_base_s * 2 ** max(0, attempt - 1)))

    # ---- SQS ----

    async def _keep_invisible(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            now = time.monotonic()
            due = [h for h in self._held if not h.lost and h.visible_until - now < self.settings.renew_before_s]
            if not due:
                continue
            refused = await self._change_visibility(due, self.settings.extend_s)
            for h in due:
                code = refused.get(h)
                if code is None:
                    h.visible_until = now + self.settings.extend_s
                    self.extended += 1
                elif code.endswith(LET_GO):
                    h.lost = True
                    self._held.discard(h)
                    self.log.warning("outbound message %s can no longer be held (%s); let go", h.id, code)

    async def _change_visibility(self, helds: list[Held], seconds: int) -> dict[Held, str]:
        """Make ``helds`` visible again ``seconds`` from now, ten per call; returns the refused ones with SQS's code
        (all of a call that failed as a whole: ``"failed"``)."""
        refused: dict[Held, str] = {}
        for start in range(0, len(helds), SQS_BATCH_MAX):
            chunk = helds[start : start + SQS_BATCH_MAX]
            entries = [
                {"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": int(seconds)}
                for i, h in enumerate(chunk)
            ]
            try:
                resp = await self._client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as e:
                self.log.warning("changing the visibility of %d outbound messages failed: %s", len(chunk), e)
                refused.update((h, "failed") for h in chunk)
                continue
            for failure in resp.get("Failed") or []:
                refused[chunk[int(failure["Id"])]] = str(failure.get("Code", ""))
        return refused

    async def _hand_back(self, helds: list[Held], back: Back) -> None:
        """Stop holding ``helds``; visible again after ``back.delay`` (a refused change lapses by itself within the
        visibility left). One at ``max_receive_count`` goes to the DLQ with ``back.reason`` instead."""
        for h in helds:
            self._held.discard(h)
        helds = [h for h in helds if not h.lost]
        if back.reason is not None:
            for h in [h for h in helds if h.receive_count >= self.settings.max_receive_count]:
                if await self._dead_letter(h, back.reason, f"received {h.receive_count} times, still not sendable"):
                    continue  # the DLQ refused it: the redrive takes it
                helds.remove(h)
        if helds:
            self.handed_back += len(helds)
            await self._change_visibility(helds, back.delay)

    async def _delete(self, held: Held) -> None:
        try:
            await self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=held.receipt)
        except Exception as e:
            self.log.warning("deleting outbound message %s failed (%s); it will be received again", held.id, e)

    async def _dead_letter(self, held: Held, reason: str, detail: str, session: str | None = None) -> Back | None:
        """Move ``held`` to the DLQ with why (``None``: done). If the DLQ refuses it, it goes back for a while."""
        if self.dlq_url:
            attributes = {
                "reason": reason,
                "origin": "outbound",
                "session": session or "",
                "detail": "".join(c if c.isprintable() else "?" for c in detail)[:DETAIL_MAX],
                "receive_count": str(held.receive_count),
            }
            try:
                await self._client.send_message(
                    QueueUrl=self.dlq_url,
                    MessageBody=held.message.get("Body") or "(empty)",
                    MessageGroupId=held.group or "outbound",
                    MessageDeduplicationId=held.id[:128] or reason,
                    MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v},
                )
            except Exception as e:
                self.log.warning("moving outbound message %s to the DLQ failed (%s); it comes back later", held.id, e)
                return Back(self.settings.overflow_delay_s, None)
        self.dead_lettered += 1
        self.log.error(
            "outbound message %s %s (%s: %s)",
            held.id,
            "moved to the DLQ" if self.dlq_url else "dropped (no OUTBOUND_QUEUE_DLQ_URL)",
            reason,
            detail,
        )
        await self._delete(held)
        return None
