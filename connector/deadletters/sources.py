"""Where dead letters are read from, and how they are put back and taken out: a FIFO DLQ (``QueueSource``) or the
spool's rejected entries (``SpoolSource``).

A DLQ cannot be read without receiving, so reading one hides each message for ``hold_s`` (from other readers, e.g. a
second run of the tool); ``close`` makes every message still held visible again at once. Two consequences of SQS
FIFO, written down here because they limit what a run can see:
- While a message group has messages in flight, SQS returns none of its later messages. A run therefore sees at most
  one receive's worth (up to 10) of each group it does not empty; the rest of that group shows once those are taken
  out (redriven or deleted), e.g. in the next run.
- Receiving counts as a receive: ``ApproximateReceiveCount`` of a DLQ message grows with every run that read it.
  The tool reports how often the *source* queue delivered it (the ``receive_count`` attribute, or the source queue's
  ``maxReceiveCount`` for what its redrive policy moved).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any, Protocol

from connector.aws import describe_error
from connector.deadletters.entries import DeadLetter, Outgoing, Source, Target, from_spool_line, from_sqs
from connector.publish.spool import batch_len, read_rejected, remove_rejected
from connector.resources import SQS_BATCH_MAX, SQS_BODY_MAX_BYTES

log = logging.getLogger("wa_relay.deadletters")

HOLD_S = 300
"""How long a received DLQ message stays hidden while a run works on it (a crash leaves it hidden this long)."""
WAIT_S = 1
"""Long poll of each receive: a short poll may miss messages on other SQS servers and end a run early."""
STALE_RECEIVES = 3
"""Receives in a row returning only messages seen before (their hold lapsed) that end a scan."""


class DeadLetterSource(Protocol):
    name: Source
    truncated: bool
    """The last scan stopped at its ``limit``: there may be more."""

    def batches(self, limit: int) -> AsyncGenerator[list[DeadLetter], None]:
        """Every entry (up to ``limit``), oldest first within a chat, each once, in batches of up to 10."""
        ...

    async def put_back(self, copies: Sequence[Outgoing]) -> dict[str, str]:
        """Send ``copies`` to their queue, in order; returns the entries not sent, by id, with why."""
        ...

    async def take_out(self, entries: Sequence[DeadLetter]) -> dict[str, str]:
        """Remove ``entries`` from the source; returns those not removed, by id, with why."""
        ...

    async def close(self) -> None:
        """Let go of everything still held (visible again at once)."""
        ...


async def send_copies(client: Any, url: str, copies: Sequence[Outgoing]) -> dict[str, str]:
    """``SendMessageBatch``, at most ``SQS_BATCH_MAX`` entries and ``SQS_BODY_MAX_BYTES`` per call, in order. Once
    a copy of a chat fails, that chat's later copies are not sent either (they would overtake it)."""
    failed: dict[str, str] = {}
    failed_groups: set[str] = set()
    pending = list(copies)
    while pending:
        for copy in [c for c in pending if c.group in failed_groups]:
            failed[copy.entry.id] = "an earlier entry of its chat was not put back"
        pending = [c for c in pending if c.group not in failed_groups]
        if not pending:
            break
        count = batch_len((c.size for c in pending), SQS_BATCH_MAX, SQS_BODY_MAX_BYTES)
        chunk, pending = pending[:count], pending[count:]
        try:
            response = await client.send_message_batch(
                QueueUrl=url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": c.body,
                        "MessageGroupId": c.group,
                        "MessageDeduplicationId": c.dedup,
                        "MessageAttributes": c.message_attributes(),
                    }
                    for i, c in enumerate(chunk)
                ],
            )
        except Exception as e:
            for c in chunk:
                failed[c.entry.id] = describe_error(e)
                failed_groups.add(c.group)
            continue
        for failure in response.get("Failed") or []:
            c = chunk[int(failure["Id"])]
            failed[c.entry.id] = f"SQS refused it: {failure.get('Code', '?')}: {failure.get('Message', '')}"[:300]
            failed_groups.add(c.group)
    return failed


async def max_receive_count(client: Any, queue_url: str, default: int) -> int:
    """The queue's redrive ``maxReceiveCount`` (``default`` when it cannot be read)."""
    try:
        response = await client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
        return int(json.loads(response["Attributes"]["RedrivePolicy"])["maxReceiveCount"])
    except Exception as e:
        log.debug("redrive policy of %s not readable (%s); assuming %d", queue_url, e, default)
        return default


