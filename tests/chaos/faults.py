"""AWS faults: the interceptor the chaos suite plugs into the shared AWS proxy (``tests.bench.proxy``).

One fault at a time per (component, service) slot, switched from the scenario's thread while the proxy's loop
applies it to every call on that slot:

- ``latency``: the call waits ``latency_s``, then goes through.
- ``blackhole``: the call is accepted and never answered; when the fault ends its connection is dropped (never
  forwarded). The client's own read timeout decides when it gives up.
- ``reset``: the connection is dropped as soon as the request arrives. The proxy serves both services on one port
  per component, so it cannot refuse connections per service at accept time; botocore handles a reset and a refused
  connection alike (a retried connection error).
- ``throttle``: the error each service really sends and botocore's retry rules recognise, status and body:
  DynamoDB ``ProvisionedThroughputExceededException`` / ``ThrottlingException`` (400), SQS ``RequestThrottled``
  (403, the legacy retry mode's rule) / ``ThrottlingException`` (400), with SQS's ``x-amzn-query-error`` header.
- ``5xx``: ``500 InternalServerError`` / ``503 ServiceUnavailable`` in each service's JSON error shape.

``rate`` makes throttling, 5xx and resets hit a share of calls (seeded), so some retries get through. Every injected
fault is counted by (component, service, kind, detail).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from collections import Counter

from aiohttp import web

from tests.bench.proxy import DropConnection
from tests.chaos.schedule import Fault

JSON_1_0 = "application/x-amz-json-1.0"

# (status, __type, x-amzn-query-error or "", message)
THROTTLES: dict[str, list[tuple[int, str, str, str]]] = {
    "dynamodb": [
        (400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "",
         "The level of configured provisioned throughput for the table was exceeded."),
        (400, "com.amazon.coral.availability#ThrottlingException", "",
         "Rate of requests exceeds the allowed throughput."),
    ],
    "sqs": [
        (403, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled;Sender", "Request is throttled."),
        (400, "com.amazonaws.sqs#ThrottlingException", "ThrottlingException;Sender", "Rate exceeded."),
    ],
}  # fmt: skip
SERVER_ERRORS: dict[str, list[tuple[int, str, str, str]]] = {
    "dynamodb": [
        (500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "", "Internal server error"),
        (503, "com.amazonaws.dynamodb.v20120810#ServiceUnavailable", "", "Service unavailable"),
    ],
    "sqs": [
        (500, "com.amazonaws.sqs#InternalError", "InternalError;Receiver", "We encountered an internal error."),
        (503, "com.amazonaws.sqs#ServiceUnavailable", "ServiceUnavailable;Server", "Service unavailable."),
    ],
}  # fmt: skip


def error_response(status: int, type_: str, query_error: str, message: str) -> web.Response:
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if query_error:
        headers["x-amzn-query-error"] = query_error
    body = json.dumps({"__type": type_, "message": message})
    return web.Response(status=status, text=body, content_type=JSON_1_0, headers=headers)


class AwsFaults:
    """The proxy's interceptor. ``start``/``end``/``end_all`` from any thread; the proxy awaits ``__call__``."""

    def __init__(self, seed: int) -> None:
        self._active: dict[tuple[str, str], Fault] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.injected: Counter[tuple[str, str, str, str]] = Counter()
        """Calls hit, by (component, service, kind, detail)."""

    def start(self, fault: Fault) -> None:
        with self._lock:
            self._active[(fault.component, fault.service)] = fault

    def end(self, fault: Fault) -> None:
        """End ``fault`` if it is still the one on its slot (a later fault may have replaced it)."""
        with self._lock:
            if self._active.get((fault.component, fault.service)) is fault:
                del self._active[(fault.component, fault.service)]

    def end_all(self) -> None:
        with self._lock:
            self._active.clear()

    def active(self, component: str, service: str) -> Fault | None:
        with self._lock:
            return self._active.get((component, service))

    def _count(self, component: str, service: str, kind: str, detail: str) -> None:
        with self._lock:
            self.injected[(component, service, kind, detail)] += 1

    async def __call__(self, component: str, service: str, op: str) -> web.StreamResponse | None:
        fault = self.active(component, service)
        if fault is None:
            return None
        kind = fault.aws_kind
        if kind == "latency":
            self._count(component, service, kind, f"+{fault.latency_s:.1f}s")
            await asyncio.sleep(fault.latency_s)
            return None
        if kind == "blackhole":
            self._count(component, service, kind, "held, then dropped")
            while self.active(component, service) is fault:  # noqa: ASYNC110 - ended from another thread
                await asyncio.sleep(0.05)
            raise DropConnection
        with self._lock:
            hit = self._rng.random() < fault.rate
            pick = self._rng.randrange(2)
        if not hit:
            return None
        if kind == "reset":
            self._count(component, service, kind, "connection dropped")
            raise DropConnection
        status, type_, query_error, message = (THROTTLES if kind == "throttle" else SERVER_ERRORS)[service][pick]
        self._count(component, service, kind, f"{status} {type_.rpartition('#')[2]}")
        return error_response(status, type_, query_error, message)
