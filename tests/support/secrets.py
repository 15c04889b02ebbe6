"""Find private key material from a key store in a process's output.

Secrets are collected from every value stored under a property whose name says it is secret (``private``,
``privKey``, ``rootKey``, ``chainKey``, ``messageKeys``, ``advSecretKey``, ``keyData``…), and searched for in every
form a JavaScript program could print them: base64 (with and without padding, url-safe), hex, Node's
``<Buffer 0a 1b …>`` inspection and ``Uint8Array [10, 27, …]`` decimal lists.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

_SECRET_NAME = re.compile(r"priv|secret|root|chain|keydata|messagekeys", re.IGNORECASE)
MIN_SECRET_BYTES = 16


def _decode(value: Any) -> bytes | None:
    if isinstance(value, dict) and value.get("type") == "Buffer" and isinstance(value.get("data"), str):
        value = value["data"]
    if isinstance(value, str) and len(value) >= 20:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw if len(raw) >= MIN_SECRET_BYTES else None
    return None


def _walk(value: Any, secret: bool, out: list[bytes]) -> None:
    if secret:
        raw = _decode(value)
        if raw is not None:
            out.append(raw)
            return
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(v, secret or bool(_SECRET_NAME.search(str(k))), out)
    elif isinstance(value, list):
        for v in value:
            _walk(v, secret, out)


def secrets_in(values: Iterable[Any]) -> list[bytes]:
    out: list[bytes] = []
    for v in values:
        _walk(v, False, out)
    return list(dict.fromkeys(out))


def forms(secret: bytes) -> list[str]:
    b64 = base64.b64encode(secret).decode()
    return [
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        secret.hex(),
        " ".join(f"{b:02x}" for b in secret[:16]),
    ]


def find_leaks(secrets: Iterable[bytes], lines: Iterable[bytes]) -> list[str]:
    """Descriptions of each secret found in the output (empty when nothing leaked)."""
    text = b"".join(lines).decode("utf-8", "replace")
    squeezed = re.sub(r"\s+", "", text)
    leaks = []
    for s in secrets:
        for form in forms(s):
            if form in text:
                leaks.append(f"{form[:12]}… ({len(s)} bytes) printed as {form[:4]!r}-form")
                break
        else:
            decimal = ",".join(str(b) for b in s[:16])
            if decimal in squeezed:
                leaks.append(f"{len(s)}-byte secret printed as a decimal list")
    return leaks
