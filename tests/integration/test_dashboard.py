"""The dashboard at / in headless Chromium: an empty state, then a newly
linked agent, a readiness change and its event, all live over SSE without a
reload; the Ready / Not ready / Auto buttons and the invalidate form act on
the daemon; with auth on, the page asks for a token, says when a token may
not do something, and follows the stream with ?token=. Text from the server
is shown as text, never as markup. Screenshots (dashboard-*.png) are saved in
$DISCOVERY_TEST_ARTIFACTS (default build/test-artifacts/)."""

import contextlib
import json
import os
import re
import subprocess

import pytest
import websockets

from cdp import CHROMIUM, Browser, Page
from harness import BIN, Discoveryd, write, ws_run

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="chromium is not installed")

SUB = ["discovery.v1"]


@pytest.fixture(scope="module")
def browser():
    b = Browser(window="1280,800")
    yield b
    b.stop()


@contextlib.asynccontextmanager
async def dashboard(browser, base, width=1280, height=800):
    async with websockets.connect(browser.ws_url, max_size=None) as ws:
        page = Page(ws)
        await page.call("Emulation.setDeviceMetricsOverride", width=width,
                        height=height, deviceScaleFactor=1, mobile=False)
        await page.call("Page.enable")
        await page.call("Runtime.enable")
        await page.call("Log.enable")
        # Navigate only once events are on, so the load event waited for
        # is this page's, never about:blank's.
        await page.call("Page.navigate", url=base + "/")
        await page.event("Page.loadEventFired")
        # Gone if the page ever reloads: everything below must be live.
        await page.eval("window.__sameLoad = true")
        yield page
        assert await page.eval("window.__sameLoad === true")
        # No script error, no CSP violation; failed loads (401, 403, the
        # favicon's 404) are expected.
        while not page.events.empty():
            m = page.events.get_nowait()
            assert m.get("method") != "Runtime.exceptionThrown", m
            if m.get("method") == "Log.entryAdded":
                assert m["params"]["entry"]["source"] == "network", m


async def link(daemon, service, instance, depends_on=(), meta=None,
               token=None):
    url = daemon.ws_url + ("?token=" + token if token else "")
    ws = await websockets.connect(url, subprotocols=SUB)
    hello = {"type": "hello", "service": service, "instance": instance,
             "address": "10.0.0.%d:8080" % (len(instance) + 1),
             "depends_on": list(depends_on), "meta": meta or {}}
    await ws.send(json.dumps(hello))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    return ws


def q(css):
    """A JS expression: the first element matching css."""
    return "document.querySelector(%s)" % json.dumps(css)


def card(service):
    return '#services [data-service="%s"]' % service


def live():
    return "document.getElementById('conn').dataset.state === 'live'"


async def click(page, css):
    assert await page.eval("(() => { const b = %s; if (!b) return false; "
                           "b.click(); return true; })()" % q(css)), css


