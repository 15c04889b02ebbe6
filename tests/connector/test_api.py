from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connector.api import ROUTES
from connector.app import RELAY_KEY, create_app
from connector.config import Config
from connector.publish import MemoryPublisher
from connector.store import MemoryAuthStore, MemoryLidMapStore, MemoryReplyLog
from connector.types import SessionId
from tests.connector.fakes import FakeBridge

KEY = "k3J9x2Lq8Vn5Rt7Wz4Yb"
AUTH = {"Authorization": f"Bearer {KEY}"}
OPEN = {"connection": "open", "me": {"id": "15550001111:5@s.whatsapp.net", "lid": "99990001111:5@lid"}}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    cfg = Config(api_key=KEY, store_backend="memory", session_start_interval_s=0)
    app = create_app(
        cfg,
        auth=MemoryAuthStore(),
        lid_map=MemoryLidMapStore(),
        reply_log=MemoryReplyLog(),
        publisher=MemoryPublisher(),
        bridge=FakeBridge,
        relay_options={"start_jitter_s": 0},
    )
    async with TestClient(TestServer(app)) as c:
        yield c


def bridge(client: TestClient[Any, Any]) -> FakeBridge:
    b = client.app[RELAY_KEY].bridge
    assert isinstance(b, FakeBridge)
    return b


async def error_of(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


async def test_health_needs_no_key_and_ready_after_startup(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    bridge(client).connected = False
    await error_of(await client.get("/readyz"), 503)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-wrong-key"}, {"Authorization": KEY}])
async def test_401_without_or_with_wrong_key(client: TestClient[Any, Any], headers: dict[str, str]) -> None:
    assert await error_of(await client.get("/v1/sessions", headers=headers), 401) == "unauthorized"
    await error_of(await client.post("/v1/sessions", json={"session_id": "x"}, headers=headers), 401)


async def test_create_list_get_delete(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    assert resp.status == 201
    assert (await resp.json())["id"] == "s1"
    await bridge(client).wait_calls("start", 1)
    assert await error_of(await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH), 409)
    listed = await (await client.get("/v1/sessions", headers=AUTH)).json()
    assert [s["id"] for s in listed] == ["s1"]
    one = await (await client.get("/v1/sessions/s1", headers=AUTH)).json()
    assert one["state"] == "starting" and one["me"] == {"pn": None, "lid": None}
    assert (await client.delete("/v1/sessions/s1", headers=AUTH)).status == 200
    await error_of(await client.get("/v1/sessions/s1", headers=AUTH), 404)
    await error_of(await client.delete("/v1/sessions/s1", headers=AUTH), 404)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[1]", 422),
        (b"{}", 422),
        (b'{"session_id": 5}', 422),
        (b'{"session_id": "-bad"}', 422),
        (b'{"session_id": "a/b"}', 422),
        (b'{"session_id": "' + b"a" * 65 + b'"}', 422),
    ],
)
async def test_create_rejects_bad_bodies(client: TestClient[Any, Any], body: bytes, status: int) -> None:
    resp = await client.post("/v1/sessions", data=body, headers={**AUTH, "Content-Type": "application/json"})
    await error_of(resp, status)


async def test_unknown_session_and_route_are_404(client: TestClient[Any, Any]) -> None:
    await error_of(await client.get("/v1/sessions/nope", headers=AUTH), 404)
    await error_of(await client.get("/v1/sessions/nope/qr", headers=AUTH), 404)
    await error_of(await client.post("/v1/sessions/nope/messages", json={"to": "1", "text": "x"}, headers=AUTH), 404)
    await error_of(await client.get("/v1/nothing", headers=AUTH), 404)
    await error_of(await client.put("/v1/sessions", headers=AUTH), 405)


