"""A reverse proxy in front of DynamoDB Local and moto: every AWS call on the wire, by component, and a hook that
can answer a call itself instead of forwarding it.

Each component gets its own listening port (the connector one, the function and its runner another), so calls are
told apart without touching their clients. botocore speaks JSON to both services here: DynamoDB with
``X-Amz-Target: DynamoDB_20120810.<Op>``, SQS with ``X-Amz-Target: AmazonSQS.<Op>`` (the query protocol's
``Action=<Op>`` form body is understood too). The proxy runs its own event loop in a thread, so the synchronous
boto3 calls of the stack and the runner never wait on the caller's loop. Nothing is changed on the way: botocore's
signatures name the proxy's host, and neither emulator checks them.

The benchmark only counts (``tests.bench.awscalls``); the chaos suite sets ``interceptor`` to inject faults
(``tests.chaos.faults``) and ``observer`` to follow messages through the queues (``tests.chaos.queues``). One
forwarding path serves all three, so a fault is injected exactly where a call is counted and observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from infra.local.emulators import DynamoDBLocal, MotoServer

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}


class DropConnection(Exception):
    """Raised by an interceptor: close the client's connection without any answer (what a refused or reset
    connection looks like to botocore, which retries both the same way)."""


Interceptor = Callable[[str, str, str], Awaitable[web.StreamResponse | None]]
"""``(component, service, op)`` → a response to send instead of forwarding, or ``None`` to forward. It may wait
first (latency, a blackhole) and may raise ``DropConnection``. It runs on the proxy's own event loop."""

Observer = Callable[[str, str, str, bytes, int, bytes], None]
"""``(component, service, op, request body, status, response body)`` of every forwarded call, on the proxy's loop."""


@dataclass(frozen=True)
class Call:
    component: str
    service: str
    op: str
    started: float
    ended: float
    status: int
    items_written: int
    """Items a DynamoDB write puts, updates or deletes (a transaction's condition checks are not writes)."""
    messages: int
    """Messages an SQS send carries."""
    what: tuple[str, ...] = ()
    """What a DynamoDB call touches: ``table:sk-kind`` per item (``auth:key#session``, ``idempotency:send``)."""
    injected: bool = False
    """The interceptor answered (or dropped) it: it never reached the emulator. ``status`` 0 = dropped."""


def _kind(table: str, key: dict[str, Any]) -> str:
    """A coarse label of an item: the table's short name and the sort key's (or id's) leading parts."""
    short = table.removeprefix("wa-relay-")
    for name in ("sk", "id", "pk"):
        value = (key.get(name) or {}).get("S")
        if isinstance(value, str):
            if name == "pk" and "sk" not in key and short != "lid-map":
                continue
            parts = value.split("#")
            if short == "idempotency":
                return f"{short}:{'send' if parts[0] == 'send' else 'event'}"
            if short == "lid-map":
                return f"{short}:{parts[0]}"
            return f"{short}:{'#'.join(parts[:2]) if parts[0] == 'key' else parts[0]}"
    return short


def describe_dynamodb(op: str, body: dict[str, Any]) -> tuple[int, tuple[str, ...]]:
    """(items written, labels) of one DynamoDB request body."""
    table = str(body.get("TableName", ""))
    if op in ("PutItem",):
        return 1, (_kind(table, body.get("Item", {})),)
    if op in ("UpdateItem", "DeleteItem"):
        return 1, (_kind(table, body.get("Key", {})),)
    if op in ("GetItem",):
        return 0, (_kind(table, body.get("Key", {})),)
    if op == "BatchWriteItem":
        labels = []
        for name, requests in (body.get("RequestItems") or {}).items():
            for r in requests:
                item = (r.get("PutRequest") or {}).get("Item") or (r.get("DeleteRequest") or {}).get("Key") or {}
                labels.append(_kind(name, item))
        return len(labels), tuple(labels)
    if op == "BatchGetItem":
        labels = [_kind(n, k) for n, spec in (body.get("RequestItems") or {}).items() for k in spec.get("Keys", [])]
        return 0, tuple(labels)
    if op == "TransactWriteItems":
        labels, written = [], 0
        for action in body.get("TransactItems", []):
            for kind, spec in action.items():
                label = _kind(spec.get("TableName", ""), spec.get("Item") or spec.get("Key") or {})
                if kind == "ConditionCheck":
                    labels.append(f"check {label}")
                else:
                    written += 1
                    labels.append(label)
        return written, tuple(labels)
    if op == "Query":
        return 0, (table.removeprefix("wa-relay-"),)
    return 0, ()


