"""The Python binding (bindings/python, docs/python.md) against a real
discoveryd: readiness, endpoints and pick, callbacks on a Python thread
and on asyncio (bounded, resumed), tokens, the WSGI middleware (compared
with the real gate's locked answer) and the example app, pip install into
a venv. The binding's ctypes structs are checked against agent.h as the
C compiler lays it out. Bad input: test_python_binding_errors.py."""

import asyncio
import json
import logging
import os
import subprocess
import threading
import time
import urllib.request
import wsgiref.simple_server

import pytest

from gate_harness import Gate
from harness import ROOT, WAIT, Sidecar, write
from pybinding import (BINDING, FAST, LIB, SKIP_SANITIZED, Recorder, da,
                       readiness, until)

from discovery_agent.wsgi import AcceptanceMiddleware

pytestmark = SKIP_SANITIZED


# ---- the binding matches the header -----------------------------------

LAYOUT_C = r"""
#include <stddef.h>
#include <stdio.h>
#include <discovery/agent.h>
#define F(s, f) printf("%s %s %zu\n", #s, #f, offsetof(struct s, f));
#define S(s) printf("%s sizeof %zu\n", #s, sizeof(struct s));
int main(void) {
BODY
	return 0;
}
"""


def test_structs_match_the_header(tmp_path):
    """Every size and offset of the ctypes structs is the compiler's."""
    from discovery_agent import _capi as C
    structs = {"agent_config": C.AgentConfig,
               "agent_link_info": C.AgentLinkInfo,
               "agent_event": C.AgentEvent,
               "agent_endpoint": C.AgentEndpoint,
               "agent_endpoints": C.AgentEndpoints,
               "agent_info": C.AgentInfo,
               "agent_callbacks": C.AgentCallbacks}
    lines = []
    for cname, cls in structs.items():
        lines.append("S(%s)" % cname)
        lines += ["F(%s, %s)" % (cname, f[0]) for f in cls._fields_]
    src = write(str(tmp_path / "layout.c"),
                LAYOUT_C.replace("BODY", "\n".join(lines)))
    exe = str(tmp_path / "layout")
    subprocess.run(["cc", "-std=c11", "-I", os.path.join(ROOT, "agent",
                                                           "include"),
                    "-o", exe, src], check=True)
    out = subprocess.run([exe], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    checked = 0
    for line in filter(None, out):
        cname, field, value = line.split()
        cls = structs[cname]
        ours = ctypes_size(cls) if field == "sizeof" else \
            getattr(cls, field).offset
        assert ours == int(value), (cname, field, ours, value)
        checked += 1
    assert checked == sum(len(c._fields_) + 1 for c in structs.values())


def ctypes_size(cls):
    import ctypes
    return ctypes.sizeof(cls)


# ---- readiness --------------------------------------------------------

def test_readiness_flips_when_dependencies_announce(daemon, tmp_path):
    rec = Recorder()
    with da.Agent(urls=[daemon.ws_url], service="web", instance="py-1",
                  depends_on=["cache", "api"], **FAST,
                  on_readiness=rec.cb("readiness"), on_link=rec.cb("link"),
                  on_event=rec.cb("event")) as agent:
        rec.wait(lambda c: any(n == "link" and a[0].state ==
                               da.LinkState.LINKED for n, a, _ in c),
                 "the welcome")
        assert agent.linked
        linked = [a[0] for n, a, _ in rec.calls if n == "link" and
                  a[0].state == da.LinkState.LINKED][0]
        epoch = daemon.call("GET", "/api/discovery/info")[1]["epoch"]
        assert (linked.node, linked.epoch, linked.url) == \
            ("test-node", epoch, daemon.ws_url)
        assert linked.reset and not linked.resumed   # the first link
        assert agent.dependencies == ("api", "cache")
        assert not agent.is_ready("cache") and not agent.is_ready("api")
        assert not agent.all_ready()
        assert agent.waiting_for() == ["api", "cache"]
        assert agent.wait_ready(0.2) is False

        daemon.call("POST", "/api/discovery/cacheready")
        rec.wait(lambda c: ("cache", True) in readiness(c), "cache ready")
        assert agent.is_ready("cache") and not agent.all_ready()

        # The real sidecar announces api ready.
        api = Sidecar(tmp_path, daemon.ws_url, "api", "api-1")
        try:
            assert agent.wait_ready(WAIT) is True
            assert agent.all_ready() and agent.is_ready("api")
            assert agent.readiness() == {"api": True, "cache": True}
        finally:
            api.stop()
        rec.wait(lambda c: ("api", False) in readiness(c), "api gone")
        assert not agent.is_ready("api")
        # Not a dependency: false, as in C.
        assert agent.is_ready("nope") is False

        ev = [a[0] for n, a, _ in rec.calls if n == "event" and
              a[0].service == "cache"][0]
        assert ev.kind == "readiness" and ev.ready and ev.seq >= 1
        assert json.loads(ev.json)["kind"] == "readiness"
        # Every callback ran on the agent's delivery thread: a Python
        # thread, not the caller's, and the same one for all.
        threads = {t for _, _, t in rec.calls}
        assert len(threads) == 1
        assert threads != {threading.get_ident()}
        names = [t.name for t in threading.enumerate()
                 if t.ident in threads]
        assert names == ["discovery-agent-web"]
    # Closed: the last callback (the link's end, stopping: no retry) was
    # delivered before close returned, and the delivery thread is gone.
    name, (last,), _ = rec.calls[-1]
    assert name == "link" and last.state == da.LinkState.UNLINKED
    assert last.was_linked and last.retry_ms == 0, last
    assert not [t for t in threading.enumerate() if t.ident in threads]


def test_own_readiness_reaches_the_daemon(daemon):
    with da.Agent(urls=daemon.ws_url, service="api", instance="py-api",
                  address="127.0.0.1:7001", **FAST) as agent:
        until(lambda: agent.linked, "the link")
        assert daemon.call("GET", "/api/discovery/services/api")[1][
            "ready"] is False
        agent.set_ready(True)
        until(lambda: daemon.call("GET", "/api/discovery/services/api")[1][
            "ready"] is True, "api ready in the daemon")
        agent.set_ready(False)
        until(lambda: daemon.call("GET", "/api/discovery/services/api")[1][
            "ready"] is False, "api not ready in the daemon")


def test_load_from_yaml(daemon, tmp_path):
    path = write(str(tmp_path / "agent.yaml"),
                 "discovery: [%s]\nservice: web\ninstance: py-yaml\n"
                 "depends_on: [cache]\nwatch: [api]\n"
                 "backoff: { initial: 50ms, max: 500ms }\n"
                 "ready: true\n" % daemon.ws_url)
    # The sidecar's own key is refused unless allowed, as agent_load_ex.
    with pytest.raises(da.ConfigError) as e:
        da.Agent.load(path)
    assert e.value.message.startswith(path + ":7:1:"), e.value.message
    assert "ready" in e.value.message
    with da.Agent.load(path, extra_keys=["ready"]) as agent:
        assert agent.dependencies == ("cache",)
        assert agent.watched == ("api",)
        info = agent.info()
        assert (info.service, info.instance, info.started) == \
            ("web", "py-yaml", True)
        until(lambda: agent.linked, "the link")
        daemon.call("POST", "/api/discovery/cacheready")
        assert agent.wait_ready(WAIT)


# ---- endpoints and pick -----------------------------------------------

def test_pick_and_endpoints_return_registered_endpoints(daemon, tmp_path):
    rec = Recorder()
    with da.Agent(urls=daemon.ws_url, service="web", instance="py-w",
                  depends_on=["api"], watch_depends_on=True, **FAST,
                  on_endpoints=rec.cb("endpoints")) as web, \
            da.Agent(urls=daemon.ws_url, service="api", instance="api-py",
                     address="127.0.0.1:7101", tags=["blue", "eu"],
                     weight=300, **FAST) as api_py:
        side = Sidecar(tmp_path, daemon.ws_url, "api", "api-side",
                       extra="address: 127.0.0.1:7102\n")
        try:
            assert web.watched == ("api",)
            api_py.set_ready(True)
            api_py.set_load(0.25)
            until(lambda: web.endpoints("api") is not None and
                  web.endpoints("api").n_ready == 2 and
                  web.endpoints("api").endpoints[0].load == 0.25,
                  "two ready endpoints")
            got = web.endpoints("api")
            status, http = daemon.call(
                "GET", "/api/discovery/services/api/endpoints?state=any")
            assert status == 200
            assert [e.instance for e in got] == ["api-py", "api-side"]
            for ours, theirs in zip(got, http["endpoints"]):
                assert ours.instance == theirs["instance"]
                assert ours.address == theirs["address"]
                assert (ours.host, ours.port) == (theirs["host"],
                                                   theirs["port"])
                assert list(ours.tags) == theirs["tags"]
                assert ours.state.name.lower() == theirs["state"]
                assert ours.weight == theirs["weight"]
                assert ours.load == theirs["load"]
                assert ours.node == theirs["node"] == "test-node"
            assert got.endpoints[0].weight == 300
            assert got.endpoints[1].load is None
            assert got.service == "api" and got.index >= 1
            picks = {web.pick("api") for _ in range(200)}
            assert picks == {"127.0.0.1:7101", "127.0.0.1:7102"}

            # Draining leaves the ready set: pick never returns it.
            api_py.set_draining(True)
            until(lambda: web.endpoints("api").n_ready == 1,
                  "api-py draining")
            assert web.endpoints("api").endpoints[0].state == \
                da.EndpointState.DRAINING
            assert {web.pick("api") for _ in range(50)} == \
                {"127.0.0.1:7102"}
        finally:
            side.stop()
        until(lambda: web.endpoints("api").n_ready == 0, "none ready")
        with pytest.raises(da.NoEndpointError) as e:
            web.pick("api")
        assert e.value.code == -9 and "no ready endpoint" in str(e.value)
        assert isinstance(e.value, LookupError)
        # Not watched: an error naming what is.
        with pytest.raises(da.NoEndpointError, match="not watched"):
            web.endpoints("cache")
        with pytest.raises(da.NoEndpointError):
            web.pick("cache")
        rec.wait(lambda c: any(a[0].n_ready == 2 for n, a, _ in c),
                 "on_endpoints with both")
        assert all(isinstance(a[0], da.EndpointSet) for _, a, _ in rec.calls)


# ---- callbacks --------------------------------------------------------

def test_callbacks_on_an_asyncio_loop(daemon):
    async def main():
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        seen = []
        invalidated = asyncio.Event()

        async def on_event(ev):          # a coroutine: run as a task
            await asyncio.sleep(0)
            seen.append(("event", ev.kind, ev.keys,
                         threading.get_ident() == loop_thread))
            if ev.kind == "invalidate":
                invalidated.set()

        def on_readiness(service, ready):
            seen.append(("readiness", service, ready,
                         threading.get_ident() == loop_thread))

        with da.Agent(urls=daemon.ws_url, service="web", instance="py-aio",
                      depends_on=["cache"], loop=loop, on_event=on_event,
                      on_readiness=on_readiness, **FAST) as agent:
            # The HTTP calls block: off the loop.
            await loop.run_in_executor(None, until, lambda: agent.linked,
                                       "the link")
            await loop.run_in_executor(None, daemon.call, "POST",
                                       "/api/discovery/cacheready")
            assert await agent.wait_ready_async(WAIT)
            await loop.run_in_executor(
                None, daemon.call, "POST", "/api/discovery/invalidate",
                {"keys": ["SimpleCacheItem", "k2"], "service": "web"})
            await asyncio.wait_for(invalidated.wait(), WAIT)
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), WAIT * 2))
    assert ("readiness", "cache", True, True) in seen
    assert ("event", "invalidate", ("SimpleCacheItem", "k2"), True) in seen
    assert all(s[-1] for s in seen), seen


