"""One isolated benchmark world: the simulator, an instant chatbot, ``make up``'s stack (DynamoDB Local, moto, the
inbound function behind the local runner) in a temp dir, and the real connector as a child process, plus the bare
Baileys baseline (``tests/wasim/bench/baseline.mjs``) run against the same simulator.

Decisions:
- Every section runs in its own process and builds its own world, so memory, event loops and DynamoDB contents of
  one section never colour another.
- The inbound function is wrapped (``FunctionProbe``) rather than changed: the wrapper reads each record's
  ``SentTimestamp`` (when moto accepted the connector's ``SendMessage``) and times the invocation, and a botocore
  ``before-send`` hook on boto3's default session (copied into the function's clients when its module builds them)
  stamps the reply's ``SendMessageBatch``. That gives the queue-side timings without touching product code.
- The stack starts in a worker thread: with the counting proxy (``tests.bench.proxy``) in front of AWS, the stack's
  own calls must not wait on this event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from infra.local.stack import LocalStack
from tests.support.chatbot import Answer, ChatbotServer
from tests.support.relay import Api, ConnectorProcess
from tests.support.wasim import ROOT, TRUST_ROOT_PRELOAD, Person, WasimClient, WasimInfo, WasimProcess

API_KEY = "bench-connector-key-5c7e2a9f1b3d8a6e"
CHATBOT_SECRET = "bench-chatbot-secret-9e4d2c1a7b5f"
BASELINE_SCRIPT = ROOT / "tests" / "wasim" / "bench" / "baseline.mjs"
SEND_BATCH_MAX = 5000
"""The simulator's limit per ``/messages/send-batch`` call."""
ACCOUNT_PREFIX = "1666"
CONTACT_PREFIX = "1667"


def account(i: int, run: int = 0) -> Person:
    """The i-th linked account of a run (LID = the phone with a 9 in front of its tail, as the baseline does)."""
    phone = f"{ACCOUNT_PREFIX}{run:02d}{i:05d}"
    return Person(phone=phone, lid="9" + phone[1:])


def contact(i: int, run: int = 0) -> Person:
    phone = f"{CONTACT_PREFIX}{run:02d}{i:05d}"
    return Person(phone=phone, lid="8" + phone[1:])


