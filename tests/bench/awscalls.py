"""Section 4, AWS calls per message in steady state, counted on the wire by a reverse proxy in front of DynamoDB
Local and moto (``tests.bench.proxy``): the connector talks to one port of it, the function and its local runner to
another, so every call is attributed without touching any client.

Steady state: one linked session, one contact, warm-up messages first (Signal sessions exist, caches are warm),
then a quiet window that measures the background rate (lease renewals, long polls), then M sequential messages
with one reply each. Per message = (calls in the message window - background rate * window) / M.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.bench.proxy import AwsProxy, Call, proxied_aws
from tests.bench.report import X, fmt, measure_in_scratch, section_args, table, write_section
from tests.bench.world import World, account, contact

TITLE = "AWS calls per message"
WARMUP = 5
RUNNER_OPS = {"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"}

# (component, operation) → (the design's minimum per message with one reply, why)
MINIMUM: dict[tuple[str, str], tuple[float, str]] = {
    ("connector", "TransactWriteItems"): (
        2,
        "Signal session record after the decrypt and after the encrypt, each durable before keys.set resolves, "
        "fenced by the lease (condition check in the same transaction)",
    ),
    ("connector", "PutItem"): (1, "the reply's sent record, written before the queue message is deleted"),
    ("connector", "SendMessage"): (1, "the inbound envelope (at most 1: batched when messages arrive together)"),
    ("connector", "SendMessageBatch"): (1, "the inbound envelope, batched"),
    ("connector", "Scan"): (0, "session discovery (another connector's new sessions), periodic"),
    ("connector", "ReceiveMessage"): (
        2,
        "the typing message and the reply off `outbound.fifo` (up to 10 per receive, but the reply follows the "
        "typing message by the chatbot's time)",
    ),
    ("connector", "DeleteMessage"): (2, "the typing message once shown, the reply after it was sent and recorded"),
    ("connector", "DeleteMessageBatch"): (1, "the reply, after it was sent and recorded"),
    ("function", "PutItem"): (1, "idempotency record `INPROGRESS` (conditional: the dedup itself)"),
    ("function", "UpdateItem"): (1, "idempotency record `COMPLETED`"),
    ("function", "SendMessageBatch"): (1, "the reply to `outbound.fifo`"),
    ("function", "SendMessage"): (1, "the typing message to `outbound.fifo`, before the chatbot is asked"),
    ("runner", "ReceiveMessage"): (1, "the event source mapping's poll (on AWS: Lambda's pollers, billed to us)"),
    ("runner", "DeleteMessageBatch"): (1, "the event source mapping deletes the batch's successes"),
}
ABOVE: dict[tuple[str, str], str] = {
    ("connector", "SendMessage"): (
        "the relay's own replies come back from Baileys as `fromMe` upserts and are published like any message; the "
        'function then drops them ("event skipped: own message"). Avoidable: the connector could leave out the '
        "messages it sent itself (their ids derive from reply ids), saving per reply one SendMessage and, "
        "downstream, one poll, one delete and one invocation"
    ),
    ("connector", "SendMessageBatch"): (
        "messages that arrive apart are sent apart (the publisher never waits to fill a batch). The echoes of the "
        "relay's own replies, which Baileys emits as `fromMe` upserts, are not published (each would cost one more "
        "send, poll, delete and invocation per reply, for the function to drop)"
    ),
    ("connector", "GetItem"): (
        "the sent-record check before each reply (`ReplyLog.get_sent`), kept on purpose. Only a redelivered "
        "reply can have been sent before, so on a first receive (`ApproximateReceiveCount` = 1) it could be skipped; "
        "but a reply the function re-enqueues after SQS's 5-minute dedup window (a retried invocation) arrives with "
        "a receive count of 1 and would then be sent twice: one read per reply buys no duplicate replies"
    ),
    ("connector", "BatchGetItem"): (
        "Baileys reads the contact's `tctoken` (privacy token) key when it sends; a key that is absent is not "
        "cached by the bridge's key cache, so it is read again"
    ),
    ("connector", "TransactWriteItems"): (
        "besides the two session records, Baileys stores `tctoken` keys the contact's phone sends (see the items)"
    ),
    ("connector", "UpdateItem"): "lease renewals: per session every `LEASE_RENEW_S`, not per message",
    ("runner", "ReceiveMessage"): (
        "each exchange puts two records on `inbound.fifo` (the message and the relay's own reply, see above) that "
        "arrive apart, so two polls; one without the own-reply records. On AWS, busy queues batch up to 10"
    ),
    ("runner", "DeleteMessageBatch"): "one per batch; two batches per exchange for the same reason",
}
MINIMUM_ITEMS = 5.0
"""Items written per message by design: 2 Signal session records, the sent record, 2 idempotency writes."""


def component_of(call: Call) -> str:
    if call.component == "function" and call.service == "sqs" and call.op in RUNNER_OPS:
        return "runner"
    return call.component


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    async with proxied_aws(work) as proxy:
        return await measure_with(args, work, proxy, proxy.urls)


async def measure_with(args: argparse.Namespace, work: Path, proxy: AwsProxy, urls: dict[str, str]) -> dict[str, Any]:
    world = World(work / "relay", aws_endpoint_url=urls["function"], connector_aws_endpoint_url=urls["connector"])
    async with world:
        me, bob = account(0, run=3), contact(0, run=3)
        await world.link([("aws", me)])
        await world.add_contacts([bob])
        sim = world.sim

        async def exchange(text: str) -> None:
            after = await sim.last_seq()
            await sim.send_text(bob, me, text)
            await sim.wait_event("message.outgoing", {"account": me.phone, "text": f"echo: {text}"}, after=after,
                                 timeout=60)  # fmt: skip

        for i in range(args.warmup):
            await exchange(f"warm {i}")
        await asyncio.sleep(args.tail)  # the last warm-up's tail (idempotency record, reply delete)
        mark = proxy.mark()
        t0 = time.time()
        await asyncio.sleep(args.quiet)
        quiet = proxy.since(mark)
        quiet_s = time.time() - t0
        mark = proxy.mark()
        t0 = time.time()
        for i in range(args.messages):
            await exchange(f"count {i}")
        await asyncio.sleep(args.tail)
        window = proxy.since(mark)
        window_s = time.time() - t0
    return {
        "messages": args.messages,
        "warmup": args.warmup,
        "quiet_s": round(quiet_s, 2),
        "window_s": round(window_s, 2),
        "quiet": summarize(quiet),
        "window": summarize(window),
    }


def summarize(calls: list[Call]) -> dict[str, Any]:
    ops: Counter[str] = Counter()
    items: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    labels: dict[str, Counter[str]] = {}
    for c in calls:
        key = f"{component_of(c)}|{c.service}|{c.op}"
        ops[key] += 1
        items[key] += c.items_written
        messages[key] += c.messages
        labels.setdefault(key, Counter()).update(c.what)
    return {
        "calls": dict(ops),
        "items": dict(items),
        "messages_sent": dict(messages),
        "labels": {k: dict(v) for k, v in labels.items()},
    }


def render(raw: dict[str, Any]) -> tuple[str, list[str]]:
    m = raw["messages"]
    window, quiet = raw["window"], raw["quiet"]
    rate = {k: v / raw["quiet_s"] for k, v in quiet["calls"].items()}
    rows = []
    totals: Counter[str] = Counter()
    above: list[str] = []
    keys = sorted(set(window["calls"]) | set(quiet["calls"]))
    for key in keys:
        component, service, op = key.split("|")
        n = window["calls"].get(key, 0)
        background = rate.get(key, 0.0) * raw["window_s"]
        per = max(0.0, n - background) / m
        minimum, why = MINIMUM.get((component, op), (0.0, "not needed per message"))
        labels = window["labels"].get(key) or {}
        top = ", ".join(f"{k} {X}{v / m:.1f}" for k, v in sorted(labels.items(), key=lambda kv: -kv[1]))
        rows.append([component, service, op, fmt(n / m, 2), fmt(rate.get(key, 0.0), 2), fmt(per, 2),
                     fmt(minimum, 0), why, top[:160]])  # fmt: skip
        totals[f"{component} {service}"] += per
        if per > minimum + 0.05:
            why_above = ABOVE.get((component, op), "unexplained: see the items column")
            above.append(f"{component} {op}: {per:.2f} per message, minimum {minimum:g}: {why_above}")
    items = sum(window["items"].values()) / m
    items_bg = sum(quiet["items"].values()) / raw["quiet_s"] * raw["window_s"] / m
    md = "\n".join([
        f"{m} sequential messages with one reply each, after {raw['warmup']} warm-ups; background rate measured over "
        f"{raw['quiet_s']:.0f} quiet seconds and subtracted (the message window lasted {raw['window_s']:.0f} s). "
        "Counted on the wire by a proxy in front of DynamoDB Local and moto; *runner* is the local event source "
        "mapping (on AWS, Lambda's own pollers).",
        "",
        table(["component", "service", "operation", "calls/msg (raw)", "background /s", "calls/msg (net)",
               "design minimum", "why the minimum", "items touched per message"], rows, "lllrrrrll"),
        "",
        "Per message, net: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(totals.items())) + ".",
        f"Items written per message: {items:.2f} ({items - items_bg:.2f} net of background; the design needs "
        f"{MINIMUM_ITEMS:g}: two Signal session records, the reply's sent record, two idempotency writes).",
        "",
        "Above the minimum:" if above else "Nothing is above the minimum.",
        "",
        *(f"- {a}." for a in above),
    ])  # fmt: skip
    summary = [
        "per message: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(totals.items())),
        f"items written per message {items:.2f} (minimum {MINIMUM_ITEMS:g})",
        *(f"above minimum: {a.split(':')[0]}{a.split(':')[1]}" for a in above),
    ]
    return md, summary


def main() -> None:
    parser = section_args(__doc__ or TITLE)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds of quiet to measure the background")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="messages before counting")
    parser.add_argument("--tail", type=float, default=1.0, help="seconds after the last message still counted")
    args = parser.parse_args()
    if args.tiny:
        args.messages, args.quiet, args.warmup, args.tail = 5, 1.0, 2, 0.5
    raw = measure_in_scratch(args, "awscalls", measure)
    markdown, summary = render(raw)
    write_section(args.out, section="awscalls", title=TITLE, markdown=markdown, summary=summary, targets=[], raw=raw)


if __name__ == "__main__":
    main()
