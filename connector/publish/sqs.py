"""The production publisher: SQS FIFO ``inbound.fifo``, with a disk spool while SQS cannot be reached.

``MessageGroupId`` = ``envelope.group_id`` (session + canonical chat: one chat in order, chats in parallel),
``MessageDeduplicationId`` = ``event_id``, body = the envelope's JSON.

Sending: one sender task takes what ``publish`` callers have queued and sends it with ``SendMessageBatch`` (up to
``SQS_BATCH_MAX`` entries and ``SQS_BODY_MAX_BYTES`` per call), one call at a time, in arrival order. Nothing waits
to fill a batch: a lone envelope goes out at once, and envelopes that arrive while a call is in flight share the
next one. Each ``publish`` returns only when its entry is in SQS (or durably in the spool), never earlier. One lock
held across each round trip instead would let all sessions of a connector publish one message per round trip.

Spool (``<SPOOL_DIR>/inbound.spool``, one JSON line ``{"group", "dedup", "body"}`` per envelope):
- A send that fails (endpoint down, throttled, credentials …) appends its envelopes to the spool and fsyncs before
  their ``publish`` calls return; a background task drains the spool in order with exponential backoff (0.5 s …
  30 s). An entry SQS refuses inside an otherwise accepted batch is spooled the same way (the drainer moves an
  invalid one aside, see below); the others of its batch are in SQS already, so only that entry can end up behind
  later messages of its chat.
- While the spool is not empty, new envelopes are appended behind it instead of being sent directly, so the order
  within a chat is kept across an outage.
- At start, a spool left by an earlier run is loaded and drained.

What a hard kill (SIGKILL, power loss) can lose: nothing ``publish`` acknowledged. An acknowledged envelope is either
in SQS (the send returned) or in the spool file (written and fsynced). A line torn by a kill during its write belongs
to a ``publish`` that had not returned (the upsert was not acknowledged either); such a line is skipped with a
warning on load. The kill can make the drainer send an entry twice (sent, but the spool not yet rewritten): SQS FIFO
drops the copy within five minutes by its dedup id, and the inbound function deduplicates on ``event_id`` after that.

Entries SQS rejects as invalid (never deliverable, e.g. a body moto/AWS refuse) are moved to
``inbound.spool.rejected`` and logged at ERROR, so one bad entry cannot block the queue forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from connector.aws import open_client
from connector.contracts import InboundEnvelope
from connector.errors import PublishError
from connector.publish.abstract import InboundPublisher
from connector.resources import SQS_BATCH_MAX, SQS_BODY_MAX_BYTES
from connector.tasks import cancel, spawn

SPOOL_FILE = "inbound.spool"
REJECTED_FILE = "inbound.spool.rejected"
REWRITE_EVERY = 100
"""The spool file is rewritten after this many drained entries (and when it empties), not after each one."""
_INVALID_CODES = frozenset({"InvalidParameterValue", "InvalidMessageContents", "MissingParameter"})


class SqsPublisher(InboundPublisher):
    def __init__(
        self,
        queue_url: str,
        *,
        spool_dir: Path,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 3.0,
    ) -> None:
        self.log = logging.getLogger("wa_relay.publish.sqs")
        self.queue_url = queue_url
        self.spool_path = Path(spool_dir) / SPOOL_FILE
        self.rejected_path = Path(spool_dir) / REJECTED_FILE
        self.region = region
        self.endpoint_url = endpoint_url
        self.session = session or aioboto3.Session()
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.published = 0
        self.sent = 0
        self._stack: AsyncExitStack | None = None
        self.batches = 0
        """``SendMessageBatch`` calls made by the sender (``sent / batches`` is the mean batch size)."""
        self._client: Any = None
        self._spool: deque[dict[str, str]] = deque()
        self._outbox: deque[tuple[dict[str, str], asyncio.Future[None]]] = deque()
        """Entries waiting for the sender, each with the future its ``publish`` call awaits."""
        self._lock = asyncio.Lock()
        """Orders the spool against the outbox: taken for short, local steps only, never across a network call."""
        self._wake = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._in_flight: list[tuple[dict[str, str], asyncio.Future[None]]] = []
        """The batch the sender is sending: spooled too if ``stop`` cancels the call (a possible duplicate, which
        SQS's dedup id and then the function's idempotency remove, rather than a loss)."""
        self._drainer: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    # ---- lifecycle ----

    async def start(self) -> None:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        self._load_spool()
        self._client, self._stack = await open_client(
            self.session,
            "sqs",
            region=self.region,
            endpoint_url=self.endpoint_url,
            config=BotoConfig(
                connect_timeout=self.connect_timeout_s,
                read_timeout=10,
                retries={"mode": "standard", "total_max_attempts": 2},
            ),
        )
        self._drainer = spawn(self._drain_forever(), name="sqs-spool-drainer")
        self._sender = spawn(self._send_forever(), name="sqs-sender")
        if self._spool:
            self.log.warning("%d envelopes left in the spool by an earlier run; draining", len(self._spool))
            self._wake.set()

    async def stop(self) -> None:
        await cancel(self._sender)
        self._sender = None
        async with self._lock:
            await self._spool_outbox()  # whatever the sender had not taken yet: durable, and sent at the next start
        await cancel(self._drainer)
        self._drainer = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._client = None
        if self._spool:
            self.log.warning("stopping with %d envelopes in the spool; sent at the next start", len(self._spool))

    @property
    def spool_depth(self) -> int:
        return len(self._spool)

    # ---- publishing ----

    async def publish(self, envelope: InboundEnvelope) -> None:
        # Shielded: a cancelled caller must not cancel the future the sender resolves (the entry is sent anyway).
        await asyncio.shield(await self.enqueue(envelope))

    async def enqueue(self, envelope: InboundEnvelope) -> asyncio.Future[None]:
        body = envelope.model_dump_json()
        if len(body.encode()) > SQS_BODY_MAX_BYTES:
            raise PublishError(f"envelope {envelope.event_id} is larger than {SQS_BODY_MAX_BYTES} bytes")
        entry = {
            "group": envelope.group_id,
            "dedup": envelope.event_id,
            "body": body,
        }
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(self._count)
        async with self._lock:
            if self._spool or self._sender is None:
                # Behind the spool (SQS was failing), or not started: durable on disk, sent by the drainer in order.
                await asyncio.to_thread(self._append, entry)
                self._spool.append(entry)
                self._wake.set()
                done.set_result(None)
                return done
            self._outbox.append((entry, done))
            self._outbox_ready.set()
        return done

    def _count(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is None:
            self.published += 1

    async def _send_forever(self) -> None:
        while True:
            await self._outbox_ready.wait()
            async with self._lock:
                if self._spool:
                    await self._spool_outbox()  # a failure spooled entries: everything after them goes behind
                batch = self._take_batch()
                if not batch:
                    self._outbox_ready.clear()
                    continue
                self._in_flight = batch
            failed = await self._send_batch([entry for entry, _ in batch])
            async with self._lock:
                self._in_flight = []
                if failed:
                    entries = [entry for i, (entry, _) in enumerate(batch) if i in failed]
                    await asyncio.to_thread(self._append_all, entries)
                    self._spool.extend(entries)
                    self._wake.set()
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _take_batch(self) -> list[tuple[dict[str, str], asyncio.Future[None]]]:
        batch: list[tuple[dict[str, str], asyncio.Future[None]]] = []
        size = 0
        while self._outbox and len(batch) < SQS_BATCH_MAX:
            entry_size = len(self._outbox[0][0]["body"].encode())
            if batch and size + entry_size > SQS_BODY_MAX_BYTES:
                break
            batch.append(self._outbox.popleft())
            size += entry_size
        return batch

    async def _send_batch(self, entries: list[dict[str, str]]) -> set[int]:
        """Send ``entries`` in one call; the indexes of those SQS did not take (all of them if the call failed)."""
        try:
            if self._client is None:
                raise PublishError("publisher not started")
            response = await self._client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": entry["body"],
                        "MessageGroupId": entry["group"],
                        "MessageDeduplicationId": entry["dedup"],
                    }
                    for i, entry in enumerate(entries)
                ],
            )
        except Exception as e:
            self.log.warning("SQS send failed (%s); spooling %d events", _describe(e), len(entries))
            return set(range(len(entries)))
        self.batches += 1
        failed = {int(f["Id"]) for f in response.get("Failed", [])}
        for f in response.get("Failed", []):
            self.log.warning(
                "SQS refused event %s (%s: %s); spooled",
                entries[int(f["Id"])]["dedup"], f.get("Code", "?"), str(f.get("Message", ""))[:200],
            )  # fmt: skip
        self.sent += len(entries) - len(failed)
        return failed

    async def _spool_outbox(self) -> None:
        """Move every queued entry behind the spool, durably, and let its ``publish`` return. Holds ``_lock``."""
        pending = self._in_flight + list(self._outbox)
        self._in_flight = []
        self._outbox.clear()
        if not pending:
            return
        entries = [entry for entry, _ in pending]
        await asyncio.to_thread(self._append_all, entries)
        self._spool.extend(entries)
        self._wake.set()
        for _, done in pending:
            if not done.done():
                done.set_result(None)

    async def _send(self, entry: dict[str, str]) -> None:
        if self._client is None:
            raise PublishError("publisher not started")
        await self._client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=entry["body"],
            MessageGroupId=entry["group"],
            MessageDeduplicationId=entry["dedup"],
        )
        self.sent += 1

    # ---- the spool ----

    def _append(self, entry: dict[str, str]) -> None:
        self._append_all([entry])

    def _append_all(self, entries: list[dict[str, str]]) -> None:
        with open(self.spool_path, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(entry, separators=(",", ":")) + "\n" for entry in entries)
            f.flush()
            os.fsync(f.fileno())

    def _rewrite(self, entries: list[dict[str, str]]) -> None:
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                self.spool_path.unlink()
            return
        tmp = self.spool_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.spool_path)

    def _load_spool(self) -> None:
        self._spool.clear()
        if not self.spool_path.exists():
            return
        with open(self.spool_path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    entry = json.loads(line)
                    if not isinstance(entry, dict) or not {"group", "dedup", "body"} <= entry.keys():
                        raise ValueError("not a spool entry")
                except ValueError:
                    self.log.warning("spool line %d is torn or invalid (an unacknowledged write); skipped", n)
                    continue
                self._spool.append({k: str(entry[k]) for k in ("group", "dedup", "body")})

    def _reject(self, entry: dict[str, str]) -> None:
        with open(self.rejected_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def _drain_forever(self) -> None:
        backoff = self.backoff_initial_s
        drained = 0
        while True:
            await self._wake.wait()
            if not self._spool:
                self._wake.clear()
                continue
            entry = self._spool[0]
            try:
                await self._send(entry)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in _INVALID_CODES:
                    self.log.error("SQS rejected spooled event %s (%s); moved aside", entry["dedup"], _describe(e))
                    await asyncio.to_thread(self._reject, entry)
                else:
                    self.log.warning("spool drain: SQS still failing (%s); retry in %.1fs", _describe(e), backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(self.backoff_max_s, backoff * 2)
                    continue
            except Exception as e:
                self.log.warning("spool drain: SQS still failing (%s); retry in %.1fs", _describe(e), backoff)
                await asyncio.sleep(backoff)
                backoff = min(self.backoff_max_s, backoff * 2)
                continue
            backoff = self.backoff_initial_s
            drained += 1
            async with self._lock:
                self._spool.popleft()
                if not self._spool or drained >= REWRITE_EVERY:
                    drained = 0
                    await asyncio.to_thread(self._rewrite, list(self._spool))
                if not self._spool:
                    self.log.info("spool drained")
                    self._wake.clear()


def _describe(e: BaseException) -> str:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '')}"[:200]
    return f"{type(e).__name__}: {e}"[:200]
