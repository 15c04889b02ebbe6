"""``make bench``: run every benchmark section in its own process, print what each found, then write BENCHMARKS.md
(machine, date, versions, the targets table, each section's tables and notes) and the latency chart.

``python -m tests.bench.run [--tiny] [--only throughput,latency,...] [--messages 2000] [--sessions 20]
[--idle 50,200] [--boot 10] [--samples 200] [--out BENCHMARKS.md] [--chart docs/bench-latency.png]``

- A section is ``tests.bench.<name>`` run as ``python -m tests.bench.<name> --out FILE.json`` (``report.py`` has the
  contract); its own process keeps memory figures and event loops apart.
- A missed target never fails the run; a crashed section does (exit status 1) after the others ran, so ``--tiny``
  (``make test-bench``) catches benchmark code that rotted.
- ``--tiny`` writes BENCHMARKS.md and the chart into a temp dir: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.bench.report import Section, percentile, read_section, table
from tests.bench.world import baileys_version
from tests.support.wasim import ROOT

SECTIONS = ("throughput", "latency", "memory", "awscalls", "coldstart", "boot")


def section_command(name: str, out: Path, work: Path, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", f"tests.bench.{name}", "--out", str(out)]
    if args.tiny:
        cmd.append("--tiny")
    if name != "coldstart":  # the cold-start section needs no scratch space
        cmd += ["--work-dir", str(work / name)]
    if args.tiny:
        return cmd
    sizes: dict[str, list[str]] = {
        "throughput": ["--messages", str(args.messages), "--sessions", str(args.sessions)],
        "latency": ["--samples", str(args.samples)],
        "memory": ["--idle", args.idle],
        "awscalls": ["--messages", str(args.aws_messages)],
        "boot": ["--sessions", str(args.boot)],
    }
    return cmd + sizes.get(name, [])


PRINT_LOCK = threading.Lock()


def say(text: str) -> None:
    with PRINT_LOCK:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()


def run_section(name: str, out: Path, work: Path, args: argparse.Namespace) -> tuple[Section | None, float, str]:
    """Run one section, echoing its output (and keeping it in ``work/<name>.log``); (result, seconds, error)."""
    cmd = section_command(name, out, work, args)
    t0 = time.monotonic()
    log_path = work / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            say(f"  [{name}] {line.decode(errors='replace')}")
        code = proc.wait()
    elapsed = time.monotonic() - t0
    if code != 0 or not out.exists():
        return None, elapsed, f"exited with status {code}; output in {log_path}"
    return read_section(out), elapsed, ""


# ---- the report ----


def _command(args: list[str]) -> str:
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine() -> dict[str, str]:
    import psutil  # type: ignore[import-untyped]

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    dirty = _command(["git", "status", "--porcelain", "--untracked-files=no"])
    commit = _command(["git", "rev-parse", "--short", "HEAD"])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": _command(["node", "--version"]),
        "java": _command(["java", "-version"]) if shutil.which("java") else "not found",
        "baileys": baileys_version(),
        "commit": commit + (" (with local changes)" if dirty not in ("", "unknown", "not found") else ""),
    }


def targets_table(results: dict[str, Section]) -> str:
    rows = []
    for result in results.values():
        for t in result.get("targets", []):
            met = {True: "met", False: "**missed**", None: "not measured"}[t.get("met")]
            rows.append([t["name"], t["target"], t["value"], met, t.get("note", "")])
    if not rows:
        return "_No targets were measured._"
    return table(["target", "wanted", "measured", "", "note"], rows, "lllll")


def render(
    results: dict[str, Section],
    failures: dict[str, str],
    elapsed: dict[str, float],
    info: dict[str, str],
    chart: Path | None,
    out: Path,
    tiny: bool,
    total_s: float,
) -> str:
    lines = ["# Benchmarks", ""]
    if tiny:
        lines += ["> **Tiny run** (`make test-bench`): the code ran; the figures mean nothing.", ""]
    lines += [
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}; "
        f"Python {info['python']}, Node {info['node']}, Java `{info['java']}`, Baileys {info['baileys']}, "
        f"commit {info['commit']}.",
        "",
        f"Reproduce with `make bench` (this run took {total_s / 60:.1f} minutes); sizes through `BENCH_ARGS`, e.g. "
        '`make bench BENCH_ARGS="--idle 50,200,1000"` or `BENCH_ARGS="--only latency --samples 500"` '
        "(`python -m tests.bench.run --help`). Everything runs on one machine: the simulator (`tests/wasim`), "
        "DynamoDB Local, moto's SQS, the function behind the local runner, and the real connector, bridge and "
        "Baileys; the baselines are bare Baileys 7 processes against the same simulator "
        "(`tests/wasim/bench/baseline.mjs`). Local emulators are not AWS: absolute figures are this machine's, the "
        "ratios to the baselines are the point.",
        "",
        "## Targets",
        "",
        targets_table(results),
        "",
    ]
    changes = ROOT / "docs" / "bench-changes.md"
    if changes.exists() and not tiny:
        # Hand-written: what the measurements made us change, with before/after figures (kept across runs).
        lines += ["## What these measurements changed", "", changes.read_text().strip(), ""]
    if failures:
        lines += ["Sections that did not complete: " + "; ".join(f"{k}: {v}" for k, v in failures.items()), ""]
    if chart is not None:
        rel = os.path.relpath(chart, out.parent)
        lines += [f"![Reply latency distribution: wa-relay beside a bare Baileys echo]({rel})", ""]
    for name in SECTIONS:
        if name not in results:
            continue
        result = results[name]
        lines += [f"## {result.get('title', name)}", "", result.get("markdown", "").strip(), ""]
        lines += [f"_Section time: {elapsed.get(name, 0):.0f} s._", ""]
    return "\n".join(lines)


def draw_chart(samples: dict[str, list[float]], path: Path) -> bool:
    """CDF of each latency series on a log axis, with p50/p95/p99 marked. False when there is nothing to draw."""
    series = {k: v for k, v in samples.items() if v}
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for i, (label, values) in enumerate(sorted(series.items())):
        ordered = sorted(values)
        n = len(ordered)
        color = f"C{i}"
        ax.step(ordered, [(k + 1) / n for k in range(n)], where="post", color=color, label=f"{label} (n={n})")
        for p, style in ((50, ":"), (95, "--"), (99, "-.")):
            v = percentile(ordered, p)
            ax.axvline(v, color=color, linestyle=style, linewidth=0.9, alpha=0.8)
            ax.annotate(f"p{p} {v:.0f} ms", (v, p / 100), textcoords="offset points", xytext=(4, -10 - 3 * i),
                        fontsize=7, color=color)  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(int(v))[0] in "25" else ""))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("reply latency, ms (simulator send → simulator decrypts the reply), log scale")
    ax.set_ylabel("fraction of messages")
    ax.set_title("Reply latency, cumulative (dotted p50, dashed p95, dash-dot p99)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, output to a temp dir (make test-bench)")
    parser.add_argument("--only", default="", help=f"comma-separated sections of: {','.join(SECTIONS)}")
    parser.add_argument("--messages", type=int, default=2000, help="throughput: messages per run")
    parser.add_argument("--sessions", type=int, default=20, help="throughput: sessions of the spread run")
    parser.add_argument("--idle", default="50,200", help="memory: idle session counts, ascending (up to 1000)")
    parser.add_argument("--boot", type=int, default=10, help="boot: stored sessions to bring to open")
    parser.add_argument("--samples", type=int, default=200, help="latency: sequential messages measured")
    parser.add_argument("--aws-messages", type=int, default=100, help="awscalls: steady-state messages counted")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "bench-latency.png")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep logs and data here (default: temp dir)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="sections run at once (default 1; 2 with --tiny, whose figures do not matter)",
    )
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    with tempfile.TemporaryDirectory(prefix="wa-relay-bench-") as tmp:
        work = (args.work_dir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        out, chart = (work / "BENCHMARKS.md", work / "bench-latency.png") if args.tiny else (args.out, args.chart)
        results: dict[str, Section] = {}
        failures: dict[str, str] = {}
        elapsed: dict[str, float] = {}
        started = time.monotonic()

        def one(name: str) -> None:
            if importlib.util.find_spec(f"tests.bench.{name}") is None:
                say(f"== {name}: skipped (tests/bench/{name}.py is missing)")
                return
            say(f"== {name}")
            result, seconds, error = run_section(name, work / f"{name}.json", work, args)
            elapsed[name] = seconds
            if result is None:
                failures[name] = error
                say(f"== {name}: FAILED after {seconds:.0f} s: {error}")
                return
            results[name] = result
            lines = [f"   {name}: {line}" for line in result.get("summary", [])]
            say("\n".join([*lines, f"== {name}: {seconds:.0f} s"]))

        jobs = args.jobs or (2 if args.tiny else 1)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, [s for s in SECTIONS if s in only]))
        results = {name: results[name] for name in SECTIONS if name in results}

        samples: dict[str, list[float]] = {}
        for result in results.values():
            samples.update(result.get("samples") or {})
        drawn = draw_chart(samples, chart)
        info = machine()
        total_s = time.monotonic() - started
        text = render(results, failures, elapsed, info, chart if drawn else None, out, args.tiny, total_s)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")

        print()
        print(targets_table(results))
        print()
        print(f"total {total_s:.0f} s; " + ", ".join(f"{k} {v:.0f} s" for k, v in elapsed.items()))
        if not args.tiny:
            print(f"wrote {out}" + (f" and {chart}" if drawn else ""))
        if failures:
            print("FAILED sections: " + ", ".join(failures), file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
