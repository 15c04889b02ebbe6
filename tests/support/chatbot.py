"""A scriptable chatbot on 127.0.0.1 for the function, end-to-end and chaos tests (stdlib ``http.server`` in a thread,
so the function's synchronous client can call it from any thread, and it needs no event loop).

Every call is recorded with what was answered: its status, the answer's label, and whether the caller was still
there to read it (``delivered``): a caller that gave up (its timeout) has closed the connection by the time the
answer is written, which the server sees as end-of-file on the socket before it writes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def valid_signature(secret: str, header: str | None, body: bytes, tolerance_s: int = 300) -> bool:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` over exactly ``body``, with ``t`` recent."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - t) <= tolerance_s and hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes | dict[str, Any] | None = None
    """A dict is sent as JSON; ``None`` with 200 means "echo the text as one reply"."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    label: str = ""
    """What kind of answer this is, for the record (``ok``, ``garbage``, ``stall`` …)."""


@dataclass
class Call:
    raw: bytes
    body: dict[str, Any]
    headers: dict[str, str]
    signature_valid: bool
    at: float
    status: int = 0
    """What was answered (0 while the answer is pending)."""
    label: str = ""
    delivered: bool = False
    """The answer was written to a caller that was still waiting for it."""
    answered_at: float = 0.0

    @property
    def event_id(self) -> str:
        return self.headers.get("X-Relay-Event-Id") or str(self.body.get("event_id", ""))


def peer_gone(sock: socket.socket) -> bool:
    """The caller closed its end (it gave up waiting): readable with nothing to read. A caller that is waiting for
    its answer sends nothing more on this connection, so readable means closed."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class ChatbotServer:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.calls: list[Call] = []
        self.script: list[Answer] = []
        """Answers in order; when empty, ``respond`` decides."""
        self.respond: Callable[[dict[str, Any]], Answer] = lambda body: Answer()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/chat"
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-chatbot", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.script.clear()
        self.respond = lambda body: Answer()

    def calls_for(self, event_id: str) -> list[Call]:
        return [c for c in self.calls if c.body.get("event_id") == event_id]

    def _answer(self, raw: bytes, headers: dict[str, str]) -> tuple[Call, Answer]:
        body = json.loads(raw)
        call = Call(
            raw, body, headers, valid_signature(self.secret, headers.get("X-Relay-Signature"), raw), time.time()
        )
        with self._lock:
            self.calls.append(call)
            scripted = self.script.pop(0) if self.script else None
        answer = scripted or self.respond(body)
        call.label = answer.label
        return call, answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                call, answer = server._answer(raw, dict(self.headers.items()))
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                call.status = answer.status
                gone = peer_gone(self.connection)
                payload = answer.body
                if payload is None and answer.status == 200:
                    payload = {"replies": [{"text": f"echo: {json.loads(raw)['message'].get('text')}"}]}
                data = json.dumps(payload).encode() if isinstance(payload, dict) else (payload or b"")
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if data:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    call.delivered = not gone
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                call.answered_at = time.time()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
