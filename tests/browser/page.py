"""What the browser suites share: Debian's Chromium launched the way this machine needs it, one page in a fresh
profile that records every request and console line (where a leaked key would show), and the dashboard's steps.

Chromium comes from Debian (``make browser-deps``), never from Playwright's own download: nothing is fetched at run
time, and the flags keep it from calling out (this machine has no internet, and a Chromium left to itself retries
its background services against closed connections)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
README_SHOTS = {"04-qr", "06-message-received", "08-pairing-code", "09-api-docs", "12-demo"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 90_000


@dataclass
class Browser:
    """One page in a fresh profile, and everything it did that a leak could hide in."""

    page: Any
    base: str
    key: str
    requests: list[str] = field(default_factory=list)
    """``METHOD url`` of every request the page made."""
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def shot(self, name: str, *, full_page: bool = True) -> None:
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        if name in README_SHOTS and os.environ.get("DOCS_SCREENSHOTS") == "1":
            DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SHOTS / path.name)

    async def assert_key_kept_in_the_tab_only(self) -> None:
        assert not [u for u in self.requests if self.key in u], "the key went into a URL"
        assert not [c for c in self.console if self.key in c], "the key was logged"
        local = await self.page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
        assert self.key not in local, "the key is in localStorage"
        cookies = await self.page.context.cookies()
        assert not [c for c in cookies if self.key in c["value"]], "the key is in a cookie"

    def csp_violations(self) -> list[str]:
        return [c for c in self.console if "Content Security Policy" in c or "Refused to" in c]


@asynccontextmanager
async def open_browser(chromium: Path, base: str, key: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="wa-relay-chromium-")
    try:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(chromium),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 860},
                device_scale_factor=1,
                locale="en-GB",
                timezone_id="UTC",
            )
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            b = Browser(page, base, key)
            page.on("request", lambda r: b.requests.append(f"{r.method} {r.url}"))
            page.on("console", lambda m: b.console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: b.console.append(f"pageerror: {e}"))
            yield b
            await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def sign_in(b: Browser) -> None:
    from playwright.async_api import expect

    await b.page.goto(b.base + "/")
    await expect(b.page.locator("#signin")).to_be_visible()
    await b.page.fill("#api-key", b.key)
    await b.page.click("#signin-form button[type=submit]")
    await expect(b.page.locator("#app")).to_be_visible()
    await expect(b.page.locator("#live")).to_have_attribute("data-live", "on")


def card(b: Browser, sid: str) -> Any:
    return b.page.locator(f'article.session[data-session-id="{sid}"]')


async def create(b: Browser, sid: str) -> Any:
    from playwright.async_api import expect

    await b.page.fill("#new-session", sid)
    await b.page.click("#create-form button[type=submit]")
    c = card(b, sid)
    await expect(c).to_have_count(1)
    await expect(c).to_have_attribute("data-state", "qr", timeout=STEP_TIMEOUT_MS)
    return c
