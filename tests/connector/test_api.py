from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connector.api import MANAGER_KEY, OPERATIONS
from connector.api.models import IDEMPOTENCY_KEY_PATTERN
from connector.app import Stores, create_app
from connector.config import Config
from connector.contracts import api_reply_id, whatsapp_message_id
from connector.errors import StoreError
from connector.publish import MemoryPublisher
from connector.web import ROUTES as PAGE_ROUTES
from tests.connector.fakes import FakeBridge

KEY = "k3J9x2Lq8Vn5Rt7Wz4Yb"
AUTH = {"Authorization": f"Bearer {KEY}"}
OPEN = {"connection": "open", "me": {"id": "15550001111:5@s.whatsapp.net", "lid": "99990001111:5@lid"}}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    cfg = Config(api_key=KEY, store_backend="memory", session_start_interval_s=0, session_start_jitter_s=0)
    app = create_app(
        cfg,
        stores=Stores.memory(),
        publisher=MemoryPublisher(),
        bridge=FakeBridge,
    )
    async with TestClient(TestServer(app)) as c:
        yield c


def bridge(client: TestClient[Any, Any]) -> FakeBridge:
    b = client.app[MANAGER_KEY].bridge
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


async def test_a_method_the_route_does_not_take_is_405_with_allow(client: TestClient[Any, Any]) -> None:
    resp = await client.put("/v1/sessions", headers=AUTH)
    assert await error_of(resp, 405) == "method_not_allowed"
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    resp = await client.post("/v1/sessions/s1", headers=AUTH)
    await error_of(resp, 405)
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}


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


async def open_session(client: TestClient[Any, Any], sid: str = "s1") -> None:
    await client.post("/v1/sessions", json={"session_id": sid}, headers=AUTH)
    await bridge(client).wait_calls("start", 1)
    await bridge(client).emit("connection.update", sid, OPEN)


async def test_send_with_an_idempotency_key_sends_once(client: TestClient[Any, Any]) -> None:
    await open_session(client)
    url, body = "/v1/sessions/s1/messages", {"to": "88887770001@lid", "text": "your order shipped"}
    keyed = {**AUTH, "Idempotency-Key": "order-1234"}
    first = await client.post(url, json=body, headers=keyed)
    assert first.status == 202
    message_id = (await first.json())["message_id"]
    assert message_id == whatsapp_message_id(api_reply_id("s1", "order-1234"))
    again = await client.post(url, json={**body, "to": " 88887770001@lid "}, headers=keyed)  # the same recipient
    assert (again.status, await again.json()) == (202, {"message_id": message_id})
    assert [s["message_id"] for s in bridge(client).sent] == [message_id]
    other = await client.post(url, json={**body, "text": "your order was cancelled"}, headers=keyed)
    assert await error_of(other, 422) == "idempotency_key_reused"
    unkeyed = await client.post(url, json=body, headers=AUTH)
    assert unkeyed.status == 202 and (await unkeyed.json())["message_id"] != message_id
    assert len(bridge(client).sent) == 2


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "tab\there", "caf\u00e9"])
async def test_a_malformed_idempotency_key_is_422(client: TestClient[Any, Any], key: str) -> None:
    await open_session(client)
    headers = {**AUTH, "Idempotency-Key": key.encode().decode("unicode_escape")}
    resp = await client.post("/v1/sessions/s1/messages", json={"to": "1@lid", "text": "hi"}, headers=headers)
    assert await error_of(resp, 422) == "invalid_idempotency_key"
    assert bridge(client).sent == []


