"""The whole relay on one machine, as ``make up`` runs it: DynamoDB Local, moto SQS, the inbound function behind the
local event source runner, the real connector (``python -m connector``) with the real bridge and Baileys, talking
to the WhatsApp simulator, and a scriptable test chatbot."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.local.emulators import wait_http
from connector.local.stack import LocalStack
from tests.support.chatbot import ChatbotServer
from tests.support.wasim import Person, WasimClient, WasimInfo

CHATBOT_SECRET = "e2e-chatbot-secret-3f9a1c7d"
API_KEY = "e2e-connector-key-8b2d4f6a9c1e"


class ConnectorProcess:
    """``python -m connector`` with the stack's environment, so tests can SIGKILL it and start it again."""

    def __init__(self, env: dict[str, str], api_url: str, log_path: Path) -> None:
        self.env, self.api_url, self.log_path = env, api_url, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector"], env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        wait_http(f"{self.api_url}/healthz", self.proc, "connector", 60)  # type: ignore[arg-type]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stack_env(wasim_info: WasimInfo, chatbot: ChatbotServer) -> dict[str, str]:
    return {
        **wasim_info.baileys_env(),
        "CHATBOT_URL": chatbot.url,
        "CHATBOT_SECRET": CHATBOT_SECRET,
        "CONNECTOR_API_KEY": API_KEY,
        "CONNECTOR_PORT": "0",
        "SESSION_START_INTERVAL_S": "0.2",
        "CHATBOT_RETRY_BASE_S": "0.05",
        "CHATBOT_RETRY_MAX_S": "0.2",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def chatbot() -> Iterator[ChatbotServer]:
    server = ChatbotServer(CHATBOT_SECRET)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    wasim_info: WasimInfo, chatbot: ChatbotServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, ConnectorProcess]]:
    """One stack per module; its connector is driven by the tests (killed, restarted)."""
    data = tmp_path_factory.mktemp("stack")
    out = open(data / "stack.log", "w")  # noqa: SIM115
    local = LocalStack(data / "data", env=stack_env(wasim_info, chatbot), connector=False, output=out)
    local.start()
    connector = ConnectorProcess(local.connector_env(), local.api_url, data / "connector.log")
    connector.start()
    yield local, connector
    connector.stop()
    local.stop()
    out.close()


class Api:
    def __init__(self, http: aiohttp.ClientSession, base: str, key: str) -> None:
        self.http, self.base, self.headers = http, base, {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, body: Any = None, *, key: bool = True) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body, headers=self.headers if key else {}) as resp:
            data = await resp.json(content_type=None) if resp.content_type == "application/json" else await resp.read()
            return resp.status, data

    async def session(self, sid: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/sessions/{sid}")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def wait_state(self, sid: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = []
        while loop.time() < deadline:
            body = await self.session(sid)
            if not seen or seen[-1] != body["state"]:
                seen.append(body["state"])
            if body["state"] == state:
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"session {sid} never reached {state}; states seen: {seen}")

    async def link(self, sim: WasimClient, sid: str, who: Person) -> dict[str, Any]:
        """Create the session, scan its QR with the simulated phone, and wait for ``open``. Returns the states."""
        status, body = await self.call("POST", "/v1/sessions", {"session_id": sid})
        assert status == 201, body
        await self.wait_state(sid, "qr")
        status, qr = await self.call("GET", f"/v1/sessions/{sid}/qr")
        assert status == 200, qr
        await sim.scan_qr(qr["qr"], who)
        return await self.wait_state(sid, "open")


@pytest.fixture
async def api(stack: tuple[LocalStack, ConnectorProcess]) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, stack[0].api_url, API_KEY)
