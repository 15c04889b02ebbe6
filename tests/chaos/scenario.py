"""One chaos run: the world behind the fault-injecting proxy, linked sessions, the seeded traffic and faults, the
settle phase, the final exchange, and everything the checks need, collected.

Settings that make a restart come back within seconds (the product's defaults are for production):
- connector: start queue 0.2 s apart, reconnect backoff from 0.5 s capped at 5 s, leases of 6 s renewed every 2 s
  (a SIGKILLed connector's leases expire that fast, so the next one takes its sessions over), and a flap breaker
  that holds a session back for only 5 s (faults make sessions close often; a 30-minute hold would end the run);
- function: chatbot timeout 3 s (stalls last 5 s), backoff from 0.2 s capped at 1 s.

Windows stay short (2-10 s) on purpose: the local runner retries a failed record after 2 s where AWS waits for the
180 s visibility timeout, so the 5 receives before the DLQ last about 25 s locally (15 minutes on AWS). A window
longer than that would send messages to the DLQ by design, not by a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.proxy import AwsProxy, proxied_aws
from tests.bench.world import World, account, contact
from tests.chaos.chatbot import REPLY_PREFIX, TEXT_PREFIX, ChaosResponder, tag_of
from tests.chaos.checks import BotCall, Event, Sent, first_answers, replies_by_tag
from tests.chaos.faults import AwsFaults
from tests.chaos.inject import Injection, Injector
from tests.chaos.queues import QueueWatch
from tests.chaos.schedule import Fault, Schedule

RUN = 7
"""Phone-number block of the chaos accounts and contacts (``tests.bench.world.account``)."""
CONNECTOR_ENV = {
    "SESSION_START_INTERVAL_S": "0.2",
    "SESSION_START_JITTER_S": "0.1",
    "RECONNECT_INITIAL_S": "0.5",
    "RECONNECT_MAX_S": "5",
    "LEASE_TTL_S": "6",
    "LEASE_RENEW_S": "2",
    "FLAP_HOLD_S": "5",
    "BRIDGE_LOG_LEVEL": "info",
}
CHATBOT_TIMEOUT_S = 3.0
FUNCTION_ENV = {
    "CHATBOT_TIMEOUT_S": str(CHATBOT_TIMEOUT_S),
    "CHATBOT_RETRY_BASE_S": "0.2",
    "CHATBOT_RETRY_MAX_S": "1",
}
STALL_S = CHATBOT_TIMEOUT_S + 2
ANCHOR_WAIT_S = 30.0
SETTLE_STALL_S = 60.0
"""Longer than the outbound consumer's longest retry delay before the DLQ (40 s), so a reply on its way still
counts as movement."""
FINAL_WAIT_S = 90.0


def wa_id(seed: int, tag: str) -> str:
    """The WhatsApp id a contact's message is sent under: fixed by the seed, so a rerun sends the same ids."""
    return "3EB0" + hashlib.sha256(f"{seed}:{tag}".encode()).hexdigest()[:16].upper()


@dataclass
class Outcome:
    """Everything a run recorded, for the checks and the report."""

    schedule: Schedule
    work: Path
    sent: list[Sent] = field(default_factory=list)
    finals: list[Sent] = field(default_factory=list)
    calls: list[BotCall] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    link_seq: int = 0
    states: dict[str, list[str]] = field(default_factory=dict)
    """States each session went through after the link (consecutive repeats folded)."""
    injections: list[Injection] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)
    aws_injected: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    self_exits: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    final_failures: dict[str, str] = field(default_factory=dict)
    not_open: list[str] = field(default_factory=list)
    spool_depth: int = -1
    dlq: list[dict[str, Any]] = field(default_factory=list)
    queue_history: dict[str, list[str]] = field(default_factory=dict)
    """By tag: its steps through both queues (``tests.chaos.queues``)."""
    phases: dict[str, float] = field(default_factory=dict)
    settled: bool = False


