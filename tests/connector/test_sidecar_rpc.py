"""JsonLinesRPC against a scripted peer on a socketpair: no Node needed."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connector.errors import LeaseLost, StoreError
from connector.sidecar.errors import InvalidParams, NoSocket, SidecarNotConnected, SidecarTimeout
from connector.sidecar.rpc import JsonLinesRPC


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, obj: Any) -> None:
        self.writer.write((obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n")
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.reader.readline(), 5))  # type: ignore[no-any-return]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[JsonLinesRPC, Peer, asyncio.Task[None]]]:
    a, b = socket.socketpair()
    rpc = JsonLinesRPC(*await asyncio.open_unix_connection(sock=a), log=logging.getLogger("test"), call_timeout=2)
    peer = Peer(*await asyncio.open_unix_connection(sock=b))
    task = asyncio.create_task(rpc.run())
    yield rpc, peer, task
    peer.writer.close()
    await task


async def test_call_gets_its_result_and_errors_map_to_classes(pair: Any) -> None:
    rpc, peer, _ = pair
    call = asyncio.create_task(rpc.call("ping"))
    req = await peer.recv()
    assert req["method"] == "ping" and req["id"].startswith("c-")
    await peer.send({"id": req["id"], "result": {"pong": True}})
    assert await call == {"pong": True}

    call = asyncio.create_task(rpc.call("session.stop", {"session": "x"}))
    req = await peer.recv()
    await peer.send({"id": req["id"], "error": {"code": "session_not_found", "message": "no x"}})
    with pytest.raises(NoSocket, match="no x"):
        await call


async def test_call_times_out(pair: Any) -> None:
    rpc, peer, _ = pair
    with pytest.raises(SidecarTimeout):
        await rpc.call("ping", timeout=0.1)
    await peer.recv()


async def test_pending_calls_fail_when_the_peer_goes_away(pair: Any) -> None:
    rpc, peer, task = pair
    call = asyncio.create_task(rpc.call("ping", timeout=5))
    await peer.recv()
    peer.writer.close()
    with pytest.raises(SidecarNotConnected):
        await call
    await task
    with pytest.raises(SidecarNotConnected):
        await rpc.call("ping")


async def test_requests_from_the_peer_are_answered_and_failures_do_not_stop_the_loop(pair: Any) -> None:
    rpc, peer, _ = pair

    async def boom(params: dict[str, Any]) -> Any:
        raise RuntimeError("store is down")

    async def strict(params: dict[str, Any]) -> Any:
        raise InvalidParams("ids: missing", data={"field": "ids"})

    async def echo(params: dict[str, Any]) -> Any:
        return {"values": params}

    rpc.add_request_handler("keys.set", boom)
    rpc.add_request_handler("keys.get", strict)
    rpc.add_request_handler("message.get", echo)
    await peer.send({"id": "b-1", "method": "keys.set", "params": {}})
    await peer.send({"id": "b-2", "method": "keys.get", "params": {}})
    await peer.send({"id": "b-3", "method": "nope", "params": {}})
    await peer.send(b"{not json")
    await peer.send({"id": "b-4", "method": "message.get", "params": {"a": 1}})
    answers = {}
    for _ in range(5):
        msg = await peer.recv()
        answers[msg["id"]] = msg
    assert answers["b-1"]["error"] == {"code": "internal", "message": "RuntimeError: store is down"}
    assert answers["b-2"]["error"]["code"] == "invalid_params" and answers["b-2"]["error"]["data"] == {"field": "ids"}
    assert answers["b-3"]["error"]["code"] == "method_not_found"
    assert answers[None]["error"]["code"] == "parse_error"
    assert answers["b-4"]["result"] == {"values": {"a": 1}}


async def test_a_store_outage_is_answered_as_retryable_and_a_lost_lease_is_not(pair: Any) -> None:
    rpc, peer, _ = pair
    errors = {"keys.set": StoreError("failed to save session x of s"), "keys.get": LeaseLost("lease of s taken")}

    def refuse(method: str) -> Any:
        async def handler(params: dict[str, Any]) -> Any:
            raise errors[method]

        return handler

    for method in errors:
        rpc.add_request_handler(method, refuse(method))
    await peer.send({"id": "b-1", "method": "keys.set", "params": {}})
    await peer.send({"id": "b-2", "method": "keys.get", "params": {}})
    answers = {}
    for _ in range(2):
        msg = await peer.recv()
        answers[msg["id"]] = msg["error"]
    assert answers["b-1"] == {"code": "internal", "message": "StoreError: failed to save session x of s",
                              "data": {"retryable": True}}  # fmt: skip
    assert answers["b-2"]["code"] == "internal" and "data" not in answers["b-2"]


async def test_events_are_delivered_in_order_even_when_a_handler_calls_back(pair: Any) -> None:
    rpc, peer, _ = pair
    seen: list[int] = []

    async def on_event(event: str, session: str | None, data: dict[str, Any]) -> None:
        if data["n"] == 0:
            # A handler that calls the bridge must not block the reader that delivers the answer.
            assert await rpc.call("ping") == {"ok": 1}
        seen.append(data["n"])

    rpc.set_event_handler(on_event)
    for n in range(3):
        await peer.send({"event": "e", "session": "s", "data": {"n": n}})
    req = await peer.recv()
    await peer.send({"id": req["id"], "result": {"ok": 1}})
    for _ in range(50):
        if len(seen) == 3:
            break
        await asyncio.sleep(0.02)
    assert seen == [0, 1, 2]


async def test_sessions_are_handled_in_parallel_each_in_its_own_order(pair: Any) -> None:
    rpc, peer, _ = pair
    seen: list[tuple[str | None, int]] = []
    b_done = asyncio.Event()

    async def on_event(event: str, session: str | None, data: dict[str, Any]) -> None:
        if session == "a" and data["n"] == 0:
            # Session a's first event waits for session b: with one lane for every session this never finishes.
            await asyncio.wait_for(b_done.wait(), 5)
        seen.append((session, data["n"]))
        if session == "b" and data["n"] == 2:
            b_done.set()

    rpc.set_event_handler(on_event)
    for n in range(3):
        await peer.send({"event": "e", "session": "a", "data": {"n": n}})
    for n in range(3):
        await peer.send({"event": "e", "session": "b", "data": {"n": n}})
    await peer.send({"event": "e", "data": {"n": 0}})  # no session: its own lane
    for _ in range(100):
        if len(seen) == 7:
            break
        await asyncio.sleep(0.02)
    assert [n for s, n in seen if s == "a"] == [0, 1, 2]
    assert [n for s, n in seen if s == "b"] == [0, 1, 2]
    assert (None, 0) in seen
    assert seen.index(("b", 2)) < seen.index(("a", 0))
    assert not rpc._lanes, "lanes of drained sessions are dropped"
