"""The chaos run's report: one Markdown text for stdout and ``docs/chaos.md`` (as ``make bench`` writes
BENCHMARKS.md), with the verdict, what was injected, the DLQs, and for every problem the log lines that mention it,
so a failure can be read without rerunning it (and rerun with the printed ``--seed``)."""

from __future__ import annotations

import json
from collections import Counter

from tests.bench.report import table
from tests.chaos.checks import Problem, Verdict, events_of, first_answers, replies_by_tag, resent_same_id
from tests.chaos.scenario import Outcome
from tests.chaos.schedule import FAMILIES

LOGS = (
    ("relay/connector.log", "connector and bridge"),
    ("relay/function.log", "function"),
    ("runner.log", "the function's local runner"),
    ("relay/wasim.log", "simulator log"),
)
EXCERPT_LINES = 8
PROBLEMS_WITH_EXCERPTS = 12


def _shown(what: str, hits: list[str], limit: int = EXCERPT_LINES) -> list[str]:
    if not hits:
        return []
    half = limit // 2
    shown = hits if len(hits) <= limit else [*hits[:half], "…", *hits[-half:]]
    return [f"{what} ({len(hits)} lines):", *[f"    {h}" for h in shown]]


def excerpts(out: Outcome, problem: Problem) -> list[str]:
    """The lines of each log and the simulator's events that mention any of the problem's keys (the simulator logs
    little; its events say what happened on the wire), and the message's path through the queues."""
    keys = [k for k in problem.keys if k and k != "?"]
    found: list[str] = []
    for name, what in LOGS if keys else ():
        path = out.work / name
        if path.exists():
            with open(path, errors="replace") as f:
                found += _shown(f"{what}, {name}", [line.rstrip()[:400] for line in f if any(k in line for k in keys)])
    wire = []
    for e in out.events if keys else ():
        text = json.dumps(e["data"], separators=(",", ":"))
        if any(k in text for k in keys):
            wire.append(f"#{e['seq']} {e['at']} {e['type']} {text[:300]}")
    found += _shown("simulator events", wire)
    return found + _shown("its queues, on the wire", out.queue_history.get(problem.tag, []), limit=3 * EXCERPT_LINES)


def command(out: Outcome, messages: int) -> str:
    s = out.schedule
    line = (f"python -m tests.chaos.run --seed {s.seed} --messages {messages} --sessions {s.sessions} "
            f"--contacts {s.contacts} --duration-s {s.duration_s:g}")  # fmt: skip
    if s.only != frozenset(FAMILIES):
        line += f" --faults {','.join(f for f in FAMILIES if f in s.only)}"
    return line


def faults_section(out: Outcome) -> list[str]:
    lines = ["## Faults injected", ""]
    rows = [[kind, n] for kind, n in sorted(out.done.items())]
    lines += [table(["fault", "times"], rows), ""] if rows else ["_None._", ""]
    aws = sorted(out.aws_injected.items())
    if aws:
        lines += ["AWS calls the proxy faulted (each call counted once):", ""]
        lines += [table(["component", "service", "fault", "what", "calls"], [[*k, n] for k, n in aws], "llllr"), ""]
    bot = Counter(c.label for c in out.calls if c.label not in ("ok", "not ours"))
    if bot:
        lines += ["Chatbot calls answered inside a failure window:", ""]
        lines += [table(["window", "calls"], sorted(bot.items())), ""]
    if out.self_exits:
        lines += ["Connector exits nobody asked for (restarted by the harness): " + "; ".join(out.self_exits), ""]
    if out.anomalies:
        lines += ["Noticed along the way:", "", *[f"- {a}" for a in out.anomalies], ""]
    return lines


def traffic_section(out: Outcome) -> list[str]:
    ev = out.events
    answered = first_answers(out.calls)
    retries = Counter(c.label or str(c.status) for c in out.calls if not c.answered)
    rows = [
        ["messages sent by contacts", len(out.sent)],
        ["… delivered to the device (incl. redeliveries)", len(events_of(ev, "message.incoming_sent"))],
        ["… redelivered at a login (held, unreceipted)", len(events_of(ev, "message.redelivered"))],
        ["… receipted by the device", len({d["id"] for d in events_of(ev, "message.receipted")})],
        ["… answered by the chatbot", sum(1 for s in out.sent if s.tag in answered)],
        ["chatbot calls", len(out.calls)],
        ["… not answered (retried): " + (", ".join(f"{k} {v}" for k, v in sorted(retries.items())) or "none"),
         sum(retries.values())],
        ["replies decrypted by the contacts", sum(len(v) for v in replies_by_tag(ev).values())],
        ["retry receipts from the relay (it could not decrypt at first)",
         sum(1 for d in events_of(ev, "receipt") if d.get("type") == "retry")],
        ["retry receipts from contacts (a reply they could not decrypt at first)",
         len(events_of(ev, "message.retry_requested"))],
        ["replies sent again under the id the phone had (a crash between send and record; dropped by the phone)",
         resent_same_id(ev)],
        ["NACKs from the relay", sum(1 for d in events_of(ev, "message.ack") if d.get("error"))],
        ["logins (handshakes of kind login)", sum(1 for d in events_of(ev, "handshake") if d.get("kind") == "login")],
        ["connections replaced (440)", len(events_of(ev, "login.conflict"))],
    ]  # fmt: skip
    return ["## Traffic", "", table(["", "count"], rows), ""]


