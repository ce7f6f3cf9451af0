"""Watching endpoints over the link (docs/protocol.md, "Endpoints"): the
welcome carries each watched service's set with its index; each change
follows as what changed since the set the agent holds; an instance leaves
at its link's close, or at the heartbeat timeout for a zombie; a burst is
coalesced; a watch list past the cap is closed with 1007."""

import asyncio
import json
import time

import websockets

from harness import Discoveryd, ws_run
from test_endpoints import endpoints, hello, status
from test_link_errors import closed_with
from test_link_protocol import SUB, nothing_more, recv


async def watcher(daemon, watch, depends_on=()):
    ws = await websockets.connect(daemon.ws_url, subprotocols=SUB,
                                  max_size=None)
    await ws.send(json.dumps({"type": "hello", "service": "web",
                              "instance": "web-1", "watch": watch,
                              "depends_on": list(depends_on)}))
    welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    return ws, welcome


async def instance(daemon, name, address, **kw):
    ws = await websockets.connect(daemon.ws_url, subprotocols=SUB)
    await ws.send(hello(instance=name, address=address, **kw))
    assert (await recv(ws))["type"] == "welcome"
    return ws


class Held:
    """What a watcher holds: a set per service, kept as the protocol
    says (a delta applies only to the index it was made from)."""

    def __init__(self, welcome):
        self.sets = {s: (v["index"], {e["instance"]: e for e in
                                      v["endpoints"]})
                     for s, v in welcome.get("endpoints", {}).items()}

    def apply(self, msg):
        assert msg["type"] == "endpoints", msg
        service = msg["service"]
        if "endpoints" in msg:
            self.sets[service] = (msg["index"], {e["instance"]: e for e in
                                                 msg["endpoints"]})
            return "full"
        index, eps = self.sets[service]
        assert msg["since"] == index, (msg, index)
        assert msg["index"] > index
        for gone in msg["gone"]:
            del eps[gone]
        for e in msg["set"]:
            eps[e["instance"]] = e
        self.sets[service] = (msg["index"], eps)
        return "delta"

    def states(self, service):
        return {i: e["state"] for i, e in self.sets[service][1].items()}


def listed(daemon, service):
    st, idx, body = endpoints(daemon, service, "?state=any")
    return int(idx), {e["instance"]: e["state"] for e in body["endpoints"]}


def test_welcome_then_changes_in_order(daemon):
    async def scenario():
        one = await instance(daemon, "api-1", "10.0.0.1:80", weight=5,
                             tags=["blue"])
        ws, welcome = await watcher(daemon, True, depends_on=["api"])
        held = Held(welcome)
        index, eps = held.sets["api"]
        assert index == listed(daemon, "api")[0]
        assert eps == {"api-1": {"instance": "api-1",
                                 "address": "10.0.0.1:80",
                                 "state": "notready", "weight": 5,
                                 "tags": ["blue"], "node": "test-node"}}
        # A state change: a delta with that instance alone.
        await one.send(status(ready=True, state="ready", load=0.5))
        msgs = []
        while True:
            msg = await recv(ws)
            if msg["type"] == "event":
                continue  # api's readiness: web depends on it
            msgs.append(msg)
            if held.apply(msg) == "delta" and \
                    held.states("api") == {"api-1": "ready"}:
                break
        assert msgs[-1]["set"][0]["load"] == 0.5 and msgs[-1]["gone"] == []
        two = await instance(daemon, "api-2", "[2001:db8::2]:443")
        held.apply(await recv(ws))
        assert held.states("api") == {"api-1": "ready", "api-2": "notready"}
        # A clean close: gone at once.
        await one.close()
        while held.states("api") != {"api-2": "notready"}:
            msg = await recv(ws)
            if msg["type"] != "event":
                held.apply(msg)
        assert held.sets["api"][0] == listed(daemon, "api")[0]
        await two.close()
        await ws.close()

    ws_run(scenario())


