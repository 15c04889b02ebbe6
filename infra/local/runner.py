"""The local event source mapping: an SQS queue → a Lambda handler called in process, as AWS's SQS event source
mapping with ``FunctionResponseTypes=["ReportBatchItemFailures"]`` calls it.

What it copies from AWS:
- Long-polls the queue and hands the handler a real SQS event (``{"Records": [...]}``, the same keys and attribute
  names Lambda sends) and a ``LambdaContext`` look-alike whose ``get_remaining_time_in_millis`` counts down from the
  function timeout.
- Reads the response as Lambda does: ``None``, ``{}`` or an empty/null ``batchItemFailures`` is a full success; an
  ``itemIdentifier`` that is missing, empty or not in the batch, or a response that is not an object, fails the whole
  batch. A raised exception fails the whole batch. So does running past the function timeout ("Task timed out").
- Deletes the records not listed as failed (``DeleteMessageBatch``, 10 at a time) and leaves the failed ones in the
  queue. Counting receives and moving a message to the DLQ after ``maxReceiveCount`` is SQS's own job (moto does it).

Where it differs, on purpose:
- **Retry delay.** On AWS a failed record becomes visible again when its visibility timeout runs out (180 s for the
  inbound queue). Locally that would make a retry look like a hang, so the runner keeps failed records in flight for
  ``retry_delay_s`` (default 2 s) and then makes them visible at once with ``ChangeMessageVisibilityBatch(0)``.
  They are released together, so a FIFO group comes back in order: moto reorders a group whose messages become
  visible one by one through a non-zero visibility change, which is why the runner does not simply set the
  visibility to 2 s. While they are held the group stays blocked, as on AWS. ``stop()`` releases everything still
  held, so a restart retries at once instead of waiting the full visibility timeout.
- **One poller.** Batches run one after the other in one thread; AWS runs batches of different message groups in
  parallel. Ordering guarantees are the same; only throughput differs.
- **Timeouts cannot kill a thread.** A handler that overruns is allowed to finish, and then its batch counts as
  failed (as Lambda would report it), so side effects of a timed-out invocation can happen locally as they can on
  AWS.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.resources import INBOUND_FUNCTION_TIMEOUT_S, SQS_BATCH_MAX

Handler = Callable[[dict[str, Any], Any], Any]
"""``lambda_handler(event, context)``."""

RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
"""The system attributes Lambda copies into ``record["attributes"]`` (the FIFO ones only exist on FIFO queues)."""

STANDARD_BATCH_MAX = 10_000
MAX_WAIT_TIME_S = 20


class LocalLambdaContext:
    """What Lambda passes as ``context`` (the attributes of ``awslambdaric``'s ``LambdaContext``, which Powertools'
    ``LambdaContext`` type describes). The remaining time counts down from ``timeout_s`` from construction."""

    def __init__(
        self,
        function_name: str,
        timeout_s: float,
        *,
        memory_limit_in_mb: int = 512,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity: Any = None
        self.client_context: Any = None
        self.tenant_id: str | None = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API shape (``StringValue``, ``BinaryValue`` bytes) → Lambda event shape (``stringValue``, base64)."""
    out: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return out


def sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One ``ReceiveMessage`` message → one record of the SQS event Lambda builds."""
    attributes = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: attributes[name] for name in RECORD_ATTRIBUTES if name in attributes},
        "messageAttributes": {k: _message_attribute(v) for k, v in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_message_ids(response: Any, batch_ids: Iterable[str]) -> set[str] | None:
    """The message ids a ``ReportBatchItemFailures`` response asks to retry; ``None`` means the whole batch failed
    (the rules of the Lambda developer guide, "Reporting batch item failures")."""
    if response is None:
        return set()
    if not isinstance(response, Mapping):
        return None
    items = response.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    known = set(batch_ids)
    failed = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(ident, str) or ident not in known:
            return None
        failed.add(ident)
    return failed


@dataclass
class BatchResult:
    """What one invocation did: every id received, and which were deleted and which will be retried."""

    received: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    error: str | None = None
    """Why the whole batch failed (exception, timeout, invalid response), if it did."""


class EventSourceRunner:
    """Polls ``queue_url`` and invokes ``handler`` with batches, as an SQS event source mapping would.

    ``start()`` runs the loop in a daemon thread; ``stop()`` ends it (idempotent). ``run_once()`` runs one
    receive → invoke → settle cycle in the caller's thread, for tests. ``sqs_client`` is a boto3 SQS client (clients
    are thread-safe). A failing batch is logged and never ends the loop.
    """

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        *,
        batch_size: int = SQS_BATCH_MAX,
        max_batching_window_s: int = 0,
        function_timeout_s: float = INBOUND_FUNCTION_TIMEOUT_S,
        function_name: str = "wa-relay-inbound",
        retry_delay_s: float = 2.0,
        wait_time_s: int = 2,
    ) -> None:
        fifo = queue_arn.endswith(".fifo")
        limit = SQS_BATCH_MAX if fifo else STANDARD_BATCH_MAX
        if not 1 <= batch_size <= limit:
            raise ValueError(f"batch_size must be 1..{limit} for this queue, not {batch_size}")
        if fifo and max_batching_window_s:
            raise ValueError("a batching window is not supported for FIFO queues (as on AWS)")
        if not 0 <= wait_time_s <= MAX_WAIT_TIME_S:
            raise ValueError(f"wait_time_s must be 0..{MAX_WAIT_TIME_S}")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.batch_size = batch_size
        self.max_batching_window_s = max_batching_window_s
        self.function_timeout_s = function_timeout_s
        self.function_name = function_name
        self.retry_delay_s = retry_delay_s
        self.wait_time_s = wait_time_s
        """Long-poll wait of one receive; short so that ``stop()`` returns quickly (AWS pollers use 20 s)."""
        self.log = logging.getLogger("wa_relay.local.runner")
        # No child logger named after the queue or function: Powertools' Logger(service="wa-relay") filters every
        # record whose logger name contains "wa-relay" out of the root handlers.
        self._held: list[tuple[float, list[dict[str, Any]]]] = []
        """Failed messages kept in flight until their retry time: ``(due, messages)``."""
        self._held_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=f"runner-{self.function_name}", daemon=True)
        self._thread.start()
        self.log.info("polling %s for %s (batch size %d)", self.queue_url, self.function_name, self.batch_size)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self.wait_time_s + self.max_batching_window_s + self.function_timeout_s + 5)
            if self._thread.is_alive():
                self.log.warning("the poller did not stop in time (a handler is still running)")
            self._thread = None
        self.release_held(force=True)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.release_held()
                self.run_once()
            except Exception:
                self.log.exception("polling failed; retrying in 1 s")
                self._stopping.wait(1.0)

    # ---- one cycle ----

    def run_once(self, wait_time_s: int | None = None) -> BatchResult | None:
        """Receive one batch, invoke the handler, delete the successes and hold the failures for retry. Returns
        ``None`` when nothing was received."""
        messages = self._receive(self.wait_time_s if wait_time_s is None else wait_time_s)
        if not messages:
            return None
        return self._invoke(messages)

    def _receive_some(self, wait_s: int, count: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(count, SQS_BATCH_MAX),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _receive(self, wait_s: int) -> list[dict[str, Any]]:
        messages = self._receive_some(wait_s, self.batch_size)
        if not messages:
            return messages
        # Standard queues may gather up to batch_size (> 10) messages over the batching window, as Lambda does.
        deadline = time.monotonic() + self.max_batching_window_s
        while len(messages) < self.batch_size and (left := deadline - time.monotonic()) > 0:
            more = self._receive_some(min(int(left), MAX_WAIT_TIME_S), self.batch_size - len(messages))
            if not more and left < 1:
                break
            messages += more
        return messages

    def _invoke(self, messages: list[dict[str, Any]]) -> BatchResult:
        ids = [m["MessageId"] for m in messages]
        result = BatchResult(received=ids)
        event = {"Records": [sqs_record(m, self.queue_arn) for m in messages]}
        region = self.queue_arn.split(":")[3]
        account = self.queue_arn.split(":")[4]
        context = LocalLambdaContext(self.function_name, self.function_timeout_s, region=region, account_id=account)
        started = time.monotonic()
        failed: set[str] | None
        try:
            response = self.handler(event, context)
        except Exception as e:
            self.log.exception("%s raised: the whole batch of %d is retried", self.function_name, len(ids))
            result.error = f"{type(e).__name__}: {e}"
            failed = None
        else:
            elapsed = time.monotonic() - started
            if elapsed > self.function_timeout_s:
                result.error = f"Task timed out after {elapsed:.2f} seconds"
                self.log.error("%s: %s; the whole batch is retried", self.function_name, result.error)
                failed = None
            else:
                failed = failed_message_ids(response, ids)
                if failed is None:
                    result.error = f"invalid batch response: {response!r:.200}"
                    self.log.error("%s returned an %s; the whole batch is retried", self.function_name, result.error)
        retry = set(ids) if failed is None else failed
        result.retried = [i for i in ids if i in retry]
        result.deleted = self._delete([m for m in messages if m["MessageId"] not in retry])
        self._hold([m for m in messages if m["MessageId"] in retry])
        self.log.info(
            "batch of %d: %d deleted, %d to retry (request %s)",
            len(ids), len(result.deleted), len(result.retried), context.aws_request_id,
        )  # fmt: skip
        return result

    def _delete(self, messages: list[dict[str, Any]]) -> list[str]:
        deleted: list[str] = []
        for i in range(0, len(messages), SQS_BATCH_MAX):
            chunk = messages[i : i + SQS_BATCH_MAX]
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)]
            response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            deleted += [chunk[int(ok["Id"])]["MessageId"] for ok in response.get("Successful", [])]
            for err in response.get("Failed", []):
                self.log.warning("could not delete %s: %s", chunk[int(err["Id"])]["MessageId"], err.get("Message"))
        return deleted

    # ---- retries ----

    def _hold(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        with self._held_lock:
            self._held.append((time.monotonic() + self.retry_delay_s, messages))
        if self.retry_delay_s <= 0:
            self.release_held()

    def release_held(self, *, force: bool = False) -> int:
        """Make the failed messages whose retry time has come (all of them with ``force``) visible again; returns
        how many. Messages of one batch are released in one call, so a FIFO group keeps its order."""
        now = time.monotonic()
        with self._held_lock:
            due = [msgs for at, msgs in self._held if force or at <= now]
            self._held = [(at, msgs) for at, msgs in self._held if not (force or at <= now)]
        released = 0
        for messages in due:
            for i in range(0, len(messages), SQS_BATCH_MAX):
                chunk = messages[i : i + SQS_BATCH_MAX]
                entries = [
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(chunk)
                ]
                try:
                    response = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                    # Twice, on purpose: moto takes a message off a FIFO group's in-flight set only if it is
                    # already visible when its visibility changes (`now > visible_at`, in microseconds), and a
                    # change to 0 can land in the same microsecond. A message left in that set blocks its group
                    # until a receive meets it, and the receive then hands out the group's messages out of order.
                    self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                except Exception:
                    self.log.exception("could not release %d messages; they return after their visibility timeout",
                                       len(chunk))  # fmt: skip
                    continue
                released += len(response.get("Successful", []))
                for err in response.get("Failed", []):
                    self.log.warning("could not release %s: %s", chunk[int(err["Id"])]["MessageId"], err.get("Message"))
        return released
