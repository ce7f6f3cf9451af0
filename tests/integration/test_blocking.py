"""Blocking queries on the endpoints route (docs/api.md): ?index=N&wait=D
answers as soon as the service's index passes N, or at D with the same
index. A blocked caller holds a suspended connection, no thread; a change
to one service wakes only the callers blocked on it; a caller that hangs
up is cleaned up at once; a daemon that stops answers or closes them all.
"""

import asyncio
import json

import pytest
import websockets

from harness import WAIT, Discoveryd, ws_run
from test_endpoints import endpoints, hello, status, wait_until
from test_link_protocol import SUB, recv

EP = "/api/discovery/services/%s/endpoints"
# Room for a few hundred blocked callers from 127.0.0.1 (docs/api.md).
ROOMY = ("limits:\n  max_http: 1024\n  max_http_per_ip: 1024\n"
         "  max_streams: 512\n  max_streams_per_ip: 512\n")


@pytest.fixture
def roomy(tmp_path):
    d = Discoveryd(tmp_path, extra=ROOMY)
    yield d
    assert d.stop() == 0, d.text()


def sample(d, name):
    """One sample of /metrics, labels and all in name."""
    st, text = d.call("GET", "/metrics")
    assert st == 200
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


def blocked(d):
    return sample(d, "discovery_http_blocked")


def woke(d, reason):
    return sample(d, 'discovery_http_blocked_wakeups_total{reason="%s"}'
                  % reason)


class Caller:
    """One HTTP request on its own connection, written by hand so that a
    test can hold it open, read it later, or hang up."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def send(cls, d, path, method="GET"):
        host, port = d.http_addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                      % (method, path, d.http_addr)).encode())
        await writer.drain()
        return cls(reader, writer)

    async def answer(self, timeout=WAIT, body=True):
        """(status, headers, parsed body or None)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"),
                                      timeout)
        lines = head.decode().split("\r\n")
        st = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0")) if body else 0
        data = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        await self.close()
        return st, headers, json.loads(data) if data else None

    async def close(self):
        self.writer.close()  # the socket closes when the loop runs
        await self.writer.wait_closed()


async def instance(d, service, name, address):
    ws = await websockets.connect(d.ws_url, subprotocols=SUB)
    await ws.send(hello(service=service, instance=name, address=address))
    assert (await recv(ws))["type"] == "welcome"
    await ws.send(status(ready=True, state="ready"))
    return ws


def index_of(d, service):
    st, idx, body = endpoints(d, service, "?state=any")
    assert st == 200 and int(idx) == body["index"]
    return int(idx)


def until_blocked(d, n):
    wait_until(lambda: blocked(d) == n)


def test_blocks_until_the_service_changes(daemon):
    async def scenario():
        api = await instance(daemon, "api", "api-1", "10.0.0.1:80")
        wait_until(lambda: len(endpoints(daemon, "api")[2]["endpoints"]))
        i = index_of(daemon, "api")
        c = await Caller.send(daemon, EP % "api" + "?index=%d&wait=5m" % i)
        h = await Caller.send(daemon, EP % "api" + "?index=%d" % i, "HEAD")
        until_blocked(daemon, 2)
        await api.send(status(ready=True, state="ready", load=0.5))
        st, headers, body = await c.answer()
        assert st == 200 and body["index"] > i
        assert int(headers["x-discovery-index"]) == body["index"]
        assert [(e["instance"], e["load"]) for e in body["endpoints"]] == \
            [("api-1", 0.5)]
        st, headers, _ = await h.answer(body=False)
        assert st == 200 and int(headers["x-discovery-index"]) > i
        # An index already passed, or 0, answers at once.
        st, headers, body = await (await Caller.send(
            daemon, EP % "api" + "?index=%d&wait=10m" % i)).answer()
        assert st == 200 and body["index"] > i
        st, _, body = await (await Caller.send(
            daemon, EP % "api" + "?index=0&wait=10m")).answer()
        assert st == 200 and body["endpoints"]
        assert blocked(daemon) == 0 and woke(daemon, "index") >= 2
        await api.close()

    ws_run(scenario())


