"""A small synchronous client of the connector's HTTP API (DESIGN section 8), on the standard library's ``urllib``.

Why ``urllib`` and not aiohttp: a command makes one or two calls and then, at most, reads one event stream line by
line; blocking calls keep each command a plain top-to-bottom function, Ctrl-C interrupts a blocked read like any
other, and starting the tool loads no event loop or client session. The stream is read with ``readline`` on the
response, which decodes chunked transfer and returns as soon as a line is complete.

The key goes only into the ``Authorization`` header. Nothing here puts it into a message: errors name the URL and
what the connector answered. Redirects are not followed (urllib would send the header to wherever they point), and
proxies from the environment are skipped for the loopback address, where the connector of ``make up`` listens.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CALL_TIMEOUT_S = 30.0
STREAM_READ_TIMEOUT_S = 45.0
"""Longest silence on an event stream before it counts as broken: the connector writes a keep-alive comment every
15 s."""
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class CliError(Exception):
    """Ends the command with this one-line message (exit code 1)."""


class ApiError(CliError):
    """The connector answered with an error (``{"error": {"code", "message"}}``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status, self.code, self.message = status, code, message


class Unreachable(CliError):
    """Nothing answered, or the connection broke."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is raised as an HTTPError: following it would carry the key elsewhere


class Client:
    def __init__(self, base_url: str, key: str, *, key_source: str = "the key", timeout: float = CALL_TIMEOUT_S):
        """``key_source`` says where the key came from (``CONNECTOR_API_KEY``, a file), for the hint on a 401."""
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.key_source = key_source
        self.timeout = timeout
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if host in LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> Any:
        """The decoded JSON answer of a call; ``ApiError`` for an error status, ``Unreachable`` for no answer."""
        with self._open(method, path, body, headers or {}, self.timeout) as resp:
            return json.loads(resp.read() or b"null")

    @contextmanager
    def stream(self, path: str, *, last_id: str | None = None) -> Iterator[Iterator[str]]:
        """The lines of a server-sent event stream (without their line ends), resumed after ``last_id``."""
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        with self._open("GET", path, None, headers, STREAM_READ_TIMEOUT_S) as resp:
            yield self._lines(resp)

    def _lines(self, resp: http.client.HTTPResponse) -> Iterator[str]:
        while True:
            try:
                raw = resp.readline()
            except (OSError, http.client.HTTPException) as e:
                raise Unreachable(f"the event stream from {self.base_url} broke ({_reason(e)})") from None
            if not raw:
                return
            yield raw.decode("utf-8", "replace").rstrip("\r\n")

    @contextmanager
    def _open(
        self, method: str, path: str, body: Any, headers: dict[str, str], timeout: float
    ) -> Iterator[http.client.HTTPResponse]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            resp = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            with e:
                raise self._api_error(e.code, e.reason, e.read()) from None
        except urllib.error.URLError as e:
            raise self._unreachable(e.reason) from None
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None
        with resp:
            yield resp

    def _api_error(self, status: int, reason: str, raw: bytes) -> ApiError:
        try:
            detail = json.loads(raw)["error"]
            code, message = str(detail["code"]), str(detail["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", f"{self.base_url} answered HTTP {status} {reason}"
        if status == 401:
            message = f"{message}: the connector at {self.base_url} refused the key from {self.key_source}"
        return ApiError(status, code, message)

    def _unreachable(self, reason: object) -> Unreachable:
        if isinstance(reason, ConnectionRefusedError):
            return Unreachable(
                f"nothing answers at {self.base_url} (connection refused): start the relay with `make up`, or point "
                "--url or WA_RELAY_URL at the connector"
            )
        if isinstance(reason, TimeoutError):
            return Unreachable(f"{self.base_url} did not answer within {self.timeout:.0f} s")
        return Unreachable(f"cannot reach {self.base_url} ({_reason(reason)})")


def _reason(e: object) -> str:
    return str(e) or type(e).__name__
