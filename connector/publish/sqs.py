"""The production publisher: SQS FIFO ``inbound.fifo``, with a disk spool (``spool.py``) for what SQS does not take
in time.

``MessageGroupId`` = ``envelope.group_id`` (session + canonical chat: one chat in order, chats in parallel),
``MessageDeduplicationId`` = ``event_id``, body = the envelope's JSON.

The stream is the spool on disk (oldest) followed by the memory queue of envelopes not yet durable. Two tasks:
- The pump makes one SQS call at a time, always from the oldest end: a ``SendMessageBatch`` (up to ``SQS_BATCH_MAX``
  entries and ``SQS_BODY_MAX_BYTES``) read from the spool while it is not empty, so a backlog of N entries takes
  about N/10 calls; else from the memory queue (live). Nothing waits to fill a batch: a lone envelope goes out at
  once, envelopes that arrive during a call share the next one.
- The writer appends the memory queue to the spool (everything queued in one write and one fsync) whenever it must
  not go live: the spool is not empty (order), the last call failed and the pump backs off, or a live call has not
  answered within ``spool_after_s``. Then that call's batch goes back to the front of the memory queue and is spooled
  first, so a slow-but-answering SQS holds no envelope in memory longer than that.

An envelope is acknowledged (its ``enqueue`` future resolves) once SQS accepted it or the spool fsynced it. When
neither is possible (SQS failing, the spool full or its disk failing), the future stays pending and the publisher is
``degraded``: the writer retries with backoff (at once when draining freed space), the pump keeps trying SQS, and
whichever succeeds first resolves it. At most ``max_pending`` envelopes (and ``max_pending_bytes``) wait in memory;
beyond that ``enqueue`` waits too, which holds WhatsApp's delivery receipts upstream.

A kill (SIGKILL, power loss) loses nothing acknowledged: it is in SQS or fsynced in a segment. Where a duplicate can
arise (SQS FIFO drops a copy within five minutes of the first by its dedup id; later, the inbound function drops it
by ``event_id``):
- a kill after SQS took a spool batch but before the cursor recorded it: that batch (at most one) is sent again at
  the next start; likewise everything sent since the last cursor write while the cursor cannot be written;
- a live call unanswered after ``spool_after_s``: its entries are spooled as well. If SQS then accepts them, the
  drainer skips them; if the outcome stays unknown (transport error, abandoned after ``LATE_MAX_S``, ``stop``), the
  spooled copies are sent too, normally seconds later;
- a failed spool write whose data reached the disk and could not be truncated: the retry writes it again;
- a kill after a spool write reached the disk but before it was acknowledged: the entry is sent at the next start,
  and WhatsApp, which got no receipt, delivers the message again (same ``event_id``);
- an entry SQS refuses inside an accepted spool batch (other than as invalid): the entries after it are sent again
  with it. It lands behind the later entries of its chat SQS took, live or drained (the only reordering).

Entries SQS refuses as invalid can never be delivered: they are moved to ``inbound.spool.rejected`` and logged at
ERROR, so one bad entry cannot block the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from connector.aws import SQS_INVALID_CODES, describe_error, open_client
from connector.contracts import InboundEnvelope
from connector.errors import PublishError
from connector.publish.abstract import InboundPublisher
from connector.publish.spool import Entry, Spool, SpoolFull, batch_len
from connector.resources import SQS_BATCH_MAX, SQS_BODY_MAX_BYTES
from connector.tasks import cancel, spawn

T = TypeVar("T")
WRITE_MAX = 1000  # entries per spool write (and fsync)
LATE_MAX_S = 60.0
"""A live call still unanswered after this long is abandoned (its entries are in the spool by then)."""
SENT_LATE_MAX = 1000
"""Dedup ids of spooled entries SQS accepted late, remembered so the drainer skips them."""


@dataclass(eq=False)
class _Pending:
    """An envelope not yet durable, and the future its ``enqueue`` caller holds."""

    entry: Entry
    size: int
    done: asyncio.Future[None]


class SqsPublisher(InboundPublisher):
    def __init__(
        self,
        queue_url: str,
        *,
        spool_dir: Path,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        session: aioboto3.Session | None = None,
        spool_max_bytes: int = 1 << 30,
        spool_after_s: float = 2.0,
        max_pending: int = 1000,
        max_pending_bytes: int = 32 << 20,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 3.0,
    ) -> None:
        self.log = logging.getLogger("wa_relay.publish.sqs")
        self.queue_url = queue_url
        self.spool = Spool(Path(spool_dir), max_bytes=spool_max_bytes)
        self.region = region
        self.endpoint_url = endpoint_url
        self.session = session or aioboto3.Session()
        self.spool_after_s = spool_after_s
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.published = 0
        self.sent = 0
        self.batches = 0
        """``SendMessageBatch`` calls SQS answered (``sent / batches`` is the mean batch size)."""
        self.spool_write_errors = 0
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._running = False
        self._stopping = False
        self._queue: deque[_Pending] = deque()
        """Envelopes not yet durable and not in flight, oldest first; all of them after the spool's."""
        self._pending = self._pending_bytes = 0
        """Envelopes (and their bytes) whose future is unresolved: the queue plus a batch in flight."""
        self._admit = asyncio.Lock()
        """Makes ``enqueue`` calls that wait for room take their turn in call order."""
        self._room = asyncio.Event()
        self._order = asyncio.Lock()
        """Held while the queue's head moves to the spool or into a live call, so neither overtakes the other."""
        self._disk = asyncio.Lock()
        self._pump_wake = asyncio.Event()
        self._writer_wake = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._suspended = False  # the pump backs off after a failed call
        self._late = False  # a live call outlasted spool_after_s and has not answered yet
        self._sent_late: dict[str, None] = {}
        self._single_left = 0
        """Spool entries still to send one per call, to find the one an invalid batch holds."""
        self._degraded: str | None = None
        self._pump: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stopped.set()

    # ---- lifecycle ----

    async def start(self) -> None:
        await self._on_disk(self.spool.open)
        if self.spool.depth:
            self.log.warning("%d envelopes left in the spool by an earlier run; draining", self.spool.depth)
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
        self._running, self._stopping = True, False
        self._stopped.clear()
        self._pump = spawn(self._pump_forever(), name="sqs-pump")
        self._writer = spawn(self._write_forever(), name="sqs-spool-writer")

    async def stop(self) -> None:
        self._running = False
        self._room.set()  # enqueue calls waiting for room find the publisher stopped
        await cancel(self._pump)  # a live batch in flight goes back to the queue
        self._pump = None
        if self._writer is not None:
            self._stopping = True  # the writer spools what is queued, once, and ends
            self._writer_wake.set()
            self._retry_now.set()
            with contextlib.suppress(Exception):
                await self._writer
            self._writer = None
        while self._queue:
            self._settle(self._queue.popleft(), PublishError("the publisher stopped before the envelope was durable"))
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._client = None
        await self._on_disk(self.spool.close)
        self._stopped.set()
        if self.spool.depth:
            self.log.warning("stopping with %d envelopes in the spool; sent at the next start", self.spool.depth)

    @property
    def spool_depth(self) -> int:
        return self.spool.depth

    @property
    def spool_bytes(self) -> int:
        return self.spool.bytes

    @property
    def degraded(self) -> str | None:
        return self._degraded

    # ---- taking envelopes ----

    async def publish(self, envelope: InboundEnvelope) -> None:
        # Shielded: a cancelled caller must not cancel the future the publisher resolves (the entry is sent anyway).
        await asyncio.shield(await self.enqueue(envelope))

    async def enqueue(self, envelope: InboundEnvelope) -> asyncio.Future[None]:
        body = envelope.model_dump_json()
        size = len(body.encode())
        if size > SQS_BODY_MAX_BYTES:
            raise PublishError(f"envelope {envelope.event_id} is larger than {SQS_BODY_MAX_BYTES} bytes")
        entry = Entry(envelope.group_id, envelope.event_id, body)
        item = _Pending(entry, size, asyncio.get_running_loop().create_future())
        item.done.add_done_callback(self._count)
        async with self._admit:
            while self._running and self._full(size):
                self._room.clear()
                await self._room.wait()
            if not self._running:
                await self._stopped.wait()  # after what ``stop`` spools: it is older
                await self._spool_stopped(item)
                return item.done
            self._pending += 1
            self._pending_bytes += size
            self._queue.append(item)
        self._pump_wake.set()
        self._writer_wake.set()
        return item.done

    async def _spool_stopped(self, item: _Pending) -> None:
        """Before ``start`` or after ``stop``: straight to the spool, where the next start finds it."""
        try:
            await self._on_disk(self.spool.append_closed, [item.entry])
        except (SpoolFull, OSError) as e:
            item.done.set_exception(PublishError(f"the publisher is stopped and its spool refused the envelope: {e}"))
        else:
            item.done.set_result(None)

    def _full(self, size: int) -> bool:
        return self._pending >= self.max_pending or (
            self._pending > 0 and self._pending_bytes + size > self.max_pending_bytes
        )

    def _count(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is None:
            self.published += 1

    def _settle(self, item: _Pending, error: Exception | None = None) -> None:
        """The envelope is durable (or, with ``error``, never will be by this publisher): resolve its future."""
        self._pending -= 1
        self._pending_bytes -= item.size
        if not item.done.done():
            if error is None:
                item.done.set_result(None)
            else:
                item.done.set_exception(error)
        self._room.set()

    def _requeue(self, items: list[_Pending]) -> None:
        """Put a batch back at the front. Only the pump does this, and only while the writer is idle (it writes when
        the pump cannot send live), so the writer never loses track of the head it is writing."""
        self._queue.extendleft(reversed(items))

    # ---- the pump: one SQS call at a time, oldest first ----

    async def _pump_forever(self) -> None:
        backoff = self.backoff_initial_s
        while True:
            self._pump_wake.clear()
            if not self.spool.empty:
                ok = await self._drain_batch()
            elif self._queue:
                ok = await self._send_live()
            else:
                await self._pump_wake.wait()
                continue
            if ok:
                backoff = self.backoff_initial_s
                continue
            self._suspended = True
            self._writer_wake.set()
            try:
                await asyncio.sleep(backoff)
            finally:
                self._suspended = False
            backoff = min(self.backoff_max_s, backoff * 2)

    async def _send_live(self) -> bool:
        async with self._order:
            if not self.spool.empty or not self._queue:
                return True
            count = batch_len((item.size for item in self._queue), SQS_BATCH_MAX, SQS_BODY_MAX_BYTES)
            batch = [self._queue.popleft() for _ in range(count)]
        call = asyncio.ensure_future(self._call([item.entry for item in batch]))
        try:
            await asyncio.wait({call}, timeout=self.spool_after_s)
        except asyncio.CancelledError:
            call.cancel()
            self._requeue(batch)
            raise
        if not call.done():
            return await self._late_answer(batch, call)
        try:
            failed = call.result()
        except Exception as e:
            self.log.warning("SQS send failed (%s); spooling %d events", describe_error(e, 200), len(batch))
            self._requeue(batch)
            return False
        for i, item in enumerate(batch):
            if i not in failed:
                self._settle(item)
        if failed:
            self._requeue([batch[i] for i in sorted(failed)])
            return False
        self._recovered()  # SQS takes envelopes directly again: none waits on the disk
        return True

    async def _late_answer(self, batch: list[_Pending], call: asyncio.Future[dict[int, str]]) -> bool:
        """The live call outlasted ``spool_after_s``: its batch is spooled first (it is the oldest), and the pump
        waits for the answer before its next call, so at most one call is ever in flight."""
        self.log.warning("SQS has not answered in %.1fs; spooling %d events", self.spool_after_s, len(batch))
        self._requeue(batch)
        self._late = True
        self._writer_wake.set()
        try:
            failed = await asyncio.wait_for(call, LATE_MAX_S)
        except Exception as e:
            self.log.warning("the late SQS call failed (%s); its events take the spool's way", describe_error(e, 200))
            return False
        finally:
            self._late = False
        async with self._order:
            for i, item in enumerate(batch):
                if i in failed:
                    continue
                if item.done.done():  # spooled meanwhile: the drainer must not send it again
                    self._sent_late[item.entry.dedup] = None
                    if len(self._sent_late) > SENT_LATE_MAX:
                        del self._sent_late[next(iter(self._sent_late))]
                else:
                    self._queue.remove(item)
                    self._settle(item)
        return not failed

    async def _drain_batch(self) -> bool:
        single = self._single_left > 0
        try:
            entries = await self._on_disk(self.spool.peek, 1 if single else SQS_BATCH_MAX, SQS_BODY_MAX_BYTES)
        except OSError as e:
            self._disk_error("reading the spool", e)
            return False
        if not entries:
            return True
        to_send = [i for i, entry in enumerate(entries) if entry.dedup not in self._sent_late]
        try:
            failed = await self._call([entries[i] for i in to_send]) if to_send else {}
        except ClientError as e:
            if _code(e) not in SQS_INVALID_CODES:
                self.log.warning("spool drain: SQS still failing (%s)", describe_error(e, 200))
                return False
            if len(to_send) > 1:
                self.log.warning(
                    "SQS refused a spool batch as invalid (%s); sending one at a time", describe_error(e, 200)
                )
                self._single_left = len(to_send)
                return True
            failed = {0: _code(e)}
        except Exception as e:
            self.log.warning("spool drain: SQS still failing (%s)", describe_error(e, 200))
            return False
        if single:
            self._single_left -= 1
        codes = {to_send[i]: code for i, code in failed.items()}
        # Consumed: everything up to the first entry SQS refused other than as invalid (retried from there on).
        count = min((i for i, code in codes.items() if code not in SQS_INVALID_CODES), default=len(entries))
        rejected = [i for i in range(count) if i in codes]
        for i in rejected:
            self.log.error("SQS rejected spooled event %s (%s); moved aside", entries[i].dedup, codes[i])
        before = self.spool.bytes
        try:
            lagging = await self._on_disk(self._consume, count, [entries[i] for i in rejected])
        except OSError as e:  # nothing moved: the batch is sent again after the backoff
            self._disk_error("setting rejected events aside", e)
            return False
        if lagging is not None:
            self._disk_error("recording the spool's progress", lagging)
        for entry in entries[:count]:
            self._sent_late.pop(entry.dedup, None)
        if self.spool.bytes < before:
            self._retry_now.set()  # a segment was deleted: a write the limit refused may fit now
        return count == len(entries)

    def _consume(self, count: int, rejected: list[Entry]) -> OSError | None:
        """Set the rejected entries aside, then move past the batch; the error persisting the position met (the
        move itself stands: those entries are in SQS)."""
        if rejected:
            self.spool.reject(rejected)
        try:
            self.spool.consume(count)
        except OSError as e:
            return e
        return None

    async def _call(self, entries: list[Entry]) -> dict[int, str]:
        """One ``SendMessageBatch``; the index and error code of each entry SQS refused. Raises if the call fails."""
        if self._client is None:
            raise PublishError("publisher not started")
        response = await self._client.send_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": e.body, "MessageGroupId": e.group, "MessageDeduplicationId": e.dedup}
                for i, e in enumerate(entries)
            ],
        )
        self.batches += 1
        failed = {int(f["Id"]): str(f.get("Code", "?")) for f in response.get("Failed", [])}
        for f in response.get("Failed", []):
            self.log.warning(
                "SQS refused event %s (%s: %s)",
                entries[int(f["Id"])].dedup, f.get("Code", "?"), str(f.get("Message", ""))[:200],
            )  # fmt: skip
        self.sent += len(entries) - len(failed)
        return failed

    # ---- the writer: the queue's head to the spool, when it must not go live ----

    def _must_spool(self) -> bool:
        return self._stopping or self._suspended or self._late or not self.spool.empty

    async def _write_forever(self) -> None:
        backoff = self.backoff_initial_s
        while True:
            self._writer_wake.clear()
            if not (self._queue and self._must_spool()):
                if self._stopping:
                    return
                await self._writer_wake.wait()
                continue
            if await self._write_head():
                backoff = self.backoff_initial_s
                continue
            if self._stopping:
                return
            self._retry_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), backoff)
            backoff = min(self.backoff_max_s, backoff * 2)

    async def _write_head(self) -> bool:
        """Append the head of the queue to the spool and resolve what was written; False if nothing could be."""
        async with self._order:
            items = list(itertools.islice(self._queue, WRITE_MAX))
            if not (items and self._must_spool()):
                return True
            try:
                written = await self._on_disk(self.spool.append, [item.entry for item in items])
            except (SpoolFull, OSError) as e:
                if isinstance(e, OSError):
                    self._disk_error("writing the spool", e)
                self._degrade(e)
                return False
            for _ in range(written):
                self._settle(self._queue.popleft())
        self._recovered()
        self._pump_wake.set()
        return True

    def _degrade(self, e: Exception) -> None:
        what = "is full" if isinstance(e, SpoolFull) else f"cannot be written ({describe_error(e, 200)})"
        reason = (
            f"the spool {what} ({self.spool.bytes} of {self.spool.max_bytes} bytes used) and SQS does not take "
            f"envelopes now; {len(self._queue)} wait unacknowledged"
        )
        if self._degraded is None:
            self.log.error("publisher degraded: %s", reason)
        self._degraded = reason

    def _recovered(self) -> None:
        if self._degraded is not None:
            self.log.warning("publisher recovered: envelopes are made durable again")
            self._degraded = None

    def _disk_error(self, doing: str, e: OSError) -> None:  # never fatal: the caller retries or moves on
        self.spool_write_errors += 1
        self.log.warning("spool: %s failed (%s)", doing, describe_error(e, 200))

    async def _on_disk(self, fn: Callable[..., T], *args: Any) -> T:
        """One spool call in a thread, one at a time. A cancelled caller still waits for the thread (which cannot be
        stopped) before letting the next call in: the spool is not thread-safe."""
        async with self._disk:
            task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                await asyncio.wait({task})
                if not task.cancelled():
                    task.exception()  # retrieved: nobody else will
                raise


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", "?"))
