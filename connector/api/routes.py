"""The connector's HTTP API (DESIGN section 8): sessions, QR, pairing codes, sending, events, health and metrics.

Every operation is one ``Operation`` in ``OPERATIONS``: its route, handler, request model and every status it can
answer. The router and the OpenAPI document (``connector.api.openapi.document``) are both built from that table, so a
route cannot exist undocumented and a documented status cannot be forgotten.

Decisions: ``DELETE /v1/sessions/{id}`` stops the socket and wipes the session without unlinking the device on the
phone; ``POST …/logout`` unlinks it too when the socket is open (the answer says whether it did). An id that cannot
name a session (fails the id pattern) is answered 404 like an unknown one. ``POST …/messages`` takes an optional
``Idempotency-Key`` (``connector.replies.Replies.send_request``): a retry with the same key and request answers 202
with the first message id and sends nothing; the same key with another request is 422.

Settings (``…/settings``) belong to the session's name, not to one link: they are kept when the session is deleted
or logged out, and apply again when a session of that name is created (a re-linked phone keeps behaving the same).
``PATCH`` merges (RFC 7396) and validates the result as a whole, so what is stored is always a valid ``BotSettings``.

``GET /v1/events`` is a server-sent event stream of ``RelayEvent``s (``connector.events``): ``id:`` is the
connector's sequence number (``Last-Event-ID`` replays what it still holds; ``event: reset`` says events were missed,
reload the sessions), ``event:`` the kind, ``data:`` the event's JSON. A comment line every ``SSE_HEARTBEAT_S`` keeps
proxies from closing an idle stream. The stream ends after ``max_s`` seconds (default an hour, then the client
reconnects with ``Last-Event-ID``), so no connection lives forever and a client with ``max_s=0`` gets the replay only.
The key goes in the ``Authorization`` header like everywhere else (the dashboard reads the stream with ``fetch``, not
``EventSource``, which cannot send headers), never in the URL.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from typing import TypeVar

import segno
from aiohttp import web
from pydantic import BaseModel, ValidationError

from connector.api.errors import ApiError
from connector.api.metrics import render_metrics
from connector.api.models import (
    IDEMPOTENCY_KEY_PATTERN,
    CreateSession,
    Deleted,
    Health,
    LoggedOut,
    MessageAccepted,
    PairingCode,
    PairingCodeRequest,
    Qr,
    Ready,
    SendMessage,
    SessionList,
    SessionView,
    SettingsPatch,
    digits,
    to_jid,
)
from connector.api.openapi import Operation, Reply, document
from connector.contracts import BotSettings, RelayEvent
from connector.events import EventHub, Item, Reset
from connector.manager import SessionManager
from connector.publish.events import EventQueue
from connector.replies import Replies
from connector.sidecar.types import SESSION_ID_PATTERN
from connector.store import SettingsStore
from connector.types import SessionId

MANAGER_KEY = web.AppKey("session_manager", SessionManager)
REPLIES_KEY = web.AppKey("replies", Replies)
SETTINGS_KEY = web.AppKey("settings", SettingsStore)
EVENTS_KEY = web.AppKey("events", EventHub)
EVENT_QUEUE_KEY = web.AppKey("event_queue", EventQueue)
"""The ``events.fifo`` publisher, when there is one (its counts are in ``/metrics``)."""
M = TypeVar("M", bound=BaseModel)

_SESSION_RE = re.compile(SESSION_ID_PATTERN)
_IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
QR_FORMATS = ("raw", "json", "svg", "png")
SSE_HEARTBEAT_S = 15.0
SSE_MAX_S_DEFAULT = 3600
SSE_MAX_S_MAX = 86400


# ---- helpers ----


def _manager(request: web.Request) -> SessionManager:
    return request.app[MANAGER_KEY]


def _session_id(request: web.Request) -> SessionId:
    sid = request.match_info["id"]
    if not _SESSION_RE.match(sid):
        raise ApiError(404, "session_not_found", f"no session {sid[:64]!r}")
    return SessionId(sid)


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key: 1 to 128 visible ASCII characters")
    return key


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        raw = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        code = "invalid_session_id" if where == "session_id" else "invalid_body"
        raise ApiError(422, code, f"{where}: {first['msg']}") from None


def _json(model: BaseModel | list[SessionView], status: int = 200) -> web.Response:
    if isinstance(model, list):
        return web.json_response([m.model_dump(mode="json") for m in model], status=status)
    return web.json_response(model.model_dump(mode="json"), status=status)


# ---- handlers ----


async def create_session(request: web.Request) -> web.Response:
    body = await _body(request, CreateSession)
    session = await _manager(request).create(SessionId(body.session_id))
    return _json(SessionView.of(session), 201)


async def list_sessions(request: web.Request) -> web.Response:
    return _json([SessionView.of(s) for s in _manager(request).list_sessions()])


async def get_session(request: web.Request) -> web.Response:
    return _json(SessionView.of(_manager(request).get(_session_id(request))))


async def delete_session(request: web.Request) -> web.Response:
    await _manager(request).delete(_session_id(request))
    return _json(Deleted())


async def logout_session(request: web.Request) -> web.Response:
    unlinked = await _manager(request).logout(_session_id(request))
    return _json(LoggedOut(unlinked=unlinked))


async def get_qr(request: web.Request) -> web.Response:
    session = _manager(request).get(_session_id(request))
    fmt = request.query.get("format", "raw") or "raw"
    if fmt not in QR_FORMATS:
        raise ApiError(422, "invalid_format", "format must be svg or png (or absent for the raw string)")
    if not session.qr:
        raise ApiError(404, "no_qr", f"session {session.id} has no QR now (state {session.state.value})")
    if fmt in ("raw", "json"):
        return _json(Qr(qr=session.qr))
    buf = io.BytesIO()
    segno.make(session.qr, error="m").save(buf, kind=fmt, scale=6, border=4)
    return web.Response(body=buf.getvalue(), content_type="image/svg+xml" if fmt == "svg" else "image/png")


async def request_pairing_code(request: web.Request) -> web.Response:
    sid = _session_id(request)
    manager = _manager(request)
    manager.get(sid)
    body = await _body(request, PairingCodeRequest)
    return _json(PairingCode(code=await manager.request_pairing_code(sid, digits(body.phone))))


async def send_message(request: web.Request) -> web.Response:
    sid = _session_id(request)
    manager = _manager(request)
    manager.get(sid)
    key = _idempotency_key(request)
    body = await _body(request, SendMessage)
    replies = request.app[REPLIES_KEY]
    message_id = await replies.send_request(sid, to_jid(body.to), body.text, quoted_id=body.quoted_id or None, key=key)
    return _json(MessageAccepted(message_id=message_id), 202)


async def get_settings(request: web.Request) -> web.Response:
    sid = _session_id(request)
    _manager(request).get(sid)
    return _json(await request.app[SETTINGS_KEY].get_settings(sid) or BotSettings())


async def patch_settings(request: web.Request) -> web.Response:
    sid = _session_id(request)
    _manager(request).get(sid)
    patch = (await _body(request, SettingsPatch)).model_dump(exclude_unset=True)
    store = request.app[SETTINGS_KEY]
    merged = (await store.get_settings(sid) or BotSettings()).model_dump()
    for name, value in patch.items():
        merged[name] = (
            value if value is not None else BotSettings.model_fields[name].get_default(call_default_factory=True)
        )
    try:
        settings = BotSettings.model_validate(merged)
    except ValidationError as e:  # each field was checked on its own already; kept for a later cross-field rule
        raise ApiError(422, "invalid_body", str(e.errors(include_url=False)[0]["msg"])) from None
    await store.put_settings(sid, settings)
    return _json(settings)


def _int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) > maximum:
        raise ApiError(422, "invalid_query", f"{name} must be an integer from 0 to {maximum}")
    return int(raw)


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def _sse(item: Item | Reset) -> bytes:
    if isinstance(item, Reset):
        return b"event: reset\ndata: {}\n\n"
    seq, event = item
    return f"id: {seq}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    max_s = _int_query(request, "max_s", SSE_MAX_S_DEFAULT, SSE_MAX_S_MAX)
    missed, sub = request.app[EVENTS_KEY].subscribe(_last_event_id(request))
    try:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n" + b"".join(_sse(item) for item in missed))
        deadline = time.monotonic() + max_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(sub.get(), timeout=min(SSE_HEARTBEAT_S, left))
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:  # fell too far behind, or shutting down: the client reconnects with Last-Event-ID
                break
            await response.write(_sse(item))
        await response.write_eof()
        return response
    except ConnectionResetError:  # the client went away: nothing to answer
        return response
    finally:
        sub.close()


async def healthz(request: web.Request) -> web.Response:
    return _json(Health())


async def readyz(request: web.Request) -> web.Response:
    manager = request.app.get(MANAGER_KEY)
    if manager is None or not manager.ready or not manager.bridge_up:
        raise ApiError(503, "not_ready", "starting up, or the bridge is down")
    if (reason := manager.ingest.publisher.degraded) is not None:
        # Messages are held unacknowledged (WhatsApp keeps them) until the spool or SQS takes envelopes again.
        raise ApiError(503, "degraded", reason)
    return _json(Ready(bridge_pid=manager.bridge_pid))


async def metrics(request: web.Request) -> web.Response:
    text = render_metrics(_manager(request), request.app.get(EVENT_QUEUE_KEY))
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(tuple(OPERATIONS)))


# ---- the table ----

_BY_ID = {"id": "$response.body#/id"}
_E401 = Reply("missing or wrong bearer key")
_E404 = Reply("no such session")
_E400 = Reply("the body is not valid JSON")
_E413 = Reply("the body is too large")
_E422 = Reply("the body does not match the request schema")
_E503 = Reply("the bridge or the store is unavailable; retry later")
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Send at most once per session and key: a retry with the same key and body answers 202 with the "
    "same message_id without sending again (for DEDUP_TTL_S, also across restarts); the same key with another body is "
    "422 idempotency_key_reused",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN, "minLength": 1, "maxLength": 128},
    "example": "order-1234-confirmation",
}
# What a client (or a stateful fuzzer) may call with the id of a session it just created. Logout is not among them:
# it removes the session like DELETE does, and a link to it would make every later call look like a lost resource.
_LINKS = {
    "getSession": {"operationId": "getSession", "parameters": _BY_ID},
    "getQr": {"operationId": "getQr", "parameters": _BY_ID},
    "requestPairingCode": {"operationId": "requestPairingCode", "parameters": _BY_ID},
    "sendMessage": {"operationId": "sendMessage", "parameters": _BY_ID},
    "getSettings": {"operationId": "getSettings", "parameters": _BY_ID},
    "patchSettings": {"operationId": "patchSettings", "parameters": _BY_ID},
    "deleteSession": {"operationId": "deleteSession", "parameters": _BY_ID},
}

OPERATIONS: list[Operation] = [
    Operation(
        "POST", "/v1/sessions", create_session, "createSession", "Create a session (it starts and shows a QR)",
        {201: Reply("created", SessionView), 400: _E400, 401: _E401, 409: Reply("the session exists"),
         413: _E413, 422: _E422, 503: _E503},
        body=CreateSession, links=_LINKS,
    ),
    Operation(
        "GET", "/v1/sessions", list_sessions, "listSessions", "List sessions",
        {200: Reply("the sessions", SessionList), 401: _E401},
    ),
    Operation(
        "GET", "/v1/sessions/{id}", get_session, "getSession", "One session",
        {200: Reply("the session", SessionView), 401: _E401, 404: _E404},
    ),
    Operation(
        "DELETE", "/v1/sessions/{id}", delete_session, "deleteSession",
        "Stop the session and wipe its creds and keys (the device stays linked on the phone)",
        {200: Reply("deleted", Deleted), 401: _E401, 404: _E404,
         409: Reply("another connector owns the session"), 503: _E503},
    ),
    Operation(
        "GET", "/v1/sessions/{id}/qr", get_qr, "getQr",
        "The current QR: the raw string, or an SVG/PNG image with ?format=",
        {200: Reply("the QR", Qr, ("application/json", "image/svg+xml", "image/png")), 401: _E401,
         404: Reply("no such session, or no QR now"), 422: Reply("unknown format")},
        parameters=[{"name": "format", "in": "query", "required": False, "schema": {"enum": list(QR_FORMATS)}}],
    ),
    Operation(
        "POST", "/v1/sessions/{id}/pairing-code", request_pairing_code, "requestPairingCode",
        "Request a pairing code (only while the QR window is open)",
        {200: Reply("the code", PairingCode), 400: _E400, 401: _E401, 404: _E404,
         409: Reply("the QR window is not open"), 413: _E413, 422: _E422, 503: _E503},
        body=PairingCodeRequest,
    ),
    Operation(
        "POST", "/v1/sessions/{id}/messages", send_message, "sendMessage",
        "Send a text message (to: a jid exactly as the chat is addressed, or a phone number)",
        {202: Reply("sent (or sent before with this Idempotency-Key)", MessageAccepted), 400: _E400, 401: _E401,
         404: _E404, 409: Reply("the session is not open, or another connector owns it"), 413: _E413,
         422: Reply("the body does not match the request schema, the Idempotency-Key is malformed, or it already "
                    "sent another request"),
         503: _E503},
        body=SendMessage, parameters=[_IDEMPOTENCY_KEY],
    ),
    Operation(
        "POST", "/v1/sessions/{id}/logout", logout_session, "logoutSession",
        "Unlink the device on WhatsApp (when the socket is open) and wipe the session",
        {200: Reply("logged out", LoggedOut), 401: _E401, 404: _E404,
         409: Reply("another connector owns the session"), 503: _E503},
    ),
    Operation(
        "GET", "/v1/sessions/{id}/settings", get_settings, "getSettings",
        "The bot's settings for the session (the defaults when none were set)",
        {200: Reply("the settings", BotSettings), 401: _E401, 404: _E404, 503: _E503},
    ),
    Operation(
        "PATCH", "/v1/sessions/{id}/settings", patch_settings, "patchSettings",
        "Change the bot's settings (JSON merge patch: null resets a field); the inbound function applies them within "
        "a minute",
        {200: Reply("the settings now", BotSettings), 400: _E400, 401: _E401, 404: _E404, 413: _E413, 422: _E422,
         503: _E503},
        body=SettingsPatch,
    ),
    Operation(
        "GET", "/v1/events", events, "events",
        "Server-sent events: session lifecycle and message status as they happen (Last-Event-ID resumes)",
        {200: Reply("One server-sent event per RelayEvent (event: its kind, data: its JSON), and event: reset",
                    RelayEvent, ("text/event-stream",)),
         401: _E401, 422: Reply("max_s is not an integer in range")},
        parameters=[{"name": "max_s", "in": "query", "required": False,
                     "description": "End the stream after this many seconds (0: only what Last-Event-ID replays)",
                     "schema": {"type": "integer", "minimum": 0, "maximum": SSE_MAX_S_MAX}},
                    {"name": "Last-Event-ID", "in": "header", "required": False,
                     "description": "The id: of the last event seen; the events after it are replayed first",
                     "schema": {"type": "string"}}],
    ),
    Operation("GET", "/healthz", healthz, "healthz", "Liveness", {200: Reply("alive", Health)}, public=True),
    Operation(
        "GET", "/readyz", readyz, "readyz",
        "Readiness: startup finished, the bridge is up, and inbound messages can be made durable",
        {200: Reply("ready", Ready), 503: Reply("not ready, or degraded (the spool cannot take envelopes)")},
        public=True,
    ),
    Operation(
        "GET", "/metrics", metrics, "metrics", "Prometheus metrics",
        {200: Reply("Prometheus text format", None, ("text/plain",))}, public=True,
    ),
    Operation(
        "GET", "/openapi.json", openapi, "openapi", "This document",
        {200: Reply("OpenAPI 3.1", None)}, public=True,
    ),
]  # fmt: skip


def add_routes(app: web.Application) -> None:
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