def test_a_callback_may_raise_block_or_close(daemon, caplog):
    """An exception is logged and delivery goes on; a callback that blocks
    does not stall the link (heartbeats go on, on the agent thread); one
    that closes the agent closes it."""
    rec = Recorder()
    release = threading.Event()

    def on_readiness(service, ready):
        rec.cb("readiness")(service, ready)
        if len(readiness(rec.calls)) == 1:
            raise RuntimeError("boom")
        release.wait(WAIT)               # the second one blocks

    agent = da.Agent(urls=daemon.ws_url, service="web", instance="py-cb",
                     depends_on=["cache"], on_readiness=on_readiness, **FAST)
    until(lambda: agent.linked, "the link")
    daemon.call("POST", "/api/discovery/cacheready")
    daemon.call("POST", "/api/discovery/services/cache/notready")
    rec.wait(lambda c: len(readiness(c)) == 2, "two readiness calls")
    assert any("boom" in r.getMessage() or "boom" in str(r.exc_info)
               for r in caplog.records)
    # While the delivery thread is blocked, the heartbeat timeout (1.5 s)
    # passes and the link stays up: the agent thread never waits for us.
    time.sleep(2.0)
    assert agent.linked and agent.info().links == 1
    release.set()

    closed = threading.Event()

    def close_me(service, ready):
        agent.close()
        closed.set()
    agent.on_readiness = close_me        # callbacks may be swapped live
    daemon.call("POST", "/api/discovery/cacheready")
    assert closed.wait(WAIT)
    assert agent.closed
    with pytest.raises(da.AgentClosedError):
        agent.is_ready("cache")


