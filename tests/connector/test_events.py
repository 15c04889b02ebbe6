"""Lifecycle and message-status events: the hub (``connector.events``) and ``GET /v1/events``.

The stream is read as a client would, over HTTP, with the bridge events a real socket emits (``FakeBridge.emit``):
state changes, QR rotation, counts, delivery and read receipts, and a delete."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from connector.api import EVENTS_KEY, MANAGER_KEY
from connector.app import Stores, create_app
from connector.config import Config
from connector.contracts import RelayEvent
from connector.events import EventHub, Reset
from connector.publish import MemoryPublisher
from connector.session import Session, SessionState
from connector.types import SessionId
from infra.local.emulators import free_port
from tests.connector.fakes import FakeBridge, wa_message

KEY = "k3J9x2Lq8Vn5Rt7Wz4Yb"
AUTH = {"Authorization": f"Bearer {KEY}"}
CONTACT = "15557770001@s.whatsapp.net"
OPEN = {"connection": "open", "me": {"id": "15550001111:5@s.whatsapp.net", "lid": "99990001111:5@lid"}}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    cfg = Config(api_key=KEY, store_backend="memory", session_start_interval_s=0, session_start_jitter_s=0)
    app = create_app(cfg, stores=Stores.memory(), publisher=MemoryPublisher(), bridge=FakeBridge)
    async with TestClient(TestServer(app)) as c:
        yield c


def bridge(client: TestClient[Any, Any]) -> FakeBridge:
    b = client.app[MANAGER_KEY].bridge
    assert isinstance(b, FakeBridge)
    return b


async def read_events(resp: Any, count: int, timeout: float = 5.0) -> list[tuple[str | None, str, dict[str, Any]]]:
    """``count`` events (id, event name, data) of an open stream, as an SSE client parses them."""
    out: list[tuple[str | None, str, dict[str, Any]]] = []
    seq: str | None = None
    name, data = "message", ""
    async with asyncio.timeout(timeout):
        while len(out) < count:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("id: "):
                seq = line[4:]
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif line == "" and data:
                out.append((seq, name, json.loads(data)))
                seq, name, data = None, "message", ""
    return out


# ---- the hub ----


def test_every_state_change_of_a_session_is_one_event_with_the_state_it_changed_to() -> None:
    hub = EventHub()
    seen: list[RelayEvent] = []
    hub.add_sink(seen.append)
    s = Session(id=SessionId("s1"), log=logging.getLogger("test"))
    hub.watch(s)
    s.state = SessionState.QR
    s.qr = "ref-1"
    s.qr = "ref-2"
    s.state = SessionState.QR  # no change: no event
    s.state = SessionState.OPEN
    s.state = SessionState.LOGGED_OUT
    kinds = [(e.kind, e.data.get("state"), e.data.get("valid_s")) for e in seen]
    assert kinds == [
        ("session.state", "qr", None),
        ("session.qr", None, 60),
        ("session.qr", None, 20),
        ("session.state", "open", None),
        ("session.logged_out", "logged_out", None),
    ]
    assert seen[3].data["previous"] == "qr"
    assert len({e.id for e in seen}) == len(seen)


def test_a_receipt_reported_twice_has_the_same_id_and_others_are_ignored() -> None:
    hub = EventHub()
    seen: list[RelayEvent] = []
    hub.add_sink(seen.append)
    mine = {"id": "3EB0AA", "fromMe": True, "remoteJid": "15557770001@s.whatsapp.net"}
    theirs = {**mine, "id": "ABC", "fromMe": False}
    hub.statuses("s1", [{"key": mine, "update": {"status": 3}}, {"key": theirs, "update": {"status": 3}}])
    hub.statuses("s1", [{"key": mine, "update": {"status": 3}}, {"key": mine, "update": {"status": 2}}])
    hub.statuses("s1", [{"key": mine, "update": {"status": 4}}, {"key": mine, "update": {"starred": True}}])
    assert [e.kind for e in seen] == ["message.delivered", "message.delivered", "message.read"]
    assert seen[0].id == seen[1].id != seen[2].id


def test_an_error_is_reported_with_the_first_state_change_after_it_only() -> None:
    hub = EventHub()
    seen: list[RelayEvent] = []
    hub.add_sink(seen.append)
    s = Session(id=SessionId("s1"), log=logging.getLogger("test"))
    hub.watch(s)
    s.record_error(515, "restart required")
    s.state = SessionState.CONNECTING
    s.state = SessionState.OPEN
    s.state = SessionState.STOPPED  # a logout: no new error
    s.record_error(440, "replaced")
    s.state = SessionState.CONFLICT
    assert [e.data.get("last_error", {}).get("code") for e in seen] == [515, None, None, 440]


def test_a_receipt_that_arrives_before_the_send_returns_waits_for_the_sent_event() -> None:
    hub = EventHub()
    seen: list[RelayEvent] = []
    hub.add_sink(seen.append)
    s = Session(id=SessionId("s1"), log=logging.getLogger("test"))

    def receipt(message_id: str, status: int = 3) -> list[dict[str, Any]]:
        return [{"key": {"id": message_id, "fromMe": True, "remoteJid": CONTACT}, "update": {"status": status}}]

    with hub.sending("s1", "3EB0AA"):
        hub.statuses("s1", receipt("3EB0AA"))
        hub.statuses("s1", receipt("3EB0BB"))  # another message of the session: not held
        assert [(e.kind, e.data["message_id"]) for e in seen] == [("message.delivered", "3EB0BB")]
        hub.sent(s, "3EB0AA", CONTACT)
    with hub.sending("s1", None):  # an id Baileys chooses: every receipt of the session waits
        hub.statuses("s1", receipt("3EB0CC", 4))
        hub.sent(s, "3EB0CC", CONTACT)
    hub.statuses("s1", receipt("3EB0AA", 4))
    assert [(e.kind, e.data["message_id"]) for e in seen] == [
        ("message.delivered", "3EB0BB"),
        ("message.sent", "3EB0AA"),
        ("message.delivered", "3EB0AA"),
        ("message.sent", "3EB0CC"),
        ("message.read", "3EB0CC"),
        ("message.read", "3EB0AA"),
    ]


async def test_a_subscriber_that_falls_behind_is_ended_and_resumes_from_the_history() -> None:
    hub = EventHub(history=5, backlog=2)
    _, slow = hub.subscribe()
    for i in range(4):
        hub.emit("message.received", "s1", {"count": i})
    assert (await slow.get()) is not None
    assert (await slow.get()) is None  # ended, not grown
    assert hub.streams_ended == 1
    missed, again = hub.subscribe(after=2)
    assert [item[1].data["count"] for item in missed if not isinstance(item, Reset)] == [2, 3]
    again.close()
    for i in range(4, 10):
        hub.emit("message.received", "s1", {"count": i})
    missed, late = hub.subscribe(after=2)  # the history holds 6..10 only
    assert isinstance(missed[0], Reset)
    assert [item[1].data["count"] for item in missed[1:] if not isinstance(item, Reset)] == [5, 6, 7, 8, 9]
    late.close()


# ---- the stream over HTTP ----


async def test_the_stream_needs_the_key(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v1/events?max_s=0")
    assert resp.status == 401
    resp = await client.get("/v1/events?max_s=x", headers=AUTH)
    assert resp.status == 422


async def test_a_session_from_creation_to_deletion_as_the_stream_shows_it(client: TestClient[Any, Any]) -> None:
    stream = await client.get("/v1/events", headers=AUTH)
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert (await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)).status == 201
    b = bridge(client)
    await b.wait_calls("start", 1)
    await b.emit("connection.update", "s1", {"qr": "2@qr-one"})
    await b.emit("connection.update", "s1", OPEN)
    await b.emit("messages.upsert", "s1", {"type": "notify", "messages": [wa_message(CONTACT, "M1")]})
    sent = await client.post("/v1/sessions/s1/messages", json={"to": "15557770001", "text": "yo"}, headers=AUTH)
    message_id = (await sent.json())["message_id"]
    receipt = {"key": {"id": message_id, "fromMe": True, "remoteJid": "15557770001@s.whatsapp.net"}}
    await b.emit("messages.update", "s1", {"updates": [{**receipt, "update": {"status": 3}}]})
    assert (await client.delete("/v1/sessions/s1", headers=AUTH)).status == 200
    events = await read_events(stream, 9)
    assert [(name, data["data"].get("state")) for _, name, data in events] == [
        ("session.created", "starting"),
        ("session.qr", None),
        ("session.state", "qr"),
        ("session.state", "open"),
        ("message.received", None),
        ("message.sent", None),
        ("message.delivered", None),
        ("session.state", "stopped"),  # the delete stops it first
        ("session.deleted", None),
    ]
    by_name = {name: data for _, name, data in events}
    assert by_name["session.qr"]["data"]["qr"] == "2@qr-one"
    assert by_name["message.received"]["data"] == {"count": 1, "total": 1, "chats": [CONTACT]}
    assert by_name["message.sent"]["data"]["message_id"] == message_id
    assert by_name["message.delivered"]["data"]["message_id"] == message_id
    opened = [data for _, name, data in events if name == "session.state" and data["data"]["state"] == "open"]
    assert opened and opened[0]["data"]["me"] == {"pn": "15550001111@s.whatsapp.net", "lid": "99990001111@lid"}
    seqs = [int(seq or 0) for seq, _, _ in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    stream.close()


async def test_metrics_count_events_and_open_streams(client: TestClient[Any, Any]) -> None:
    stream = await client.get("/v1/events", headers=AUTH)
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    await read_events(stream, 1)
    text = await (await client.get("/metrics")).text()
    values = dict(line.split() for line in text.splitlines() if line and not line.startswith("#") and "{" not in line)
    assert values["wa_relay_event_streams"] == "1"
    assert int(values["wa_relay_events_emitted_total"]) >= 1
    stream.close()


async def test_a_shutdown_ends_open_streams_instead_of_waiting_for_them() -> None:
    # An open dashboard must not hold the connector's graceful stop (aiohttp waits for open requests), or the
    # process is killed before it closes its sockets and releases its leases.
    cfg = Config(api_key=KEY, store_backend="memory", session_start_interval_s=0, session_start_jitter_s=0)
    app = create_app(cfg, stores=Stores.memory(), publisher=MemoryPublisher(), bridge=FakeBridge)
    runner = web.AppRunner(app, shutdown_timeout=300)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as http:
        stream = await http.get(f"http://127.0.0.1:{port}/v1/events", headers=AUTH)
        assert stream.status == 200
        await asyncio.wait_for(runner.cleanup(), 20)  # far below the 300 s it would wait for the stream
        rest = await asyncio.wait_for(stream.content.read(), 5)
        assert rest == b"" or rest.endswith(b"\n\n")  # the stream ended cleanly
        _, late = app[EVENTS_KEY].subscribe()
        assert await late.get() is None, "a stream opened while stopping ends at once"


async def test_last_event_id_replays_what_was_missed(client: TestClient[Any, Any]) -> None:
    hub = client.app[EVENTS_KEY]
    for i in range(3):
        hub.emit("message.received", "s1", {"count": i})
    resp = await client.get("/v1/events?max_s=0", headers={**AUTH, "Last-Event-ID": str(hub.seq - 2)})
    body = await resp.text()
    assert [json.loads(line[6:])["data"]["count"] for line in body.splitlines() if line.startswith("data: ")] == [1, 2]


async def test_the_session_view_counts_messages(client: TestClient[Any, Any]) -> None:
    await client.post("/v1/sessions", json={"session_id": "s1"}, headers=AUTH)
    b = bridge(client)
    await b.wait_calls("start", 1)
    await b.emit("connection.update", "s1", OPEN)
    await b.emit(
        "messages.upsert", "s1", {"type": "notify", "messages": [wa_message(CONTACT, "M1"), wa_message(CONTACT, "M2")]}
    )
    await client.post("/v1/sessions/s1/messages", json={"to": "15557770001", "text": "yo"}, headers=AUTH)
    view = await (await client.get("/v1/sessions/s1", headers=AUTH)).json()
    assert view["messages"] == {"received": 2, "sent": 1}
    assert view["last_message_at"] > 0
