"""Stopping and starting the whole local stack keeps linked sessions (DynamoDB Local keeps its data on disk)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from infra.local.stack import LocalStack
from tests.e2e.conftest import API_KEY, Api, ConnectorProcess, stack_env
from tests.support.chatbot import ChatbotServer
from tests.support.wasim import WasimClient, WasimInfo, new_person

pytestmark = pytest.mark.e2e


async def test_restarting_the_stack_keeps_the_session_linked(
    wasim_info: WasimInfo, wasim: WasimClient, chatbot: ChatbotServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    me, gus = new_person(), new_person()
    await wasim.add_contact(gus, "Gus")
    log = tmp_path / "stack.log"

    for round_ in ("first", "second"):
        with open(log, "a") as out:  # noqa: ASYNC230 - test set-up, nothing else runs on the loop yet
            local = LocalStack(data, env=stack_env(wasim_info, chatbot), connector=False, output=out)
            local.start()
            connector = ConnectorProcess(local.connector_env(), local.api_url, log)
            try:
                connector.start()
                async with aiohttp.ClientSession() as http:
                    api = Api(http, local.api_url, API_KEY)
                    if round_ == "first":
                        await api.link(wasim, "e2e-restart", me)
                    else:
                        seq = await wasim.last_seq()
                        await api.wait_state("e2e-restart", "open")
                        login = await wasim.wait_event("handshake", {"phone": me.phone}, after=seq)
                        assert login["data"]["kind"] == "login", "logged in from stored creds, no new pairing"
                        assert not await wasim.events("qr.refs_sent", after=seq), "no QR after a restart"
                    seq = await wasim.last_seq()
                    await wasim.send_text(gus, me, f"{round_} round")
                    await wasim.wait_event(
                        "message.outgoing",
                        {"account": me.phone, "text": f"echo: {round_} round"},
                        after=seq,
                        timeout=60,
                    )
            finally:
                connector.stop()
                local.stop()
