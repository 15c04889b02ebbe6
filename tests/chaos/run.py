"""``make chaos`` / ``make test-chaos``: prove "nothing lost, nothing twice" by injecting faults and counting.

``python -m tests.chaos.run [--seed N] [--messages M] [--sessions S] [--contacts C] [--duration-s D] [--tiny]
[--out docs/chaos.md] [--work-dir DIR]``

It runs the simulator, DynamoDB Local and moto behind the fault-injecting proxy, the function behind the local
runner, the chaos chatbot and the real connector (``tests.chaos.scenario``), follows the seeded schedule
(``tests.chaos.schedule``), checks the result (``tests.chaos.checks``) and prints the report
(``tests.chaos.report``); without ``--tiny`` it also writes it to ``--out``. Exit status 1 when a zero-target is
missed or the harness itself failed; the logs are then kept (their directory is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.bench.run import machine
from tests.chaos.checks import judge
from tests.chaos.report import render
from tests.chaos.scenario import ChaosRun
from tests.chaos.schedule import FAMILIES, build_schedule
from tests.support.wasim import ROOT

FULL = {"messages": 600, "sessions": 3, "contacts": 4, "duration_s": 420.0, "settle_s": 150.0}
TINY = {"messages": 40, "sessions": 2, "contacts": 2, "duration_s": 60.0, "settle_s": 90.0}
"""Two sessions even in the tiny run: some faults only show when one session is open and another is not."""


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="default: a new random seed, printed")
    parser.add_argument("--tiny", action="store_true", help="CI size (about 1-2 minutes); writes no file")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--contacts", type=int, default=None)
    parser.add_argument("--duration-s", type=float, default=None, help="the traffic and fault window")
    parser.add_argument("--settle-s", type=float, default=None, help="at most this long to settle after the faults")
    parser.add_argument(
        "--faults", default=",".join(FAMILIES), help=f"plan only these fault families (of {','.join(FAMILIES)})"
    )
    parser.add_argument("--log-level", default="INFO", help="the connector's LOG_LEVEL (DEBUG to diagnose a seed)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "chaos.md")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="logs and data (default: a temp dir, kept on failure)"
    )
    args = parser.parse_args(argv)
    sizes = dict(TINY if args.tiny else FULL)
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(2), "big")
    only = frozenset(f.strip() for f in args.faults.split(",") if f.strip())
    if not only <= set(FAMILIES):
        parser.error(f"--faults: unknown families {', '.join(sorted(only - set(FAMILIES)))}")
    schedule = build_schedule(
        seed, messages=int(sizes["messages"]), sessions=int(sizes["sessions"]), contacts=int(sizes["contacts"]),
        duration_s=sizes["duration_s"], only=only,
    )  # fmt: skip
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix=f"wa-relay-chaos-{seed}-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    say(f"chaos: seed {seed}, {len(schedule.messages)} messages, {schedule.sessions} sessions x {schedule.contacts} "
        f"contacts, {schedule.duration_s:g} s, {len(schedule.faults)} faults; logs in {work}")  # fmt: skip

    # The local runner and the proxy log through the root logger: into a file, for the excerpts, not onto stdout.
    logging.basicConfig(
        filename=work / "runner.log", level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    run = ChaosRun(schedule, work, say, settle_s=sizes["settle_s"], log_level=args.log_level)
    outcome = asyncio.run(run.run())
    verdict = judge(
        outcome.sent, outcome.calls, outcome.events,
        pending=outcome.pending,
        states_after_link=outcome.states,
        events_after_link=[e for e in outcome.events if e["seq"] > outcome.link_seq],
        finals=outcome.final_failures,
        not_open=outcome.not_open,
        spool_depth=outcome.spool_depth,
    )  # fmt: skip
    # Everything the checks saw, for a post-mortem beyond the excerpts.
    (work / "events.json").write_text(json.dumps(outcome.events))
    (work / "calls.json").write_text(json.dumps([dataclasses.asdict(c) for c in outcome.calls]))
    text = render(outcome, verdict, messages=len(schedule.messages), tiny=args.tiny, info=machine())
    say("")
    say(text)
    if not args.tiny:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        say(f"wrote {args.out}")
    failed = not verdict.passed or bool(outcome.harness_errors)
    if failed:
        say(f"\nCHAOS FAILED (seed {seed}); logs kept in {work}")
        return 1
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    say(f"\nchaos passed (seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