def dlq_section(out: Outcome) -> list[str]:
    lines = ["## Dead-letter queues", ""]
    if not out.dlq:
        return [*lines, "(none)", ""]
    answered = first_answers(out.calls)
    replied = replies_by_tag(out.events)
    rows = []
    for e in out.dlq:
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(e["attributes"].items())) or "-"
        # An inbound entry is a loss if its message was never answered, an outbound one if its reply never arrived.
        done = e["tag"] in (answered if e["queue"] == "inbound" else replied)
        fate = "delivered otherwise (not a loss)" if done else "**never delivered: a loss**"
        rows.append([e["queue"], e["tag"], e["event_id"][:16] or "-", e["receives"], attrs, fate])
    return [*lines, table(["queue", "message", "event id", "receives", "attributes", ""], rows, "llllll"), ""]


def problems_section(out: Outcome, verdict: Verdict) -> list[str]:
    if not verdict.problems:
        return []
    lines = ["## Problems", ""]
    for i, p in enumerate(verdict.problems):
        lines.append(f"- **{p.check}** `{p.tag}`: {p.detail}")
        if i < PROBLEMS_WITH_EXCERPTS:
            found = excerpts(out, p)
            if found:
                lines += ["", "  ```", *[f"  {line}" for line in found], "  ```", ""]
    if len(verdict.problems) > PROBLEMS_WITH_EXCERPTS:
        lines.append(f"\n(log excerpts for the first {PROBLEMS_WITH_EXCERPTS} problems only)")
    return [*lines, ""]


def schedule_section(out: Outcome) -> list[str]:
    rows = []
    for r in out.injections:
        started = "-" if r.started is None else f"{r.started:.1f}"
        ended = "-" if r.ended is None else f"{r.ended:.1f}"
        rows.append([r.fault.index, r.fault.describe(), started, ended, r.note or ""])
    return ["## Fault log (plan and what happened; seconds after the traffic started)", "",
            table(["#", "planned", "started", "ended", "note"], rows, "rlrrl"), ""]  # fmt: skip


def render(out: Outcome, verdict: Verdict, *, messages: int, tiny: bool, info: dict[str, str]) -> str:
    """``info``: the machine and versions (``tests.bench.run.machine``)."""
    s = out.schedule
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in out.phases.items())
    verdict_rows = [[n, c, 0, "ok" if c == 0 else "**FAILED**"] for n, c in verdict.targets]
    lines = ["# Chaos run", ""]
    if tiny:
        lines += ["> **Tiny run** (`make test-chaos`): the same suite at CI size.", ""]
    lines += [
        f"Run {info['date']} on {info['cpu']}, {info['cores']} cores; Python {info['python']}, Node {info['node']}, "
        f"Baileys {info['baileys']}, commit {info['commit']}.",
        "",
        f"Seed **{s.seed}**: {s.sessions} sessions x {s.contacts} contacts (half addressed by phone number, "
        f"half by LID), {messages} messages in {len(s.bursts)} bursts over {s.duration_s:g} s, {len(s.faults)} "
        f"faults planned. Phases: {phases}.",
        "",
        f"Reproduce: `{command(out, messages)}`",
        "",
        "Contacts send numbered messages (`chaos s<session>/c<contact>/<n>`) while the connector and the bridge are "
        "killed and restarted, the AWS calls of the connector and of the function are delayed, dropped, throttled "
        "and failed, and the chatbot fails, stalls and answers garbage; then everything settles and one more "
        "message goes each way per chat. The chatbot answers `ack <tag>`, so every message, chatbot call and reply "
        "is matched by its tag (`tests/chaos/checks.py` defines each check).",
        "",
        "## Verdict",
        "",
        table(["check", "count", "target", ""], verdict_rows, "lrrl"),
        "",
    ]
    if out.harness_errors:
        lines += ["Harness errors (the run itself went wrong): " + "; ".join(out.harness_errors), ""]
    if not out.settled:
        lines += ["The settle phase timed out: some messages were still unanswered or held when it ended.", ""]
    lines += traffic_section(out) + faults_section(out) + dlq_section(out) + problems_section(out, verdict)
    lines += schedule_section(out)
    return "\n".join(lines)
