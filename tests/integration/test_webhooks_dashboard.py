"""The dashboard shows each webhook endpoint's state, in headless Chromium:
delivering, then disabled by a 410 with its reason, then enabled again
from the page's own button. Screenshot dashboard-webhooks.png."""

import os

import pytest

from cdp import CHROMIUM, Browser
from harness import Discoveryd, ws_run
from test_dashboard import dashboard, q, click
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="chromium is not installed")


@pytest.fixture(scope="module")
def browser():
    b = Browser(window="1280,800")
    yield b
    b.stop()


def test_webhooks_panel(tmp_path, browser):
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    gone = {"on": False}
    rx = Receiver([secret], answer=lambda rec, k: 410 if gone["on"] else 200)
    d = Discoveryd(tmp_path, extra=webhooks_yaml(
        purge={"url": rx.url, "secret_file": path}))
    row = '#webhooks [data-webhook="purge"]'

    async def scenario():
        async with dashboard(browser, d.base) as page:
            await page.wait(q(row + '[data-state="delivering"]'), 30)
            assert not await page.eval(q("#webhooks-panel") + ".hidden")
            gone["on"] = True
            st, _ = d.call("POST", "/api/discovery/invalidate",
                           {"keys": ["k"]})
            assert st == 202
            await page.wait(q(row + '[data-state="disabled"]'), 30)
            assert "410" in await page.eval(q(row) + ".textContent")
            await page.screenshot("dashboard-webhooks.png")
            gone["on"] = False
            await click(page, row + " button")
            await page.wait(q(row + '[data-state="delivering"]'), 30)
            rx.wait(lambda r: r.acked, what="the event after enable")
    try:
        ws_run(scenario())
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
