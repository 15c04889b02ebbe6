"""Consumer of ``outbound.fifo``: sends each reply through the session manager exactly once (DESIGN section 5).

For each message: parse ``OutboundReply``; its WhatsApp message id is derived from the reply id
(``whatsapp_message_id``: a re-send after a crash is the same WhatsApp message, which the phone drops). If the reply
log already has a send record of that id, it was sent before a crash or redelivery, so only delete it; else send it
to ``to`` exactly as given, record it with its content (``connector.replies``), then delete it.

- Malformed bodies go to ``OUTBOUND_QUEUE_DLQ_URL`` (if set) as they are, are logged at ERROR without the body, and
  are deleted: retrying them cannot help.
- A reply whose session is not open (or unknown here, or the bridge is down) is left in the queue: its visibility is
  changed to a backoff growing with its receive count (5 s … 5 min), so it is retried later and, after the queue's
  ``maxReceiveCount``, lands in the DLQ. Within a message group (one chat) the replies behind it in the same batch are
  left too, so a chat's replies never overtake each other.
- Groups of one batch are processed concurrently, each in order.
- Stopping cancels the loop; a reply cancelled between send and delete is delivered again and found in the
  ``ReplyLog`` (or, if the record did not land, re-sent under the same WhatsApp id).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any, Protocol

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from pydantic import ValidationError

from connector.aws import open_client
from connector.contracts import OutboundReply, whatsapp_message_id
from connector.errors import RelayError, SessionOwnedElsewhere
from connector.replies import Replies
from connector.tasks import cancel, spawn
from connector.types import SessionId

WAIT_TIME_S = 20
MAX_MESSAGES = 10
OWNED_ELSEWHERE = object()
"""``_process`` result: the reply belongs to a session another connector owns."""


class ReplySessions(Protocol):
    def has_open_sessions(self) -> bool:
        """Whether any session is open here. A connector with none (a standby, or one whose sessions are all owned
        by another connector) does not take replies off the shared queue: each receive would count towards the
        DLQ's maxReceiveCount while only the owner can send them."""
        ...


IDLE_POLL_S = 1.0


