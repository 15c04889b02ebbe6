"""Two connectors on the same tables: a session is driven by exactly one of them (its lease), and moves to the
survivor only after the owner's lease expires (DESIGN sections 4 and 7)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from infra.local.emulators import free_port
from infra.local.stack import LocalStack
from tests.e2e.conftest import API_KEY, Api, ConnectorProcess, stack_env
from tests.e2e.test_relay import outbound_drained
from tests.support.chatbot import ChatbotServer
from tests.support.wasim import WasimClient, WasimInfo, new_person

pytestmark = pytest.mark.e2e

LEASE = {"LEASE_TTL_S": "4", "LEASE_RENEW_S": "1"}


@pytest.fixture
def shared_stack(wasim_info: WasimInfo, chatbot: ChatbotServer, tmp_path: Path) -> Iterator[LocalStack]:
    out = open(tmp_path / "stack.log", "w")  # noqa: SIM115
    local = LocalStack(tmp_path / "data", env={**stack_env(wasim_info, chatbot), **LEASE}, connector=False, output=out)
    local.start()
    yield local
    local.stop()
    out.close()


def connector(local: LocalStack, name: str, log: Path) -> ConnectorProcess:
    port = free_port()
    env = {**local.connector_env(), **LEASE, "CONNECTOR_ID": name, "CONNECTOR_PORT": str(port)}
    return ConnectorProcess(env, f"http://127.0.0.1:{port}", log)


async def test_one_owner_at_a_time_and_takeover_after_the_lease_expires(
    shared_stack: LocalStack, wasim: WasimClient, chatbot: ChatbotServer, tmp_path: Path
) -> None:
    first = connector(shared_stack, "connector-a", tmp_path / "a.log")
    second = connector(shared_stack, "connector-b", tmp_path / "b.log")
    me, hana = new_person(), new_person()
    await wasim.add_contact(hana, "Hana")
    first.start()
    try:
        async with aiohttp.ClientSession() as http:
            api_a = Api(http, first.api_url, API_KEY)
            await api_a.link(wasim, "owned", me)
            seq = await wasim.last_seq()

            second.start()  # the same tables: it sees the stored session, and its lease
            await asyncio.sleep(8)  # two lease TTLs: time enough for a careless second owner to connect
            handshakes = [e for e in await wasim.events("handshake", after=seq) if e["data"].get("phone") == me.phone]
            assert not handshakes, "the second connector connected a session the first one owns"
            assert not await wasim.events("login.conflict", after=seq)

            await wasim.send_text(hana, me, "who answers?")
            await wasim.wait_event("message.outgoing", {"account": me.phone, "text": "echo: who answers?"}, after=seq,
                                   timeout=60)  # fmt: skip

            # Kill at a quiet moment (reply sent, recorded, deleted), as in test_relay: a kill between Baileys
            # sending and committing its ratchet needs the phone's retry round, which wasim does not play yet.
            await outbound_drained(shared_stack)
            seq = await wasim.last_seq()
            killed_at = time.time() * 1000
            first.kill()  # the owner dies without releasing its lease
            api_b = Api(http, second.api_url, API_KEY)
            await api_b.wait_state("owned", "open", timeout=60)
            login = await wasim.wait_event("handshake", {"phone": me.phone}, after=seq)
            assert login["data"]["kind"] == "login", "taken over from stored creds, no new pairing"
            # It was renewed at most LEASE_RENEW_S before the kill, so it stayed valid ≥ TTL - renew seconds after.
            assert login["at"] - killed_at >= (4 - 1) * 1000 * 0.9, "taken over before the owner's lease expired"

            await wasim.send_text(hana, me, "still decrypting?")
            await wasim.wait_event("message.outgoing", {"account": me.phone, "text": "echo: still decrypting?"},
                                   after=seq, timeout=90)  # fmt: skip
            assert not await wasim.events("login.conflict", after=seq)
    finally:
        first.stop()
        second.stop()