class ChaosRun:
    def __init__(
        self, schedule: Schedule, work: Path, say: Callable[[str], None], settle_s: float, log_level: str = "INFO"
    ) -> None:
        self.schedule = schedule
        self.log_level = log_level
        self.work = work
        self.say = say
        self.settle_s = settle_s
        self.out = Outcome(schedule, work)
        self.sessions = [(f"s{i}", account(i, run=RUN)) for i in range(schedule.sessions)]
        self.contacts = [contact(i, run=RUN) for i in range(schedule.contacts)]
        self.burst_started: dict[int, float] = {}
        self.burst_events: dict[int, asyncio.Event] = {}
        self.world: World | None = None
        self._last_seq = 0

    # ---- the whole run ----

    async def run(self) -> Outcome:
        clock = time.monotonic()
        os.environ.update(FUNCTION_ENV)  # the function runs in this process and reads its settings at import
        async with proxied_aws(self.work / "aws") as proxy:
            aws = AwsFaults(self.schedule.seed)
            proxy.interceptor = aws
            watch = QueueWatch()
            proxy.observer = watch
            bot = ChaosResponder(STALL_S)
            env = {**CONNECTOR_ENV, "LOG_LEVEL": self.log_level}
            world = World(self.work / "relay", env=env, aws_endpoint_url=proxy.urls["function"],
                          connector_aws_endpoint_url=proxy.urls["connector"])  # fmt: skip
            world.chatbot.respond = bot
            self.world = world
            async with world:
                self.out.phases["start"] = time.monotonic() - clock
                await self.link()
                self.out.phases["link"] = time.monotonic() - clock - self.out.phases["start"]
                injector = Injector(world, aws, bot, self.say)
                stop = asyncio.Event()
                observer = asyncio.create_task(self.observe(stop))
                watchdog = asyncio.create_task(injector.watchdog(stop))
                try:
                    t = time.monotonic()
                    await self.chaos(injector)
                    self.out.phases["chaos"] = time.monotonic() - t
                    injector.stop_all()
                    t = time.monotonic()
                    self.out.settled = await self.settle()
                    self.out.phases["settle"] = time.monotonic() - t
                    t = time.monotonic()
                    await self.final_exchange()
                    self.out.phases["final"] = time.monotonic() - t
                    await self.collect(proxy)
                finally:
                    stop.set()
                    await asyncio.gather(observer, watchdog, return_exceptions=True)
                    await self.poll_events()
                self.out.injections.sort(key=lambda r: (r.started is None, r.started or 0))
                self.out.done = dict(injector.done)
                self.out.self_exits = injector.self_exits
                self.out.anomalies = injector.anomalies
                self.out.aws_injected = dict(aws.injected)
                self.out.calls = self.bot_calls()
                self.out.queue_history = dict(watch.history)
        self.out.phases["total"] = time.monotonic() - clock
        return self.out

    async def link(self) -> None:
        assert self.world is not None
        self.say(f"linking {len(self.sessions)} sessions, {len(self.contacts)} contacts each")
        await self.world.link(self.sessions)
        for i, c in enumerate(self.contacts):
            await self.world.sim.add_contact(c, f"Chaos contact {i}")
        self.out.link_seq = self._last_seq = await self.world.sim.last_seq()

    # ---- traffic and faults ----

    async def chaos(self, injector: Injector) -> None:
        t0 = time.monotonic()
        injector.t0 = t0
        self.say(f"traffic and faults for {self.schedule.duration_s:.0f}s")
        traffic = asyncio.create_task(self.traffic(t0))
        faults = [asyncio.create_task(self.one_fault(f, t0, injector)) for f in self.schedule.faults]
        results = await asyncio.gather(traffic, *faults, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                self.out.harness_errors.append(f"{type(r).__name__}: {r}")
                self.say(f"  harness error: {type(r).__name__}: {r}")

    def addressing(self, contact_index: int) -> str:
        return "pn" if contact_index % 2 == 0 else "lid"

    def message(self, session: int, contact_index: int, tag: str) -> tuple[Sent, dict[str, Any]]:
        sid, who = self.sessions[session]
        sender = self.contacts[contact_index]
        sent = Sent(tag, wa_id(self.schedule.seed, tag), sid, who.phone, sender.phone)
        item = {"from": sender.phone, "to": who.phone, "text": f"{TEXT_PREFIX}{tag}", "id": sent.wa_id,
                "addressing": self.addressing(contact_index), "if_offline": "queue"}  # fmt: skip
        return sent, item

    async def traffic(self, t0: float) -> None:
        assert self.world is not None
        for burst in self.schedule.bursts:
            await asyncio.sleep(max(0.0, t0 + burst.at - time.monotonic()))
            pairs = [self.message(m.session, m.contact, m.tag) for m in burst.messages]
            self.burst_started[burst.index] = time.monotonic()
            self.burst_event(burst.index).set()
            try:
                await self.world.send_batch([item for _, item in pairs])
                self.out.sent += [s for s, _ in pairs]
            except Exception as e:
                self.out.harness_errors.append(f"burst {burst.index} could not be sent: {e}")
                self.say(f"  burst {burst.index} could not be sent: {e}")

    async def anchor(self, fault: Fault, t0: float) -> str:
        """Wait for the fault's moment; a note when its anchor never came."""
        if fault.anchor == "time":
            await asyncio.sleep(max(0.0, t0 + fault.at - time.monotonic()))
            return ""
        deadline = t0 + fault.at + ANCHOR_WAIT_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.burst_event(fault.burst).wait(), max(0.0, deadline - time.monotonic()))
        started = self.burst_started.get(fault.burst)
        if started is None:
            return "anchor missed: burst never started"
        if fault.anchor == "send":
            tags = {m.tag for m in self.schedule.bursts[fault.burst].messages}
            while time.monotonic() < deadline:
                if any(c.tag in tags and c.answered and c.label == "ok" for c in self.bot_calls()):
                    break
                await asyncio.sleep(0.02)
            else:
                await asyncio.sleep(fault.offset_s)
                return "anchor missed: no reply to that burst within 30 s"
        await asyncio.sleep(fault.offset_s)
        return ""

    def burst_event(self, index: int) -> asyncio.Event:
        return self.burst_events.setdefault(index, asyncio.Event())

    async def one_fault(self, fault: Fault, t0: float, injector: Injector) -> None:
        record = Injection(fault)
        self.out.injections.append(record)
        note = await self.anchor(fault, t0)
        await injector.inject(fault, record)
        record.note = "; ".join(n for n in (note, record.note) if n)

    # ---- watching ----

    def world_calls(self) -> list[Any]:
        assert self.world is not None
        return list(self.world.chatbot.calls)

    def bot_calls(self) -> list[BotCall]:
        return [
            BotCall(tag_of((c.body.get("message") or {}).get("text")), c.event_id, c.status, c.label, c.delivered, c.at)
            for c in self.world_calls()
            if c.status  # an answer still pending (a stall at the very end) is not a call yet
        ]

    async def poll_events(self) -> None:
        assert self.world is not None
        while True:
            batch = await self.world.sim.events(after=self._last_seq)
            if not batch:
                return
            self.out.events += batch
            self._last_seq = batch[-1]["seq"]

    async def poll_states(self) -> None:
        assert self.world is not None
        with contextlib.suppress(Exception):
            status, body = await self.world.api.call("GET", "/v1/sessions")
            if status == 200:
                for s in body:
                    seen = self.out.states.setdefault(s["id"], [])
                    if not seen or seen[-1] != s["state"]:
                        seen.append(s["state"])

    async def observe(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_events()
            except Exception as e:
                self.say(f"  could not read the simulator's events: {e}")
            await self.poll_states()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    # ---- the end ----

    def missing(self, sent: list[Sent]) -> tuple[list[str], list[str]]:
        """(tags not answered yet, tags answered with a reply that has not arrived yet)."""
        answered = first_answers(self.bot_calls())
        replies = replies_by_tag(self.out.events)
        unanswered = [s.tag for s in sent if s.tag not in answered]
        no_reply = [s.tag for s in sent if s.tag in answered and answered[s.tag].label == "ok" and s.tag not in replies]
        return unanswered, no_reply

    async def pending_ids(self) -> set[str]:
        assert self.world is not None
        ids: set[str] = set()
        for _, who in self.sessions:
            answer = await self.world.sim.request("GET", "/messages/pending", params={"account": who.phone})
            ids |= {p["id"] for p in answer["pending"]}
        return ids

    async def settle(self) -> bool:
        """Bounded wait until every message is answered, every reply delivered and nothing is held; it also ends
        once nothing has moved for ``SETTLE_STALL_S`` (what is still missing then is in a DLQ or lost)."""
        self.say(f"settling (at most {self.settle_s:.0f}s)")
        now = time.monotonic()
        deadline, last_change, last = now + self.settle_s, now, None
        while True:
            unanswered, no_reply = self.missing(self.out.sent)
            held = await self.pending_ids()
            if not unanswered and not no_reply and not held:
                return True
            state = (len(unanswered), len(no_reply), len(held), len(self.out.events))
            if state != last:
                last, last_change = state, time.monotonic()
            if time.monotonic() > min(deadline, last_change + SETTLE_STALL_S):
                self.say(f"  not settled: {len(unanswered)} unanswered, {len(no_reply)} replies missing, "
                         f"{len(held)} held by the simulator")  # fmt: skip
                return False
            await asyncio.sleep(2)

    async def final_exchange(self) -> None:
        """One more message each way per chat, after the faults: both must decrypt."""
        assert self.world is not None
        pairs = [self.message(s, c, f"s{s}/c{c}/final") for s in range(len(self.sessions))
                 for c in range(len(self.contacts))]  # fmt: skip
        self.say(f"final exchange: {len(pairs)} messages")
        try:
            await self.world.send_batch([item for _, item in pairs])
        except Exception as e:
            self.out.harness_errors.append(f"final messages could not be sent: {e}")
            return
        self.out.finals = [s for s, _ in pairs]
        deadline = time.monotonic() + FINAL_WAIT_S
        while time.monotonic() < deadline:
            unanswered, no_reply = self.missing(self.out.finals)
            if not unanswered and not no_reply:
                break
            await asyncio.sleep(1)
        unanswered, no_reply = self.missing(self.out.finals)
        for tag in unanswered:
            self.out.final_failures[tag] = "the contact's final message never reached the chatbot"
        for tag in no_reply:
            self.out.final_failures[tag] = "the final reply never decrypted on the contact's phone"

    async def collect(self, proxy: AwsProxy) -> None:
        assert self.world is not None
        await self.poll_events()
        self.out.pending = await self.pending_ids()
        for _ in range(20):
            with contextlib.suppress(Exception):
                metrics = await self.world.metrics()
                self.out.spool_depth = int(metrics.get("wa_relay_spool_depth", -1))
                break
            await asyncio.sleep(0.5)
        await self.poll_states()
        with contextlib.suppress(Exception):
            status, body = await self.world.api.call("GET", "/v1/sessions")
            self.out.not_open = [s["id"] for s in body if s["state"] != "open"] if status == 200 else ["(API down)"]
        self.out.dlq = await asyncio.to_thread(read_dlqs, proxy, self.world)


def dlq_entry(queue: str, m: dict[str, Any]) -> dict[str, Any]:
    """A DLQ message as the report lists it: which message or reply it was, its reason/origin attributes."""
    try:
        body = json.loads(m["Body"])
    except ValueError:
        body = {}
    text = (body.get("message") or {}).get("text") or body.get("text") or ""
    attributes = {k: v.get("StringValue", "") for k, v in (m.get("MessageAttributes") or {}).items()}
    system = m.get("Attributes") or {}
    if origin := system.get("DeadLetterQueueSourceArn"):
        attributes["origin"] = origin.rpartition(":")[2]
    return {
        "queue": queue,
        "tag": tag_of(text) or text.removeprefix(REPLY_PREFIX).strip() or "?",
        "event_id": body.get("event_id", ""),
        "attributes": attributes,
        "receives": system.get("ApproximateReceiveCount", ""),
    }


def read_dlqs(proxy: AwsProxy, world: World) -> list[dict[str, Any]]:
    """Every message in both DLQs, read from moto directly (not through the faults)."""
    import boto3  # type: ignore[import-untyped]

    assert world.stack is not None
    sqs = boto3.client("sqs", endpoint_url=proxy.sqs, region_name="us-east-1", aws_access_key_id="chaos",
                       aws_secret_access_key="chaos")  # fmt: skip
    entries = []
    for name in ("INBOUND_QUEUE_DLQ_URL", "OUTBOUND_QUEUE_DLQ_URL"):
        url = world.stack.queue_urls[name]
        seen: set[str] = set()
        while True:
            got = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])  # fmt: skip
            fresh = [m for m in got if m["MessageId"] not in seen]
            if not fresh:
                break
            seen |= {m["MessageId"] for m in fresh}
            entries += [dlq_entry(name.removesuffix("_QUEUE_DLQ_URL").lower(), m) for m in fresh]
    return entries
