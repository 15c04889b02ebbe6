"""Errors on the HTTP API: every error is ``{"error": {"code", "message"}}`` with its status, never a bare 500 page.

One middleware turns every exception into that shape: the API's own ``ApiError``; aiohttp's HTTP exceptions (404 for
unknown routes, 405 with its ``Allow`` header kept, 413 for oversized bodies); the connector's error tree through
``STATUSES`` (most specific class first); anything else is logged and answered 500 ``internal``. Bad input is
always 400/422. The bearer check runs inside it, so a missing key is a JSON 401 too.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from connector.errors import (
    IdempotencyKeyReused,
    LeaseLost,
    SessionExists,
    SessionNotFound,
    SessionNotOpen,
    SessionNotReady,
    SessionOwnedElsewhere,
    SidecarNotConnected,
    SidecarTimeout,
    StoreError,
)
from connector.web import PAGES, STATIC_PREFIX

log = logging.getLogger("wa_relay.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_KEY_KEY = web.AppKey("api_key", str)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"}) | frozenset(PAGES)
"""Health for orchestrators, metrics for scrapers and the document for API tools: none needs the admin key, and
none reveals session data beyond counts. The dashboard and Swagger UI pages (``connector.web``) hold no data: they
call the API with the key the user types."""
PUBLIC_PREFIX = STATIC_PREFIX
"""The pages' files. Only a GET of a file the package ships is answered there (``connector.web``); any other path
under it is a 404, never an API route, since every route of the API is under ``/v1/`` or in ``PUBLIC_PATHS``."""

STATUSES: dict[type[Exception], tuple[int, str]] = {
    SessionNotFound: (404, "session_not_found"),
    SessionExists: (409, "session_exists"),
    SessionNotReady: (409, "session_not_ready"),
    SessionNotOpen: (409, "session_not_open"),
    SessionOwnedElsewhere: (409, "session_owned_elsewhere"),
    SidecarNotConnected: (503, "bridge_unavailable"),
    SidecarTimeout: (503, "bridge_unavailable"),
    StoreError: (503, "store_unavailable"),
    LeaseLost: (409, "session_owned_elsewhere"),
    # 422 as draft-ietf-httpapi-idempotency-key-header says for a key reused with another payload: the request is
    # well formed and there is no conflicting state to wait out, it can never succeed with this key.
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def status_of(e: Exception) -> tuple[int, str] | None:
    return next((STATUSES[c] for c in type(e).__mro__ if c in STATUSES), None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        # Keep what the answer needs: Allow on 405 (RFC 9110 section 15.5.6), WWW-Authenticate and the like.
        headers = {k: v for k, v in e.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error_response(e.status, _HTTP_CODES.get(e.status, "http_error"), e.reason, headers=headers)
    except Exception as e:
        mapped = status_of(e)
        if mapped is None:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal", "internal error")
        status, code = mapped
        if status >= 500:
            log.warning("%s %s: %s (%s)", request.method, request.path, code, e)
        return error_response(status, code, str(e))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIX):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = request.app[API_KEY_KEY]
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return error_response(
            401, "unauthorized", "missing or wrong bearer key", headers={"WWW-Authenticate": 'Bearer realm="wa-relay"'}
        )
    return await handler(request)
