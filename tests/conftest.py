"""Fixtures shared by every suite: the AWS emulators, the WhatsApp simulator and bridge processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from connector.resources import create_queues, create_tables
from infra.local.emulators import DynamoDBLocal, MotoServer
from tests.support.bridge_host import BRIDGE_SCRIPT, BridgeRun, RecordingHost
from tests.support.secrets import find_leaks, secrets_in
from tests.support.wasim import WasimClient, WasimInfo, WasimProcess

ROOT = Path(__file__).resolve().parents[1]

# The emulators accept any credentials; these keep boto3 from looking for real ones (and never reach AWS).
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Amazon's DynamoDB Local (in memory) for the whole run, with every table of connector.resources created."""
    import boto3

    log = open(tmp_path_factory.mktemp("dynamodb") / "dynamodb-local.log", "wb")  # noqa: SIM115
    ddb = DynamoDBLocal(log=log)
    endpoint = ddb.start()
    create_tables(boto3.client("dynamodb", endpoint_url=endpoint))
    yield endpoint
    ddb.stop()
    log.close()


@pytest.fixture(scope="session")
def sqs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server for SQS for the whole run."""
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    moto = MotoServer(log=log)
    endpoint = moto.start()
    yield endpoint
    moto.stop()
    log.close()


@pytest.fixture(scope="session")
def queue_urls(sqs_endpoint: str) -> dict[str, str]:
    """Every queue of connector.resources (FIFO, with FIFO DLQs): ``{env name: url}``."""
    import boto3

    return create_queues(boto3.client("sqs", endpoint_url=sqs_endpoint))


@pytest.fixture(scope="session")
def wasim_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WasimInfo]:
    """One simulator for the whole run; tests keep apart by using their own phone numbers."""
    log_dir = tmp_path_factory.mktemp("wasim")
    proc = WasimProcess(log_dir / "wasim.log")
    info = proc.start()
    yield info
    proc.stop()


@pytest.fixture
async def wasim(wasim_info: WasimInfo) -> AsyncIterator[WasimClient]:
    async with aiohttp.ClientSession() as http:
        yield WasimClient(wasim_info, http)


StartBridge = Callable[..., Awaitable[BridgeRun]]


@pytest.fixture
async def start_bridge(wasim_info: WasimInfo) -> AsyncIterator[StartBridge]:
    """Starts bridge processes against the simulator. At teardown every one is stopped, and everything any of
    them printed is searched for the private keys their hosts were given: no test may leak key material."""
    if not BRIDGE_SCRIPT.exists():
        pytest.fail(f"{BRIDGE_SCRIPT} is missing: run `make deps` (it builds the bridge)")
    runs: list[BridgeRun] = []
    output: list[tuple[str, bytes]] = []

    async def start(host: RecordingHost | None = None, **env: str) -> BridgeRun:
        run = BridgeRun(
            {**wasim_info.baileys_env(), "BRIDGE_LOG_LEVEL": "debug", "BAILEYS_LOG_LEVEL": "info", **env},
            host or RecordingHost(),
            output,
        )
        await run.__aenter__()
        runs.append(run)
        return run

    yield start
    for run in runs:
        await run.__aexit__(None, None, None)
    secrets = secrets_in(value for run in runs for value in run.host.written)
    if any(run.host.written for run in runs):
        assert secrets, "the bridge stored creds/keys but no secret was found in them: the leak check lost its teeth"
    leaks = find_leaks(secrets, (line for _stream, line in output))
    assert not leaks, f"bridge output contains private key material: {leaks[:5]}"
    assert not [line for stream, line in output if stream == "stdout"], "the bridge wrote to stdout"
