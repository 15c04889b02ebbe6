"""The Lambda bundle installs only the ``functions`` extra: the handler must import without aiohttp or aioboto3.

``import_handler`` is shared with ``tests/infra/test_package.py``, which checks the same import against the names the
built zip actually holds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANDLER_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "CHATBOT_URL": "https://bot.example/chat",
    "CHATBOT_SECRET": "x",
    "CHATBOT_SECRET_ARN": "",  # empty = unset, whatever the caller's environment holds
    "OUTBOUND_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/wa-relay-outbound.fifo",
    "INBOUND_QUEUE_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/1/wa-relay-inbound-dlq.fifo",
    "EVENTS_URL": "https://hooks.example/relay",
    "EVENTS_QUEUE_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/1/wa-relay-events-dlq.fifo",
}
"""What the handler needs at import (its config, and boto3 clients that are created but never called)."""


def import_handler(prelude: str, then: str = "") -> None:
    """In a fresh interpreter of this venv, in the repo: runs ``prelude``, imports every handler module (the inbound,
    late-answer and events functions share one zip) as Lambda's cold start would, then runs ``then``; fails the test
    with the interpreter's stderr if anything raises."""
    script = "\n".join(
        [
            textwrap.dedent(prelude),
            "import functions.inbound.handler as handler",
            "assert callable(handler.lambda_handler)",
            "import functions.late.handler as late",
            "assert callable(late.lambda_handler)",
            "import functions.events.handler as events",
            "assert callable(events.lambda_handler)",
            textwrap.dedent(then),
            'print("ok")',
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, **HANDLER_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_handler_imports_without_connector_only_dependencies() -> None:
    import_handler(
        """
        import sys
        for name in ("aiohttp", "aioboto3", "aiobotocore", "pydantic_settings", "segno"):
            sys.modules[name] = None  # any import of these now raises ImportError
        """,
        then="""
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "connector")
        assert loaded == ["connector", "connector.contracts", "connector.resources"], loaded
        """,
    )
