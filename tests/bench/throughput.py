"""Section 1, inbound throughput: M messages from K simulated contacts, round-robin, into 1 session and into S
sessions, instant chatbot (204), beside bare Baileys with in-memory keys and with ``useMultiFileAuthState``.

How it is measured (the same shape and warm-up as ``baseline.mjs``'s throughput mode):
- Warm-up: one message from each contact to each session (creates every Signal session: the first is a pkmsg),
  all relayed to the chatbot before the timed run starts.
- The timed run sends all M messages with ``/messages/send-batch``; the clock starts just before that call.
- **To the inbound queue**: the last ``SentTimestamp`` of the M messages in ``inbound.fifo`` (moto stamps it when it
  accepts the connector's ``SendMessage``; the function wrapper reads it off each record). That is the relay's own
  throughput: decrypt in Baileys, the Signal key writes durable in DynamoDB, the envelope durable in SQS.
- **To the chatbot**: the last chatbot call of the M. Locally one runner thread invokes the function batch after
  batch (AWS runs batches of different message groups in parallel), so this figure is bounded by the local runner.
- Baileys' figure is its last ``messages.upsert`` (notify) of the M: decrypted, keys stored in its own store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from tests.bench.proxy import durations, proxied_aws
from tests.bench.report import Target, X, fmt, measure_in_scratch, ratio, section_args, table, write_section
from tests.bench.world import (
    BaselineMissing,
    World,
    account,
    contact,
    cpu_delta,
    cpu_snapshot,
    round_robin,
    run_baseline,
    simulator,
)
from tests.support.chatbot import Answer
from tests.support.wasim import Person

TITLE = "Inbound throughput"
PUBLISH_OPS = ("connector sqs SendMessageBatch", "connector sqs SendMessage")
KEY_WRITES = "connector dynamodb TransactWriteItems"
WIRE_ROWS = (
    ("connector sqs SendMessageBatch", "connector: inbound publish (SendMessageBatch)"),
    ("connector sqs SendMessage", "connector: inbound publish (SendMessage)"),
    (KEY_WRITES, "connector: Signal key writes (serialized per session)"),
    ("function sqs ReceiveMessage", "runner: poll"),
    ("function dynamodb PutItem", "function: idempotency INPROGRESS"),
    ("function dynamodb UpdateItem", "function: idempotency COMPLETED"),
)


async def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(poll)


def chatbot_texts(world: World) -> dict[str, float]:
    """Text → time of its first chatbot call."""
    out: dict[str, float] = {}
    for call in list(world.chatbot.calls):
        text = (call.body.get("message") or {}).get("text")
        if isinstance(text, str) and text not in out:
            out[text] = call.at
    return out


async def deliver(world: World, pairs: list[tuple[Person, Person]], label: str, timeout: float) -> dict[str, Any]:
    """Send one message per pair in one go; wait until every one reached the chatbot. Rates from the first send."""
    texts = [f"{label} {i}" for i in range(len(pairs))]
    messages = [{"from": c.phone, "to": s.phone, "text": t} for (c, s), t in zip(pairs, texts, strict=True)]
    cpu_before = cpu_snapshot()
    first_send = time.time()
    await world.send_batch(messages)
    send_s = time.time() - first_send
    wanted = set(texts)
    await wait_for(lambda: wanted <= chatbot_texts(world).keys(), timeout, f"{len(texts)} messages at the chatbot")
    cpu = cpu_delta(cpu_before, cpu_snapshot())
    at_bot = chatbot_texts(world)
    probe = world.probe.by_text()
    last_queue = max(probe[t].sent_ms for t in texts) / 1000
    last_bot = max(at_bot[t] for t in texts)
    n = len(texts)
    return {
        "messages": n,
        "first_send_ms": int(first_send * 1000),
        "send_s": round(send_s, 3),
        "queue_elapsed_s": round(last_queue - first_send, 3),
        "chatbot_elapsed_s": round(last_bot - first_send, 3),
        "queue_msg_per_s": round(n / max(last_queue - first_send, 1e-6), 1),
        "chatbot_msg_per_s": round(n / max(last_bot - first_send, 1e-6), 1),
        "cpu_s": cpu,
        "cores": os.cpu_count() or 1,
    }


def moto_probe(work: Path, count: int, fast: bool) -> dict[str, float]:
    """What one FIFO send costs moto as its backlog grows: ``count`` sends of an envelope-sized body over 10
    groups into a fresh moto (nothing consumes them), timed at the start and at the end, plus one batch of 10."""
    import boto3  # type: ignore[import-untyped]

    from connector.resources import INBOUND_QUEUE, create_queues
    from infra.local.emulators import MotoServer
    from tests.bench.proxy import FastMoto

    with open(work / "moto-probe.log", "ab") as log:
        moto = (FastMoto if fast else MotoServer)(log=log)
        url = moto.start()
        try:
            sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                               aws_secret_access_key="bench")  # fmt: skip
            queue = create_queues(sqs)[INBOUND_QUEUE.env]
            body = "x" * 1500
            times = []
            for i in range(count):
                t0 = time.perf_counter()
                sqs.send_message(QueueUrl=queue, MessageBody=body, MessageGroupId=f"g{i % 10}",
                                 MessageDeduplicationId=f"d{i}")  # fmt: skip
                times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            sqs.send_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(j), "MessageBody": body, "MessageGroupId": f"g{j}", "MessageDeduplicationId": f"b{j}"}
                for j in range(10)
            ])  # fmt: skip
            batch_ms = (time.perf_counter() - t0) * 1000
        finally:
            moto.stop()
    head, tail = times[: max(1, count // 10)], times[-max(1, count // 10) :]
    return {"count": count, "first_ms": sum(head) / len(head), "last_ms": sum(tail) / len(tail),
            "batch_of_10_ms": batch_ms}  # fmt: skip


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    shapes = sorted({1, args.sessions})
    raw: dict[str, Any] = {
        "shapes": shapes, "messages": args.messages, "contacts": args.contacts, "baseline": {}, "wire": args.wire
    }  # fmt: skip
    async with simulator(work) as info:
        # The baselines first, each in its own Node process, while wa-relay is not running.
        for n in shapes if args.baseline else ():
            for tag, store in enumerate(("memory", "file")):
                key = f"{store}/{n}"
                try:
                    raw["baseline"][key] = await run_baseline(
                        info, work, mode="throughput", store=store, sessions=n, tag=n * 2 + tag,
                        extra=["--messages", str(args.messages), "--contacts", str(args.contacts)],
                    )  # fmt: skip
                except BaselineMissing as e:
                    raw["baseline"][key] = {"error": str(e)}
                print(f"  baseline {key}: {raw['baseline'][key].get('msg_per_s', 'n/a')} msg/s", flush=True)

        async with contextlib.AsyncExitStack() as stack:
            urls: dict[str, str] = {}
            proxy = None
            if args.wire:
                proxy = await stack.enter_async_context(proxied_aws(work / "aws"))
                urls = proxy.urls
            world = World(
                work / "relay",
                wasim=info,
                chatbot_answer=Answer(status=204),
                aws_endpoint_url=urls.get("function"),
                connector_aws_endpoint_url=urls.get("connector"),
            )
            await stack.enter_async_context(world)
            sessions = [account(i) for i in range(max(shapes))]
            contacts = [contact(i) for i in range(args.contacts)]
            raw["link_s"] = round(await world.link((f"t{i}", s) for i, s in enumerate(sessions)), 2)
            await world.add_contacts(contacts)
            raw["relay"] = {}
            for n in shapes:
                mine = sessions[:n]
                await deliver(world, round_robin(mine, contacts, n * len(contacts)), f"warm {n}", args.timeout)
                await asyncio.sleep(1.0)  # let the warm-up's replies, receipts and key writes settle
                mark = proxy.mark() if proxy else 0
                result = await deliver(world, round_robin(mine, contacts, args.messages), f"bench {n}", args.timeout)
                if proxy:
                    result["wire"] = durations(proxy.since(mark))
                raw["relay"][str(n)] = result
                print(
                    f"  wa-relay {n} session(s): {result['queue_msg_per_s']} msg/s to the queue, "
                    f"{result['chatbot_msg_per_s']} msg/s to the chatbot",
                    flush=True,
                )
    raw["moto_probe"] = await asyncio.to_thread(moto_probe, work, args.probe, args.wire)
    return raw


def render(raw: dict[str, Any]) -> tuple[str, list[str], list[Target]]:
    rows = []
    summary = []
    targets: list[Target] = []
    big = max(raw["shapes"])
    for n in raw["shapes"]:
        mine = raw["relay"][str(n)]
        mem = raw["baseline"].get(f"memory/{n}", {}).get("msg_per_s")
        fil = raw["baseline"].get(f"file/{n}", {}).get("msg_per_s")
        q = mine["queue_msg_per_s"]
        rows.append([
            f"{n} session{'s' if n > 1 else ''}", fmt(q), fmt(mine["chatbot_msg_per_s"]), fmt(mem), fmt(fil),
            fmt(ratio(q, fil), 2, X), fmt(ratio(q, mem), 2, X),
        ])  # fmt: skip
        summary.append(
            f"{n} session(s): wa-relay {fmt(q)} msg/s to the queue, {fmt(mine['chatbot_msg_per_s'])} to the chatbot; "
            f"Baileys memory {fmt(mem)}, file {fmt(fil)}"
        )
        if n == big:
            rf, rm = ratio(q, fil), ratio(q, mem)
            targets.append(Target(f"throughput, {n} sessions vs file-store Baileys", f"≥ 1.0{X}", fmt(rf, 2, X),
                                  None if rf is None else rf >= 1.0, "msg/s to the inbound queue"))  # fmt: skip
            targets.append(Target(f"throughput, {n} sessions vs in-memory Baileys", f"≥ 0.5{X}", fmt(rm, 2, X),
                                  None if rm is None else rm >= 0.5, "msg/s to the inbound queue"))  # fmt: skip
    md = [
        f"{raw['messages']} messages from {raw['contacts']} contacts, round-robin over the sessions, after a warm-up "
        "of one message per (contact, session); instant chatbot (204). msg/s from the first send.",
        "",
        table(
            [
                "shape",
                "wa-relay → inbound queue",
                "wa-relay → chatbot",
                "Baileys, in-memory keys",
                "Baileys, useMultiFileAuthState",
                "queue ÷ file",
                "queue ÷ memory",
            ],
            rows,
        ),
        "",
        "- *To the inbound queue*: last `SentTimestamp` of the run's messages in `inbound.fifo` (moto stamps it when "
        "it accepts the connector's send; the bench reads it off each record the function receives). Every message "
        "is by then decrypted, its Signal keys durable in DynamoDB and its envelope durable in SQS.",
        "- *To the chatbot*: last chatbot call. Locally one runner thread invokes the function batch after batch; on "
        "AWS batches of different chats run in parallel, so this column is a floor set by the local runner.",
        "- Baileys: last `messages.upsert` of the run in a bare Baileys process configured like the bridge "
        "(`tests/wasim/bench/baseline.mjs`), same simulator, same shape.",
        f"- Linking the sessions through the API took {raw.get('link_s', 'n/a')} s.",
    ]
    if raw.get("wire"):
        md.append("- wa-relay ran with every AWS call through the bench's counting proxy (one more local hop per call, "
                  "well under the calls' own durations below), against a moto whose clock helper is made cheap "
                  "(`tests/bench/fastmoto.py`: same behaviour, about 6x less CPU per send into a backlog of 800); "
                  "`--no-wire` runs against `make up`'s plain emulators.")  # fmt: skip
    diag = []
    for n in raw["shapes"]:
        mine = raw["relay"][str(n)]
        for key, what in WIRE_ROWS:
            w = (mine.get("wire") or {}).get(key)
            if w:
                busy = w["total_ms"] / 1000 / max(mine["queue_elapsed_s"], 1e-6)
                per_call = f"{w['messages'] / w['count']:.1f}" if w.get("messages") else ""
                diag.append([f"{n}", what, int(w["count"]), per_call, fmt(w["mean_ms"], 1), fmt(busy * 100, 0, " %")])
    if diag:
        md += [
            "",
            "Where the time goes, on the wire (every AWS call of the timed run passes the bench's counting proxy; "
            "*busy* = the calls' summed duration ÷ the run's time to the queue: a serial caller near 100 % is bound "
            "by that call, concurrent callers exceed it):",
            "",
            table(["sessions", "calls", "count", "messages per call", "mean ms", "busy"], diag, "llrrrr"),
        ]
    cpu_rows = []
    for n in raw["shapes"]:
        mine = raw["relay"][str(n)]
        cpu = mine.get("cpu_s") or {}
        window = mine["chatbot_elapsed_s"] * mine.get("cores", 1)
        for label, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
            cpu_rows.append([f"{n}", label, fmt(seconds, 1), fmt(seconds / max(window, 1e-6) * 100, 0, " %"),
                             fmt(seconds / mine["messages"] * 1000, 2)])  # fmt: skip
    if cpu_rows:
        md += [
            "",
            "Where the CPU goes during the timed run (CPU seconds of each process from the first send to the last "
            "chatbot call; *share* = of all the machine's cores over that time):",
            "",
            table(["sessions", "process", "CPU s", "share", "CPU ms per message"], cpu_rows, "llrrr"),
        ]
    md += explain(raw, targets)
    return "\n".join(md), summary, targets


def explain(raw: dict[str, Any], targets: list[Target]) -> list[str]:
    """Why a missed target is missed, from this run's own wire timings."""
    if not any(t.met is False for t in targets):
        return []
    out = ["", "**Why the throughput targets are missed** (figures from the tables above):", ""]
    for n in raw["shapes"]:
        mine = raw["relay"][str(n)]
        wire = mine.get("wire") or {}
        elapsed = max(mine["queue_elapsed_s"], 1e-6)
        send = next((wire[k] for k in PUBLISH_OPS if k in wire), None)
        keys = wire.get(KEY_WRITES)
        if not send:
            continue
        busy = send["total_ms"] / 1000 / elapsed
        batch = send["messages"] / send["count"] if send.get("messages") else 1.0
        line = (f"- {n} session{'s' if n > 1 else ''}: the publisher (one sender task, one call in flight) was "
                f"busy {busy * 100:.0f} % of the run with {send['count']} calls of {send['mean_ms']:.0f} ms carrying "
                f"{batch:.1f} messages each")  # fmt: skip
        if keys:
            kbusy = keys["total_ms"] / 1000 / elapsed / n
            line += (f"; each session's key writes (serialized per session) were busy {kbusy * 100:.0f} % with "
                     f"{keys['mean_ms']:.0f} ms per fenced `TransactWriteItems`")  # fmt: skip
        out.append(line + ".")
    big = raw["relay"][str(max(raw["shapes"]))]
    cpu = big.get("cpu_s") or {}
    if cpu:
        total = sum(cpu.values())
        emulators = cpu.get("DynamoDB Local", 0.0) + cpu.get("moto (SQS)", 0.0)
        relay = cpu.get("connector", 0.0) + cpu.get("bridge (Node, Baileys)", 0.0)
        out += [
            "",
            f"On this machine everything shares {big.get('cores', 1)} cores. In the {max(raw['shapes'])}-session run "
            f"the AWS emulators used {emulators:.1f} CPU s ({emulators / max(total, 1e-6) * 100:.0f} % of all CPU "
            f"used), the relay's own processes (connector and bridge) {relay:.1f} s "
            f"({relay / big['messages'] * 1000:.1f} ms per message), the simulator "
            f"{cpu.get('simulator', 0.0):.1f} s; a bare Baileys baseline runs only the simulator and itself.",
        ]
        n = max(raw["shapes"])
        own = {store: raw["baseline"].get(f"{store}/{n}", {}).get("cpu_ms_per_msg") for store in ("memory", "file")}
        relay_ms = relay / big["messages"] * 1000
        if own["file"] and own["memory"] and relay_ms > 0:
            cores = big.get("cores", 1)
            out += [
                "",
                f"CPU per message of the processes each side owns, same {n}-session run: wa-relay's connector + "
                f"bridge {relay_ms:.2f} ms; bare Baileys {own['file']:.2f} ms with `useMultiFileAuthState`, "
                f"{own['memory']:.2f} ms with keys in memory. Were the relay's own processes alone on these "
                f"{cores} cores (on AWS the queue, the tables and the function run elsewhere), CPU would cap them "
                f"at about {cores * 1000 / relay_ms:,.0f} msg/s, against {cores * 1000 / own['file']:,.0f} for "
                f"the file-store baseline by the same measure.",
            ]
    mp = raw.get("moto_probe") or {}
    if mp:
        grows = mp["last_ms"] > 2 * mp["first_ms"]
        out += [
            "",
            f"moto's FIFO sends, probed in this run on a fresh moto like the run's: {mp['first_ms']:.0f} ms per send "
            f"for the first {max(1, mp['count'] // 10)} of {mp['count']}, {mp['last_ms']:.0f} ms for the last, "
            f"{mp['batch_of_10_ms']:.0f} ms for a batch of 10"
            + (" (the cost grows with the backlog: moto checks every queued message on each send)." if grows else
               "."),
        ]  # fmt: skip
    out += [
        "",
        "A publisher or a per-session key-write lane near 100 % busy is the limit to lift next: more messages per "
        "`SendMessageBatch` (the sender waits for nothing, so batches only fill under backlog), and coalescing one "
        "session's concurrent `keys.set` calls into one transaction that resolves them all once stored "
        "(durability unchanged: nothing is acknowledged before its write). Neither emulator is AWS: on AWS a "
        "`SendMessageBatch` or a `TransactWriteItems` costs a network round trip, not the machine's CPU.",
    ]
    return out


def main() -> None:
    parser = section_args(__doc__ or TITLE)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--contacts", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--probe", type=int, default=300, help="sends in the moto cost probe")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="wa-relay only")
    parser.add_argument(
        "--no-wire", dest="wire", action="store_false", help="without the proxy that times every AWS call on the wire"
    )
    args = parser.parse_args()
    if args.tiny:
        args.messages, args.sessions, args.contacts, args.probe = 20, 2, 2, 30
    raw = measure_in_scratch(args, "throughput", measure)
    markdown, summary, targets = render(raw)
    write_section(
        args.out, section="throughput", title=TITLE, markdown=markdown, summary=summary, targets=targets, raw=raw
    )


if __name__ == "__main__":
    main()
