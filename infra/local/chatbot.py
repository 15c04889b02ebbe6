"""A demo chatbot: the smallest endpoint that honours the relay's chatbot contract (DESIGN section 6).

Copy it to start your own bot. It

1. checks ``X-Relay-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (5 minutes of tolerance) and
   answers ``401`` when the signature is missing, wrong or stale,
2. answers a text message with ``200 {"replies": [{"text": "You said: <text>"}]}``,
3. answers anything else (images, stickers, …) with ``204``: no reply.

Run it with ``CHATBOT_SECRET=... python -m infra.local.chatbot --port 8081`` and point ``CHATBOT_URL`` at
``http://127.0.0.1:8081/chat``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import sys
import time

from aiohttp import web

SIGNATURE_TOLERANCE_S = 300
SECRET = web.AppKey("secret", str)
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


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def chat(request: web.Request) -> web.Response:
    body = await request.read()
    if not verify_signature(request.app[SECRET], request.headers.get("X-Relay-Signature"), body):
        return _error(401, "bad_signature", "missing, invalid or expired X-Relay-Signature")
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        return _error(400, "bad_request", "expected a JSON object with a message")
    if message.get("type") != "text" or not message.get("text"):
        return web.Response(status=204)
    log.info("event %s: replying", request.headers.get("X-Relay-Event-Id"))
    return web.json_response({"replies": [{"text": f"You said: {message['text']}"}]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def create_app(secret: str) -> web.Application:
    app = web.Application()
    app[SECRET] = secret
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(create_app(secret), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
