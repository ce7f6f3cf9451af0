"""Headless Chromium driven over the Chrome DevTools Protocol (CDP): a
browser process on a throw-away profile, and one page target's WebSocket.
Screenshots go to $DISCOVERY_TEST_ARTIFACTS (default build/test-artifacts/)."""

import asyncio
import base64
import json
import os
import shutil
import tempfile
import urllib.request

from harness import ROOT, WAIT, Proc

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.environ.get("DISCOVERY_TEST_ARTIFACTS",
                           os.path.join(ROOT, "build", "test-artifacts"))


class Browser:
    """chromium --headless on about:blank, DevTools on a free port; ws_url
    is the page target's CDP WebSocket."""

    def __init__(self, window="900,600"):
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc = None
        try:
            self.proc = Proc([CHROMIUM, "--headless", "--no-sandbox",
                              "--disable-gpu", "--disable-quic",
                              "--no-first-run",
                              "--disable-background-networking",
                              "--disable-component-update", "--disable-sync",
                              "--user-data-dir=" + self.profile,
                              "--remote-debugging-port=0",
                              "--window-size=" + window, "about:blank"],
                             "chromium")
            m = self.proc.wait_line(r"DevTools listening on ws://([^/]+)/",
                                    timeout=30)
            with urllib.request.urlopen("http://%s/json/list" % m.group(1),
                                        timeout=WAIT) as r:
                target = next(t for t in json.load(r) if t["type"] == "page")
            self.ws_url = target["webSocketDebuggerUrl"]
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None
        shutil.rmtree(self.profile, ignore_errors=True)


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
        assert "exceptionDetails" not in r, (expr, r["exceptionDetails"])
        return r["result"].get("value")

    async def wait(self, cond, timeout=None):
        """Wait until the JS expression cond is truthy, checked now and on
        every DOM mutation (a MutationObserver in the page: no polling);
        returns its value. On timeout, fails with the page's text."""
        ms = int(1000 * (timeout or WAIT / 2))
        js = """new Promise((resolve, reject) => {
  const test = () => { try { return (%s); } catch (e) { return false; } };
  let obs = null;
  const timer = setTimeout(() => { if (obs) obs.disconnect();
    reject(new Error('timeout')); }, %d);
  const check = () => { const v = test();
    if (v) { clearTimeout(timer); if (obs) obs.disconnect(); resolve(v); }
    return v; };
  if (!check()) { obs = new MutationObserver(check);
    obs.observe(document, {subtree: true, childList: true,
                           characterData: true, attributes: true}); }
})""" % (cond, ms)
        r = await self.call("Runtime.evaluate", expression=js,
                            awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            body = await self.eval("document.body.innerText")
            raise AssertionError("page never showed %s; it shows:\n%s" %
                                 (cond, body))
        return r["result"].get("value")

    async def screenshot(self, name):
        os.makedirs(ARTIFACTS, exist_ok=True)
        r = await self.call("Page.captureScreenshot", format="png")
        path = os.path.join(ARTIFACTS, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path