# ---- the WSGI middleware ----------------------------------------------

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app: " + environ["PATH_INFO"].encode()]


def serve(wsgi):
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, wsgi, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept
                                 else {})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_wsgi_middleware_locks_like_the_gate_then_passes(daemon, tmp_path):
    agent = da.Agent(urls=daemon.ws_url, service="web", instance="py-wsgi",
                     depends_on=["cache", "api"], **FAST)
    gate = Gate(tmp_path, daemon, "http://127.0.0.1:9",
                requires=("cache", "api"), extra="retry_after: 5s\n")
    server = serve(AcceptanceMiddleware(app, agent, retry_after=5,
                                        pass_paths=["/healthz"]))
    base = "http://127.0.0.1:%d" % server.server_port
    try:
        until(lambda: agent.linked, "the link")
        for accept in (None, "text/html,application/xhtml+xml"):
            ours = get(base + "/orders", accept)
            theirs = get(gate.url + "/orders", accept)
            assert ours[0] == theirs[0] == 423
            for h in ("Content-Type", "Cache-Control", "Retry-After",
                      "Vary"):
                assert ours[1][h] == theirs[1][h], h
            assert int(ours[1]["Content-Length"]) == len(ours[2])
            if accept is None:
                assert json.loads(ours[2]) == json.loads(theirs[2]) == {
                    "error": "locked",
                    "message": "application components are loading",
                    "waiting_for": ["api", "cache"], "retry_after": 5}
            else:
                page = ours[2].decode()
                assert "Application components are loading" in page
                assert "api, cache" in page
                assert 'http-equiv="refresh" content="5"' in page
        # A pass path reaches the app while locked; a dot segment does not.
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/healthz/x")[0] == 200
        assert get(base + "/healthzz")[0] == 423

        daemon.call("POST", "/api/discovery/cacheready")
        until(lambda: json.loads(get(base + "/")[2])["waiting_for"] ==
              ["api"], "only api missing")
        daemon.call("POST", "/api/discovery/services/api/ready")
        until(lambda: get(base + "/orders")[0] == 200, "the app")
        assert get(base + "/orders")[2] == b"the app: /orders"
    finally:
        server.shutdown()
        server.server_close()
        gate.stop()
        agent.close()


