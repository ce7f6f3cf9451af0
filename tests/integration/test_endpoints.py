"""Instances are endpoints (docs/protocol.md): the hello's address is a
validated host:port, with tags and a weight; status carries a state
(ready, draining, notready) and a load. Draining is alive but does not
count toward its service's readiness. Bad values close the link with 1007
and a reason that names the field."""

import json
import os
import signal
import time

import websockets

from cluster_harness import node
from harness import WAIT, ws_run
from test_idempotency import raw_call
from test_link_errors import closed_with
from test_link_protocol import SUB, nothing_more, recv


def hello(**kw):
    h = {"type": "hello", "service": "api", "instance": "api-1",
         "address": "10.0.0.7:8080"}
    h.update(kw)
    return json.dumps(h)


def status(**kw):
    return json.dumps(dict({"type": "status"}, **kw))


def test_bad_endpoint_fields_close_1007_naming_the_field(daemon):
    tags33 = ["t%d" % i for i in range(33)]
    cases = [
        (hello(address="10.0.0.7"), "address"),
        (hello(address="10.0.0.7:0"), "address"),
        (hello(address="10.0.0.7:65536"), "address"),
        (hello(address="::1:80"), "address"),
        (hello(address="1.2.3:80"), "address"),
        (hello(address="-bad.example:80"), "address"),
        (hello(address="http://web:80"), "address"),
        (hello(address="a" * 64 + ".example:80"), "address"),
        (hello(tags=tags33), "tags"),
        (hello(tags=["Upper"]), "tags"),
        (hello(tags=["a", "a"]), "tags"),
        (hello(weight=0), "weight"),
        (hello(weight=1001), "weight"),
        (hello(weight=2.5), "weight"),
    ]

    async def scenario():
        for frame, field in cases:
            code, reason = await closed_with(daemon, frame)
            assert code == 1007 and "'%s'" % field in reason, (frame, reason)
        for bad, field in ((status(ready=True, load=1.01), "load"),
                           (status(ready=True, load=-0.5), "load"),
                           (status(state="busy"), "state"),
                           (status(ready=True, state="draining"), "state")):
            code, reason = await closed_with(daemon, hello(), bad)
            assert code == 1007 and field in reason, (bad, reason)

    ws_run(scenario())
    assert daemon.call("GET", "/healthz")[0] == 200


def agent_of(daemon, instance):
    st, body = daemon.call("GET", "/api/discovery/agents")
    assert st == 200
    return [a for a in body["agents"] if a["instance"] == instance][0]


def test_draining_is_alive_but_not_ready(daemon):
    async def scenario():
        web = await websockets.connect(daemon.ws_url, subprotocols=SUB)
        await web.send(json.dumps({"type": "hello", "service": "web",
                                   "instance": "web-1",
                                   "depends_on": ["api"]}))
        assert (await recv(web))["services"] == {"api": False}
        api = await websockets.connect(daemon.ws_url, subprotocols=SUB)
        await api.send(hello(address="[2001:db8::7]:443", weight=7,
                             tags=["blue", "eu-1"]))
        assert (await recv(api))["type"] == "welcome"
        a = agent_of(daemon, "api-1")
        assert (a["address"], a["weight"], a["tags"]) == \
            ("[2001:db8::7]:443", 7, ["blue", "eu-1"])
        assert (a["state"], a["load"], a["ready"]) == ("notready", None,
                                                       False)

        # An old agent's status: ready alone.
        await api.send(status(ready=True))
        ev = await recv(web)
        assert ev["value"] == {"service": "api", "ready": True}
        # Load alone changes the endpoint, not readiness: no event.
        await api.send(status(ready=True, state="ready", load=0.5))
        await nothing_more(web)
        a = agent_of(daemon, "api-1")
        assert (a["state"], a["load"], a["ready"]) == ("ready", 0.5, True)
        # Draining: still linked, no longer counted.
        await api.send(status(ready=False, state="draining", load=0.9))
        ev = await recv(web)
        assert ev["value"] == {"service": "api", "ready": False}
        a = agent_of(daemon, "api-1")
        assert (a["state"], a["ready"]) == ("draining", False)
        assert abs(a["load"] - 0.9) < 1e-6
        st, svc = daemon.call("GET", "/api/discovery/services/api")
        assert (svc["instances"], svc["ready_instances"]) == (1, 0)
        # state alone, without ready: the daemon follows it.
        await api.send(status(state="ready"))
        ev = await recv(web)
        assert ev["value"] == {"service": "api", "ready": True}
        await api.close()
        await web.close()

    ws_run(scenario())