def test_a_watch_list_and_nothing_for_others(daemon):
    async def scenario():
        ws, welcome = await watcher(daemon, ["api", "db"])
        assert set(welcome["endpoints"]) == {"api", "db"}
        assert welcome["endpoints"]["db"]["endpoints"] == []
        plain = await websockets.connect(daemon.ws_url, subprotocols=SUB)
        await plain.send(json.dumps({"type": "hello", "service": "web",
                                     "instance": "web-2",
                                     "depends_on": ["api"]}))
        assert "endpoints" not in await recv(plain)
        db = await instance(daemon, "db-1", "db.example:5432", service="db")
        msg = await recv(ws)
        assert (msg["service"], [e["instance"] for e in msg["set"]]) == \
            ("db", ["db-1"])
        await nothing_more(plain)
        await db.close()
        await plain.close()
        await ws.close()

    ws_run(scenario())


def test_watch_list_past_the_cap_is_1007(daemon):
    async def scenario():
        too_many = ["s%d" % i for i in range(65)]
        for watch in (too_many, ["Bad"], ["a", "a"], "api", 1):
            code, reason = await closed_with(daemon, json.dumps(
                {"type": "hello", "service": "web", "instance": "w",
                 "watch": watch}))
            assert code == 1007 and "'watch'" in reason, (watch, reason)

    ws_run(scenario())
    assert daemon.call("GET", "/healthz")[0] == 200


def test_a_zombie_leaves_at_the_heartbeat_timeout(daemon):
    async def scenario():
        ws, welcome = await watcher(daemon, ["api"])
        held = Held(welcome)
        # A link that stops answering pings: the heartbeat drops it.
        z = await websockets.connect(daemon.ws_url, subprotocols=SUB,
                                     ping_interval=None)
        await z.send(hello(instance="api-z", address="10.0.0.9:80"))
        await recv(z)
        held.apply(await recv(ws))
        assert held.states("api") == {"api-z": "notready"}
        z.transport.pause_reading()  # no pong from here on
        held.apply(await asyncio.wait_for(recv(ws), 30))
        assert held.states("api") == {}
        z.transport.abort()
        await ws.close()

    ws_run(scenario())


def test_a_burst_is_coalesced(tmp_path):
    d = Discoveryd(tmp_path, extra="endpoints:\n  coalesce: 300ms\n")
    try:
        async def scenario():
            ws, welcome = await watcher(d, ["api"])
            held = Held(welcome)
            start = time.monotonic()
            links = [await instance(d, "api-%d" % i, "10.0.1.%d:80" % i)
                     for i in range(100)]
            elapsed = time.monotonic() - start
            messages = 0
            while len(held.sets["api"][1]) < 100:
                held.apply(await recv(ws))
                messages += 1
            # At most one message per window, and one at once after the
            # quiet before: never one per instance.
            assert messages <= 2 + elapsed / 0.3, (messages, elapsed)
            assert held.sets["api"][0] == listed(d, "api")[0]
            # One instance changing in a set of 100: that one alone.
            await links[42].send(status(ready=True))
            raw = await ws.recv()
            msg = json.loads(raw)
            assert [e["instance"] for e in msg["set"]] == ["api-42"]
            assert len(raw) < 300, raw
            for link in links:
                await link.close()
            await ws.close()

        ws_run(scenario())
    finally:
        assert d.stop() == 0, d.text()


def probe(daemon, instance, *deps, address=None, watch=None, weight=None,
          host=False):
    """tests/tools/agent_probe: libagent through its public header."""
    import os
    import subprocess
    from harness import BIN, Proc
    env = dict(os.environ)
    if host:
        env["AGENT_PROBE_HOST"] = "1"
    if address:
        env["AGENT_PROBE_ADDRESS"] = address
    if watch:
        env["AGENT_PROBE_WATCH"] = watch
    if weight:
        env["AGENT_PROBE_WEIGHT"] = str(weight)
    p = Proc([os.path.join(BIN, "..", "tests", "tools", "agent_probe"),
              daemon.ws_url, instance.split("-")[0], instance] + list(deps),
             "probe-" + instance, env=env, stdin=subprocess.PIPE)
    p.wait_line(r"link state=linked")
    return p


def ask(p, line, answer):
    mark = p.mark()
    p.p.stdin.write(line + "\n")
    p.p.stdin.flush()
    return p.wait_line(answer, start=mark)