def test_wsgi_middleware_called_directly(daemon):
    """With a real environ (wsgiref.util.setup_testing_defaults), no
    server: requires a subset, 503, latch."""
    import wsgiref.util
    with da.Agent(urls=daemon.ws_url, service="web", instance="py-direct",
                  depends_on=["cache", "api"], **FAST) as agent:
        mw = AcceptanceMiddleware(app, agent, requires=["cache"],
                                  locked_status=503, retry_after=1,
                                  latch=True)

        def call():
            env = {"PATH_INFO": "/x", "REQUEST_METHOD": "GET"}
            wsgiref.util.setup_testing_defaults(env)
            got = {}

            def start_response(status, headers):
                got["status"], got["headers"] = status, dict(headers)
            body = b"".join(mw(env, start_response))
            return got["status"], got["headers"], body
        until(lambda: agent.linked, "the link")
        status, headers, body = call()
        assert status == "503 Service Unavailable"
        assert headers["Retry-After"] == "1"
        assert json.loads(body)["waiting_for"] == ["cache"]
        daemon.call("POST", "/api/discovery/cacheready")
        until(lambda: call()[0] == "200 OK", "open on cache alone")
        # Latched: cache going away keeps it open.
        daemon.call("POST", "/api/discovery/services/cache/notready")
        until(lambda: not agent.is_ready("cache"), "cache not ready")
        assert call()[0] == "200 OK"
        with pytest.raises(ValueError, match="not among"):
            AcceptanceMiddleware(app, agent, requires=["db"])
        with pytest.raises(ValueError, match="423 or 503"):
            AcceptanceMiddleware(app, agent, locked_status=500)
        unlatched = AcceptanceMiddleware(app, agent, requires=["api"])
    # The agent closed (the app shutting down): locked, not a 500.
    assert mw(dict(PATH_INFO="/", REQUEST_METHOD="GET"),
              lambda status, headers: None)  # latched: still open
    got = []
    body = b"".join(unlatched(dict(PATH_INFO="/", REQUEST_METHOD="GET"),
                              lambda status, headers: got.append(status)))
    assert got == ["423 Locked"]
    assert json.loads(body)["waiting_for"] == ["api"]


