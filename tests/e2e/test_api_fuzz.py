"""schemathesis, an external fuzzer, against the live HTTP API of a real connector: ``python -m connector`` with the
real bridge (Baileys against the simulator, so created sessions really reach ``qr``) and DynamoDB Local behind it.

It reads the connector's own ``/openapi.json`` and runs every check (server errors, status codes, content types,
response schemas and headers, valid data accepted, invalid data rejected, auth enforced, 405 with ``Allow``,
use-after-free and resource availability) in every phase, the stateful one included (it follows the document's links
from ``createSession``). Seed, examples and phases are in ``schemathesis.toml`` next to this file. The connector's own
log is checked too: nothing may have ended in an unhandled error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from connector.resources import INBOUND_QUEUE, OUTBOUND_QUEUE, TABLES, create_tables
from infra.local.emulators import free_port
from tests.support.relay import ConnectorProcess
from tests.support.wasim import WasimInfo

CONFIG = Path(__file__).with_name("schemathesis.toml")
API_KEY = "fuzz-connector-key-5d1e8a9b3c7f"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture
def connector(
    dynamodb_endpoint: str,
    sqs_endpoint: str,
    queue_urls: dict[str, str],
    wasim_info: WasimInfo,
    tmp_path: Path,
) -> Iterator[tuple[str, Path]]:
    """A connector on tables of its own (other suites' sessions must not show up in its API)."""
    tables = create_tables(
        boto3.client("dynamodb", endpoint_url=dynamodb_endpoint),
        {spec.env: f"fuzz-{spec.default_name}" for spec in TABLES},
    )
    port = free_port()
    env = {
        **os.environ,
        **wasim_info.baileys_env(),
        **tables,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
        INBOUND_QUEUE.env: queue_urls[INBOUND_QUEUE.env],
        OUTBOUND_QUEUE.env: queue_urls[OUTBOUND_QUEUE.env],
        "CONNECTOR_API_KEY": API_KEY,
        "CONNECTOR_PORT": str(port),
        "SESSION_START_INTERVAL_S": "0.05",
        "SESSION_START_JITTER_S": "0",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "LOG_LEVEL": "INFO",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    log = tmp_path / "connector.log"
    process = ConnectorProcess(env, f"http://127.0.0.1:{port}", log)
    process.start()
    yield f"http://127.0.0.1:{port}", log
    process.stop()


def test_schemathesis_finds_nothing(connector: tuple[str, Path], tmp_path: Path) -> None:
    url, log = connector
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing: run `make deps` (schemathesis is a dev dependency)")
    command = [
        str(SCHEMATHESIS),
        f"--config-file={CONFIG}",
        "--no-color",
        "run",
        f"{url}/openapi.json",
        f"--header=Authorization: Bearer {API_KEY}",
        f"--report-dir={tmp_path / 'report'}",
        "--report=junit",
    ]
    # In the test's own directory: schemathesis keeps a cache of what it found under its working directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    print(result.stdout[-20000:])
    assert result.returncode == 0, (
        f"schemathesis reported failures (exit {result.returncode}):\n{result.stdout[-8000:]}"
    )
    errors = [line for line in log.read_text(errors="replace").splitlines() if "unhandled error" in line]
    assert not errors, f"the connector logged unhandled errors: {errors[:5]}"
