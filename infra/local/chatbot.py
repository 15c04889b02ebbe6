"""A demo chatbot: the smallest endpoint that honours the relay's chatbot contract (DESIGN section 6).

Copy it to start your own bot. It

1. checks ``X-Relay-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (5 minutes of tolerance) and
   answers ``401`` when the signature is missing, wrong or stale,
2. answers a text message with ``200 {"replies": [{"text": "You said: <text>"}]}``,
3. answers anything else (images, stickers, …) with ``204``: no reply.

With ``CHATBOT_LATER_S`` set (seconds) it plays a bot that answers later instead: it answers a text message with
``202`` at once and, that many seconds later, POSTs ``{"event_id", "replies": [{"text", "quote": true}]}`` signed the
same way to ``LATE_ANSWER_URL`` (``make up`` sets it; on AWS it is the ``late_answer_url`` output), posting the same
body again after a ``404`` (its post overtook the ``202``), a ``503`` or a connection failure.

Run it with ``CHATBOT_SECRET=... python -m infra.local.chatbot --port 8081`` and point ``CHATBOT_URL`` at
``http://127.0.0.1:8081/chat``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SIGNATURE_TOLERANCE_S = 300
SECRET = web.AppKey("secret", str)
LATER_S = web.AppKey("later_s", float)
LATE_URL = web.AppKey("late_url", str)
HTTP = web.AppKey("http", aiohttp.ClientSession)
PENDING: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("pending")
LATE_ATTEMPTS = 5
log = logging.getLogger("wa_relay.local.chatbot")


def verify_signature(secret: str, header: str | None, body: bytes, now: float | None = None) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is within the tolerance."""
    if not header:
        return False
    parts = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > SIGNATURE_TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def chat(request: web.Request) -> web.Response:
    body = await request.read()
    if not verify_signature(request.app[SECRET], request.headers.get("X-Relay-Signature"), body):
        return _error(401, "bad_signature", "missing, invalid or expired X-Relay-Signature")
    try:
        request_body = json.loads(body)
        message, event_id = request_body["message"], str(request_body.get("event_id") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return _error(400, "bad_request", "expected a JSON object with a message")
    if message.get("type") != "text" or not message.get("text"):
        return web.Response(status=204)
    app = request.app
    if app[LATER_S] > 0 and app[LATE_URL] and event_id:
        log.info("event %s: answering later", event_id)
        task = asyncio.create_task(answer_later(app, event_id, f"You said: {message['text']}"))
        app[PENDING].add(task)  # a strong reference until it is done
        task.add_done_callback(app[PENDING].discard)
        return web.Response(status=202)
    log.info("event %s: replying", request.headers.get("X-Relay-Event-Id"))
    return web.json_response({"replies": [{"text": f"You said: {message['text']}"}]})


async def answer_later(app: web.Application, event_id: str, text: str) -> None:
    """After ``LATER_S``: post the answer to the late-answer URL, again (the same body) while that is worth it."""
    await asyncio.sleep(app[LATER_S])
    body = json.dumps({"event_id": event_id, "replies": [{"text": text, "quote": True}]}).encode()
    for attempt in range(1, LATE_ATTEMPTS + 1):
        headers = {"Content-Type": "application/json", "X-Relay-Signature": sign(app[SECRET], body, int(time.time()))}
        try:
            async with app[HTTP].post(app[LATE_URL], data=body, headers=headers) as response:
                status, answer = response.status, await response.text()
        except aiohttp.ClientError as e:
            status, answer = 0, str(e)
        if status == 200:
            log.info("event %s: late answer taken", event_id)
            return
        if status not in (0, 404, 503) or attempt == LATE_ATTEMPTS:
            log.warning("event %s: late answer refused: %s %s", event_id, status, answer)
            return
        await asyncio.sleep(attempt)


async def _client(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    app[PENDING] = set()
    yield
    pending: set[asyncio.Task[None]] = app[PENDING]
    for task in list(pending):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[HTTP].close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def create_app(secret: str, *, later_s: float = 0.0, late_url: str = "") -> web.Application:
    app = web.Application()
    app[SECRET] = secret
    app[LATER_S] = later_s
    app[LATE_URL] = late_url
    app.cleanup_ctx.append(_client)
    app.router.add_post("/chat", chat)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    secret = os.environ.get("CHATBOT_SECRET", "")
    if not secret:
        print("CHATBOT_SECRET is not set: the chatbot cannot check signatures", file=sys.stderr)
        return 11
    try:
        later_s = float(os.environ.get("CHATBOT_LATER_S", "").strip() or "0")
    except ValueError:
        print("CHATBOT_LATER_S must be a number of seconds", file=sys.stderr)
        return 11
    late_url = os.environ.get("LATE_ANSWER_URL", "").strip()
    if later_s > 0 and not late_url:
        print("CHATBOT_LATER_S needs LATE_ANSWER_URL: where to post the late answers", file=sys.stderr)
        return 11
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(secret, later_s=later_s, late_url=late_url)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