# ---- installing -------------------------------------------------------

def test_pip_install_into_a_venv_then_import(tmp_path):
    venv = str(tmp_path / "venv")
    subprocess.run(["/usr/bin/python3", "-m", "venv",
                    "--system-site-packages", venv], check=True)
    # A copy of the tree: pip builds in place, and the checkout stays clean.
    src = str(tmp_path / "src")
    subprocess.run(["cp", "-r", BINDING, src], check=True)
    pip = subprocess.run([os.path.join(venv, "bin", "pip"), "install",
                          "--no-index", "--no-build-isolation",
                          "--no-cache-dir", "--quiet", src],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    env = dict(os.environ, DISCOVERY_AGENT_LIB=LIB)
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                          "import discovery_agent as d, "
                          "discovery_agent.wsgi; "
                          "print(d.__file__); print(d.version()); "
                          "print(d.lib_path())"],
                         cwd=str(tmp_path), env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    path, version, lib = out.stdout.split()
    assert path.startswith(venv + "/lib/"), path
    assert version == "0.1.0" and lib == LIB


def test_a_slow_consumer_is_bounded_and_loses_nothing(daemon):
    """queue_max callbacks wait at most: past it libagent stops reading
    (the daemon keeps the backlog, drops the link, and replays on
    resume). Once the callback is quick again every event arrives once,
    in order."""
    gate = threading.Event()
    seqs = []

    def on_event(ev):
        if ev.kind == "command":
            gate.wait(WAIT)
            seqs.append(ev.seq)
    with da.Agent(urls=daemon.ws_url, service="web", instance="py-slow",
                  on_event=on_event, queue_max=8, **FAST) as agent:
        until(lambda: agent.linked, "the link")
        sent = [daemon.call("POST", "/api/discovery/broadcast",
                            {"command": "C%d" % i, "value": i})[1]["seq"]
                for i in range(200)]
        until(lambda: agent.pending == 8, "a full queue")
        time.sleep(2.0)                  # past the heartbeat timeout
        assert agent.pending == 8 and agent._delivery.peak == 8
        gate.set()
        until(lambda: len(seqs) >= 200, "every event", timeout=WAIT * 2)
        assert seqs == sent
        assert agent.info().links >= 2   # dropped and resumed meanwhile



def test_a_closed_loop_drops_callbacks_and_the_link_goes_on(daemon):
    """loop= a loop that is closed while the agent runs: what was queued
    for it is dropped, the agent thread never waits for it (the link
    stays up past heartbeat timeouts), and close() returns."""
    loop = asyncio.new_event_loop()
    got = []
    agent = da.Agent(urls=daemon.ws_url, service="web", instance="py-loop",
                     loop=loop, queue_max=2, on_event=got.append, **FAST)
    until(lambda: agent.linked, "the link")
    loop.close()
    for i in range(20):
        daemon.call("POST", "/api/discovery/broadcast", {"command": "C"})
    until(lambda: agent.info().events == 20, "20 events in libagent")
    time.sleep(2.0)                      # past the heartbeat timeout
    info = agent.info()
    assert info.linked and info.links == 1
    assert got == []                     # the loop never ran
    t0 = time.monotonic()
    agent.close()
    assert time.monotonic() - t0 < 5



