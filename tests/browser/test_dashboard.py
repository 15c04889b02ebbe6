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

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infra.local.stack import LocalStack
from tests.browser.page import Browser, card, create, open_browser, sign_in
from tests.e2e.conftest import API_KEY
from tests.support.relay import Api, ConnectorProcess
from tests.support.wasim import WasimClient, new_person

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(relay: tuple[LocalStack, ConnectorProcess]) -> LocalStack:
    return relay[0]


@pytest.fixture
async def api(stack: LocalStack) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, stack.api_url, API_KEY)


@pytest.fixture
async def browser(stack: LocalStack, chromium: Path) -> AsyncIterator[Browser]:
    async with open_browser(chromium, stack.api_url, API_KEY) as b:
        yield b


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
    # The stop released its lease, even one taken while its connect was cut short: this connector may delete it.
    status, body = await api.call("DELETE", f"/v1/sessions/{sid}")
    assert status == 200, body
    await expect(card(b, sid)).to_have_count(0)

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