def test_live_dashboard(daemon, browser, tmp_path):
    async def scenario():
        async with dashboard(browser, daemon.base) as page:
            # 1. Empty: no services, no events, the stream is up.
            await page.wait(live())
            text = await page.eval("document.body.innerText")
            assert "No services yet" in text and "No events yet" in text
            assert await page.eval(q("#services") + ".hidden")
            await page.screenshot("dashboard-empty.png")

            # 2. An agent links: its instance and service show up, and the
            # services it depends on.
            web = await link(daemon, "web", "web-1", ["cache", "api"],
                             {"zone": "a"})
            await page.wait(q(card("web") + ' [data-instance="web-1"]'))
            await page.wait(q(card("cache")))
            assert await page.eval(q(card("cache")) + ".dataset.ready") == \
                "false"
            assert await page.eval(q("#services-empty") + ".hidden")

            # Server text is text: markup in an instance id or meta is shown
            # as typed, never parsed.
            evil = "<b>x</b><img/src=x/onerror=window.__pwned=1>"
            bad = await link(daemon, "web", evil,
                             meta={"note": "<i>hi</i>"})
            row = q(card("web") + " [data-instance=%s]" % json.dumps(evil))
            await page.wait(row)
            assert await page.eval(row + ".querySelector('b, i, img')") is None
            row_text = await page.eval(row + ".textContent")
            assert evil in row_text and "note=<i>hi</i>" in row_text
            await bad.close()
            await page.wait("!" + row)
            assert await page.eval("window.__pwned") is None

            caches = [await link(daemon, "cache", "cache-%d" % i)
                      for i in (1, 2)]
            api = await link(daemon, "api", "api-1", ["cache"])
            await api.send(json.dumps({"type": "status", "ready": True}))
            await page.wait(q(card("api") + '[data-ready="true"]'))
            await page.wait("document.querySelectorAll(%s).length === 2" %
                            json.dumps(card("cache") + " [data-instance]"))

            # Each instance shows its address, state, load and weight, and
            # follows them as the instance reports.
            inst = q(card("api") + ' [data-instance="api-1"]')
            await page.wait(inst + ".dataset.state === 'ready'")
            text = await page.eval(inst + ".textContent")
            assert "addr 10.0.0.6:8080" in text and "weight 100" in text
            assert "load —" in text
            await api.send(json.dumps({"type": "status", "ready": False,
                                       "state": "draining", "load": 0.42}))
            await page.wait(inst + ".dataset.state === 'draining'")
            await page.wait(inst + ".textContent.includes('load 42%')")
            assert "draining" in await page.eval(
                inst + ".querySelector('.inst-state').textContent")
            await page.screenshot("dashboard-draining.png")
            await api.send(json.dumps({"type": "status", "ready": True,
                                       "state": "ready", "load": 0.42}))
            await page.wait(q(card("api") + '[data-ready="true"]'))

            # 3. A readiness change through the API: the card turns ready
            # and the event heads the list.
            st, body = daemon.call("POST",
                                   "/api/discovery/services/cache/ready",
                                   {"ttl": "90s"})
            assert st == 200 and body["ready"] and body["seq"]
            await page.wait(q(card("cache") + '[data-ready="true"]'
                              '[data-declared="ready"]'))
            assert re.search(r"TTL 1m [23]\ds", await page.eval(
                q(card("cache")) + ".textContent"))
            ev = q('#events li[data-seq="%d"]' % body["seq"])
            await page.wait(ev)
            assert await page.eval(ev + ".dataset.kind") == "readiness"
            assert "cache → ready" in await page.eval(ev + ".textContent")
            # Newest first: whatever heads the list is no older (another
            # event may follow it at once, e.g. a readiness it caused).
            assert int(await page.eval(q("#events li") + ".dataset.seq")) >= \
                body["seq"]
            await page.wait("document.getElementById('seq').textContent"
                            " === %s" % json.dumps(str(body["seq"])))

            # The invalidate form, to web's instances.
            await page.eval(q("#inv-keys") + ".value = 'user:42, SimpleCacheItem'")
            await page.eval(q("#inv-service") + ".value = 'web'")
            await page.eval(q("#inv-form") + ".requestSubmit()")
            await page.wait(q('#events li[data-kind="invalidate"]'))
            _, evs = daemon.call("GET", "/api/discovery/events?after=%d" %
                                 body["seq"])
            assert [e["value"] for e in evs["events"]] == \
                [{"keys": ["user:42", "SimpleCacheItem"]}]
            await page.wait(q("#inv-result") + ".textContent.includes("
                            "'event #%d, delivered to 1 agent.')" %
                            (body["seq"] + 1))

            # 4. "Not ready" clicked on the page: the daemon declares it.
            await click(page, card("cache") + ' button[data-action="notready"]')
            await page.wait(q(card("cache") + '[data-ready="false"]'
                              '[data-declared="notready"]'))
            st, svc = daemon.call("GET", "/api/discovery/services/cache")
            assert (st, svc["declared"], svc["ready"]) == \
                (200, "notready", False)
            await web.send(json.dumps({"type": "status", "ready": True}))
            await page.wait(q(card("web") + '[data-ready="true"]'))
            await page.screenshot("dashboard-live.png")

            # "Auto": the declaration goes, readiness follows the instances.
            await click(page, card("cache") + ' button[data-action="auto"]')
            await page.wait(q(card("cache") + '[data-declared="none"]'))
            _, svc = daemon.call("GET", "/api/discovery/services/cache")
            assert svc["declared"] is None and svc["ready"] is False

            # Still usable on a phone: one column, nothing wider than it.
            await page.call("Emulation.setDeviceMetricsOverride", width=390,
                            height=844, deviceScaleFactor=1, mobile=True)
            assert await page.eval(
                "document.documentElement.scrollWidth <= window.innerWidth")
            await page.screenshot("dashboard-narrow.png")

            await page.call("Emulation.setDeviceMetricsOverride", width=1280,
                            height=800, deviceScaleFactor=1, mobile=False)
            for ws in [web, api] + caches:
                await ws.close()
            # Nothing refers to a service any more: the empty state again.
            await page.wait("!" + q("#services-empty") + ".hidden")

            # The daemon restarts: the page says so, comes back by itself
            # (same ports, same journal) and resumes the stream.
            assert daemon.stop() == 0, daemon.text()
            await page.wait(q("#conn") + ".dataset.state !== 'live'")
            again = Discoveryd(tmp_path, http_port=port(daemon.http_addr),
                               agents_port=port(daemon.agents_addr))
            try:
                await page.wait(live())
                _, r = again.call("POST", "/api/discovery/cacheready")
                await page.wait(q('#events li[data-seq="%d"]' % r["seq"]))
                await page.wait(q(card("cache") + '[data-ready="true"]'))
            finally:
                assert again.stop() == 0, again.text()
        return True

    assert ws_run(scenario())


