"""Section 5: the inbound function's cold start, as the import of its handler module in a fresh interpreter.

What Lambda's INIT phase runs for us is exactly ``import functions.inbound.handler``: the imports plus the module-level
wiring (configuration from the environment, the boto3 clients, the Powertools processor). It is measured beside
``import boto3`` alone, which any Python function that talks to AWS pays. Both run in a new interpreter per sample
(``python -c``), timed inside the child around the import only (interpreter start-up is the same for both and not
ours), with warm ``.pyc`` caches as a deployed package has them. The median of the samples is reported.

Where the time goes comes from ``-X importtime`` of one extra run: every module's own time, summed per top-level
package, plus the handler module's own time (its module-level wiring: two boto3 clients and the Powertools objects).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.bench.report import Target, section_args, write_section

ROOT = Path(__file__).resolve().parents[2]
HANDLER = "functions.inbound.handler"
TARGET_RATIO = 2.0

# The function's settings, pointing nowhere: the import wires clients but makes no call.
FUNCTION_ENV = {
    "CHATBOT_URL": "http://127.0.0.1:9/chatbot",
    "CHATBOT_SECRET": "cold-start-bench-secret",
    "OUTBOUND_QUEUE_URL": "http://127.0.0.1:9/000000000000/wa-relay-outbound.fifo",
    "INBOUND_QUEUE_DLQ_URL": "http://127.0.0.1:9/000000000000/wa-relay-inbound-dlq.fifo",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHATBOT_", "POWERTOOLS_"))}
    env.update(FUNCTION_ENV)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


BOTO3 = "import boto3"
BOTO3_CLIENTS = "import boto3; boto3.client('dynamodb'); boto3.client('sqs')"
"""The floor of any function that, like ours, creates its DynamoDB and SQS clients at INIT (as AWS recommends)."""


def time_import(module: str) -> float:
    """Seconds to import ``module`` in a new interpreter, timed by the child around the import statement."""
    return time_statement(f"import {module}")


def time_statement(statement: str) -> float:
    """Seconds to run ``statement`` in a new interpreter, timed by the child around the statement only."""
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    cmd = [sys.executable, "-c", code]
    out = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{statement!r} failed in a fresh interpreter:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def import_breakdown(module: str) -> dict[str, float]:
    """Milliseconds of own import time per top-level package (``-X importtime``), plus ``<module> wiring``."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=_env(), cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    own: dict[str, float] = defaultdict(float)
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:") :].split("|")
        name = name.strip()
        key = f"{module} (module-level wiring)" if name == module else _group(name)
        own[key] += int(self_us) / 1000
    return dict(sorted(own.items(), key=lambda kv: -kv[1]))


def _group(name: str) -> str:
    top = name.split(".")[0]
    if top in {"functions", "connector"}:
        return ".".join(name.split(".")[:3]) if top == "functions" else ".".join(name.split(".")[:2])
    if top in {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil"}:
        return "boto3 + botocore (and their deps)"
    if top in {"pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection"}:
        return "pydantic"
    if top in {"aws_lambda_powertools"}:
        return "aws_lambda_powertools"
    if top in {"tenacity"}:
        return "tenacity"
    return "standard library and others"


def measure(samples: int) -> dict[str, object]:
    # One unmeasured import of each first: compiles any missing .pyc, as a deployed package ships them.
    time_import("boto3")
    time_import(HANDLER)
    # Interleaved, so a busy moment on the machine hits every series alike.
    boto3_s, clients_s, handler_s = [], [], []
    for _ in range(samples):
        boto3_s.append(time_statement(BOTO3))
        clients_s.append(time_statement(BOTO3_CLIENTS))
        handler_s.append(time_import(HANDLER))
    return {
        "samples": samples,
        "boto3_s": boto3_s,
        "boto3_clients_s": clients_s,
        "handler_s": handler_s,
        "boto3_median_s": statistics.median(boto3_s),
        "boto3_clients_median_s": statistics.median(clients_s),
        "handler_median_s": statistics.median(handler_s),
        "breakdown_ms": import_breakdown(HANDLER),
    }


def render(raw: dict[str, object]) -> tuple[str, list[str], list[Target]]:
    boto3_ms = float(raw["boto3_median_s"]) * 1000  # type: ignore[arg-type]
    clients_ms = float(raw["boto3_clients_median_s"]) * 1000  # type: ignore[arg-type]
    handler_ms = float(raw["handler_median_s"]) * 1000  # type: ignore[arg-type]
    ratio = handler_ms / boto3_ms
    breakdown: dict[str, float] = raw["breakdown_ms"]  # type: ignore[assignment]
    lines = [
        f"Median of {raw['samples']} fresh interpreters each, timed around the import only "
        "(interpreter start-up excluded), warm `.pyc`.",
        "",
        "| import | median ms | vs `import boto3` |",
        "|---|---:|---:|",
        f"| `import boto3` | {boto3_ms:.0f} | 1.00x |",
        f"| `import boto3` + create the DynamoDB and SQS clients | {clients_ms:.0f} | {clients_ms / boto3_ms:.2f}x |",
        f"| `import {HANDLER}` (the whole INIT phase) | {handler_ms:.0f} | {ratio:.2f}x |",
        "",
        "Where the handler's import time goes (`-X importtime`, own time per package, one run):",
        "",
        "| part | ms |",
        "|---|---:|",
        *(f"| {name} | {ms:.0f} |" for name, ms in breakdown.items() if ms >= 1),
    ]
    target = Target(
        name="cold start: handler import vs import boto3",
        target=f"≤ {TARGET_RATIO:.0f}x",
        value=f"{ratio:.2f}x ({handler_ms:.0f} ms vs {boto3_ms:.0f} ms)",
        met=ratio <= TARGET_RATIO,
        note=(
            ""
            if ratio <= TARGET_RATIO
            else f"the two boto3 clients alone take it to {clients_ms / boto3_ms:.2f}x; the rest is pydantic (the wire "
            "contracts) and Powertools (batch + idempotency): see the breakdown"
        ),
    )
    summary = [f"cold start: handler {handler_ms:.0f} ms, import boto3 {boto3_ms:.0f} ms → {ratio:.2f}x"]
    return "\n".join(lines), summary, [target]


def main(argv: list[str] | None = None) -> int:
    parser = section_args(__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args(argv)
    raw = measure(3 if args.tiny else args.samples)
    markdown, summary, targets = render(raw)
    write_section(
        args.out, section="coldstart", title="Cold start of the inbound function", markdown=markdown,
        summary=summary, targets=targets, raw=raw,
    )  # fmt: skip
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