def test_tokens_and_a_refused_handshake(tmp_path):
    """token= reaches the handshake: a good one links; a wrong one is
    refused, and on_link says so (UNLINKED, was_linked false, 401)."""
    from harness import Discoveryd
    from test_auth import issue, secret
    s = secret(tmp_path, "secret")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % s)
    try:
        good = issue(s, "agent", "web")
        with da.Agent(urls=d.ws_url, service="web", instance="py-tok",
                      token=good, **FAST) as agent:
            until(lambda: agent.linked, "the link with a good token")
        rec = Recorder()
        with da.Agent(urls=d.ws_url, service="web", instance="py-bad",
                      token=good + "x", on_link=rec.cb("link"),
                      **FAST) as agent:
            rec.wait(lambda c: any(a[0].state == da.LinkState.UNLINKED
                                   for _, a, _ in c), "the refusal")
            assert not agent.linked
        refused = [a[0] for _, a, _ in rec.calls
                   if a[0].state == da.LinkState.UNLINKED][0]
        assert refused.http_status == 401 and not refused.was_linked
        assert refused.url == d.ws_url and refused.attempt >= 1
        assert refused.retry_ms > 0
    finally:
        assert d.stop() == 0



def test_wait_ready_async_times_out_and_is_woken(daemon):
    async def main():
        loop = asyncio.get_running_loop()
        with da.Agent(urls=daemon.ws_url, service="web", instance="py-wr",
                      depends_on=["cache"], **FAST) as agent:
            t0 = time.monotonic()
            assert await agent.wait_ready_async(0.3) is False
            assert 0.25 < time.monotonic() - t0 < 5
            # Cancelled: no waker is left behind.
            task = asyncio.ensure_future(agent.wait_ready_async())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not agent._wakers
            waiter = asyncio.ensure_future(agent.wait_ready_async(WAIT))
            await asyncio.sleep(0.05)
            assert not waiter.done()
            await loop.run_in_executor(None, daemon.call, "POST",
                                       "/api/discovery/cacheready")
            assert await waiter is True
            # Closed under a waiter: it raises.
            agent2 = da.Agent(urls=daemon.ws_url, service="web",
                              instance="py-wr2", depends_on=["db"], **FAST)
            waiter = asyncio.ensure_future(agent2.wait_ready_async())
            await asyncio.sleep(0.05)
            await loop.run_in_executor(None, agent2.close)
            with pytest.raises(da.AgentClosedError):
                await asyncio.wait_for(waiter, WAIT)
    asyncio.run(asyncio.wait_for(main(), WAIT * 2))



def test_the_example_app(daemon):
    """bindings/python/examples/app.py, as a process: 423, then 200 once
    the cache is ready; an invalidation reaches its on_event; SIGINT
    closes its agent (code 1000)."""
    import signal
    from harness import Proc
    probe = wsgiref.simple_server.make_server("127.0.0.1", 0, app)
    port = probe.server_port
    probe.server_close()
    p = Proc(["/usr/bin/python3", os.path.join(BINDING, "examples",
                                               "app.py"),
              daemon.ws_url, str(port)], "app.py",
             env=dict(os.environ, PYTHONPATH=BINDING))
    try:
        p.wait_line(r"^listening 127\.0\.0\.1:%d" % port)
        base = "http://127.0.0.1:%d" % port
        status, _, body = get(base + "/")
        assert status == 423 and json.loads(body)["waiting_for"] == ["cache"]
        until(lambda: (daemon.call("GET", "/api/discovery/services/web")[1]
                       or {}).get("ready") is True, "web ready in the daemon")
        daemon.call("POST", "/api/discovery/cacheready")
        p.wait_line(r"^readiness cache True")
        status, _, body = get(base + "/")
        assert status == 200 and body.startswith(b"hello from web")
        daemon.call("POST", "/api/discovery/invalidate",
                    {"keys": ["hits"], "service": "web"})
        p.wait_line(r"^invalidated hits")
        mark = daemon.mark()
        p.kill(signal.SIGINT)
        assert p.p.wait(WAIT) == 0
        daemon.wait_line(r"msg=\"peer closing\" .*instance=web-py code=1000",
                         start=mark)
    finally:
        p.stop()