async def test_an_idempotency_key_outlives_a_restart() -> None:
    """The record is in the reply log (DynamoDB in production), not in the process: a new connector on the same
    stores answers a retried request without sending it again."""
    stores = Stores.memory()
    sent: list[Any] = []
    for _ in range(2):
        cfg = Config(api_key=KEY, store_backend="memory")
        app = create_app(cfg, stores=stores, publisher=MemoryPublisher(), bridge=FakeBridge)
        async with TestClient(TestServer(app)) as c:
            if not sent:
                await open_session(c)
            else:
                await c.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
            headers = {**AUTH, "Idempotency-Key": "k-1"}
            resp = await c.post("/v1/sessions/s1/messages", json={"to": "1@lid", "text": "once"}, headers=headers)
            assert resp.status == 202, await resp.text()
            sent.append(((await resp.json())["message_id"], list(bridge(c).sent)))
    (first, first_sends), (second, second_sends) = sent
    assert first == second and len(first_sends) == 1 and second_sends == []


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


async def test_openapi_documents_every_route_with_an_operation_id(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p): op for p, ops in doc["paths"].items() for m, op in ops.items()}
    registered = {
        (r.method, r.resource.canonical)  # type: ignore[union-attr]
        for r in client.app.router.routes()
        if r.method != "HEAD" and r.resource.canonical not in PAGE_ROUTES  # type: ignore[union-attr]
    }
    assert registered == set(documented) == {(op.method, op.path) for op in OPERATIONS}
    ids = [op["operationId"] for op in documented.values()]
    assert len(set(ids)) == len(ids)
    send = documented[("POST", "/v1/sessions/{id}/messages")]
    assert {"202", "400", "401", "404", "409", "422", "503"} <= set(send["responses"])
    schema = doc["components"]["schemas"]["SendMessage"]["properties"]["to"]
    assert "pattern" in schema, "the document declares what the API checks"
    [key] = [p for p in send["parameters"] if p["in"] == "header"]
    assert key["name"] == "Idempotency-Key" and key["required"] is False
    assert key["schema"]["pattern"] == IDEMPOTENCY_KEY_PATTERN and key["schema"]["maxLength"] == 128
    assert doc["paths"]["/v1/sessions"]["post"]["responses"]["201"]["links"]["getSession"]["parameters"] == {
        "id": "$response.body#/id"
    }


