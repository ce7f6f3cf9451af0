"""A real browser behind the gate: headless Chromium opens the app while the
gate is locked and gets the loading page; after cacheready the page reloads
itself (it polls /.well-known/discovery-gate) and shows the app, with no
manual reload. Screenshots of both are saved as test artefacts (in
$DISCOVERY_TEST_ARTIFACTS, default build/test-artifacts/)."""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

import pytest
import websockets

from gate_harness import Gate, Upstream
from harness import ROOT, WAIT, Proc, ws_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.environ.get("DISCOVERY_TEST_ARTIFACTS",
                           os.path.join(ROOT, "build", "test-artifacts"))

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="chromium is not installed")


class Page:
    """The Chrome DevTools Protocol on one page target."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events = asyncio.Queue()

    async def call(self, method, **params):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": method,
                                       "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.put_nowait(msg)

    async def event(self, name):
        while True:
            while not self.events.empty():
                msg = self.events.get_nowait()
                if msg.get("method") == name:
                    return msg
            msg = json.loads(await self.ws.recv())
            if msg.get("method") == name:
                return msg

    async def eval(self, expr):
        r = await self.call("Runtime.evaluate", expression=expr,
                            returnByValue=True)
        return r["result"].get("value")

    async def screenshot(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        r = await self.call("Page.captureScreenshot", format="png")
        path = os.path.join(ARTIFACTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path


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
