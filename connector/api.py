"""The connector's HTTP API (DESIGN section 8): sessions, QR, sending, health, metrics and its OpenAPI document.

Every route but ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` needs ``Authorization: Bearer
<CONNECTOR_API_KEY>`` (compared in constant time). Every error is ``{"error": {"code", "message"}}`` with a 4xx/5xx
status; one middleware turns every exception into that shape, and bad input is always 400/422, never 500.

Decisions: ``/metrics`` and ``/openapi.json`` are unauthenticated like the health endpoints (Prometheus scrapers and
API tools fetch them without the admin key; neither reveals session data beyond counts). ``DELETE /v1/sessions/{id}``
stops the socket and wipes the session without unlinking the device on the phone; ``POST …/logout`` unlinks it too.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import segno
from aiohttp import web

from connector.errors import (
    SessionExists,
    SessionNotFound,
    SessionNotOpen,
    SessionNotReady,
    SessionOwnedElsewhere,
    SidecarNotConnected,
)
from connector.relay import Relay, SessionState
from connector.sidecar.types import SESSION_ID_PATTERN
from connector.types import SessionId

log = logging.getLogger("wa_relay.api")

RELAY_KEY = web.AppKey("relay", Relay)
API_KEY_KEY = web.AppKey("api_key", str)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})

_SESSION_RE = re.compile(SESSION_ID_PATTERN)
_JID_RE = re.compile(r"^[0-9A-Za-z._-]+(:[0-9]+)?@(s\.whatsapp\.net|lid|g\.us|broadcast|newsletter)$")
_DIGITS_RE = re.compile(r"^\+?[0-9][0-9 ()-]{5,20}$")
_PHONE_RE = re.compile(r"^[0-9]{7,15}$")
TEXT_MAX = 65536

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


_RELAY_ERRORS: dict[type[Exception], tuple[int, str]] = {
    SessionNotFound: (404, "session_not_found"),
    SessionExists: (409, "session_exists"),
    SessionNotReady: (409, "session_not_ready"),
    SessionNotOpen: (409, "session_not_open"),
    SessionOwnedElsewhere: (409, "session_owned_elsewhere"),
    SidecarNotConnected: (503, "bridge_unavailable"),
}


def _status_of(e: Exception) -> tuple[int, str]:
    """The status of the most specific class of ``e`` in the table."""
    return next(_RELAY_ERRORS[c] for c in type(e).__mro__ if c in _RELAY_ERRORS)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            e.status, "http_error"
        )
        return error_response(e.status, code, e.reason)
    except tuple(_RELAY_ERRORS) as e:
        status, code = _status_of(e)
        return error_response(status, code, str(e))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = request.app[API_KEY_KEY]
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong bearer key")
    return await handler(request)


# ---- helpers ----


def _relay(request: web.Request) -> Relay:
    return request.app[RELAY_KEY]


def _session_id(request: web.Request) -> SessionId:
    sid = request.match_info["id"]
    if not _SESSION_RE.match(sid):
        raise ApiError(404, "session_not_found", f"no session {sid[:64]!r}")
    return SessionId(sid)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(422, "invalid_body", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid_body", f"{name} must be a string")
    return value


def normalize_to(to: str) -> str:
    """A jid is kept exactly as given; a phone number (digits, optional +, spaces, dashes) becomes a PN jid."""
    to = to.strip()
    if _JID_RE.match(to):
        return to
    if _DIGITS_RE.match(to):
        digits = re.sub(r"[^0-9]", "", to)
        if 7 <= len(digits) <= 15:
            return f"{digits}@s.whatsapp.net"
    raise ApiError(422, "invalid_body", "to must be a jid (…@s.whatsapp.net, …@lid, …@g.us) or a phone number")


# ---- handlers ----


async def create_session(request: web.Request) -> web.Response:
    body = await _json_object(request)
    sid = _string(body, "session_id")
    assert sid is not None
    if not _SESSION_RE.match(sid):
        raise ApiError(422, "invalid_session_id", f"session_id must match {SESSION_ID_PATTERN}")
    session = await _relay(request).create(SessionId(sid))
    return web.json_response(session.as_dict(), status=201)


async def list_sessions(request: web.Request) -> web.Response:
    return web.json_response([s.as_dict() for s in _relay(request).list_sessions()])


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(_relay(request).get(_session_id(request)).as_dict())


async def delete_session(request: web.Request) -> web.Response:
    await _relay(request).delete(_session_id(request))
    return web.json_response({"deleted": True})


async def logout_session(request: web.Request) -> web.Response:
    await _relay(request).logout(_session_id(request))
    return web.json_response({"logged_out": True})


async def get_qr(request: web.Request) -> web.Response:
    session = _relay(request).get(_session_id(request))
    if not session.qr:
        raise ApiError(404, "no_qr", f"session {session.id} has no QR now (state {session.state.value})")
    fmt = request.query.get("format", "raw")
    if fmt in ("raw", "json", ""):
        return web.json_response({"qr": session.qr})
    if fmt in ("svg", "png"):
        buf = io.BytesIO()
        segno.make(session.qr, error="m").save(buf, kind=fmt, scale=6, border=4)
        return web.Response(body=buf.getvalue(), content_type="image/svg+xml" if fmt == "svg" else "image/png")
    raise ApiError(422, "invalid_format", "format must be svg or png (or absent for the raw string)")


async def pairing_code(request: web.Request) -> web.Response:
    sid = _session_id(request)
    relay = _relay(request)
    relay.get(sid)
    body = await _json_object(request)
    phone = _string(body, "phone")
    assert phone is not None
    digits = re.sub(r"[^0-9]", "", phone)
    if not _PHONE_RE.match(digits):
        raise ApiError(422, "invalid_body", "phone must be 7 to 15 digits with country code")
    code = await relay.request_pairing_code(sid, digits)
    return web.json_response({"code": code})


async def send_message(request: web.Request) -> web.Response:
    sid = _session_id(request)
    relay = _relay(request)
    session = relay.get(sid)
    body = await _json_object(request)
    to = _string(body, "to")
    text = _string(body, "text")
    quoted_id = _string(body, "quoted_id", required=False)
    assert to is not None and text is not None
    if not text.strip() or len(text) > TEXT_MAX:
        raise ApiError(422, "invalid_body", f"text must be 1 to {TEXT_MAX} characters")
    jid = normalize_to(to)
    if session.state != SessionState.OPEN:
        raise ApiError(409, "session_not_open", f"session {sid} is {session.state.value}, not open")
    message_id = await relay.send_text(sid, jid, text, quoted_id=quoted_id or None)
    return web.json_response({"message_id": message_id}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    relay = request.app.get(RELAY_KEY)
    if relay is None or not relay.ready or not relay.bridge_up:
        return error_response(503, "not_ready", "starting up, or the bridge is down")
    return web.json_response({"status": "ready", "bridge_pid": relay.bridge_pid})


async def metrics(request: web.Request) -> web.Response:
    relay = request.app[RELAY_KEY]
    by_state = {state.value: 0 for state in SessionState}
    held = elsewhere = stale = 0
    now = time.time()
    for s in relay.list_sessions():
        by_state[s.state.value] += 1
        held += int(s.held_until is not None and s.held_until > now)
        elsewhere += int(s.owner is not None)
        stale += int(s.stale_since is not None)
    lines = [
        "# HELP wa_relay_sessions Sessions by state.",
        "# TYPE wa_relay_sessions gauge",
        *(f'wa_relay_sessions{{state="{k}"}} {v}' for k, v in by_state.items()),
        "# HELP wa_relay_events_published_total WhatsApp message events handed to the inbound queue.",
        "# TYPE wa_relay_events_published_total counter",
        f"wa_relay_events_published_total {relay.events_published}",
        "# HELP wa_relay_replies_sent_total Messages sent through the bridge (replies and API sends).",
        "# TYPE wa_relay_replies_sent_total counter",
        f"wa_relay_replies_sent_total {relay.replies_sent}",
        "# HELP wa_relay_spool_depth Envelopes waiting in the local spool for SQS.",
        "# TYPE wa_relay_spool_depth gauge",
        f"wa_relay_spool_depth {relay.publisher.spool_depth}",
        "# HELP wa_relay_bridge_up Whether the bridge process is connected.",
        "# TYPE wa_relay_bridge_up gauge",
        f"wa_relay_bridge_up {int(relay.bridge_up)}",
        "# HELP wa_relay_bridge_restarts_total Bridge process restarts after it exited.",
        "# TYPE wa_relay_bridge_restarts_total counter",
        f"wa_relay_bridge_restarts_total {relay.bridge_restarts}",
        "# HELP wa_relay_bridge_pid Process id of the running bridge (0 while it is down).",
        "# TYPE wa_relay_bridge_pid gauge",
        f"wa_relay_bridge_pid {relay.bridge_pid or 0}",
        "# HELP wa_relay_start_queue_depth Sessions waiting in the start queue.",
        "# TYPE wa_relay_start_queue_depth gauge",
        f"wa_relay_start_queue_depth {len(relay.queue)}",
        "# HELP wa_relay_connects_total Connects started by the start queue (515 restarts included).",
        "# TYPE wa_relay_connects_total counter",
        f"wa_relay_connects_total {relay.queue.connects}",
        "# HELP wa_relay_sessions_held Sessions held back by the flap breaker now.",
        "# TYPE wa_relay_sessions_held gauge",
        f"wa_relay_sessions_held {held}",
        "# HELP wa_relay_flap_holds_total Times the flap breaker held a session back.",
        "# TYPE wa_relay_flap_holds_total counter",
        f"wa_relay_flap_holds_total {relay.breaker.trips}",
        "# HELP wa_relay_logged_out_total Sessions logged out by WhatsApp (401/403/411/419); keys wiped.",
        "# TYPE wa_relay_logged_out_total counter",
        f"wa_relay_logged_out_total {relay.logged_out_total}",
        "# HELP wa_relay_conflicts_total Sessions replaced by another client (440); not reconnected.",
        "# TYPE wa_relay_conflicts_total counter",
        f"wa_relay_conflicts_total {relay.conflicts_total}",
        "# HELP wa_relay_leases_lost_total Session leases lost to another connector (socket closed at once).",
        "# TYPE wa_relay_leases_lost_total counter",
        f"wa_relay_leases_lost_total {relay.leases_lost_total}",
        "# HELP wa_relay_sessions_owned_elsewhere Known sessions whose lease another connector holds.",
        "# TYPE wa_relay_sessions_owned_elsewhere gauge",
        f"wa_relay_sessions_owned_elsewhere {elsewhere}",
        "# HELP wa_relay_sessions_stale Open sessions flagged stale (nothing received for too long).",
        "# TYPE wa_relay_sessions_stale gauge",
        f"wa_relay_sessions_stale {stale}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


# ---- routes and their document ----

ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/sessions", create_session),
    ("GET", "/v1/sessions", list_sessions),
    ("GET", "/v1/sessions/{id}", get_session),
    ("DELETE", "/v1/sessions/{id}", delete_session),
    ("GET", "/v1/sessions/{id}/qr", get_qr),
    ("POST", "/v1/sessions/{id}/pairing-code", pairing_code),
    ("POST", "/v1/sessions/{id}/messages", send_message),
    ("POST", "/v1/sessions/{id}/logout", logout_session),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics),
    ("GET", "/openapi.json", openapi),
]


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "error")
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": SESSION_ID_PATTERN}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "wa-relay connector", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "Session": {
                "type": "object",
                "required": ["id", "state", "me"],
                "properties": {
                    "id": {"type": "string"},
                    "state": {"enum": [s.value for s in SessionState]},
                    "me": {
                        "type": "object",
                        "properties": {"pn": {"type": ["string", "null"]}, "lid": {"type": ["string", "null"]}},
                    },
                    "qr": {"type": "string"},
                    "last_error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": ["integer", "null"]},
                            "message": {"type": "string"},
                            "at": {"type": "integer"},
                        },
                    },
                    "held_until": {
                        "type": "integer",
                        "description": "Unix seconds: held back by the flap breaker until then (state reconnecting)",
                    },
                    "owner": {
                        "type": "object",
                        "description": "another connector holds the session's lease (state stopped); retried",
                        "properties": {"id": {"type": "string"}, "until": {"type": ["integer", "null"]}},
                    },
                    "stale": {"type": "boolean", "description": "open, but nothing received for too long"},
                    "stale_since": {"type": "integer"},
                    "stale_reason": {"type": "string"},
                    "guidance": {"type": "string", "description": "what to do about a stale session"},
                },
            },
        },
    },
    "paths": {
        "/v1/sessions": {
            "post": {
                "summary": "Create a session (it starts and shows a QR)",
                "security": _SECURED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["session_id"],
                                "properties": {"session_id": {"type": "string", "pattern": SESSION_ID_PATTERN}},
                            }
                        }
                    },
                },
                "responses": {"201": _json(_ref("Session"), "created"), "409": _ERR, "422": _ERR, "401": _ERR},
            },
            "get": {
                "summary": "List sessions",
                "security": _SECURED,
                "responses": {"200": _json({"type": "array", "items": _ref("Session")}, "sessions"), "401": _ERR},
            },
        },
        "/v1/sessions/{id}": {
            "parameters": [_ID],
            "get": {
                "summary": "One session",
                "security": _SECURED,
                "responses": {"200": _json(_ref("Session"), "the session"), "404": _ERR, "401": _ERR},
            },
            "delete": {
                "summary": "Stop the session and wipe its creds and keys (the device stays linked on the phone)",
                "security": _SECURED,
                "responses": {"200": _json({"type": "object"}, "deleted"), "404": _ERR, "401": _ERR},
            },
        },
        "/v1/sessions/{id}/qr": {
            "parameters": [
                _ID,
                {"name": "format", "in": "query", "required": False, "schema": {"enum": ["svg", "png"]}},
            ],
            "get": {
                "summary": "The current QR: the raw string, or an SVG/PNG image with ?format=",
                "security": _SECURED,
                "responses": {
                    "200": {
                        "description": "the QR",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"qr": {"type": "string"}}}
                            },
                            "image/svg+xml": {"schema": {"type": "string"}},
                            "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
                        },
                    },
                    "404": _ERR,
                    "401": _ERR,
                },
            },
        },
        "/v1/sessions/{id}/pairing-code": {
            "parameters": [_ID],
            "post": {
                "summary": "Request a pairing code (only while the QR window is open)",
                "security": _SECURED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["phone"],
                                "properties": {"phone": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"type": "object", "properties": {"code": {"type": "string"}}}, "the code"),
                    "404": _ERR,
                    "409": _ERR,
                    "422": _ERR,
                    "401": _ERR,
                },
            },
        },
        "/v1/sessions/{id}/messages": {
            "parameters": [_ID],
            "post": {
                "summary": "Send a text message (to: a jid exactly as the chat is addressed, or a phone number)",
                "security": _SECURED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["to", "text"],
                                "properties": {
                                    "to": {"type": "string"},
                                    "text": {"type": "string", "minLength": 1, "maxLength": TEXT_MAX},
                                    "quoted_id": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json({"type": "object", "properties": {"message_id": {"type": "string"}}}, "sent"),
                    "404": _ERR,
                    "409": _ERR,
                    "422": _ERR,
                    "401": _ERR,
                },
            },
        },
        "/v1/sessions/{id}/logout": {
            "parameters": [_ID],
            "post": {
                "summary": "Unlink the device on WhatsApp and wipe the session",
                "security": _SECURED,
                "responses": {"200": _json({"type": "object"}, "logged out"), "404": _ERR, "409": _ERR, "401": _ERR},
            },
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: startup finished and the bridge is up",
                "responses": {"200": {"description": "ready"}, "503": _ERR},
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
    },
}