def test_default_weight_and_no_address(daemon):
    async def scenario():
        ws = await websockets.connect(daemon.ws_url, subprotocols=SUB)
        await ws.send(json.dumps({"type": "hello", "service": "batch",
                                  "instance": "b-1"}))
        assert (await recv(ws))["type"] == "welcome"
        a = agent_of(daemon, "b-1")
        assert (a["address"], a["weight"], a["tags"]) == ("", 100, [])
        await ws.close()

    ws_run(scenario())


def endpoints(d, service, query=""):
    """(status, X-Discovery-Index, body) of GET .../endpoints."""
    st, h, body = raw_call(d, "GET", "/api/discovery/services/%s/endpoints%s"
                           % (service, query))
    return st, h.get("x-discovery-index"), json.loads(body)


async def api_instance(daemon, instance, address, **kw):
    ws = await websockets.connect(daemon.ws_url, subprotocols=SUB)
    await ws.send(hello(instance=instance, address=address, **kw))
    assert (await recv(ws))["type"] == "welcome"
    return ws


def test_endpoints_list_filters_and_index(daemon):
    st, idx, body = endpoints(daemon, "api")
    assert st == 200 and body == {"service": "api", "index": int(idx),
                                  "endpoints": []}
    for q, why in (("?state=busy", "state"), ("?tag=Bad", "tag"),
                   ("?tag=" + "a" * 64, "tag")):
        st, _, body = endpoints(daemon, "api", q)
        assert st == 400 and why in body["message"], (q, body)
    assert endpoints(daemon, "Bad")[0] == 400

    async def scenario():
        a = await api_instance(daemon, "api-1", "10.0.0.1:80",
                               tags=["blue"], weight=5)
        b = await api_instance(daemon, "api-2", "[2001:db8::2]:8443")
        nowhere = await websockets.connect(daemon.ws_url, subprotocols=SUB)
        await nowhere.send(json.dumps({"type": "hello", "service": "api",
                                       "instance": "api-3"}))
        await recv(nowhere)
        # The answer is the set published last: at most one coalescing
        # window behind the links.
        wait_until(lambda: [e["instance"] for e in endpoints(
            daemon, "api", "?state=any")[2]["endpoints"]] ==
            ["api-1", "api-2"])                 # api-3 has no address
        st, i0, body = endpoints(daemon, "api")
        assert body["endpoints"] == []          # none ready yet
        st, i1, body = endpoints(daemon, "api", "?state=any")
        e = body["endpoints"][1]
        assert (e["host"], e["port"], e["state"], e["weight"], e["load"],
                e["node"]) == ("2001:db8::2", 8443, "notready", 100, None,
                               "test-node")
        await a.send(status(ready=True, state="ready", load=0.25))
        await b.send(status(ready=False, state="draining"))
        await nothing_more(a, 0.2)
        st, i2, body = endpoints(daemon, "api")
        assert int(i2) > int(i1)
        assert [(e["instance"], e["address"], e["weight"], e["load"],
                 e["tags"]) for e in body["endpoints"]] == \
            [("api-1", "10.0.0.1:80", 5, 0.25, ["blue"])]
        assert int(body["index"]) == int(i2)
        assert [e["instance"] for e in endpoints(
            daemon, "api", "?state=any&tag=blue")[2]["endpoints"]] == \
            ["api-1"]
        assert endpoints(daemon, "api", "?tag=red")[2]["endpoints"] == []
        await a.close()
        await b.close()
        await nowhere.close()
        wait_until(lambda: endpoints(daemon, "api", "?state=any")[2]
                   ["endpoints"] == [])
        assert int(endpoints(daemon, "api")[1]) > int(i2)

    ws_run(scenario())


def test_endpoints_span_the_cluster(tmp_path, redis):
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        async def scenario():
            one = await api_instance(a, "api-1", "10.0.0.1:80")
            two = await api_instance(b, "api-2", "10.0.0.2:80")
            await one.send(status(ready=True))
            await two.send(status(ready=True))

            def both(n):
                return [(e["instance"], e["node"]) for e in
                        endpoints(n, "api")[2]["endpoints"]]
            want = [("api-1", "node-a"), ("api-2", "node-b")]
            wait_until(lambda: both(a) == want and both(b) == want)
            before = int(endpoints(a, "api")[1])
            await two.send(status(ready=False, state="draining"))
            wait_until(lambda: both(a) == [("api-1", "node-a")])
            assert int(endpoints(a, "api")[1]) > before
            await one.close()

        ws_run(scenario())
        # A dead node's endpoints leave within the node TTL.
        b.kill(signal.SIGKILL)
        b.p.wait()
        wait_until(lambda: endpoints(a, "api", "?state=any")[2]["endpoints"]
                   == [], timeout=2 * WAIT)
    finally:
        assert a.stop() == 0
        b.stop()


