"""Section 6, boot: N stored sessions brought back to ``open`` by a freshly started connector, beside the floor the
start queue imposes (N x ``SESSION_START_INTERVAL_S`` + the mean jitter): anything above the floor is ours.

The N sessions are linked first (with a fast start queue), the connector is stopped with SIGTERM (leases released,
as in a deploy), then started again with the measured interval; the clock runs from the moment the process is
spawned until ``GET /v1/sessions`` shows all N ``open`` (polled every 50 ms). The product default is a 3 s interval
plus up to 2 s of jitter; the bench uses 1 s and no jitter by default so N = 10 fits the time budget and the floor
is exact. The bare Baileys baseline (``baseline.mjs --mode boot``) reopens N sessions from its own file store,
starting one every interval.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from tests.bench.report import X, fmt, measure_in_scratch, section_args, table, write_section
from tests.bench.world import BaselineMissing, World, account, run_baseline, simulator

TITLE = "Boot"


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    raw: dict[str, Any] = {"sessions": args.sessions, "interval_s": args.interval, "jitter_s": args.jitter}
    async with simulator(work) as info:
        try:
            raw["baseline"] = await run_baseline(
                info, work, mode="boot", sessions=args.sessions, tag=60, extra=["--stagger-s", str(args.interval)]
            )
        except (BaselineMissing, RuntimeError) as e:
            raw["baseline"] = {"error": str(e)[:300]}
        print(f"  baseline boot: {raw['baseline'].get('boot_s', 'n/a')} s", flush=True)
        async with World(work / "relay", wasim=info) as world:
            ids = [f"b{i}" for i in range(args.sessions)]
            raw["link_s"] = round(await world.link((sid, account(i, run=4)) for i, sid in enumerate(ids)), 2)
            await world.stop_connector()
            overrides = {"SESSION_START_INTERVAL_S": str(args.interval), "SESSION_START_JITTER_S": str(args.jitter)}
            t0 = await world.start_connector(overrides)
            healthy = time.time() - t0
            opened: dict[str, float] = {}
            deadline = time.monotonic() + args.timeout
            while len(opened) < len(ids) and time.monotonic() < deadline:
                status, sessions = await world.api.call("GET", "/v1/sessions")
                now = time.time() - t0
                if status == 200:
                    for s in sessions:
                        if s.get("state") == "open" and s["id"] not in opened:
                            opened[s["id"]] = now
                await asyncio.sleep(0.05)
            if len(opened) < len(ids):
                raise TimeoutError(f"only {len(opened)} of {len(ids)} sessions open after {args.timeout:.0f}s")
            raw["relay"] = {"healthz_s": round(healthy, 3), "open_s": sorted(round(v, 3) for v in opened.values())}
            print(f"  wa-relay boot: all {len(ids)} open {max(opened.values()):.2f} s after the process started",
                  flush=True)  # fmt: skip
    return raw


def render(raw: dict[str, Any]) -> tuple[str, list[str]]:
    n, interval, jitter = raw["sessions"], raw["interval_s"], raw["jitter_s"]
    floor = n * (interval + jitter / 2)
    opens = raw["relay"]["open_s"]
    total = opens[-1]
    base = raw["baseline"].get("boot_s")
    over = total - floor
    tight = total - raw["relay"]["healthz_s"] - (n - 1) * interval
    rows = [
        ["wa-relay (connector process start → all open)", fmt(total, 2), fmt(floor, 2), fmt(over, 2),
         fmt(over / n * 1000, 0)],
        ["bare Baileys, file store (first start → all open)", fmt(base, 2), fmt((n - 1) * interval, 2),
         fmt(base - (n - 1) * interval if base is not None else None, 2),
         fmt((base - (n - 1) * interval) / n * 1000 if base is not None else None, 0)],
    ]  # fmt: skip
    md = "\n".join([
        f"{n} stored sessions, `SESSION_START_INTERVAL_S`={interval:g}, `SESSION_START_JITTER_S`={jitter:g} (the "
        f"product default is 3 + up to 2: the floor scales with it). Floor = N {X} (interval + mean jitter), as the "
        "issue puts it; the queue actually starts the first connect at once, so the tighter floor is "
        f"(N - 1) {X} interval after the API is up.",
        "",
        table(["", "all open, s", "floor, s", "above the floor, s", "above the floor per session, ms"], rows),
        "",
        f"wa-relay detail: API up (`/healthz`) {raw['relay']['healthz_s']:.2f} s after the spawn, first session "
        f"open at {opens[0]:.2f} s, median {opens[len(opens) // 2]:.2f} s; above (N - 1) {X} interval after the API "
        f"was up: {tight:.2f} s ({tight / n * 1000:.0f} ms per session: lease, creds read, connect, login, "
        "pre-key check). The baseline starts its first socket at once and has no process, store, lease or bridge "
        "to bring up.",
    ])  # fmt: skip
    summary = [f"{n} sessions open in {total:.2f} s; floor {floor:.2f} s; above it {over:.2f} s "
               f"({over / n * 1000:.0f} ms per session; {tight / n * 1000:.0f} ms per session over the queue's "
               f"spacing once the API is up); bare Baileys {fmt(base, 2)} s"]  # fmt: skip
    return md, summary


def main() -> None:
    parser = section_args(__doc__ or TITLE)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="SESSION_START_INTERVAL_S for the boot")
    parser.add_argument("--jitter", type=float, default=0.0, help="SESSION_START_JITTER_S for the boot")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    if args.tiny:
        args.sessions, args.interval = 2, 0.5
    raw = measure_in_scratch(args, "boot", measure)
    markdown, summary = render(raw)
    write_section(args.out, section="boot", title=TITLE, markdown=markdown, summary=summary, targets=[], raw=raw)


if __name__ == "__main__":
    main()
