"""``python -m connector.healthcheck``: the container's HEALTHCHECK. Exit 0 iff ``GET /healthz`` on this machine
answers 200 within ``TIMEOUT_S``; otherwise exit 1 with one line on stderr.

Standard library only, and it reads nothing but ``CONNECTOR_PORT``: it must not import the app (aiohttp, pydantic
settings) or load the connector's config, so a probe never fails, or gets slow, because of something other than the
running server. It always asks 127.0.0.1, which is where the server listens whatever ``CONNECTOR_HOST`` is (the
default, or 0.0.0.0 in the image). Proxies from the environment are ignored: a probe of loopback must not go out.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 8080
TIMEOUT_S = 3.0
"""Per socket operation (connect, each read); the image's ``HEALTHCHECK --timeout`` bounds the whole probe."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx is an answer, and not a 200


def probe(port: int, timeout_s: float = TIMEOUT_S) -> str | None:
    """``None`` when healthy, else why not (one line)."""
    url = f"http://127.0.0.1:{port}/healthz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    try:
        with opener.open(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as e:
        return f"{url} answered {e.code}"
    except (OSError, ValueError) as e:  # refused, timed out, reset, a garbled answer
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        return f"{url} did not answer: {reason or type(e).__name__}"
    return None if status == 200 else f"{url} answered {status}"


def main(environ: Mapping[str, str] = os.environ, timeout_s: float = TIMEOUT_S) -> int:
    raw = environ.get("CONNECTOR_PORT", "").strip() or str(DEFAULT_PORT)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        print(f"healthcheck: CONNECTOR_PORT must be a port number, got {raw!r}", file=sys.stderr)
        return 1
    problem = probe(int(raw), timeout_s)
    if problem is not None:
        print(f"healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
