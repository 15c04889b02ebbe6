"""``make demo``: the simulator, the whole stack and the demo driver as a newcomer runs them, from the command line,
and ``make up``'s refusal to trust the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.emulators import ROOT, free_port
from infra.local.stack import untrusted


@pytest.mark.e2e
def test_the_demo_links_a_simulated_phone_and_its_contacts_get_answers(tmp_path: Path) -> None:
    env = {**os.environ, "CONNECTOR_PORT": str(free_port())}
    for name in ("WA_WEBSOCKET_URL", "WA_SIM_ROOT_PUB", "CONNECTOR_API_KEY"):
        env.pop(name, None)
    args = ["--data-dir", str(tmp_path / "demo"), "--messages", "3", "--interval-s", "1", "--link-after-s", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "infra.local.demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(result.stdout[-4000:], result.stderr[-4000:])
    assert result.returncode == 0
    out = result.stdout
    assert "session demo-phone is open as 15550100001@s.whatsapp.net (99990100001@lid)" in out
    for name, text in (("Ana", "Hi! Are you open today?"), ("Bo", "Can I book a table for two at eight?")):
        assert f"{name} -> demo: {text}" in out
        assert f"demo -> {name}: You said: {text}" in out
    assert "Chen -> demo: Do you have vegetarian dishes?" in out
    assert (tmp_path / "demo" / "dynamodb").is_dir()  # its own data, not make up's .data


def test_make_up_drops_the_simulator_trust_from_its_environment() -> None:
    environ = {
        "WA_SIM_ROOT_PUB": "ab" * 32,
        "NODE_OPTIONS": "--max-old-space-size=512 --import file:///x/tests/wasim/trust-root.mjs --enable-source-maps",
    }
    untrusted(environ)
    assert environ == {"NODE_OPTIONS": "--max-old-space-size=512 --enable-source-maps"}
    plain = {"NODE_OPTIONS": "--enable-source-maps"}
    untrusted(plain)
    assert plain == {"NODE_OPTIONS": "--enable-source-maps"}
