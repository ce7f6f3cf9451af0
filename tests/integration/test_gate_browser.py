"""A real browser behind the gate: headless Chromium opens the app while the
gate is locked and gets the loading page; after cacheready the page reloads
itself (it polls /.well-known/discovery-gate) and shows the app, with no
manual reload. Screenshots of both are saved as test artefacts (in
$DISCOVERY_TEST_ARTIFACTS, default build/test-artifacts/)."""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

import pytest
import websockets

from cdp import Page
from gate_harness import Gate, Upstream
from harness import ROOT, WAIT, Proc, ws_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.environ.get("DISCOVERY_TEST_ARTIFACTS",
                           os.path.join(ROOT, "build", "test-artifacts"))

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="chromium is not installed")


def test_loading_page_then_app(daemon, tmp_path):
    u = Upstream()
    g = Gate(tmp_path, daemon, u.url)
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = None
    try:
        g.wait_line(r"msg=linked")
        browser = Proc([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--user-data-dir=" + profile,
                        "--remote-debugging-port=0", "--window-size=900,600",
                        "about:blank"], "chromium")
        m = browser.wait_line(r"DevTools listening on ws://([^/]+)/", timeout=30)
        with urllib.request.urlopen("http://%s/json/list" % m.group(1),
                                    timeout=WAIT) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")

        async def scenario():
            async with websockets.connect(target["webSocketDebuggerUrl"],
                                          max_size=None) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                # Navigate only once events are on, so the load event
                # waited for is this page's, never about:blank's.
                await page.call("Page.navigate", url=g.url + "/")
                await page.event("Page.loadEventFired")
                text = await page.eval("document.body.innerText")
                assert "Application components are loading" in text, text
                assert "cache" in text
                await page.screenshot("gate-browser-locked.png")

                page.events = asyncio.Queue()  # only loads from now on
                mark = g.mark()
                daemon.call("POST", "/api/discovery/cacheready")
                g.wait_line(r"msg=open why=", start=mark)
                # The page notices by itself and reloads: the next load.
                await asyncio.wait_for(page.event("Page.loadEventFired"), WAIT)
                assert await page.eval(
                    "document.getElementById('app').textContent") == \
                    "The app is here"
                await page.screenshot("gate-browser-open.png")
            return True

        assert ws_run(scenario())
    finally:
        if browser:
            browser.stop()
        shutil.rmtree(profile, ignore_errors=True)
        assert g.stop() == 0, g.text()
        u.stop()