def close(*probes):
    for p in probes:
        p.p.stdin.close()
        p.stop()


def test_libagent_keeps_the_set_and_picks_ready_ones(daemon):
    """agent_endpoints, agent_pick and on_endpoints, with real
    instances that report through libagent too."""
    web = probe(daemon, "web-1", "api", watch="deps")
    one = probe(daemon, "api-1", address="10.0.0.1:80")
    two = probe(daemon, "api-2", address="10.0.0.2:80")
    try:
        web.wait_line(r"endpoints service=api .* n=2 ready=0")
        ask(web, "pick api", r"pick rc=-9 addr=$")  # none ready
        ask(web, "pick nope", r"pick rc=-9 addr=$")  # not watched
        ask(one, "ready 1", r"set rc=0")
        web.wait_line(r"endpoints service=api .* ready=1 "
                      r"api-1=ready,api-2=notready")
        ask(web, "picks api 50", r"picks rc=0 10\.0\.0\.1:80=50$")
        ask(two, "ready 1", r"set rc=0")
        web.wait_line(r"ready=2 api-1=ready,api-2=ready")
        m = ask(web, "picks api 400",
                r"picks rc=0 (\S+)=(\d+) (\S+)=(\d+)$")
        assert {m.group(1), m.group(3)} == {"10.0.0.1:80", "10.0.0.2:80"}
        # Draining leaves the picks at once; the set still lists it.
        ask(one, "draining 1", r"set rc=0")
        web.wait_line(r"ready=1 api-1=draining,api-2=ready")
        ask(web, "picks api 50", r"picks rc=0 10\.0\.0\.2:80=50$")
        ask(web, "held api", r"held service=api index=\d+ n=2 ready=1")
        # Load: the less loaded of two draws wins nearly always.
        ask(one, "draining 0", r"set rc=0")
        ask(one, "load 0.9", r"set rc=0")
        ask(two, "load 0.1", r"set rc=0")
        web.wait_line(r"ready=2 api-1=ready,api-2=ready")
        wait_for_loads = time.monotonic() + 30
        while True:
            m = ask(web, "picks api 400", r"picks rc=0 .*$").group(0)
            counts = dict(kv.split("=") for kv in m.split()[2:])
            if int(counts.get("10.0.0.2:80", 0)) > 250:
                break  # about 3/4 of the picks: two draws, lower load
            assert time.monotonic() < wait_for_loads, m
            time.sleep(0.05)
        # An instance going: out of the set and the picks.
        close(two)
        web.wait_line(r"n=1 ready=1 api-1=ready")
        ask(web, "picks api 20", r"picks rc=0 10\.0\.0\.1:80=20$")
    finally:
        close(web, one)
        if two.p.poll() is None:
            close(two)


def test_picks_follow_weight(daemon):
    web = probe(daemon, "web-1", watch="api")
    light = probe(daemon, "api-1", address="10.0.0.1:80", weight=1)
    heavy = probe(daemon, "api-2", address="10.0.0.2:80", weight=1000)
    try:
        ask(light, "ready 1", r"set rc=0")
        ask(heavy, "ready 1", r"set rc=0")
        web.wait_line(r"ready=2 api-1=ready,api-2=ready")
        m = ask(web, "picks api 1000", r"picks rc=0 .*$").group(0)
        counts = dict(kv.split("=") for kv in m.split()[2:])
        # 1 in 1001 per draw: a handful at most, of a thousand.
        assert int(counts["10.0.0.2:80"]) > 950, m
    finally:
        close(web, light, heavy)


def test_readers_never_see_a_torn_set(daemon):
    """Four app threads read sets and pick without a pause while the
    agent thread applies changes: every set they get is whole (under ASan
    a set freed under a reader would be caught too)."""
    web = probe(daemon, "web-1", watch="api")
    apis = [probe(daemon, "api-%d" % i, address="10.0.0.%d:80" % i)
            for i in range(1, 4)]
    try:
        web.wait_line(r"n=3 ready=0")
        ask(web, "readers api on", r"readers started")
        for round in range(15):
            mark = web.mark()
            for p in apis:
                ask(p, "ready %d" % (round % 2 == 0), r"set rc=0")
            web.wait_line(r"ready=%d " % (3 if round % 2 == 0 else 0),
                          start=mark)
        m = ask(web, "readers api off", r"readers reads=(\d+) torn=(\d+)")
        assert int(m.group(1)) > 0 and m.group(2) == "0", m.group(0)
    finally:
        close(web, *apis)