def round_robin(sessions: list[Person], contacts: list[Person], count: int) -> list[tuple[Person, Person]]:
    """(contact, session) of message i: the baseline's ``pairOf`` (sessions fastest, then contacts), so both sides
    get the same shape."""
    pairs = len(sessions) * len(contacts)
    return [(contacts[(i % pairs) // len(sessions)], sessions[i % len(sessions)]) for i in range(count)]


def baileys_version() -> str:
    pkg = ROOT / "bridge" / "node_modules" / "baileys" / "package.json"
    try:
        return str(json.loads(pkg.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


# ---- the inbound function, observed ----


@dataclass
class RecordTiming:
    event_id: str
    text: str | None
    sent_ms: int
    """``SentTimestamp``: when the queue accepted the connector's send (moto's clock = this machine's)."""
    invoked_at: float
    done_at: float = 0.0


@dataclass
class FunctionProbe:
    """Wraps ``functions.inbound.handler.lambda_handler`` (imported on ``load()``, after the stack has set the
    function's environment) and records, per record, when it was queued and when its invocation ran."""

    records: dict[str, RecordTiming] = field(default_factory=dict)
    """By event id; the first delivery only (a retry keeps the first timing)."""
    reply_sends: list[float] = field(default_factory=list)
    """``time.time()`` of each ``SendMessageBatch`` the function made (replies to ``outbound.fifo``)."""
    invocations: int = 0
    log_path: Path | None = None
    """Where the function's own log lines go (Powertools writes them to stdout, here they would drown the output)."""
    _real: Callable[[dict[str, Any], Any], Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> None:
        if self._real is not None:
            return
        import boto3  # type: ignore[import-untyped]

        # Registered on the default session before the handler module builds its clients: each client copies the
        # session's handlers when it is created.
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-send.sqs.SendMessageBatch", self._on_reply_send)
        from functions.inbound import handler

        # Powertools' Logger writes to the sys.stdout of whichever module created the "wa-relay" logger first (the
        # late-answer server of the stack may have, before this import): its handlers are pointed at a file, so the
        # function still formats and writes every line it would on Lambda, and not onto this process's output.
        out = open(self.log_path or os.devnull, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        for log_handler in logging.getLogger(handler.logger.service).handlers:
            if isinstance(log_handler, logging.StreamHandler):
                log_handler.setStream(out)
        self._real = handler.lambda_handler

    def _on_reply_send(self, **_: Any) -> None:
        with self._lock:
            self.reply_sends.append(time.time())

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.load()
        assert self._real is not None
        started = time.time()
        mine: list[RecordTiming] = []
        with self._lock:
            self.invocations += 1
            for record in event.get("Records", []):
                try:
                    body = json.loads(record["body"])
                    eid = str(body["event_id"])
                    text = (body.get("message") or {}).get("text")
                except (ValueError, KeyError, TypeError):
                    continue
                if eid not in self.records:
                    timing = RecordTiming(eid, text, int(record["attributes"]["SentTimestamp"]), started)
                    self.records[eid] = timing
                    mine.append(timing)
        try:
            return self._real(event, context)
        finally:
            done = time.time()
            for timing in mine:
                timing.done_at = done

    def by_text(self) -> dict[str, RecordTiming]:
        with self._lock:
            return {r.text: r for r in self.records.values() if r.text is not None}


# ---- the world ----


class World:
    """``async with World(dir, ...) as w``: everything up, the connector open for API calls (``w.api``), the
    simulator reachable (``w.sim``). ``env`` adds connector/stack settings; ``aws_endpoint_url`` points the stack
    (function, runner) at another endpoint and ``connector_aws_endpoint_url`` the connector (the counting proxy)."""

    def __init__(
        self,
        root: Path,
        *,
        env: dict[str, str] | None = None,
        aws_endpoint_url: str | None = None,
        connector_aws_endpoint_url: str | None = None,
        chatbot_answer: Answer | None = None,
        wasim: WasimInfo | None = None,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.extra_env = env or {}
        self.aws_endpoint_url = aws_endpoint_url
        self.connector_aws_endpoint_url = connector_aws_endpoint_url
        self.chatbot_answer = chatbot_answer
        self.given_wasim = wasim
        self.wasim_proc: WasimProcess | None = None
        self.wasim: WasimInfo | None = wasim
        self.chatbot = ChatbotServer(CHATBOT_SECRET)
        self.probe = FunctionProbe(log_path=root / "function.log")
        self.stack: LocalStack | None = None
        self.connector: ConnectorProcess | None = None
        self.http: aiohttp.ClientSession | None = None
        self._stack_log: TextIO | None = None
        self._chatbot_started = False

    async def __aenter__(self) -> World:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def sim(self) -> WasimClient:
        assert self.http is not None and self.wasim is not None
        return WasimClient(self.wasim, self.http)

    @property
    def api(self) -> Api:
        assert self.http is not None and self.stack is not None
        return Api(self.http, self.stack.api_url, API_KEY)

    def connector_env(self) -> dict[str, str]:
        assert self.stack is not None
        env = self.stack.connector_env()
        if self.connector_aws_endpoint_url:
            env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
            env.pop("AWS_ENDPOINT_URL_SQS", None)
            env["AWS_ENDPOINT_URL"] = self.connector_aws_endpoint_url
        return env

    async def start(self) -> None:
        if self.wasim is None:
            self.wasim_proc = WasimProcess(self.root / "wasim.log")
            self.wasim = await asyncio.to_thread(self.wasim_proc.start)
        if self.chatbot_answer is not None:
            answer = self.chatbot_answer
            self.chatbot.respond = lambda body: answer
        self.chatbot.start()
        self._chatbot_started = True
        env = {
            **self.wasim.baileys_env(),
            "CHATBOT_URL": self.chatbot.url,
            "CHATBOT_SECRET": CHATBOT_SECRET,
            "CONNECTOR_API_KEY": API_KEY,
            "CONNECTOR_PORT": "0",
            "SESSION_START_INTERVAL_S": "0.05",
            "SESSION_START_JITTER_S": "0",
            "LOG_LEVEL": "INFO",
            "BRIDGE_LOG_LEVEL": "warn",
            **self.extra_env,
        }
        if self.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        self._stack_log = open(self.root / "stack.log", "w")  # noqa: SIM115, ASYNC230 - closed in stop()
        self.stack = LocalStack(
            self.root / "data", env=env, connector=False, handler=self.probe, output=self._stack_log
        )
        await asyncio.to_thread(self.stack.start)
        # The handler module's import (cold start) is not part of any measurement.
        await asyncio.to_thread(self.probe.load)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900))
        await self.start_connector()

    async def start_connector(self, overrides: dict[str, str] | None = None) -> float:
        """Start the connector process (``overrides`` on top of its environment); returns the ``time.time()`` just
        before it was spawned."""
        assert self.stack is not None
        env = {**self.connector_env(), **(overrides or {})}
        self.connector = ConnectorProcess(env, self.stack.api_url, self.root / "connector.log")
        t0 = time.time()
        await asyncio.to_thread(self.connector.start)
        return t0

    async def stop_connector(self) -> None:
        if self.connector is not None:
            await asyncio.to_thread(self.connector.stop)
            self.connector = None

    async def stop(self) -> None:
        await self.stop_connector()
        if self.http is not None:
            await self.http.close()
            self.http = None
        if self.stack is not None:
            await asyncio.to_thread(self.stack.stop)
            self.stack = None
        if self._chatbot_started:  # shutdown() of a server that never served would wait forever
            self.chatbot.stop()
            self._chatbot_started = False
        if self.wasim_proc is not None:
            await asyncio.to_thread(self.wasim_proc.stop)
            self.wasim_proc = None
        if self._stack_log is not None:
            self._stack_log.close()
            self._stack_log = None

    # ---- helpers the sections share ----

    async def link(self, people: Iterable[tuple[str, Person]], concurrency: int = 8) -> float:
        """Link ``(session id, account)`` pairs through the API and the simulated phones' QR scans, ``concurrency``
        at a time (the connector's start queue paces the connects); returns the seconds it took."""
        gate = asyncio.Semaphore(concurrency)
        api, sim = self.api, self.sim

        async def one(sid: str, who: Person) -> None:
            async with gate:
                await api.link(sim, sid, who)

        t0 = time.monotonic()
        await asyncio.gather(*(one(sid, who) for sid, who in people))
        return time.monotonic() - t0

    async def add_contacts(self, contacts: Iterable[Person]) -> None:
        for i, c in enumerate(contacts):
            await self.sim.add_contact(c, f"Bench contact {i}")

    async def send_batch(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for i in range(0, len(messages), SEND_BATCH_MAX):
            chunk = messages[i : i + SEND_BATCH_MAX]
            answer = await self.sim.request("POST", "/messages/send-batch", {"messages": chunk}, timeout=900)
            results += answer["results"]
        return results

    async def metrics(self) -> dict[str, float]:
        assert self.http is not None and self.stack is not None
        async with self.http.get(f"{self.stack.api_url}/metrics") as resp:
            text = await resp.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    @property
    def connector_pid(self) -> int:
        assert self.connector is not None and self.connector.proc is not None
        return self.connector.proc.pid

    async def bridge_pid(self) -> int:
        return int((await self.metrics()).get("wa_relay_bridge_pid", 0))


@contextlib.asynccontextmanager
async def simulator(work: Path) -> AsyncIterator[WasimInfo]:
    """A simulator of its own for a section (its log in ``work``); the world and the baselines share it."""
    wasim = WasimProcess(work / "wasim.log")
    info = await asyncio.to_thread(wasim.start)
    try:
        yield info
    finally:
        await asyncio.to_thread(wasim.stop)


# ---- where the CPU goes ----

CPU_LABELS = (
    ("java", "DynamoDB Local"),
    ("moto", "moto (SQS)"),
    ("wasim.mjs", "simulator"),
    ("bridge/dist", "bridge (Node, Baileys)"),
    ("-m connector", "connector"),
)


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process and each of its descendants, by part of the stack:
    the bench process itself holds the function, its runner, the chatbot and the counting proxy."""
    import psutil  # type: ignore[import-untyped]

    me = psutil.Process()
    out: dict[str, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            cmd = " ".join(proc.cmdline())
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        label = "bench process (function, runner, chatbot, proxy)" if proc.pid == me.pid else "other"
        for needle, name in CPU_LABELS:
            if proc.pid != me.pid and needle in cmd:
                label = name
                break
        out[label] = out.get(label, 0.0) + times.user + times.system
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 2) for k in after if after[k] - before.get(k, 0.0) > 0.005}


# ---- the bare Baileys baseline ----


class BaselineMissing(RuntimeError):
    pass


async def run_baseline(
    wasim: WasimInfo,
    work: Path,
    *,
    mode: str,
    store: str = "memory",
    sessions: int = 1,
    tag: int = 0,
    extra: Iterable[str] = (),
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Run ``baseline.mjs`` against ``wasim``; its JSON result. ``tag`` keeps the phone numbers of different runs
    apart (re-pairing a phone on the simulator would replace an account another run still uses)."""
    if not BASELINE_SCRIPT.exists():
        raise BaselineMissing(f"{BASELINE_SCRIPT.relative_to(ROOT)} is missing")
    out = work / f"baseline-{mode}-{store}-{sessions}-{tag}.json"
    args = [
        "node", "--expose-gc", "--import", TRUST_ROOT_PRELOAD.as_uri(), str(BASELINE_SCRIPT),
        "--control-url", wasim.control_url, "--ws-url", wasim.ws_url, "--mode", mode, "--store", store,
        "--sessions", str(sessions), "--phone-prefix", f"17770{tag:02d}", "--contact-prefix", f"17780{tag:02d}",
        "--state-dir", str(work / f"baseline-state-{tag}"), "--out", str(out), *extra,
    ]  # fmt: skip
    env = {**os.environ, "WA_SIM_ROOT_PUB": wasim.root_pub}
    env.pop("NODE_OPTIONS", None)
    with open(work / f"baseline-{tag}.log", "ab") as log:  # noqa: ASYNC230 - a child's output, opened once
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            code = await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"baseline {mode} timed out after {timeout_s:.0f}s; see {log.name}") from None
    if code != 0:
        tail = (work / f"baseline-{tag}.log").read_text(errors="replace")[-600:]
        raise RuntimeError(f"baseline {mode}/{store} exited with {code}: {tail}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result
