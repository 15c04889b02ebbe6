"""Which connector the CLI talks to, and with which key.

- URL: ``--url``, else ``WA_RELAY_URL``, else ``http://127.0.0.1:${CONNECTOR_PORT:-8080}`` (where ``make up`` serves
  it).
- Key: ``--key-file``, else ``CONNECTOR_API_KEY``, else ``.data/api-key`` (what ``make up`` generates) in the current
  folder or the nearest folder above it, up to the repository's root: the tool works from any folder of the checkout.

The key is never part of a message: errors name where it came from, not what it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8080
KEY_FILE = Path(".data") / "api-key"
_TOKEN = re.compile(r"[!-~]+")
"""What a bearer key may hold: visible ASCII, so it cannot break the header it is sent in."""


class TargetError(Exception):
    """No usable URL or key (exit code 11, as a connector with an invalid configuration)."""


@dataclass(frozen=True)
class Target:
    url: str
    key: str = field(repr=False)
    key_source: str


def find_key_file(start: Path) -> Path | None:
    """``.data/api-key`` in ``start`` or the nearest folder above it; the search stops at a repository's root (a
    folder with ``.git``), so a checkout never picks up the key of another one it sits in."""
    for folder in (start, *start.parents):
        candidate = folder / KEY_FILE
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
            return None
    return None


def resolve(url: str | None, key_file: str | None, environ: Mapping[str, str], cwd: Path) -> Target:
    return Target(_url(url, environ), *_key(key_file, environ, cwd))


def _url(given: str | None, environ: Mapping[str, str]) -> str:
    url = (given or environ.get("WA_RELAY_URL", "")).strip()
    if not url:
        port = environ.get("CONNECTOR_PORT", "").strip() or str(DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise TargetError(f"CONNECTOR_PORT: not a port number: {port!r}")
        return f"http://127.0.0.1:{port}"
    if not re.match(r"https?://[^/\s]+", url):
        raise TargetError(f"not an http(s) URL: {url!r} (give it as http://HOST:PORT)")
    return url.rstrip("/")


def _key(key_file: str | None, environ: Mapping[str, str], cwd: Path) -> tuple[str, str]:
    if key_file:
        return _read_key(Path(key_file)), str(key_file)
    if from_env := environ.get("CONNECTOR_API_KEY", "").strip():
        return _checked(from_env, "CONNECTOR_API_KEY"), "CONNECTOR_API_KEY"
    if (found := find_key_file(cwd)) is not None:
        return _read_key(found), str(found)
    raise TargetError(
        "no API key: set CONNECTOR_API_KEY, give --key-file, or run this inside the checkout where `make up` saved "
        f"{KEY_FILE}"
    )


def _read_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise TargetError(f"cannot read the API key from {path}: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise TargetError(f"the API key in {path} is not text") from None
    return _checked(key, str(path))


def _checked(key: str, source: str) -> str:
    if not _TOKEN.fullmatch(key):
        raise TargetError(f"the API key from {source} is {'empty' if not key else 'not printable ASCII on one line'}")
    return key