def test_log_lines_to_on_log_or_logging(daemon, caplog):
    rec = Recorder()
    with da.Agent(urls=daemon.ws_url, service="web", instance="py-log",
                  depends_on=["cache"], log_level="debug",
                  on_log=rec.cb("log"), **FAST) as agent:
        rec.wait(lambda c: any(a[1].startswith("connecting url=" +
                                               daemon.ws_url)
                               for _, a, _ in c), "the connecting line")
        assert all(isinstance(a[0], da.LogLevel) for _, a, _ in rec.calls)
        assert (da.LogLevel.DEBUG, "connecting url=%s attempt=1" %
                daemon.ws_url) in [a for _, a, _ in rec.calls]
        until(lambda: agent.linked, "the link")
        agent.set_log_level("error")
        n = len(rec.calls)
        daemon.call("POST", "/api/discovery/cacheready")
        assert agent.wait_ready(WAIT)
        time.sleep(0.2)
        assert len(rec.calls) == n       # the info line was not made
        agent.set_log_level(da.LogLevel.INFO)
        daemon.call("POST", "/api/discovery/services/cache/notready")
        rec.wait(lambda c: (da.LogLevel.INFO,
                            "readiness service=cache ready=false") in
                 [a for _, a, _ in c], "the readiness line")
    # Without on_log: the logging logger "discovery_agent".
    caplog.set_level(logging.DEBUG, logger="discovery_agent")
    with da.Agent(urls=daemon.ws_url, service="web", instance="py-log2",
                  log_level="debug", **FAST) as agent:
        until(lambda: agent.linked, "the link")
        until(lambda: any(r.name == "discovery_agent" and
                          r.levelno == logging.DEBUG and
                          "web: connecting url=" in r.getMessage()
                          for r in caplog.records), "a logged line")


def test_asgi_middleware(daemon):
    """The ASGI AcceptanceMiddleware in a real ASGI exchange (scope,
    receive, send): the gate's locked answer, pass paths, an upgrade
    refused while locked, lifespan untouched, then the app."""
    from discovery_agent.asgi import AcceptanceMiddleware as Asgi

    async def inner(scope, receive, send):
        if scope["type"] == "lifespan":
            await send({"type": "lifespan.startup.complete"})
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"the app"})

    async def exchange(mw, kind, path="/", accept=None, method="GET"):
        scope = {"type": kind, "path": path, "method": method,
                 "headers": [(b"accept", accept.encode())] if accept else [],
                 "asgi": {"version": "3.0"}}
        incoming = [{"type": kind + (".connect" if kind == "websocket"
                                     else ".request" if kind == "http"
                                     else ".startup")}]
        sent = []

        async def receive():
            return incoming.pop(0) if incoming else {"type": kind +
                                                     ".disconnect"}

        async def send(msg):
            sent.append(msg)
        await mw(scope, receive, send)
        return sent

    async def main():
        loop = asyncio.get_running_loop()
        with da.Agent(urls=daemon.ws_url, service="web", instance="py-asgi",
                      depends_on=["cache"], loop=loop, **FAST) as agent:
            mw = Asgi(inner, agent, retry_after=7, pass_paths=["/healthz"])
            await loop.run_in_executor(None, until, lambda: agent.linked,
                                       "the link")
            start, body = await exchange(mw, "http", "/orders")
            assert start["status"] == 423
            headers = dict(start["headers"])
            assert headers[b"retry-after"] == b"7"
            assert headers[b"cache-control"] == b"no-store"
            assert headers[b"vary"] == b"Accept"
            assert headers[b"content-type"] == b"application/json"
            assert int(headers[b"content-length"]) == len(body["body"])
            assert json.loads(body["body"]) == {
                "error": "locked",
                "message": "application components are loading",
                "waiting_for": ["cache"], "retry_after": 7}
            start, body = await exchange(mw, "http", "/", accept="text/html")
            assert dict(start["headers"])[b"content-type"] == \
                b"text/html; charset=utf-8"
            assert b"Application components are loading" in body["body"]
            assert (await exchange(mw, "http", "/healthz"))[0][
                "status"] == 200
            assert (await exchange(mw, "websocket", "/healthz")) == [
                {"type": "websocket.close", "code": 1013}]
            assert (await exchange(mw, "lifespan")) == [
                {"type": "lifespan.startup.complete"}]
            await loop.run_in_executor(None, daemon.call, "POST",
                                       "/api/discovery/cacheready")
            assert await agent.wait_ready_async(WAIT)
            start, body = await exchange(mw, "http", "/orders")
            assert (start["status"], body["body"]) == (200, b"the app")
            assert (await exchange(mw, "websocket", "/ws")) == [
                {"type": "websocket.accept"}]
    asyncio.run(asyncio.wait_for(main(), WAIT * 2))