def wait_until(fn, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sidecar_config_gives_the_endpoint(tmp_path, daemon):
    """agent.yaml's address, tags and weight reach the endpoint; a bad
    one is refused when the config is read, naming the key."""
    from harness import BIN, Sidecar
    import subprocess
    s = Sidecar(tmp_path, daemon.ws_url, "api", "api-9",
                extra="address: web-9.example:8080\ntags: [blue]\n"
                      "weight: 250\nready: true\n")
    try:
        wait_until(lambda: endpoints(daemon, "api")[2]["endpoints"])
        e = endpoints(daemon, "api")[2]["endpoints"][0]
        assert (e["instance"], e["host"], e["port"], e["tags"],
                e["weight"]) == ("api-9", "web-9.example", 8080, ["blue"],
                                 250)
    finally:
        s.stop()
    for bad, key in (("address: 10.0.0.1\n", "address"),
                     ("weight: 0\n", "weight"),
                     ("tags: [Blue]\n", "tags")):
        path = tmp_path / "bad.yaml"
        path.write_text("discovery: [%s]\nservice: api\n%s" %
                        (daemon.ws_url, bad))
        r = subprocess.run([os.path.join(BIN, "discovery-agent"), "-t", "-c",
                            str(path)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and key in r.stderr + r.stdout, (bad, r)


def test_discoveryctl_endpoints(tmp_path, daemon):
    from test_ctl import ctl
    from harness import Sidecar
    s = Sidecar(tmp_path, daemon.ws_url, "api", "api-5",
                extra="address: 10.0.0.5:8080\ntags: [blue, eu-1]\n")
    try:
        wait_until(lambda: endpoints(daemon, "api")[2]["endpoints"])
        rc, out, err = ctl(daemon, "endpoints", "api")
        assert rc == 0, err
        head, row = out.splitlines()[:2]
        assert head.split() == ["INSTANCE", "ADDRESS", "STATE", "WEIGHT",
                                "LOAD", "TAGS", "NODE"]
        assert row.split()[:4] == ["api-5", "10.0.0.5:8080", "ready", "100"]
        assert "blue,eu-1" in row.replace(", ", ",")
        rc, out, _ = ctl(daemon, "--json", "endpoints", "api")
        assert json.loads(out)["endpoints"][0]["instance"] == "api-5"
        assert ctl(daemon, "endpoints", "Bad")[0] != 0
    finally:
        s.stop()


def test_libagent_reports_draining_and_load(daemon):
    """agent_set_ready, agent_set_draining and agent_set_load reach the
    daemon as status (tests/tools/agent_probe drives the public API)."""
    import subprocess
    from harness import BIN, Proc
    probe = Proc([os.path.join(BIN, "..", "tests", "tools", "agent_probe"),
                  daemon.ws_url, "api", "probe-1"], "probe",
                 env=dict(os.environ, AGENT_PROBE_ADDRESS="10.0.0.9:9000"),
                 stdin=subprocess.PIPE)

    def say(line, rc=0):
        mark = probe.mark()
        probe.p.stdin.write(line + "\n")
        probe.p.stdin.flush()
        probe.wait_line(r"set rc=%d" % rc, start=mark)

    def mine():
        e = endpoints(daemon, "api", "?state=any")[2]["endpoints"]
        return (e[0]["state"], e[0]["load"]) if e else None

    try:
        probe.wait_line(r"link state=linked")
        say("ready 1")
        wait_until(lambda: mine() == ("ready", None))
        say("load 0.375")
        wait_until(lambda: mine() == ("ready", 0.375))
        say("draining 1")
        wait_until(lambda: mine() == ("draining", 0.375))
        assert endpoints(daemon, "api")[2]["endpoints"] == []
        say("load 1.5", rc=-1)
        say("load -1", rc=-1)
        say("draining 0")
        wait_until(lambda: mine() == ("ready", 0.375))
    finally:
        probe.p.stdin.close()
        probe.stop()
