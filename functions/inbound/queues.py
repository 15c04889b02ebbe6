"""What the function puts on SQS: replies and typing messages on ``outbound.fifo``, malformed records on the inbound
DLQ."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from connector.contracts import DEAD_LETTER_REASON, OutboundReply, OutboundTyping, typing_id
from connector.resources import SQS_BATCH_MAX, SQS_BODY_MAX_BYTES
from functions.inbound.errors import DeadLetterError, ReplySendError, ReplyTooLarge

MALFORMED_GROUP = "malformed"
MALFORMED = "malformed"
"""The DLQ reason of a body that is not an ``InboundEnvelope`` (the detail says what is wrong with it)."""
ORIGIN = "inbound"
REASON_MAX_CHARS = 1024


class ReplyQueue:
    """``SendMessageBatch`` to ``outbound.fifo``: at most ``SQS_BATCH_MAX`` entries and ``SQS_BODY_MAX_BYTES`` per
    call; entries that fail for a reason that is not the sender's fault are sent again (same dedup id, so a copy
    that did get through is dropped by SQS)."""

    def __init__(self, sqs: Any, url: str, *, attempts: int = 4, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sqs = sqs
        self.url = url
        self.attempts = attempts
        self._sleep = sleep

    def send(self, group_id: str, replies: Sequence[OutboundReply]) -> None:
        entries: list[dict[str, str]] = []
        for reply in replies:
            body = reply.model_dump_json()
            size = len(body.encode())
            if size > SQS_BODY_MAX_BYTES:
                raise ReplyTooLarge(
                    f"reply {reply.reply_id} to event {reply.event_id} is {size} bytes, over the SQS limit of "
                    f"{SQS_BODY_MAX_BYTES}"
                )
            entries.append(
                {
                    "Id": str(len(entries)),
                    "MessageBody": body,
                    "MessageGroupId": group_id,
                    "MessageDeduplicationId": reply.reply_id,
                }
            )
        for chunk in _chunks(entries):
            self._send_batch(chunk)

    def send_typing(self, group_id: str, typing: OutboundTyping) -> None:
        """One typing message, in the chat's group like its replies; sent once (it is worth no retries: a late
        "typing…" is no better than none)."""
        try:
            self._sqs.send_message(
                QueueUrl=self.url,
                MessageBody=typing.model_dump_json(),
                MessageGroupId=group_id,
                MessageDeduplicationId=typing_id(typing.event_id, typing.state),
            )
        except (BotoCoreError, ClientError) as e:
            raise ReplySendError(f"failed to send typing {typing.state} for event {typing.event_id}") from e

    def _send_batch(self, entries: list[dict[str, str]]) -> None:
        pending = entries
        for attempt in range(self.attempts):
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.url, Entries=pending)
            except (BotoCoreError, ClientError) as e:
                raise ReplySendError(f"failed to send {len(pending)} replies to {self.url}") from e
            failed = response.get("Failed") or []
            if not failed:
                return
            permanent = [f for f in failed if f.get("SenderFault")]
            if permanent:
                codes = sorted({str(f.get("Code")) for f in permanent})
                raise ReplySendError(f"outbound.fifo refused {len(permanent)} replies: {', '.join(codes)}")
            failed_ids = {f["Id"] for f in failed}
            pending = [e for e in pending if e["Id"] in failed_ids]
            if attempt + 1 < self.attempts:
                self._sleep(min(0.1 * 2**attempt, 2.0))
        raise ReplySendError(f"{len(pending)} replies still failing after {self.attempts} attempts")


def _chunks(entries: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    chunks: list[list[dict[str, str]]] = []
    current: list[dict[str, str]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["MessageBody"].encode())
        if current and (len(current) == SQS_BATCH_MAX or size + entry_size > SQS_BODY_MAX_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


class DeadLetterQueue:
    """Moves a record to the inbound DLQ (FIFO) with why, as message attributes (``connector.contracts``:
    ``reason``, ``origin`` = ``inbound``, ``detail``, ``session``, ``receive_count``, and ``source_message_id``), so
    the dead-letter tool can show and filter it.

    The deduplication id is the record's own SQS message id: a retry of the same move (the send got through, the
    record then failed and came back) is dropped by SQS, while another message with the same body, such as a copy
    the dead-letter tool put back that failed again, is a new dead letter and must not be dropped."""

    def __init__(self, sqs: Any, url: str, *, origin: str = ORIGIN) -> None:
        self._sqs = sqs
        self.url = url
        self.origin = origin

    def send(
        self,
        body: str,
        *,
        reason: str,
        source_message_id: str,
        detail: str = "",
        session: str = "",
        group: str = MALFORMED_GROUP,
        receive_count: str = "",
    ) -> None:
        attributes = {
            DEAD_LETTER_REASON: reason,
            "origin": self.origin,
            "detail": "".join(c if c.isprintable() else "?" for c in detail),
            "session": session,
            "receive_count": receive_count,
            "source_message_id": source_message_id,
        }
        try:
            self._sqs.send_message(
                QueueUrl=self.url,
                MessageBody=body,
                MessageGroupId=group,
                MessageDeduplicationId=source_message_id[:128],
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value[:REASON_MAX_CHARS]}
                    for name, value in attributes.items()
                    if value
                },
            )
        except (BotoCoreError, ClientError) as e:
            raise DeadLetterError(f"failed to move record {source_message_id} to {self.url}") from e
