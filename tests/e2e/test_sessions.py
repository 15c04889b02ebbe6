"""Sessions end to end: the real connector and bridge against the simulator. Sessions are staggered at boot, every
close code leads to its documented state and action, a killed bridge brings every session back without a QR, a
pairing code links a session, logout leaves nothing of the session in the auth table, and 20 sessions run at once.

The tests share one stack and run in file order: the 20 sessions linked first are the stored sessions of the boot,
close-code and bridge-kill tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import boto3
import pytest

from connector.resources import AUTH_TABLE
from infra.local.stack import LocalStack
from tests.e2e.conftest import API_KEY, Api, ConnectorProcess, stack_env
from tests.support.chatbot import ChatbotServer
from tests.support.wasim import Person, WasimClient, WasimInfo, new_person

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
SESSIONS = {
    "SESSION_START_INTERVAL_S": str(INTERVAL),
    "SESSION_START_JITTER_S": "0.1",
    "RECONNECT_INITIAL_S": "0.3",
    "RECONNECT_MAX_S": "2",
}
N = 20
linked: dict[str, Person] = {}
contacts: dict[str, Person] = {}


@pytest.fixture(scope="module")
def sessions_stack(
    wasim_info: WasimInfo, chatbot: ChatbotServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, ConnectorProcess]]:
    data = tmp_path_factory.mktemp("sessions")
    out = open(data / "stack.log", "w")  # noqa: SIM115
    local = LocalStack(data / "data", env={**stack_env(wasim_info, chatbot), **SESSIONS}, connector=False, output=out)
    local.start()
    connector = ConnectorProcess({**local.connector_env(), **SESSIONS}, local.api_url, data / "connector.log")
    connector.start()
    yield local, connector
    connector.stop()
    local.stop()
    out.close()


@pytest.fixture
async def sapi(sessions_stack: tuple[LocalStack, ConnectorProcess]) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, sessions_stack[0].api_url, API_KEY)


def auth_items(local: LocalStack, sid: str) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", endpoint_url=local.dynamodb_endpoint, region_name=local.region)
    resp = ddb.query(
        TableName=local.tables[AUTH_TABLE.env],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": sid}},
        ConsistentRead=True,
    )
    return list(resp["Items"])


def left_over(local: LocalStack, sid: str) -> list[str]:
    """Sort keys of the session still in the auth table (creds, keys and lease alike)."""
    return [i["sk"]["S"] for i in auth_items(local, sid)]


async def echo(wasim: WasimClient, sid: str, text: str, timeout: float = 90) -> None:
    seq = await wasim.last_seq()
    await wasim.send_text(contacts[sid], linked[sid], text)
    await wasim.wait_event(
        "message.outgoing", {"account": linked[sid].phone, "text": f"echo: {text}"}, after=seq, timeout=timeout
    )


async def test_twenty_sessions_pair_and_each_exchanges_messages(sapi: Api, wasim: WasimClient) -> None:
    async def one(i: int) -> None:
        sid = f"many-{i:02d}"
        me, contact = new_person(), new_person()
        await wasim.add_contact(contact, f"Contact {i}")
        contacts[sid] = contact
        await sapi.link(wasim, sid, me)  # created together: the start queue staggers them
        linked[sid] = me

    await asyncio.gather(*(one(i) for i in range(N)))
    status, sessions = await sapi.call("GET", "/v1/sessions")
    assert status == 200 and sum(1 for s in sessions if s["state"] == "open") >= N
    await asyncio.gather(*(echo(wasim, sid, f"hello {sid}") for sid in linked))


async def test_boot_with_stored_sessions_connects_them_no_closer_than_the_interval(
    sessions_stack: tuple[LocalStack, ConnectorProcess], sapi: Api, wasim: WasimClient
) -> None:
    _, connector = sessions_stack
    connector.stop()  # graceful: sockets closed, leases released
    seq = await wasim.last_seq()
    connector.start()
    for sid in linked:
        await sapi.wait_state(sid, "open", timeout=120)
    phones = {p.phone for p in linked.values()}
    logins = [e for e in await wasim.events("handshake", after=seq) if e["data"].get("phone") in phones]
    assert sorted(e["data"]["phone"] for e in logins) == sorted(phones), "each stored session logged in once"
    assert all(e["data"]["kind"] == "login" for e in logins), "from stored creds, no QR"
    gaps = [(b["at"] - a["at"]) / 1000 for a, b in itertools.pairwise(sorted(logins, key=lambda e: e["at"]))]
    # the connector spaces connect *starts*; 50 ms tolerance for the handshake's own network timing
    assert min(gaps) >= INTERVAL - 0.05, gaps


async def wait_handshake(wasim: WasimClient, who: Person, after: int, timeout: float = 30) -> dict[str, Any]:
    return await wasim.wait_event("handshake", {"phone": who.phone}, after=after, timeout=timeout)


async def test_515_reconnects_at_once(sapi: Api, wasim: WasimClient) -> None:
    sid = "many-00"
    seq = await wasim.last_seq()
    assert await wasim.disconnect(linked[sid], 515) == 1
    login = await wait_handshake(wasim, linked[sid], seq)
    assert login["data"]["kind"] == "login"
    body = await sapi.wait_state(sid, "open")
    assert body["last_error"]["code"] == 515
    await echo(wasim, sid, "after 515")


async def test_503_backs_off_then_reconnects(sapi: Api, wasim: WasimClient) -> None:
    sid = "many-01"
    seq = await wasim.last_seq()
    await wasim.disconnect(linked[sid], 503)
    await sapi.wait_state(sid, "reconnecting", timeout=10)
    await wait_handshake(wasim, linked[sid], seq)
    body = await sapi.wait_state(sid, "open")
    assert body["last_error"]["code"] == 503
    await echo(wasim, sid, "after 503")


async def test_440_conflict_is_not_reconnected(sapi: Api, wasim: WasimClient) -> None:
    sid = "many-02"
    seq = await wasim.last_seq()
    await wasim.disconnect(linked[sid], 440)
    body = await sapi.wait_state(sid, "conflict", timeout=10)
    assert body["last_error"]["code"] == 440
    await asyncio.sleep(3)
    assert not [e for e in await wasim.events("handshake", after=seq) if e["data"].get("phone") == linked[sid].phone]
    assert (await sapi.session(sid))["state"] == "conflict"


async def test_401_logs_out_and_wipes_every_key(
    sessions_stack: tuple[LocalStack, ConnectorProcess], sapi: Api, wasim: WasimClient
) -> None:
    sid = "many-03"
    assert left_over(sessions_stack[0], sid), "a linked session has creds and keys"
    await wasim.disconnect(linked[sid], 401)
    body = await sapi.wait_state(sid, "logged_out", timeout=10)
    assert body["last_error"]["code"] == 401
    for _ in range(50):
        if not left_over(sessions_stack[0], sid):
            break
        await asyncio.sleep(0.1)
    assert left_over(sessions_stack[0], sid) == []
    _, metrics = await sapi.call("GET", "/metrics")
    assert b"wa_relay_logged_out_total 1" in metrics


async def test_killing_the_bridge_brings_every_session_back_without_a_qr(sapi: Api, wasim: WasimClient) -> None:
    status, ready = await sapi.call("GET", "/readyz")
    assert status == 200 and ready["bridge_pid"]
    up = [sid for sid in linked if (await sapi.session(sid))["state"] == "open"]
    assert len(up) >= N - 2
    seq = await wasim.last_seq()
    os.kill(ready["bridge_pid"], signal.SIGKILL)
    for _ in range(600):  # the supervisor notices, restarts the bridge, and is ready again with a new process
        status, ready2 = await sapi.call("GET", "/readyz")
        if status == 200 and ready2["bridge_pid"] not in (None, ready["bridge_pid"]):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the bridge was not restarted")
    phones = {linked[sid].phone for sid in up}
    for _ in range(1200):
        logins = {e["data"].get("phone") for e in await wasim.events("handshake", after=seq)}
        if phones <= logins:
            break
        await asyncio.sleep(0.1)
    assert phones <= logins, "every session connected again"
    for sid in up:
        body = await sapi.wait_state(sid, "open", timeout=120)
        assert "qr" not in body
    handshakes = [e for e in await wasim.events("handshake", after=seq) if e["data"].get("phone") in phones]
    assert all(e["data"]["kind"] == "login" for e in handshakes), "from stored creds"
    assert not await wasim.events("qr.refs_sent", after=seq), "no QR after a bridge restart"
    await echo(wasim, up[-1], "after the bridge died")


async def test_pairing_code_links_a_session(sapi: Api, wasim: WasimClient) -> None:
    me = new_person()
    status, body = await sapi.call("POST", "/v1/sessions", {"session_id": "by-code"})
    assert status == 201, body
    status, early = await sapi.call("POST", "/v1/sessions/by-code/pairing-code", {"phone": me.phone})
    if status != 200:  # asked before the QR window opened: refused with a clear 409
        assert status == 409 and "QR window" in early["error"]["message"]
    await sapi.wait_state("by-code", "qr")
    status, body = await sapi.call("POST", "/v1/sessions/by-code/pairing-code", {"phone": me.phone})
    assert status == 200, body
    assert len(body["code"].replace("-", "")) == 8
    await wasim.enter_pairing_code(body["code"], me)
    opened = await sapi.wait_state("by-code", "open")
    assert opened["me"]["pn"] == me.jid


async def test_logout_leaves_nothing_of_the_session_and_recreating_starts_clean(
    sessions_stack: tuple[LocalStack, ConnectorProcess], sapi: Api, wasim: WasimClient
) -> None:
    local = sessions_stack[0]
    sid = "by-code"
    assert left_over(local, sid)
    status, body = await sapi.call("POST", f"/v1/sessions/{sid}/logout")
    assert status == 200, body
    assert left_over(local, sid) == [], "logout leaves no item of the session: no creds, no key, no lease"
    status, _ = await sapi.call("GET", f"/v1/sessions/{sid}")
    assert status == 404
    status, body = await sapi.call("POST", "/v1/sessions", {"session_id": sid})
    assert status == 201, body
    fresh = await sapi.wait_state(sid, "qr")
    assert fresh["me"] == {"pn": None, "lid": None}