@dataclass
class AwsProxy:
    dynamodb: str
    sqs: str
    components: tuple[str, ...] = ("connector", "function")
    calls: list[Call] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    interceptor: Interceptor | None = None
    observer: Observer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)
    _http: aiohttp.ClientSession | None = None

    def start(self) -> dict[str, str]:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="aws-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the AWS proxy did not start")
        return self.urls

    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._open())
        ready.set()
        self._loop.run_forever()

    async def _open(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=120), connector=aiohttp.TCPConnector(limit=200), auto_decompress=False
        )
        for component in self.components:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handler(component))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            self.urls[component] = f"http://127.0.0.1:{port}"
            self._runners.append(runner)

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            for runner in self._runners:
                await runner.cleanup()
            if self._http is not None:
                await self._http.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def _handler(self, component: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            started = time.time()
            target = request.headers.get("X-Amz-Target", "")
            if target.startswith("DynamoDB"):
                service, upstream, op = "dynamodb", self.dynamodb, target.rpartition(".")[2]
            else:
                service, upstream = "sqs", self.sqs
                op = target.rpartition(".")[2] if target else ""
                if not op:
                    op = urllib.parse.parse_qs(body.decode(errors="replace")).get("Action", [""])[0] or "?"
            if self.interceptor is not None:
                try:
                    injected = await self.interceptor(component, service, op)
                except DropConnection:
                    self._record(component, service, op, body, started, 0, injected=True)
                    if request.transport is not None:
                        request.transport.abort()
                    raise asyncio.CancelledError from None  # aiohttp ends the handler without writing anything
                if injected is not None:
                    self._record(component, service, op, body, started, injected.status, injected=True)
                    return injected
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
            assert self._http is not None
            async with self._http.request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as resp:
                payload = await resp.read()
                out = web.Response(
                    status=resp.status,
                    body=payload,
                    headers={k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS},
                )
            self._record(component, service, op, body, started, resp.status)
            if self.observer is not None:
                self.observer(component, service, op, body, resp.status, payload)
            return out

        return handle

    def _record(
        self, component: str, service: str, op: str, body: bytes, started: float, status: int, injected: bool = False
    ) -> None:
        items, messages = 0, 0
        what: tuple[str, ...] = ()
        try:
            parsed = json.loads(body) if body.startswith(b"{") else {}
        except ValueError:
            parsed = {}
        if service == "dynamodb":
            items, what = describe_dynamodb(op, parsed)
        elif op == "SendMessage":
            messages = 1
        elif op == "SendMessageBatch":
            messages = len(parsed.get("Entries", []))
        call = Call(component, service, op, started, time.time(), status, items, messages, what, injected)
        with self._lock:
            self.calls.append(call)

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def since(self, mark: int, until: int | None = None) -> list[Call]:
        with self._lock:
            return list(self.calls[mark:until])


def count(calls: list[Call]) -> Counter[tuple[str, str, str]]:
    return Counter((c.component, c.service, c.op) for c in calls)


class FastMoto(MotoServer):
    """moto's server with its clock helper made cheap (``tests.bench.fastmoto``: same behaviour, less CPU)."""

    def start(self, timeout: float = 30.0) -> str:
        args = [sys.executable, "-m", "tests.bench.fastmoto", "-H", "127.0.0.1", "-p", str(self.port)]
        return self._spawn(args, f"http://127.0.0.1:{self.port}", timeout)


@contextlib.asynccontextmanager
async def proxied_aws(work: Path) -> AsyncIterator[AwsProxy]:
    """DynamoDB Local and moto (``FastMoto``), started here, behind the proxy; ``proxy.urls`` per component,
    ``proxy.dynamodb`` and ``proxy.sqs`` the emulators' own endpoints (for a look that must not be faulted)."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (
        open(logs / "dynamodb-local.log", "ab") as ddb_log,  # noqa: ASYNC230 - children's logs, opened once
        open(logs / "moto.log", "ab") as moto_log,  # noqa: ASYNC230
    ):
        ddb = DynamoDBLocal(data_dir=work / "dynamodb", log=ddb_log)
        moto = FastMoto(log=moto_log)
        proxy: AwsProxy | None = None
        try:
            ddb_url = await asyncio.to_thread(ddb.start)
            sqs_url = await asyncio.to_thread(moto.start)
            proxy = AwsProxy(ddb_url, sqs_url)
            proxy.start()
            yield proxy
        finally:
            if proxy is not None:
                proxy.stop()
            ddb.stop()
            moto.stop()


def durations(calls: list[Call]) -> dict[str, dict[str, float]]:
    """Per ``component service op``: count, mean and total ms on the wire (what the caller waited), SQS messages."""
    out: dict[str, dict[str, float]] = {}
    for c in calls:
        d = out.setdefault(f"{c.component} {c.service} {c.op}", {"count": 0, "total_ms": 0.0, "messages": 0})
        d["count"] += 1
        d["messages"] += c.messages
        d["total_ms"] += (c.ended - c.started) * 1000
    for d in out.values():
        d["mean_ms"] = round(d["total_ms"] / d["count"], 2)
        d["total_ms"] = round(d["total_ms"], 1)
    return out
