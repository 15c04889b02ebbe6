"""``make demo`` as a newcomer sees it: the demo runs as its own command (``python -m infra.local.demo``, the simulator
and the whole stack), and the dashboard it prints, opened in Chromium with the key it prints, shows the simulated
phone's session open and the conversation going on (counters and the live feed move) with no further step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.emulators import ROOT, free_port
from tests.browser.page import card, open_browser, sign_in

pytestmark = pytest.mark.e2e

BANNER_TIMEOUT_S = 180.0


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The running demo's dashboard URL and API key, read from what it prints."""
    env = {**os.environ, "CONNECTOR_PORT": str(free_port())}
    for name in ("WA_WEBSOCKET_URL", "WA_SIM_ROOT_PUB", "CONNECTOR_API_KEY"):
        env.pop(name, None)
    out = tmp_path / "demo.out"
    args = ["--data-dir", str(tmp_path / "demo"), "--interval-s", "2", "--link-after-s", "3"]
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra.local.demo", *args], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + BANNER_TIMEOUT_S
        url = key = None
        while (url is None or key is None) and time.monotonic() < deadline and proc.poll() is None:
            text = out.read_text()
            url = (m.group(1) if (m := re.search(r"Dashboard\s+(http://\S+)/", text)) else None) or url
            key = (m.group(1) if (m := re.search(r"API key\s+(\S+)", text)) else None) or key
            time.sleep(0.2)
        assert url and key, f"the demo printed no dashboard and key:\n{out.read_text()[-3000:]}"
        yield url, key
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        print(out.read_text()[-3000:])
    assert code == 0, "the demo did not stop cleanly on Ctrl-C"


async def test_the_demo_shows_a_live_conversation_in_the_dashboard(demo: tuple[str, str], chromium: Path) -> None:
    from playwright.async_api import expect

    url, key = demo
    async with open_browser(chromium, url, key) as b:
        await sign_in(b)
        c = card(b, "demo-phone")
        await expect(c).to_have_attribute("data-state", "open")  # linked by the simulated phone, no step of ours
        await expect(c.locator('[data-field="pn"]')).to_contain_text("15550100001")
        # The contacts keep writing and the bot keeps answering: the counters move while the page is open.
        await expect(c.locator('[data-field="received"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
        before = int(await c.locator('[data-field="received"]').inner_text())
        await expect(c.locator('[data-field="received"]')).not_to_have_text(str(before))
        await expect(c.locator('[data-field="sent"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
        feed = b.page.locator("#feed")
        await expect(feed).to_contain_text("received 1 message from 155501000")
        await expect(feed).to_contain_text("read by")
        await b.shot("12-demo")
        await b.assert_key_kept_in_the_tab_only()
        assert not b.csp_violations()