class QueueSource:
    def __init__(
        self,
        client: Any,
        name: Target,
        dlq_url: str,
        target_url: str | None,
        *,
        redrive_receives: int,
        hold_s: int = HOLD_S,
        wait_s: int = WAIT_S,
    ) -> None:
        self.name: Source = name
        self.queue: Target = name
        self._client = client
        self.dlq_url = dlq_url
        self.target_url = target_url
        self.redrive_receives = redrive_receives
        self.hold_s = hold_s
        self.wait_s = wait_s
        self.truncated = False
        self._held: dict[str, str] = {}
        """Message id → the receipt handle of its latest receive, for every message this run holds."""

    async def batches(self, limit: int) -> AsyncGenerator[list[DeadLetter], None]:
        self.truncated = False
        seen: set[str] = set()
        stale = 0
        while stale < STALE_RECEIVES:
            if len(seen) >= limit:
                self.truncated = True
                return
            response = await self._client.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=min(SQS_BATCH_MAX, limit - len(seen)),
                VisibilityTimeout=self.hold_s,
                WaitTimeSeconds=self.wait_s,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages") or []
            if not messages:
                return
            fresh = []
            for message in messages:
                message_id = str(message["MessageId"])
                self._held[message_id] = str(message["ReceiptHandle"])
                if message_id not in seen:
                    seen.add(message_id)
                    fresh.append(from_sqs(self.queue, message, redrive_receives=self.redrive_receives))
            stale = 0 if fresh else stale + 1
            if fresh:
                yield fresh

    async def put_back(self, copies: Sequence[Outgoing]) -> dict[str, str]:
        if self.target_url is None:
            raise ValueError(f"no queue to put {self.name} dead letters back on")
        return await send_copies(self._client, self.target_url, copies)

    async def take_out(self, entries: Sequence[DeadLetter]) -> dict[str, str]:
        failed: dict[str, str] = {}
        held = [e for e in entries if e.id in self._held]
        failed.update((e.id, "not held by this run") for e in entries if e.id not in self._held)
        for start in range(0, len(held), SQS_BATCH_MAX):
            chunk = held[start : start + SQS_BATCH_MAX]
            try:
                response = await self._client.delete_message_batch(
                    QueueUrl=self.dlq_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": self._held[e.id]} for i, e in enumerate(chunk)],
                )
            except Exception as e:
                failed.update((entry.id, describe_error(e)) for entry in chunk)
                continue
            refused = {
                int(f["Id"]): f"{f.get('Code', '?')}: {f.get('Message', '')}" for f in response.get("Failed") or []
            }
            for i, entry in enumerate(chunk):
                if i in refused:
                    failed[entry.id] = refused[i]
                else:
                    del self._held[entry.id]
        return failed

    async def close(self) -> None:
        held = list(self._held.items())
        self._held.clear()
        for start in range(0, len(held), SQS_BATCH_MAX):
            chunk = held[start : start + SQS_BATCH_MAX]
            try:
                response = await self._client.change_message_visibility_batch(
                    QueueUrl=self.dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                        for i, (_, receipt) in enumerate(chunk)
                    ],
                )
                refused = len(response.get("Failed") or [])
            except Exception as e:
                log.warning("could not release %d %s dead letters (%s)", len(chunk), self.name, describe_error(e))
                refused = len(chunk)
            if refused:
                log.warning("%d %s dead letters stay hidden for up to %d s", refused, self.name, self.hold_s)


class SpoolSource:
    """The rejected entries of the spool in ``directory`` (``inbound.spool.rejected``), put back on ``inbound.fifo``."""

    def __init__(self, directory: Path, client: Any | None = None, target_url: str | None = None) -> None:
        self.name: Source = "spool"
        self.directory = Path(directory)
        self._client = client
        self.target_url = target_url
        self.truncated = False

    async def batches(self, limit: int) -> AsyncGenerator[list[DeadLetter], None]:
        lines = await asyncio.to_thread(read_rejected, self.directory)
        self.truncated = len(lines) > limit
        lines = lines[:limit]
        for start in range(0, len(lines), SQS_BATCH_MAX):
            yield [from_spool_line(line) for line in lines[start : start + SQS_BATCH_MAX]]

    async def put_back(self, copies: Sequence[Outgoing]) -> dict[str, str]:
        if self._client is None or self.target_url is None:
            raise ValueError("no queue to put spool entries back on")
        return await send_copies(self._client, self.target_url, copies)

    async def take_out(self, entries: Sequence[DeadLetter]) -> dict[str, str]:
        stored = [e.stored for e in entries if e.stored is not None]
        try:
            await asyncio.to_thread(remove_rejected, self.directory, stored)
        except OSError as e:
            return {entry.id: describe_error(e) for entry in entries}
        # One not found was already taken out (by another run): gone either way.
        return {}

    async def close(self) -> None:
        return None
