"""The Lambda bundle installs only the ``functions`` extra: the handler must import without aiohttp or aioboto3."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_handler_imports_without_connector_only_dependencies() -> None:
    script = textwrap.dedent(
        """
        import sys
        for name in ("aiohttp", "aioboto3", "aiobotocore", "pydantic_settings", "segno"):
            sys.modules[name] = None  # any import of these now raises ImportError
        import functions.inbound.handler as handler
        assert callable(handler.lambda_handler)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "connector")
        assert loaded == ["connector", "connector.contracts", "connector.resources"], loaded
        print("ok")
        """
    )
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "CHATBOT_URL": "https://bot.example/chat",
        "CHATBOT_SECRET": "x",
        "OUTBOUND_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/wa-relay-outbound.fifo",
        "INBOUND_QUEUE_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/1/wa-relay-inbound-dlq.fifo",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
