"""Section 2, reply latency: one session, one contact, S sequential messages (after 5 unmeasured warm-ups), a
chatbot that answers at once with one text; p50/p95/p99 beside a bare Baileys echo in the same run.

Latency is what the simulator sees, for both: its ``message.incoming_sent`` event (the contact's message handed to
the account's socket) to its ``message.outgoing`` event for the reply (decrypted by the contact), both stamped by the
simulator's clock. Where the time goes is read, per message, off clocks that already exist (no product code changes):
- the simulator's ``receipt`` event: Baileys acknowledges a message once it has decrypted it and stored the keys
  (its ``keys.set`` went to the connector and resolved only when DynamoDB had it), just before it emits the upsert;
- ``SentTimestamp`` of the record in ``inbound.fifo``: moto accepted the connector's ``SendMessage``;
- the function wrapper: invocation start; the chatbot's receive time; the function's reply ``SendMessageBatch``.
All clocks are this machine's wall clock (epoch ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path
from typing import Any

from tests.bench.report import Target, fmt, measure_in_scratch, percentile, section_args, table, write_section
from tests.bench.world import BaselineMissing, World, account, contact, run_baseline, simulator

TITLE = "Reply latency"
WARMUP = 5
STAGES = [
    ("baileys", "simulator → bridge: Baileys decrypts, its Signal keys made durable (keys.set → connector → DynamoDB)"),
    ("publish", "bridge → connector → `inbound.fifo` (upsert event, envelope, SendMessage)"),
    ("queue", "`inbound.fifo` → function invoked (local runner's long poll)"),
    ("function", "function until the chatbot call (dedup record, LID lookup, signing)"),
    ("chatbot", "chatbot answers, reply queued to `outbound.fifo` (SendMessageBatch starts)"),
    ("send", "`outbound.fifo` → connector → bridge → Baileys encrypts (keys durable) → simulator decrypts"),
]


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    raw: dict[str, Any] = {"samples": args.samples, "warmup": WARMUP}
    async with simulator(work) as info:
        try:
            raw["baseline"] = await run_baseline(
                info, work, mode="latency", tag=1, extra=["--samples", str(args.samples)]
            )
        except BaselineMissing as e:
            raw["baseline"] = {"error": str(e)}
        print(f"  baseline echo: p50 {raw['baseline'].get('p50_ms', 'n/a')} ms", flush=True)
        async with World(work / "relay", wasim=info) as world:
            me, bob = account(0, run=1), contact(0, run=1)
            raw["link_s"] = round(await world.link([("lat", me)]), 2)
            await world.add_contacts([bob])
            sim = world.sim
            rows: list[dict[str, Any]] = []
            for i in range(WARMUP + args.samples):
                text = f"lat {i}"
                after = await sim.last_seq()
                sent = await sim.send_text(bob, me, text)
                out = await sim.wait_event("message.outgoing", {"account": me.phone, "text": f"echo: {text}"},
                                           after=after, timeout=60)  # fmt: skip
                incoming = await sim.wait_event("message.incoming_sent", {"id": sent["id"]}, after=after)
                if i < WARMUP:
                    continue
                receipts = [e for e in await sim.events("receipt", after=after) if sent["id"] in e["data"]["ids"]]
                rows.append({"id": sent["id"], "text": text, "in": incoming["at"], "out": out["at"],
                             "receipt": receipts[0]["at"] if receipts else None})  # fmt: skip
            # The function's side: matched after the run (the wrapper records them as they happen).
            await asyncio.sleep(0.5)
            by_text = world.probe.by_text()
            bot = {(c.body.get("message") or {}).get("text"): c.at for c in world.chatbot.calls}
            reply_sends = sorted(world.probe.reply_sends)
            for row in rows:
                rec = by_text.get(row["text"])
                bot_at = bot.get(row["text"])
                if rec is None or bot_at is None:
                    continue
                send_at = next((t for t in reply_sends if t >= bot_at), None)
                row.update(queued=rec.sent_ms, invoked=rec.invoked_at * 1000, chatbot=bot_at * 1000,
                           reply_sent=None if send_at is None else send_at * 1000,
                           done=rec.done_at * 1000)  # fmt: skip
            raw["rows"] = rows
    return raw


def stage_values(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    out["tail"] = []
    for r in rows:
        if r.get("reply_sent") is None or r.get("receipt") is None:
            continue
        marks = [r["in"], r["receipt"], r["queued"], r["invoked"], r["chatbot"], r["reply_sent"], r["out"]]
        for (name, _), a, b in zip(STAGES, marks, marks[1:], strict=False):
            out[name].append(b - a)
        out["tail"].append(r["done"] - r["reply_sent"])
    return out


def render(raw: dict[str, Any]) -> tuple[str, list[str], list[Target], dict[str, list[float]]]:
    mine = [r["out"] - r["in"] for r in raw["rows"]]
    base = raw["baseline"].get("latencies_ms") or []
    lat_rows = []
    for label, values in (("wa-relay", mine), ("bare Baileys echo", base)):
        lat_rows.append([label, len(values), *(fmt(percentile(values, p), 0) for p in (50, 95, 99)),
                         fmt(statistics.mean(values) if values else None, 0)])  # fmt: skip
    stages = stage_values(raw["rows"])
    stage_rows = []
    for name, what in [*STAGES, ("tail", "function finishes (idempotency record), off the critical path")]:
        values = stages[name]
        stage_rows.append([what, fmt(percentile(values, 50), 1), fmt(statistics.mean(values) if values else None, 1),
                           fmt(percentile(values, 95), 1)])  # fmt: skip
    p50 = percentile(mine, 50)
    md = "\n".join([
        f"{raw['samples']} sequential messages after {raw['warmup']} unmeasured warm-ups, one session, one contact; "
        "the chatbot answers at once with one text (wa-relay) and Baileys answers `echo:` itself (baseline). "
        "Latency = simulator's `message.incoming_sent` → simulator's `message.outgoing` for the reply, ms.",
        "",
        table(["", "n", "p50", "p95", "p99", "mean"], lat_rows),
        "",
        "Where wa-relay's time goes, per message (ms; stages are consecutive, so their means add up to the mean "
        "latency; percentiles of stages do not add up):",
        "",
        table(["stage", "p50", "mean", "p95"], stage_rows, "lrrr"),
        "",
        "Marks: the simulator's `receipt` for the message (Baileys sends it once the message is decrypted and its "
        "keys stored), `SentTimestamp` of the record in `inbound.fifo`, the function wrapper's invocation start, "
        "the chatbot's receive time, the function's reply `SendMessageBatch`, the simulator's `message.outgoing`.",
    ])  # fmt: skip
    summary = [
        f"wa-relay p50/p95/p99 {fmt(p50, 0)}/{fmt(percentile(mine, 95), 0)}/{fmt(percentile(mine, 99), 0)} ms; "
        f"bare Baileys echo {fmt(percentile(base, 50), 0)}/{fmt(percentile(base, 95), 0)}/"
        f"{fmt(percentile(base, 99), 0)} ms",
        "p50 by stage: " + ", ".join(f"{name} {fmt(percentile(stages[name], 50), 0)}" for name, _ in STAGES),
    ]
    samples = {"wa-relay": mine}
    if base:
        samples["bare Baileys echo"] = [float(v) for v in base]
    return md, summary, [], samples


def main() -> None:
    parser = section_args(__doc__ or TITLE)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    if args.tiny:
        args.samples = 5
    raw = measure_in_scratch(args, "latency", measure)
    markdown, summary, targets, samples = render(raw)
    write_section(args.out, section="latency", title=TITLE, markdown=markdown, summary=summary, targets=targets,
                  samples=samples, raw=raw)  # fmt: skip


if __name__ == "__main__":
    main()