def test_a_host_hears_of_a_set_its_readers_held_back(daemon):
    """AGENT_DISPATCH_HOST, an app holding a set of every buffer: the
    next set waits, and the queued on_endpoints can only read the one
    before it. Once the app lets go, the held-back set is published and
    announced: the host is not left on a stale set until the next
    change."""
    web = probe(daemon, "web-1", watch="api", host=True)
    api = probe(daemon, "api-1", address="10.0.0.1:80")
    try:
        web.wait_line(r"endpoints service=api .* n=1 ready=0")
        ask(web, "hold api", r"hold index=[1-9]")
        for r in range(1, 9):   # sets 1..7 fill the 8 buffers; 8 waits
            mark = web.mark()
            ask(api, "ready %d" % (r % 2), r"set rc=0")
            web.wait_line(r"endpoints service=api .* ready=", start=mark)
            if r < 8:
                ask(web, "hold api", r"hold index=[1-9]")
        # Set 8 (ready=0) is held back: agent_endpoints gives set 7.
        ask(web, "held api", r"held service=api .* ready=1 ")
        mark = web.mark()
        ask(web, "release", r"released n=8")
        web.wait_line(r"endpoints service=api .* ready=0 ", start=mark)
        ask(web, "held api", r"held service=api .* ready=0 ")
    finally:
        close(web, api)


def test_the_set_spans_the_cluster(tmp_path, redis):
    """A watcher on one node sees the instances of another, each change of
    theirs, and a dead node's endpoints leave within the node TTL."""
    import signal
    from cluster_harness import node
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        async def scenario():
            ws, welcome = await watcher(a, ["api"])
            held = Held(welcome)
            mine = await instance(a, "api-1", "10.0.0.1:80")
            theirs = await instance(b, "api-2", "10.0.0.2:80")

            async def until(want):
                while {i: (e["node"], e["state"]) for i, e in
                       held.sets["api"][1].items()} != want:
                    held.apply(await recv(ws))

            await until({"api-1": ("node-a", "notready"),
                         "api-2": ("node-b", "notready")})
            await theirs.send(status(ready=True))
            await until({"api-1": ("node-a", "notready"),
                         "api-2": ("node-b", "ready")})
            assert held.sets["api"][0] == listed(a, "api")[0]
            b.kill(signal.SIGKILL)
            b.p.wait()
            await until({"api-1": ("node-a", "notready")})
            await mine.close()
            await ws.close()

        ws_run(scenario())
    finally:
        assert a.stop() == 0, a.text()
        b.stop()


def test_an_instance_that_left_while_redis_was_away(tmp_path, redis):
    """Node a loses Redis for less than the node TTL; an instance of its
    leaves meanwhile. When node a reports all again, node b drops it too
    (the full report moves the index of what node a held before)."""
    from cluster_harness import Cut, node
    cut = Cut(redis.port)
    a = node(tmp_path, "node-a", cut.url, node_ttl="30s")
    b = node(tmp_path, "node-b", redis.url, node_ttl="30s")
    try:
        async def scenario():
            one = await instance(a, "api-1", "10.0.0.1:80")
            deadline = time.monotonic() + 30
            while listed(b, "api")[1] != {"api-1": "notready"}:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            m = a.mark()
            cut.sever()
            a.wait_line(r"msg=\"cluster redis lost\"", start=m)
            await one.close()
            cut.mend()
            a.wait_line(r"msg=\"cluster reconnected\"", start=m)
            while listed(b, "api")[1] != {}:
                assert time.monotonic() < deadline, listed(b, "api")
                await asyncio.sleep(0.05)

        ws_run(scenario())
    finally:
        assert a.stop() == 0, a.text()
        b.stop()
        cut.close()
