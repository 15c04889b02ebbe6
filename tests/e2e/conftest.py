"""The whole relay on one machine, as ``make up`` runs it: DynamoDB Local, moto SQS, the inbound function behind the
local event source runner, the real connector (``python -m connector``) with the real bridge and Baileys, talking
to the WhatsApp simulator, and a scriptable test chatbot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from infra.local.stack import LocalStack
from tests.support.chatbot import ChatbotServer
from tests.support.relay import Api, ConnectorProcess
from tests.support.wasim import WasimInfo

CHATBOT_SECRET = "e2e-chatbot-secret-3f9a1c7d"
API_KEY = "e2e-connector-key-8b2d4f6a9c1e"


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


@pytest.fixture
async def api(stack: tuple[LocalStack, ConnectorProcess]) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, stack[0].api_url, API_KEY)
