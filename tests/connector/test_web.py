"""The dashboard and Swagger UI pages (``connector.web``): public, served with their security headers, and nothing
but the package's own files is reachable under ``/static/``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connector.api.errors import PUBLIC_PATHS, PUBLIC_PREFIX
from connector.app import Stores, create_app
from connector.config import Config
from connector.publish import MemoryPublisher
from connector.web import PAGES, STATIC_PREFIX, SWAGGER_FILES, SWAGGER_PREFIX, assets
from tests.connector.fakes import FakeBridge

KEY = "k3J9x2Lq8Vn5Rt7Wz4Yb"


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    cfg = Config(api_key=KEY, store_backend="memory", session_start_interval_s=0, session_start_jitter_s=0)
    app = create_app(cfg, stores=Stores.memory(), publisher=MemoryPublisher(), bridge=FakeBridge)
    async with TestClient(TestServer(app)) as c:
        yield c


async def raw_get(client: TestClient[Any, Any], path: str) -> tuple[int, bytes]:
    """A GET of ``path`` exactly as written: no client normalizes its dots or percent escapes first."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_secure(headers: Any) -> None:
    csp = headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'", "no inline script, no other origin"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/", "text/html"),
        ("/docs", "text/html"),
        ("/docs/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/docs.js", "text/javascript"),
        (SWAGGER_PREFIX + "swagger-ui-bundle.js", "text/javascript"),
        (SWAGGER_PREFIX + "swagger-ui.css", "text/css"),
    ],
)
async def test_pages_and_files_need_no_key_and_carry_the_security_headers(
    client: TestClient[Any, Any], path: str, media: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == media
    assert_secure(resp.headers)
    assert resp.headers["ETag"], "a browser revalidates with it instead of downloading again"
    again = await client.get(path, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_the_pages_load_only_files_that_are_served_and_no_inline_script(client: TestClient[Any, Any]) -> None:
    for page in ("/", "/docs"):
        html = await (await client.get(page)).text()
        assert "<script>" not in html and "onload=" not in html and "onclick=" not in html
        for ref in [p.split('"', 1)[0] for p in html.split('src="')[1:] + html.split('href="')[1:]]:
            if ref.startswith("/") and not ref.startswith("//"):
                assert (await client.get(ref)).status == 200, ref


async def test_docs_initializer_reads_the_generated_document(client: TestClient[Any, Any]) -> None:
    js = await (await client.get("/static/docs.js")).text()
    assert '"/openapi.json"' in js
    assert "persistAuthorization: false" in js, "Swagger UI must not keep the key in localStorage"
    doc = await (await client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


@pytest.mark.parametrize(
    "path",
    [
        "/static/../v1/sessions",
        "/static/%2e%2e/v1/sessions",
        "/static/..%2Fv1%2Fsessions",
        "/static/swagger-ui/../../v1/sessions",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2F..%2F__init__.py",
        "/static/%2e%2e%2f__init__.py",
        "/static//etc/passwd",
        "/static/swagger-ui/index.html",
        "/static/swagger-ui/swagger-initializer.js",
        "/static/nothing.js",
        "/static/",
    ],
)
async def test_nothing_else_is_reachable_under_static(client: TestClient[Any, Any], path: str) -> None:
    status, body = await raw_get(client, path)
    assert status == 404, (path, body[:200])
    assert b'"not_found"' in body


async def test_api_routes_still_need_the_key(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/v1/sessions")).status == 401
    assert (await client.get("/v1/events")).status == 401
    assert (await client.get("/v1/sessions", headers={"Authorization": f"Bearer {KEY}"})).status == 200


def test_every_page_is_public_and_every_file_is_under_the_public_prefix() -> None:
    assert set(PAGES) <= PUBLIC_PATHS
    assert STATIC_PREFIX == PUBLIC_PREFIX and SWAGGER_PREFIX.startswith(PUBLIC_PREFIX)
    assert SWAGGER_FILES


def test_only_regular_files_of_the_static_folder_are_listed(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "secret").symlink_to("/etc/hostname")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.js").write_text("")
    table = assets(tmp_path)
    assert STATIC_PREFIX + "index.html" in table
    assert not {STATIC_PREFIX + "secret", STATIC_PREFIX + "sub", STATIC_PREFIX + "sub/x.js"} & set(table)
