"""The demo chatbot: the signature check and the three answers of DESIGN section 6."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from infra.local.chatbot import create_app, verify_signature

SECRET = "s3cr3t-for-tests"
ROOT = Path(__file__).resolve().parents[2]
"""Where ``python -m infra.local.chatbot`` resolves: ``infra`` is not installed, only the repository has it."""


def sign(body: bytes, secret: str = SECRET, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def request(message: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "event_id": "e1",
            "session_id": "me",
            "chat": {"jid": "15551234567@s.whatsapp.net", "is_group": False},
            "sender": {"jid": "15551234567@s.whatsapp.net", "push_name": "Ann"},
            "message": {"id": "3EB0AA", "timestamp": 1700000000, **message},
            "me": {"pn": "15550000000@s.whatsapp.net"},
        }
    ).encode()


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(SECRET))) as c:
        yield c


async def test_text_gets_a_reply(client: TestClient[Any, Any]) -> None:
    body = request({"type": "text", "text": "hi"})
    resp = await client.post("/chat", data=body, headers={"X-Relay-Signature": sign(body), "X-Relay-Event-Id": "e1"})
    assert resp.status == 200
    assert await resp.json() == {"replies": [{"text": "You said: hi"}]}


async def test_non_text_gets_no_reply(client: TestClient[Any, Any]) -> None:
    body = request({"type": "imageMessage", "text": None})
    resp = await client.post("/chat", data=body, headers={"X-Relay-Signature": sign(body)})
    assert resp.status == 204


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "garbage",
        "t=abc,v1=00",
        "SIGNED_WITH_OTHER_SECRET",
        "STALE",
        "TAMPERED",
    ],
)
async def test_bad_signature_is_401(client: TestClient[Any, Any], signature: str | None) -> None:
    body = request({"type": "text", "text": "hi"})
    if signature == "SIGNED_WITH_OTHER_SECRET":
        signature = sign(body, secret="other")
    elif signature == "STALE":
        signature = sign(body, t=int(time.time()) - 301)
    elif signature == "TAMPERED":
        signature = sign(body.replace(b"hi", b"ho"))
    headers = {} if signature is None else {"X-Relay-Signature": signature}
    resp = await client.post("/chat", data=body, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "bad_signature"


def test_signature_tolerance_is_five_minutes() -> None:
    body = b"{}"
    now = 1_700_000_000
    assert verify_signature(SECRET, sign(body, t=now - 300), body, now=now)
    assert verify_signature(SECRET, sign(body, t=now + 300), body, now=now)
    assert not verify_signature(SECRET, sign(body, t=now - 301), body, now=now)


def test_refuses_to_start_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHATBOT_SECRET"}
    proc = subprocess.run(
        [sys.executable, "-m", "infra.local.chatbot", "--port", "1"], cwd=ROOT, env=env, capture_output=True, timeout=30
    )
    assert proc.returncode == 11
    assert b"CHATBOT_SECRET" in proc.stderr


async def test_in_later_mode_it_answers_202_then_posts_a_signed_late_answer() -> None:
    from aiohttp import web

    posts: list[tuple[bytes, str]] = []
    statuses = [404, 200]  # the first post overtook the 202: the bot posts the same body again

    async def late(request: web.Request) -> web.Response:
        posts.append((await request.read(), request.headers.get("X-Relay-Signature", "")))
        return web.json_response({}, status=statuses.pop(0))

    receiver = web.Application()
    receiver.router.add_post("/", late)
    async with TestServer(receiver) as late_server:
        app = create_app(SECRET, later_s=0.05, late_url=str(late_server.make_url("/")))
        async with TestClient(TestServer(app)) as client:
            body = request({"type": "text", "text": "hi"})
            resp = await client.post("/chat", data=body, headers={"X-Relay-Signature": sign(body)})
            assert resp.status == 202
            for _ in range(50):
                if len(posts) == 2:
                    break
                await asyncio.sleep(0.1)
    assert len(posts) == 2 and posts[0][0] == posts[1][0]
    assert json.loads(posts[0][0]) == {"event_id": "e1", "replies": [{"text": "You said: hi", "quote": True}]}
    assert all(verify_signature(SECRET, signature, raw) for raw, signature in posts)