def test_wait_ends_with_the_same_index(daemon):
    async def scenario():
        i = index_of(daemon, "api")
        c = await Caller.send(daemon, EP % "api" + "?index=%d&wait=1s" % i)
        d = await Caller.send(daemon,
                              EP % "nowhere" + "?index=%d&wait=500ms" % i)
        st, headers, body = await c.answer()
        assert st == 200 and body["index"] == i and body["endpoints"] == []
        assert int(headers["x-discovery-index"]) == i
        assert (await d.answer())[0] in (200, 404)
        assert woke(daemon, "wait") == 2 and woke(daemon, "index") == 0

    ws_run(scenario())


def test_bad_index_or_wait_is_400(daemon):
    bad = [("index=-1", "index"), ("index=+1", "index"),
           ("index=%201", "index"), ("index=01", "index"),
           ("index=", "index"), ("index=1x", "index"),
           ("index=18446744073709551616", "index"), ("index=0x10", "index"),
           ("index=1&wait=30", "wait"), ("index=1&wait=-1s", "wait"),
           ("index=1&wait=0", "wait"), ("index=1&wait=0s", "wait"),
           ("index=1&wait=1.5ms", "wait"), ("index=1&wait=5y", "wait"),
           ("index=1&wait=", "wait"), ("wait=30s", "wait")]
    for q, key in bad:
        st, _, body = endpoints(daemon, "api", "?" + q)
        assert st == 400 and body["error"] == "bad_request", (q, body)
        assert "'%s'" % key in body["message"], (q, body)
    assert blocked(daemon) == 0  # each was answered, none is waiting


def test_wait_over_ten_minutes_is_taken_as_ten(daemon):
    """1h is clamped (not refused): the caller blocks; it hangs up."""
    async def scenario():
        c = await Caller.send(daemon, EP % "api" +
                              "?index=18446744073709551615&wait=1h")
        until_blocked(daemon, 1)
        await c.close()
        wait_until(lambda: blocked(daemon) == 0)

    ws_run(scenario())


def test_a_caller_that_hangs_up_is_cleaned_up(roomy):
    daemon = roomy

    async def scenario():
        i = index_of(daemon, "api")
        callers = [await Caller.send(daemon, EP % "api" +
                                     "?index=%d&wait=10m" % i)
                   for _ in range(20)]
        until_blocked(daemon, 20)
        for c in callers:
            await c.close()
        wait_until(lambda: blocked(daemon) == 0)
        assert woke(daemon, "hangup") == 20
        wait_until(lambda: sample(
            daemon, 'discovery_http_connections{state="blocked"}') == 0)
        # The service changes afterwards: nobody is left to wake.
        api = await instance(daemon, "api", "api-1", "10.0.0.1:80")
        wait_until(lambda: index_of(daemon, "api") > i)
        assert woke(daemon, "index") == 0
        await api.close()

    ws_run(scenario())


def test_a_change_to_one_service_wakes_no_caller_of_another(roomy):
    daemon = roomy

    async def scenario():
        web = await instance(daemon, "web", "web-1", "10.0.0.2:80")
        wait_until(lambda: len(endpoints(daemon, "web")[2]["endpoints"]))
        w = index_of(daemon, "web")
        callers = [await Caller.send(daemon, EP % "web" +
                                     "?index=%d&wait=10m" % w)
                   for _ in range(50)]
        until_blocked(daemon, 50)
        api = await instance(daemon, "api", "api-1", "10.0.0.1:80")
        last = 0
        for n in range(10):
            await api.send(status(ready=True, state="ready",
                                  load=(n + 1) / 20))
            # Published: its waiters, had it any, were woken with it.
            wait_until(lambda: endpoints(daemon, "api")[2]["endpoints"]
                       and endpoints(daemon, "api")[2]["endpoints"][0]
                       ["load"] == (n + 1) / 20)
            assert index_of(daemon, "api") > last
            last = index_of(daemon, "api")
            assert blocked(daemon) == 50 and woke(daemon, "index") == 0
        await web.send(status(ready=True, state="ready", load=0.9))
        for c in callers:
            st, _, body = await c.answer()
            assert st == 200 and body["index"] > w
            assert body["endpoints"][0]["load"] == 0.9
        assert woke(daemon, "index") == 50 and blocked(daemon) == 0
        await api.close()
        await web.close()

    ws_run(scenario())