def port(addr):
    return int(addr.rsplit(":", 1)[1])


def issue(secret_file, role):
    r = subprocess.run([os.path.join(BIN, "discoveryctl"), "token", "issue",
                        "--role", role, "--ttl", "1h", "--sub", "dashboard",
                        "--secret-file", secret_file],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


def test_token_prompt(tmp_path, browser):
    secret = write(os.path.join(str(tmp_path), "secret"),
                   os.urandom(32).hex() + "\n")
    os.chmod(secret, 0o600)
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % secret)
    admin, reader = issue(secret, "admin"), issue(secret, "reader")
    auth = {"Authorization": "Bearer " + admin}
    try:
        assert d.call("POST", "/api/discovery/services/cache/ready",
                      headers=auth)[0] == 200

        async def enter(page, token):
            await page.eval(q("#token-input") + ".value = %s" %
                            json.dumps(token))
            await page.eval(q("#token-form") + ".requestSubmit()")

        async def scenario():
            async with dashboard(browser, d.base) as page:
                dialog = "!" + q("#token-dialog") + ".hidden"
                await page.wait(dialog)
                assert await page.eval(q("#conn") + ".dataset.state") == \
                    "locked"
                assert await page.eval(q(card("cache"))) is None
                await page.screenshot("dashboard-token.png")

                # A bad token: asked again, and told why.
                await enter(page, "garbage")
                await page.wait(dialog + " && !" + q("#token-why") +
                                ".hidden")
                assert "refused" in await page.eval(
                    q("#token-why") + ".textContent")

                # A reader token: it may watch, not act.
                await enter(page, reader)
                await page.wait(q(card("cache") + '[data-ready="true"]') +
                                " && " + live())
                await click(page, card("cache") +
                            ' button[data-action="notready"]')
                await page.wait("!%s.hidden && %s.textContent.includes("
                                "'This token may not declare cache not "
                                "ready')" % (q("#notice"), q("#notice")))
                _, svc = d.call("GET", "/api/discovery/services/cache",
                                headers=auth)
                assert svc["declared"] == "ready"
                await page.screenshot("dashboard-forbidden.png")

                # Forget it; an admin token may act.
                await click(page, "#forget")
                await page.wait(dialog)
                await enter(page, admin)
                await page.wait(q(card("cache")) + " && " + live())
                assert await page.eval(
                    "sessionStorage.getItem('discovery.token')") == admin
                # The stream carries the token too (?token=).
                _, inv = d.call("POST", "/api/discovery/invalidate",
                                {"keys": ["k"]}, headers=auth)
                await page.wait(q('#events li[data-seq="%d"]' % inv["seq"]))
                await click(page, card("cache") +
                            ' button[data-action="notready"]')
                await page.wait(q(card("cache") +
                                  '[data-declared="notready"]'))
                _, svc = d.call("GET", "/api/discovery/services/cache",
                                headers=auth)
                assert (svc["declared"], svc["ready"]) == ("notready", False)
            return True

        assert ws_run(scenario())
    finally:
        assert d.stop() == 0, d.text()
