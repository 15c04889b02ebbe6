"""``python -m connector.healthcheck`` against a tiny HTTP server on a free port: 200 → 0, anything else → 1 with one
line on stderr, and it needs no configuration but ``CONNECTOR_PORT``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connector.healthcheck import main
from infra.local.emulators import free_port

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """Answers ``GET /healthz`` with ``status`` after ``delay_s``; records the paths asked for."""

    def __init__(self) -> None:
        self.status = 200
        self.delay_s = 0.0
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                time.sleep(server.delay_s)
                self.send_response(server.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.http.server_address[1])


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    thread = threading.Thread(target=s.http.serve_forever, daemon=True)
    thread.start()
    yield s
    s.http.shutdown()
    s.http.server_close()


def test_200_is_healthy(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main({"CONNECTOR_PORT": str(server.port)}) == 0
    assert server.paths == ["/healthz"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("status", [503, 500, 404, 204, 302])
def test_any_other_status_is_unhealthy_with_one_line(
    server: Server, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    server.status = status
    assert main({"CONNECTOR_PORT": str(server.port)}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"answered {status}" in err


def test_nothing_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main({"CONNECTOR_PORT": str(free_port())}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "did not answer" in err


def test_a_slow_answer_is_unhealthy(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    server.delay_s = 1.0
    started = time.monotonic()
    assert main({"CONNECTOR_PORT": str(server.port)}, timeout_s=0.2) == 1
    assert time.monotonic() - started < 0.9
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_a_bad_port_is_unhealthy(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main({"CONNECTOR_PORT": port}) == 1
    assert "CONNECTOR_PORT" in capsys.readouterr().err


def test_module_runs_with_only_the_port_set_and_ignores_proxies(server: Server) -> None:
    # No CONNECTOR_API_KEY, no queue URLs: the probe must not load the connector's config. A proxy that does not
    # exist would make every probe fail if it were used for loopback.
    env = {"PATH": os.environ.get("PATH", ""), "CONNECTOR_PORT": str(server.port), "http_proxy": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "connector.healthcheck"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    server.status = 503
    done = subprocess.run(
        [sys.executable, "-m", "connector.healthcheck"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