class OutboundConsumer:
    def __init__(
        self,
        queue_url: str,
        sessions: ReplySessions,
        replies: Replies,
        *,
        dlq_url: str | None = None,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        wait_time_s: int = WAIT_TIME_S,
        retry_base_s: int = 5,
        retry_max_s: int = 300,
    ) -> None:
        self.log = logging.getLogger("wa_relay.outbound")
        self.queue_url = queue_url
        self.sessions = sessions
        self.replies = replies
        self.dlq_url = dlq_url
        self.region = region
        self.endpoint_url = endpoint_url
        self.session = session or aioboto3.Session()
        self.wait_time_s = wait_time_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.sent = 0
        self.duplicates = 0
        self.malformed = 0
        self.deferred = 0
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._client, self._stack = await open_client(
            self.session,
            "sqs",
            region=self.region,
            endpoint_url=self.endpoint_url,
            # read_timeout must exceed the long poll's WaitTimeSeconds.
            config=BotoConfig(read_timeout=self.wait_time_s + 15, connect_timeout=5),
        )
        self._task = spawn(self._run(), name="outbound-consumer")
        self.log.info("consuming %s", self.queue_url)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._client = None

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            if not self.sessions.has_open_sessions():
                await asyncio.sleep(IDLE_POLL_S)
                continue
            try:
                resp = await self._client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=MAX_MESSAGES,
                    WaitTimeSeconds=self.wait_time_s,
                    MessageSystemAttributeNames=["All"],
                )
            except Exception as e:
                self.log.warning("receiving from the outbound queue failed (%s); retry in %.0fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(60.0, backoff * 2)
                continue
            backoff = 1.0
            messages = resp.get("Messages") or []
            if messages:
                await self.process_batch(messages)

    async def process_batch(self, messages: list[dict[str, Any]]) -> None:
        groups: dict[str, list[dict[str, Any]]] = {}
        for m in messages:
            group = (m.get("Attributes") or {}).get("MessageGroupId", "")
            groups.setdefault(group, []).append(m)
        await asyncio.gather(*(self._process_group(g) for g in groups.values()))

    async def _process_group(self, messages: list[dict[str, Any]]) -> None:
        for i, m in enumerate(messages):
            try:
                done = await self._process(m)
            except Exception:
                self.log.exception("outbound message %s failed", m.get("MessageId"))
                done = False
            if done is not True:
                # The rest of the group waits exactly as long, so the chat's order holds when they come back. A
                # reply for a session another connector owns goes back at once: only the owner can send it. (With
                # several connectors on one queue every such bounce still counts as a receive towards the DLQ;
                # DESIGN section 11's per-connector outbound queues remove that, and are not built yet.)
                delay = 0 if done is OWNED_ELSEWHERE else self._retry_delay(m)
                for rest in messages[i:]:
                    await self._defer(rest, delay)
                return

    async def _process(self, m: dict[str, Any]) -> bool | object:
        """True once the message is handled and deleted; False to leave it for a later retry; ``OWNED_ELSEWHERE``
        to hand it back at once."""
        try:
            reply = OutboundReply.model_validate_json(m.get("Body", ""))
        except ValidationError as e:
            await self._dead_letter(m, e)
            return True
        rlog = self.log.getChild(reply.session_id)
        sid = SessionId(reply.session_id)
        message_id = whatsapp_message_id(reply.reply_id)
        if await self.replies.sent(sid, message_id) is not None:
            self.duplicates += 1
            rlog.info("reply %s was already sent as %s; deleting the redelivery", reply.reply_id, message_id)
            await self._delete(m)
            return True
        try:
            sent = await self.replies.send(
                sid,
                reply.to,
                reply.text,
                message_id=message_id,
                quoted=reply.quoted.model_dump(exclude_none=True) if reply.quoted else None,
                reply_id=reply.reply_id,
            )
        except SessionOwnedElsewhere:
            rlog.debug("reply %s is for a session another connector owns; handed back", reply.reply_id)
            return OWNED_ELSEWHERE
        except RelayError as e:
            rlog.info("reply %s not sent now (%s); retried later", reply.reply_id, e)
            return False
        await self.replies.record(sent)
        self.sent += 1
        rlog.info("reply %s sent as %s to %s", reply.reply_id, sent.message_id, reply.to)
        await self._delete(m)
        return True

    def _retry_delay(self, m: dict[str, Any]) -> int:
        count = int((m.get("Attributes") or {}).get("ApproximateReceiveCount", "1") or 1)
        return int(min(self.retry_max_s, self.retry_base_s * 2 ** max(0, count - 1)))

    async def _defer(self, m: dict[str, Any], delay: int) -> None:
        self.deferred += 1
        try:
            await self._client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=int(delay)
            )
        except Exception as e:
            self.log.warning("could not defer outbound message %s: %s", m.get("MessageId"), e)

    async def _delete(self, m: dict[str, Any]) -> None:
        await self._client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    async def _dead_letter(self, m: dict[str, Any], error: ValidationError) -> None:
        self.malformed += 1
        first = error.errors(include_input=False)[0] if error.errors() else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if self.dlq_url:
            attrs = m.get("Attributes") or {}
            await self._client.send_message(
                QueueUrl=self.dlq_url,
                MessageBody=m.get("Body") or "(empty)",
                MessageGroupId=attrs.get("MessageGroupId") or "malformed",
                MessageDeduplicationId=m.get("MessageId", "malformed")[:128],
            )
        self.log.error(
            "malformed outbound message %s (%s: %s); %s",
            m.get("MessageId"),
            where,
            first["msg"],
            "moved to the DLQ" if self.dlq_url else "dropped (no OUTBOUND_QUEUE_DLQ_URL)",
        )
        await self._delete(m)