async def test_unauthorized_is_json_with_a_challenge(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v1/sessions")
    await error_of(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_logout_says_whether_the_device_was_unlinked(client: TestClient[Any, Any]) -> None:
    for sid in ("s1", "s2"):
        await client.post("/v1/sessions", json={"session_id": sid}, headers=AUTH)
    await bridge(client).wait_calls("start", 2)
    await bridge(client).emit("connection.update", "s1", OPEN)
    resp = await client.post("/v1/sessions/s1/logout", headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"logged_out": True, "unlinked": True})
    resp = await client.post("/v1/sessions/s2/logout", headers=AUTH)  # still starting: nothing to unlink
    assert (resp.status, await resp.json()) == (200, {"logged_out": True, "unlinked": False})
    await error_of(await client.post("/v1/sessions/s2/logout", headers=AUTH), 404)


async def test_a_store_outage_is_503_not_500(client: TestClient[Any, Any]) -> None:
    manager = client.app[MANAGER_KEY]

    async def down(*args: object) -> None:
        raise StoreError("failed to read creds of x")

    manager.auth.get_creds = down  # type: ignore[method-assign]
    assert await error_of(await client.post("/v1/sessions", json={"session_id": "x"}, headers=AUTH), 503) == (
        "store_unavailable"
    )


async def test_internal_errors_are_json_500(client: TestClient[Any, Any]) -> None:
    manager = client.app[MANAGER_KEY]

    def boom() -> Any:
        raise RuntimeError("boom")

    manager.list_sessions = boom  # type: ignore[method-assign]
    assert await error_of(await client.get("/v1/sessions", headers=AUTH), 500) == "internal"


def test_app_is_unstarted_application() -> None:
    app = create_app(Config(api_key=KEY, store_backend="memory"), bridge=FakeBridge)
    assert isinstance(app, web.Application)
    # four stores (auth, leases, LID map, reply log), publisher, session manager (no outbound queue)
    assert len(app.cleanup_ctx) == 7


# ---- bot settings ----


DEFAULT_SETTINGS = {
    "chats": "all",
    "chat_list": [],
    "groups": None,
    "max_message_age_s": None,
    "chatbot_url": None,
    "rate_chat_per_minute": None,
    "rate_chat_per_hour": None,
    "rate_session_per_minute": None,
    "rate_session_per_hour": None,
}


async def test_settings_default_then_merge_patch(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    url = "/v1/sessions/s1/settings"
    assert await (await client.get(url, headers=AUTH)).json() == DEFAULT_SETTINGS
    resp = await client.patch(
        url, json={"chats": "allowlist", "chat_list": ["+1 555 777 0001", "9:3@lid"], "groups": "on"}, headers=AUTH
    )
    assert resp.status == 200, await resp.text()
    expected = {
        **DEFAULT_SETTINGS,
        "chats": "allowlist",
        "chat_list": ["15557770001@s.whatsapp.net", "9@lid"],
        "groups": "on",
    }
    assert await resp.json() == expected
    # A field left out keeps its value; null resets one.
    patch = {"groups": None, "max_message_age_s": 600, "rate_chat_per_minute": 3}
    resp = await client.patch(url, json=patch, headers=AUTH)
    assert await resp.json() == {**expected, **patch}
    assert await (await client.get(url, headers=AUTH)).json() == {**expected, **patch}
    resp = await client.patch(url, json={"rate_chat_per_minute": None}, headers=AUTH)
    assert (await resp.json())["rate_chat_per_minute"] is None
    resp = await client.patch(url, json={"chat_list": None, "chats": None, "max_message_age_s": None}, headers=AUTH)
    assert await resp.json() == {**DEFAULT_SETTINGS, "groups": None}


async def test_settings_of_an_unknown_session_are_404(client: TestClient[Any, Any]) -> None:
    await error_of(await client.get("/v1/sessions/nope/settings", headers=AUTH), 404)
    await error_of(await client.patch("/v1/sessions/nope/settings", json={}, headers=AUTH), 404)
    await error_of(await client.get("/v1/sessions/nope/settings"), 401)


@pytest.mark.parametrize(
    "body",
    [
        {"chats": "everyone"},
        {"chat_list": ["not a chat"]},
        {"chat_list": "15557770001"},
        {"chat_list": ["1@newsletter"]},
        {"groups": "sometimes"},
        {"max_message_age_s": -1},
        {"max_message_age_s": "60"},
        {"max_message_age_s": True},
        {"rate_chat_per_minute": 0},
        {"rate_session_per_hour": 100_001},
        {"chatbot_url": "http://bot.example/chat"},
        {"chatbot_url": "https://bot.example/chat with space"},
        [1],
    ],
)
async def test_invalid_settings_are_422_and_change_nothing(client: TestClient[Any, Any], body: Any) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    url = "/v1/sessions/s1/settings"
    assert await error_of(await client.patch(url, json=body, headers=AUTH), 422) == "invalid_body"
    assert await (await client.get(url, headers=AUTH)).json() == DEFAULT_SETTINGS


@pytest.mark.parametrize("url", ["https://bot.example:8443/chat?x=1", "http://127.0.0.1:8081/chat", "http://localhost"])
async def test_chatbot_url_https_or_this_machine(client: TestClient[Any, Any], url: str) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    resp = await client.patch("/v1/sessions/s1/settings", json={"chatbot_url": url}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["chatbot_url"] == url


async def test_settings_outlive_the_session(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    await client.patch("/v1/sessions/s1/settings", json={"groups": "off"}, headers=AUTH)
    await bridge(client).wait_calls("start", 1)
    assert (await client.delete("/v1/sessions/s1", headers=AUTH)).status == 200
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    assert (await (await client.get("/v1/sessions/s1/settings", headers=AUTH)).json())["groups"] == "off"
