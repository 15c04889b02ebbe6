"""The section contract: every benchmark section is ``python -m tests.bench.<name> --out FILE.json [--tiny] ...`` and
writes one JSON object with ``write_section``; the orchestrator (``tests.bench.run``) reads it back with
``read_section``. Small formatting helpers the sections share live here too."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

MIB = 1024 * 1024
X = "\N{MULTIPLICATION SIGN}"
"""For ratios (ruff flags the literal character as ambiguous)."""


@dataclass(frozen=True)
class Target:
    """One target of the issue. ``met`` is ``None`` when it was not measured (say why in ``note``)."""

    name: str
    target: str
    value: str
    met: bool | None
    note: str = ""


class Section(TypedDict, total=False):
    section: str
    title: str
    markdown: str
    summary: list[str]
    targets: list[dict[str, Any]]
    samples: dict[str, list[float]]
    raw: dict[str, Any]
    elapsed_s: float


def write_section(
    path: Path | str,
    *,
    section: str,
    title: str,
    markdown: str,
    summary: Sequence[str],
    targets: Iterable[Target],
    samples: dict[str, list[float]] | None = None,
    raw: dict[str, Any] | None = None,
) -> None:
    data: Section = {
        "section": section,
        "title": title,
        "markdown": markdown,
        "summary": list(summary),
        "targets": [asdict(t) for t in targets],
        "samples": samples or {},
        "raw": raw or {},
    }
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_section(path: Path | str) -> Section:
    data: Section = json.loads(Path(path).read_text())
    return data


def section_args(description: str) -> argparse.ArgumentParser:
    """The options every section takes; sections add their own sizes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="where to write the section's JSON")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the code runs, the figures mean nothing")
    parser.add_argument("--work-dir", type=Path, default=None, help="logs and data (default: a temp dir)")
    return parser


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, as the bare-Baileys baseline computes it (so the two are comparable)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` is one character per column (``l``/``r``), default: first left, rest right."""
    cols = len(header)
    align = align or "l" + "r" * (cols - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


class Stopwatch:
    """Elapsed seconds of named phases, for the notes (link time, settle time …)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._t0 = time.monotonic()

    def lap(self, name: str) -> float:
        now = time.monotonic()
        self.phases[name] = round(now - self._t0, 2)
        self._t0 = now
        return self.phases[name]


@contextlib.contextmanager
def scratch(args: argparse.Namespace, name: str) -> Iterator[Path]:
    """The section's working directory: ``--work-dir`` if given (kept), else a temp dir removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        work: Path = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield work


Measure = Callable[[argparse.Namespace, Path], Coroutine[Any, Any, dict[str, Any]]]


def measure_in_scratch(args: argparse.Namespace, name: str, measure: Measure) -> dict[str, Any]:
    """Run a section's ``measure(args, work)`` on a fresh event loop in its scratch directory; its raw figures."""
    with scratch(args, name) as work:
        return asyncio.run(measure(args, work))
