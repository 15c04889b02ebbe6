"""The late-answer function's Function URL, locally: an HTTP server on 127.0.0.1 that hands every request to
``functions.late.handler.lambda_handler`` in this process, as a Lambda Function URL event (payload format 2.0), and
writes back what it returns.

Like the runner, it copies the shape AWS produces, not AWS itself: header names lower-cased, a body that is not text
base64-encoded (``isBase64Encoded``), a ``LambdaContext`` look-alike counting down from the function timeout. A
Function URL accepts any path; so does this server. The standard library's threading server, so it needs no event
loop and a slow request (the handler's lookup grace) does not hold up the next one.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.runner import Handler, LocalLambdaContext

log = logging.getLogger("wa_relay.local.late")

LATE_FUNCTION_NAME = "wa-relay-late"
LATE_FUNCTION_TIMEOUT_S = 15
"""As ``local.late_function_timeout`` in infra/terraform/main.tf."""
TEXT_TYPES = ("application/json", "text/")


def url_event(method: str, path: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
    """What a Function URL passes the function for one request."""
    lowered = {k.lower(): v for k, v in headers.items()}
    text = lowered.get("content-type", "").startswith(TEXT_TYPES)
    raw_path, _, query = path.partition("?")
    return {
        "version": "2.0",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {"http": {"method": method, "path": raw_path, "sourceIp": source_ip}},
        "body": body.decode(errors="replace") if text else base64.b64encode(body).decode(),
        "isBase64Encoded": not text,
    }


class LateAnswerServer:
    def __init__(self, handler: Handler, port: int = 0, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="late-answer-url", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LocalLambdaContext(LATE_FUNCTION_NAME, LATE_FUNCTION_TIMEOUT_S)
        try:
            response = self.handler(event, context)
        except Exception:
            # What a Function URL answers for a function that raised.
            log.exception("the late-answer function raised")
            return {"statusCode": 502, "body": json.dumps({"Message": "Internal Server Error"})}
        return response if isinstance(response, dict) else {"statusCode": 200, "body": json.dumps(response)}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or "0"))
                event = url_event(self.command, self.path, dict(self.headers.items()), body, self.client_address[0])
                response = server.invoke(event)
                data = str(response.get("body") or "").encode()
                if response.get("isBase64Encoded"):
                    data = base64.b64decode(data)
                self.send_response(int(response.get("statusCode", 200)))
                for name, value in (response.get("headers") or {}).items():
                    self.send_header(name, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

        return Handler
