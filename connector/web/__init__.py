"""The browser pages: the dashboard at ``/`` and Swagger UI at ``/docs``, static files served from the package.

Decisions:
- The pages hold no data: everything they show comes from the API, called with the key the user typed, so the pages
  themselves are public (``connector.api.errors.PUBLIC_PATHS`` and the ``/static/`` prefix). A request for a file
  under ``/static/`` is answered only when its name is in a table built at startup from the package's own files,
  so no part of a URL ever becomes a file system path (no traversal, no symlink surprises).
- Swagger UI comes from a PyPI package's bundled dist (no CDN); its files are served under ``/static/swagger-ui/``,
  and its initializer is a file of ours, so the pages need no inline script.
- Every page and file carries a strict Content-Security-Policy: scripts only from this origin, no inline script,
  ``connect-src 'self'``, no framing. ``Referrer-Policy: no-referrer`` keeps the connector's address out of other
  sites' logs. Files are served with ``Cache-Control: no-cache`` and an ETag: a browser revalidates (one cheap 304)
  and so never runs the JavaScript of an older version after an upgrade.
"""

from __future__ import annotations

import importlib.resources
import mimetypes
from pathlib import Path
from typing import NamedTuple

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

STATIC_DIR = Path(str(importlib.resources.files(__name__) / "static"))
STATIC_PREFIX = "/static/"
SWAGGER_PREFIX = "/static/swagger-ui/"
SWAGGER_DIR = Path(str(swagger_ui_path))
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css")

# Swagger UI sets element styles from React and draws its icons as data: URIs; the dashboard needs neither, but
# shows the QR from a blob: URL (the SVG fetched with the key, shown in an <img>, where it cannot run script).
_CSP_DASHBOARD = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_CSP_DOCS = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class Asset(NamedTuple):
    path: Path
    csp: str


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }


def assets(static_dir: Path = STATIC_DIR, swagger_dir: Path = SWAGGER_DIR) -> dict[str, Asset]:
    """Every file the pages may load, by URL path. Only regular files directly in the folder are listed."""
    table = {
        STATIC_PREFIX + p.name: Asset(p, _CSP_DOCS if p.name.startswith("docs") else _CSP_DASHBOARD)
        for p in sorted(static_dir.iterdir())
        if p.is_file() and not p.is_symlink()
    }
    table.update({SWAGGER_PREFIX + name: Asset(swagger_dir / name, _CSP_DOCS) for name in SWAGGER_FILES})
    return table


PAGES = {"/": "index.html", "/docs": "docs.html", "/docs/": "docs.html"}
"""The exact paths of the pages, each a file of ``static/``."""
FILE_ROUTES = (STATIC_PREFIX + "{name}", SWAGGER_PREFIX + "{name}")
ROUTES = frozenset(PAGES) | frozenset(FILE_ROUTES)
"""Every route this module adds: pages for browsers, not API operations (the OpenAPI document leaves them out)."""


def add_pages(app: web.Application, static_dir: Path = STATIC_DIR) -> None:
    """``GET /``, ``/docs`` and the files under ``/static/``: each page's path is public in the bearer check."""
    table = assets(static_dir)

    def serve(asset: Asset) -> web.FileResponse:
        content_type, _ = mimetypes.guess_type(asset.path.name)
        headers = security_headers(asset.csp)
        if content_type is not None:
            text = content_type.startswith("text/") or content_type.endswith(("javascript", "json", "+xml"))
            headers["Content-Type"] = f"{content_type}; charset=utf-8" if text else content_type
        return web.FileResponse(asset.path, headers=headers)

    async def page(request: web.Request) -> web.StreamResponse:
        return serve(table[STATIC_PREFIX + PAGES[request.path]])

    async def static(request: web.Request) -> web.StreamResponse:
        asset = table.get(request.path)
        if asset is None:
            raise web.HTTPNotFound()
        return serve(asset)

    for path in PAGES:
        app.router.add_get(path, page)
    for path in FILE_ROUTES:
        app.router.add_get(path, static)
