"""The key-leak check used on every bridge run must catch each way a key can be printed."""

from __future__ import annotations

import base64
import os

import pytest

from tests.support.secrets import find_leaks, secrets_in

KEY = os.urandom(32)
CREDS = {
    "noiseKey": {"private": {"type": "Buffer", "data": base64.b64encode(KEY).decode()},
                 "public": {"type": "Buffer", "data": base64.b64encode(b"p" * 32).decode()}},
    "advSecretKey": base64.b64encode(b"s" * 32).decode(),
}


def test_secrets_are_taken_from_private_fields_only() -> None:
    found = secrets_in([CREDS])
    assert KEY in found and b"s" * 32 in found
    assert b"p" * 32 not in found


@pytest.mark.parametrize(
    "printed",
    [
        base64.b64encode(KEY).decode(),
        base64.b64encode(KEY).decode().rstrip("="),
        KEY.hex(),
        "<Buffer " + " ".join(f"{b:02x}" for b in KEY[:50]) + ">",
        "Uint8Array(32) [\n  " + ",\n  ".join(str(b) for b in KEY) + "\n]",
    ],
)
def test_each_printed_form_is_found(printed: str) -> None:
    line = f'{{"level":"info","msg":"Closing session: {printed}"}}\n'.encode()
    assert find_leaks([KEY], [b"unrelated\n", line])


def test_clean_output_passes() -> None:
    assert find_leaks([KEY], [b'{"level":"debug","msg":"Closing session: [redacted]"}\n']) == []