def test_many_blocked_callers_all_answer_after_one_change(roomy):
    d = roomy

    async def scenario():
        i = index_of(d, "api")
        callers = await asyncio.gather(*[
            Caller.send(d, EP % "api" + "?state=any&index=%d&wait=10m" % i)
            for _ in range(200)])
        until_blocked(d, 200)
        api = await instance(d, "api", "api-1", "10.0.0.1:80")
        answers = await asyncio.gather(*[c.answer() for c in callers])
        assert {(st, body["index"] > i, len(body["endpoints"]))
                for st, _, body in answers} == {(200, True, 1)}
        assert woke(d, "index") == 200 and blocked(d) == 0
        await api.close()

    ws_run(scenario())


def test_blocked_callers_share_the_stream_caps(tmp_path):
    d = Discoveryd(tmp_path, extra="limits:\n  max_streams_per_ip: 2\n")
    try:
        async def scenario():
            i = index_of(d, "api")
            q = EP % "api" + "?index=%d&wait=10m" % i
            held = [await Caller.send(d, q) for _ in range(2)]
            until_blocked(d, 2)
            st, headers, body = await (await Caller.send(d, q)).answer()
            assert st == 503 and body["error"] == "full"
            assert "max_streams_per_ip" in body["message"]
            assert headers["retry-after"]
            for c in held:
                await c.close()
            wait_until(lambda: blocked(d) == 0)

        ws_run(scenario())
    finally:
        assert d.stop() == 0, d.text()


def test_stopping_answers_blocked_callers(tmp_path):
    d = Discoveryd(tmp_path)
    try:
        async def scenario():
            i = index_of(d, "api")
            callers = [await Caller.send(d, EP % "api" +
                                         "?index=%d&wait=10m" % i)
                       for _ in range(6)]  # within max_streams_per_ip
            until_blocked(d, 6)
            stopped = asyncio.get_running_loop().run_in_executor(
                None, d.stop)
            for c in callers:
                try:  # answered with what it has, or closed
                    st, _, body = await c.answer()
                    assert st in (200, 503), st
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
            assert await stopped == 0, d.text()

        ws_run(scenario())
    finally:
        d.stop()


def test_discoveryctl_endpoints_watch(daemon):
    """endpoints --watch prints the set, then each new one as it comes."""
    import os
    import subprocess
    from harness import BIN, Proc
    watch = Proc([os.path.join(BIN, "discoveryctl"), "-s", daemon.base,
                  "--json", "endpoints", "api", "--watch"], "discoveryctl",
                 env=dict(os.environ, NO_COLOR="1"))

    def sets():
        return [json.loads(l) for l in watch.text().splitlines()
                if l.startswith("{")]

    async def scenario():
        watch.wait_line(r'^\{"service":"api"')
        assert sets()[0]["endpoints"] == []
        until_blocked(daemon, 1)
        api = await instance(daemon, "api", "api-1", "10.0.0.1:80")
        wait_until(lambda: any(s["endpoints"] and s["endpoints"][0]["state"]
                               == "ready" for s in sets()))
        await api.send(status(ready=False, state="draining"))
        wait_until(lambda: sets()[-1]["endpoints"] and
                   sets()[-1]["endpoints"][0]["state"] == "draining")
        indexes = [s["index"] for s in sets()]
        assert indexes == sorted(set(indexes)), indexes  # each set once
        await api.close()

    try:
        ws_run(scenario())
    finally:
        watch.stop()
    rc = subprocess.run([os.path.join(BIN, "discoveryctl"), "-s",
                         daemon.base, "endpoints", "Bad", "--watch"],
                        capture_output=True).returncode
    assert rc == 2
