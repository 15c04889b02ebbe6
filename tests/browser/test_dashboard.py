"""The dashboard and Swagger UI in a real browser: Debian's headless Chromium driven by Playwright, against the whole
relay (DynamoDB Local, moto SQS, the inbound function, the real connector and bridge) and the WhatsApp simulator.

A user signs in with the key, creates a session, the simulated phone scans the QR the page shows, the session turns
``open`` on the page without a reload, a contact's message moves the received counter, and a confirmed logout removes
the card. Throughout, the key appears in no URL the browser requested and in no persistent storage. Each step leaves
a screenshot in ``tests/artifacts/browser/``; with ``DOCS_SCREENSHOTS=1`` the ones the README shows are copied to
``docs/screenshots/``.

Chromium comes from Debian (``make browser-deps``), never from Playwright's own download: nothing is fetched at run
time, and the flags below keep it from calling out (this machine has no internet, and a Chromium left to itself
retries its background services against closed connections)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infra.local.stack import LocalStack
from tests.e2e.conftest import API_KEY
from tests.support.relay import Api, ConnectorProcess
from tests.support.wasim import WasimClient, new_person

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
README_SHOTS = {"04-qr", "06-message-received", "08-pairing-code", "09-api-docs"}
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


@pytest.fixture
def stack(relay: tuple[LocalStack, ConnectorProcess]) -> LocalStack:
    return relay[0]


@pytest.fixture
async def api(stack: LocalStack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, stack.api_url, API_KEY)


@dataclass
class Browser:
    """One page in a fresh profile, and everything it did that a leak could hide in."""

    page: Any
    base: str
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
        assert not [u for u in self.requests if API_KEY in u], "the key went into a URL"
        assert not [c for c in self.console if API_KEY in c], "the key was logged"
        local = await self.page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
        assert API_KEY not in local, "the key is in localStorage"
        cookies = await self.page.context.cookies()
        assert not [c for c in cookies if API_KEY in c["value"]], "the key is in a cookie"

    def csp_violations(self) -> list[str]:
        return [c for c in self.console if "Content Security Policy" in c or "Refused to" in c]


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing and could not be installed: run `make browser-deps` (apt-get install chromium)"
        print(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def browser(stack: LocalStack, chromium: Path) -> AsyncIterator[Browser]:
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
            b = Browser(page, stack.api_url)
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
    await b.page.fill("#api-key", API_KEY)
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


async def test_link_by_qr_watch_it_open_count_a_message_and_log_out(
    browser: Browser, api: Api, wasim: WasimClient
) -> None:
    from playwright.async_api import expect

    b, page = browser, browser.page
    sid = "browser-phone"
    me, contact = new_person(), new_person()
    await wasim.add_contact(contact, "Browser Contact")

    # A wrong key is refused on the sign-in form itself.
    await page.goto(b.base + "/")
    await b.shot("01-sign-in")
    await page.fill("#api-key", "not-the-key-0000000000")
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#signin-error")).to_contain_text("not accepted")
    await expect(page.locator("#api-key")).to_have_value("")
    await b.shot("02-wrong-key")

    await page.fill("#api-key", API_KEY)
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-live", "on")
    await page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    await b.shot("03-signed-in")

    # Create: the QR arrives through the stream, drawn from the SVG the API renders, with its expiry.
    c = await create(b, sid)
    qr_panel = c.locator('[data-part="qr"]')
    await expect(qr_panel).to_have_attribute("data-qr", re.compile(r".+,.+"))
    await page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0",
        arg=await c.locator('[data-part="qr-image"]').element_handle(),
    )
    await expect(c.locator('[data-field="qr-expiry"]')).to_contain_text(re.compile(r"expires in \d+ s"))
    await b.shot("04-qr")

    # The simulated phone scans what the page shows; the page turns open by itself.
    qr = await qr_panel.get_attribute("data-qr")
    assert qr
    await wasim.scan_qr(qr, me)
    await expect(c).to_have_attribute("data-state", "open")
    await expect(c.locator('[data-field="state"]')).to_have_text("open")
    await expect(c.locator('[data-field="pn"]')).to_have_text(f"+{me.phone}")
    await expect(c.locator('[data-field="lid"]')).to_have_text(me.lid)
    await expect(c.locator('[data-part="link"]')).to_be_hidden()
    await b.shot("05-open")

    # A contact writes: the received counter moves, the test bot's echo moves the sent one.
    await wasim.send_text(contact, me, "hello from the browser test")
    await expect(c.locator('[data-field="received"]')).to_have_text("1")
    await expect(c.locator('[data-field="sent"]')).to_have_text("1")
    await expect(c.locator('[data-field="last-message"]')).not_to_have_text("none yet")
    await expect(page.locator(f'#feed li[data-session-id="{sid}"]').first).to_be_visible()
    await b.shot("06-message-received")

    # Log out: confirmed in a dialog, then the card is gone.
    async def accept(dialog: Any) -> None:
        b.dialogs.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await c.locator('[data-action="logout"]').click()
    await expect(c).to_have_count(0)
    assert b.dialogs and sid in b.dialogs[0] and "Log out" in b.dialogs[0]
    await expect(page.locator("#notice")).to_contain_text("logged out")
    await b.shot("07-logged-out")
    status, _ = await api.call("GET", f"/v1/sessions/{sid}")
    assert status == 404

    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    lists = [r for r in b.requests if r == f"GET {b.base}/v1/sessions"]
    # the wrong key, the right one, then the list once the stream is open: nothing since
    assert len(lists) == 3, f"the page reads the list besides following the stream: {b.requests}"
    await b.assert_key_kept_in_the_tab_only()
    assert not b.csp_violations(), b.csp_violations()
    assert not [c for c in b.console if c.startswith("pageerror")], b.console


async def test_link_by_pairing_code_from_the_form(browser: Browser, api: Api, wasim: WasimClient) -> None:
    from playwright.async_api import expect

    b = browser
    sid = "browser-code"
    me = new_person()
    await sign_in(b)
    c = await create(b, sid)
    await c.locator('input[name="phone"]').fill(f"+{me.phone}")
    await c.locator('[data-part="pairing"] button[type=submit]').click()
    out = c.locator('[data-field="pairing-code"]')
    await expect(out).to_have_attribute("data-code", re.compile(r"^[A-Z0-9]{8}$"))
    await expect(c).to_have_attribute("data-state", "pairing_code")
    await b.shot("08-pairing-code")

    code = await out.get_attribute("data-code")
    assert code
    await wasim.enter_pairing_code(code, me)
    await expect(c).to_have_attribute("data-state", "open")

    b.page.once("dialog", lambda dialog: dialog.accept())
    await c.locator('[data-action="delete"]').click()
    await expect(c).to_have_count(0)
    await b.assert_key_kept_in_the_tab_only()
    assert not b.csp_violations(), b.csp_violations()


async def test_swagger_ui_reads_the_document_and_authorizes_without_storing_the_key(browser: Browser) -> None:
    from playwright.async_api import expect

    b, page = browser, browser.page
    await page.goto(b.base + "/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("wa-relay connector")
    await expect(page.locator(".opblock-summary-path", has_text="/v1/sessions/{id}/qr").first).to_be_visible()
    await b.shot("09-api-docs", full_page=False)

    await page.locator("button.authorize").first.click()
    await page.locator(".auth-container input").fill(API_KEY)
    await page.locator(".auth-btn-wrapper button.authorize").click()
    await page.locator(".auth-btn-wrapper button.btn-done").click()
    await expect(page.locator("button.authorize.locked").first).to_be_visible()

    await b.assert_key_kept_in_the_tab_only()
    assert not b.csp_violations(), b.csp_violations()
    urls = [r.split(" ", 1)[1] for r in b.requests]
    assert f"{b.base}/openapi.json" in urls
    assert all(u.startswith(b.base) for u in urls if u.startswith("http")), "a request left the connector"


async def test_the_page_follows_the_stream_again_after_a_connector_restart(
    browser: Browser, api: Api, relay: tuple[LocalStack, ConnectorProcess]
) -> None:
    from playwright.async_api import expect

    b, connector = browser, relay[1]
    sid = "browser-restart"
    await sign_in(b)
    status, body = await api.call("POST", "/v1/sessions", {"session_id": sid})
    assert status == 201, body
    await expect(card(b, sid)).to_have_count(1)

    connector.stop()
    await expect(b.page.locator("#live")).to_have_attribute("data-live", "off")
    await b.shot("10-reconnecting")
    connector.start()
    await expect(b.page.locator("#live")).to_have_attribute("data-live", "on")
    await expect(b.page.locator("#feed")).to_contain_text("reconnected")

    await expect(card(b, sid)).to_have_count(1)  # read again from the list the new connector serves

    # What happens after the restart reaches the page through the new stream.
    after = "browser-after-restart"
    status, body = await api.call("POST", "/v1/sessions", {"session_id": after})
    assert status == 201, body
    await expect(card(b, after)).to_have_attribute("data-state", "qr")
    await b.shot("11-after-restart")
    status, body = await api.call("DELETE", f"/v1/sessions/{after}")
    assert status == 200, body
    await expect(card(b, after)).to_have_count(0)
    await b.assert_key_kept_in_the_tab_only()