async def test_qr_raw_svg_png(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    await error_of(await client.get("/v1/sessions/s1/qr", headers=AUTH), 404)  # no QR yet
    await bridge(client).emit("connection.update", "s1", {"qr": "2@ref,noise,identity,adv"})
    assert await (await client.get("/v1/sessions/s1/qr", headers=AUTH)).json() == {"qr": "2@ref,noise,identity,adv"}
    svg = await client.get("/v1/sessions/s1/qr?format=svg", headers=AUTH)
    assert svg.content_type == "image/svg+xml" and b"<svg" in await svg.read()
    png = await client.get("/v1/sessions/s1/qr?format=png", headers=AUTH)
    assert png.content_type == "image/png" and (await png.read()).startswith(b"\x89PNG")
    await error_of(await client.get("/v1/sessions/s1/qr?format=gif", headers=AUTH), 422)
    session = await (await client.get("/v1/sessions/s1", headers=AUTH)).json()
    assert session["state"] == "qr" and session["qr"] == "2@ref,noise,identity,adv"


async def test_send(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    url = "/v1/sessions/s1/messages"
    assert await error_of(await client.post(url, json={"to": "88887770001@lid", "text": "hi"}, headers=AUTH), 409)
    await bridge(client).emit("connection.update", "s1", OPEN)
    resp = await client.post(url, json={"to": "88887770001@lid", "text": "hi"}, headers=AUTH)
    assert resp.status == 202
    assert (await resp.json())["message_id"]
    resp = await client.post(url, json={"to": "+1 555 777-0001", "text": "hi"}, headers=AUTH)
    assert resp.status == 202
    assert [s["to"] for s in bridge(client).sent] == ["88887770001@lid", "15557770001@s.whatsapp.net"]
    for bad in ({"to": "88887770001@lid"}, {"to": "x", "text": "hi"}, {"to": "1@lid", "text": ""}, {"text": "a"}):
        await error_of(await client.post(url, json=bad, headers=AUTH), 422)


async def test_pairing_code(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    early = await client.post("/v1/sessions/s1/pairing-code", json={"phone": "+15550001111"}, headers=AUTH)
    assert early.status == 409, "only once the QR window is open"
    assert "state qr" in (await early.json())["error"]["message"]
    await bridge(client).emit("connection.update", "s1", {"qr": "2@ref,noise,identity,adv"})
    resp = await client.post("/v1/sessions/s1/pairing-code", json={"phone": "+15550001111"}, headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"code": "ABCD1234"})
    await error_of(await client.post("/v1/sessions/s1/pairing-code", json={"phone": "12"}, headers=AUTH), 422)


async def test_metrics(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    text = await (await client.get("/metrics")).text()
    assert 'wa_relay_sessions{state="starting"} 1' in text
    assert "wa_relay_events_published_total 0" in text
    assert "wa_relay_replies_sent_total 0" in text
    assert "wa_relay_spool_depth 0" in text


async def test_openapi_covers_every_route(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    for method, path, _ in ROUTES:
        assert method.lower() in doc["paths"][path], (method, path)
    registered = {
        (r.method, r.resource.canonical)  # type: ignore[union-attr]
        for r in client.app.router.routes()
        if r.method != "HEAD"
    }
    assert registered == {(m, p) for m, p, _ in ROUTES}


async def test_internal_errors_are_json_500(client: TestClient[Any, Any]) -> None:
    relay = client.app[RELAY_KEY]

    def boom() -> Any:
        raise RuntimeError("boom")

    relay.list_sessions = boom  # type: ignore[method-assign]
    assert await error_of(await client.get("/v1/sessions", headers=AUTH), 500) == "internal"


def test_app_is_unstarted_application() -> None:
    app = create_app(Config(api_key=KEY, store_backend="memory"), bridge=FakeBridge)
    assert isinstance(app, web.Application)
    # four stores (auth, leases, LID map, reply log), publisher, lease keeper, relay (no outbound queue)
    assert len(app.cleanup_ctx) == 7
    assert SessionId("x") == "x"
