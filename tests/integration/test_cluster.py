"""Cluster mode: three discoveryd nodes over a real redis-server.

Delivery across nodes, cluster-wide lists, a SIGKILLed node whose agents
fail over and lose nothing, Redis frozen and restarted (with and without
AOF), and one node that alone loses Redis.
"""

import signal
import time

import pytest

from cluster_harness import Cut, Redis, free_port, node
from harness import Discoveryd, Sidecar
from pyagent import PyAgent


_made = []


def sidecar(*args, **kw):
    _made.append(Sidecar(*args, **kw))
    return _made[-1]


def pyagent(*args, **kw):
    _made.append(PyAgent(*args, **kw))
    return _made[-1]


@pytest.fixture(autouse=True)
def reap():
    """Agents and sidecars stop with their test, even a failed one."""
    yield
    while _made:
        _made.pop().stop()


def stopped_cleanly(ns):
    """Every node not SIGKILLed on purpose exits 0 (99: valgrind found
    an error)."""
    for n in ns:
        rc = n.stop()
        assert rc == 0 or getattr(n, "killed", False), (n.name, rc, n.text())


def sigkill(n):
    n.killed = True
    n.kill(signal.SIGKILL)
    n.p.wait()


@pytest.fixture
def nodes(tmp_path, redis):
    ns = [node(tmp_path, "node-%s" % c, redis.url) for c in "abc"]
    yield ns
    stopped_cleanly(ns)


def test_a_write_answers_once_its_node_delivered(nodes):
    """A write's answer leaves only once the node that took it has read
    its event back from the stream and delivered it: its own links are
    counted in `delivered`, and its /events already has the seq (a
    caller reads its own write). Many writes in a row, so that an answer
    that does not wait loses the race to the stream at least once."""
    a, b, _ = nodes
    web = pyagent(a.ws_url, "web", "web-1", [])
    web.wait_for(lambda s: s.welcomes)
    for i in range(60):
        n = (a, b)[i % 2]
        st, r = n.call("POST", "/api/discovery/invalidate",
                       {"keys": ["k%d" % i], "service": "web"})
        assert st == 202 and r["delivered"] == 1, (i, n.name, r)
        st, h = n.call("GET", "/api/discovery/events?after=%d" %
                       (r["seq"] - 1))
        assert [e["seq"] for e in h["events"]][:1] == [r["seq"]], (i, h)


def seqs(agent):
    with agent.cv:
        return [s for s, _ in agent.events]


def exactly_once(agent, wanted):
    got = seqs(agent)
    missing = sorted(set(wanted) - set(got))
    assert not missing, "missing %s" % missing
    dups = sorted(s for s in set(got) if got.count(s) > 1)
    assert not dups, "delivered twice: %s" % dups


def names(status_body, key="agents"):
    return sorted((a["service"], a["instance"], a["node"])
                  for a in status_body[key])


def wait_until(fn, timeout=15, show=None):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting; %s" %
                                 (show() if show else ""))
        time.sleep(0.05)


def test_cross_node_delivery_and_cluster_lists(tmp_path, nodes):
    a, b, c = nodes
    web = pyagent(a.ws_url, "web", "web-1", ["cache"])
    web.wait_for(lambda s: s.welcomes)
    assert web.welcomes[0]["services"] == {"cache": False}
    # A cache instance on node b reports ready: readiness is derived from
    # the whole cluster, so web on node a hears it.
    cache = sidecar(tmp_path, b.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    web.wait_for(lambda s: any(k == "readiness" for _, k in s.events))

    st, svc = c.call("GET", "/api/discovery/services/cache")
    assert st == 200 and svc["ready"] and svc["instances"] == 1
    assert svc["ready_instances"] == 1 and svc["dependents"] == 1
    st, body = c.call("GET", "/api/discovery/agents")
    assert names(body) == [("cache", "cache-1", "node-b"),
                           ("web", "web-1", "node-a")]

    # A write on node c reaches the agent on node a; every node tells the
    # same history.
    st, inv = c.call("POST", "/api/discovery/invalidate",
                     {"keys": ["k1"], "service": "web"})
    # delivered counts every node's links (their acks), not just node c's.
    assert st == 202 and inv["delivered"] == 1
    web.wait_for(lambda s: inv["seq"] in [q for q, _ in s.events])
    st, bc = b.call("POST", "/api/discovery/broadcast", {"command": "All"})
    assert st == 202 and bc["delivered"] == 2
    histories = [n.call("GET", "/api/discovery/events")[1] for n in nodes]
    assert len({h["epoch"] for h in histories}) == 1
    assert all([e["seq"] for e in h["events"]] ==
               [e["seq"] for e in histories[0]["events"]] for h in histories)
    # Declarations are shared: maintenance declared on a, seen on b.
    st, d = a.call("POST", "/api/discovery/services/cache/notready")
    assert st == 200 and d["ready"] is False and d["declared"] == "notready"
    st, s = b.call("GET", "/api/discovery/services/cache")
    assert s["declared"] == "notready" and s["ready"] is False
    wait_until(lambda: cache.ready_status() == 200)   # its own flag: ready
    st, s = c.call("GET", "/api/discovery/services/nope")
    assert st == 404
    web.stop()
    cache.stop()


def test_sigkilled_node_agents_fail_over_and_lose_nothing(tmp_path, nodes):
    a, b, c = nodes
    agent = pyagent([a.ws_url, b.ws_url], "web", "web-1", ["cache"])
    agent.wait_for(lambda s: s.welcomes)
    side = sidecar(tmp_path, "%s, %s" % (a.ws_url, c.ws_url), "api", "api-1",
                   extra="ready: true\n")
    side.wait_line(r"msg=linked")
    wait_until(lambda: c.call("GET", "/api/discovery/services/api")[1]
               .get("ready"))
    published = []
    for i in range(5):
        published.append(b.call("POST", "/api/discovery/broadcast",
                                {"command": "Tick", "value": i})[1]["seq"])
    agent.wait_for(lambda s: published[-1] in [q for q, _ in s.events])

    sigkill(a)
    # Events go on while the agent has no link: it resumes on node b.
    for i in range(5, 25):
        published.append(c.call("POST", "/api/discovery/broadcast",
                                {"command": "Tick", "value": i})[1]["seq"])
    agent.wait_for(lambda s: published[-1] in [q for q, _ in s.events])
    exactly_once(agent, published)
    assert agent.welcomes[-1]["recovered"] is True
    assert agent.welcomes[-1]["node"] == "node-b"
    side.wait_line(r"msg=linked.*node=node-c")

    # Node a's instances are gone from the cluster within node_ttl (1.5s)
    # plus a heartbeat; the agents that moved are listed on their new nodes.
    def listed():
        return names(c.call("GET", "/api/discovery/agents")[1])
    wait_until(lambda: listed() == [("api", "api-1", "node-c"),
                                    ("web", "web-1", "node-b")],
               timeout=10, show=listed)
    st, s = b.call("GET", "/api/discovery/services/api")
    assert s["instances"] == 1 and s["ready"] is True
    assert side.ready_status() == 200
    agent.stop()
    side.stop()


def test_redis_frozen_writes_503_agents_served(tmp_path, redis, nodes):
    a, b, c = nodes
    cache = sidecar(tmp_path, a.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    web = sidecar(tmp_path, b.ws_url, "web", "web-1", ["cache"],
                  extra="ready: true\n")
    wait_until(lambda: web.ready_status() == 200)
    before = a.call("GET", "/api/discovery/events")[1]["seq"]

    redis.kill(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        st, body = a.call("POST", "/api/discovery/broadcast",
                          {"command": "Lost"})
        assert st == 503 and body["error"] == "unavailable"
        assert time.monotonic() - t0 < 5
        st, _ = b.call("POST", "/api/discovery/services/cache/notready")
        assert st == 503
        # Reads fall back to the node's own view; agents keep their state.
        st, body = b.call("GET", "/api/discovery/agents")
        assert st == 200
        assert web.ready_status() == 200
        assert cache.ready_status() == 200
    finally:
        redis.kill(signal.SIGCONT)
    # Delivery resumes by itself; the refused writes never happened.
    for n in nodes:
        n.wait_line(r"msg=\"cluster reconnected\"|msg=\"cluster synced\"",
                    start=0)
    st, body = wait_until(lambda: (lambda r: r if r[0] == 202 else None)(
        c.call("POST", "/api/discovery/broadcast", {"command": "Back"})))
    events = a.call("GET", "/api/discovery/events?after=%d" % before)[1]
    commands = [e["command"] for e in events["events"]]
    assert "Lost" not in commands and "Back" in commands
    st, s = c.call("GET", "/api/discovery/services/cache")
    assert s["declared"] is None and s["ready"] is True
    cache.stop()
    web.stop()


@pytest.mark.parametrize("aof", [True, False])
def test_redis_restart(tmp_path, aof):
    redis = Redis(tmp_path / "redis", aof=aof)
    ns = [node(tmp_path, "node-%s" % c, redis.url) for c in "ab"]
    a, b = ns
    try:
        agent = pyagent(a.ws_url, "web", "web-1")
        agent.wait_for(lambda s: s.welcomes)
        seq = b.call("POST", "/api/discovery/broadcast",
                     {"command": "One"})[1]["seq"]
        agent.wait_for(lambda s: seq in [q for q, _ in s.events])
        epoch = a.call("GET", "/api/discovery/info")[1]["epoch"]
        marks = [n.mark() for n in ns]

        redis = redis.restart()
        for n, m in zip(ns, marks):
            n.wait_line(r"msg=\"cluster (reconnected|synced)\"", start=m)
        seq2 = wait_until(lambda: (lambda r: r[1]["seq"] if r[0] == 202
                                   else None)(
            b.call("POST", "/api/discovery/broadcast", {"command": "Two"})))
        agent.wait_for(lambda s: seq2 in [q for q, _ in s.events])
        info = a.call("GET", "/api/discovery/info")[1]
        if aof:
            # Nothing lost: same epoch, the seq goes on, the link stayed.
            assert info["epoch"] == epoch and seq2 == seq + 1
            assert len(agent.welcomes) == 1
            hist = b.call("GET", "/api/discovery/events")[1]
            assert [e["command"] for e in hist["events"]] == ["One", "Two"]
        else:
            # History is gone: a new epoch, and agents are told so.
            assert info["epoch"] != epoch
            agent.wait_for(lambda s: len(s.welcomes) >= 2)
            assert agent.welcomes[-1]["recovered"] is False
            assert agent.welcomes[-1]["epoch"] == info["epoch"]
        agent.stop()
    finally:
        stopped_cleanly(ns)
        redis.stop()


def test_node_that_alone_loses_redis(tmp_path, redis):
    cut = Cut(redis.port)
    a = node(tmp_path, "node-a", cut.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        agent = pyagent(a.ws_url, "web", "web-1")
        agent.wait_for(lambda s: s.welcomes)
        wait_until(lambda: len(b.call("GET", "/api/discovery/agents")[1]
                               ["agents"]) == 1)
        m = a.mark()
        cut.sever()
        a.wait_line(r"msg=\"cluster redis lost\"", start=m)
        st, _ = a.call("POST", "/api/discovery/broadcast", {"command": "X"})
        assert st == 503
        # The rest of the cluster carries on, and forgets node a's agents
        # once its heartbeat is older than node_ttl.
        missed = [b.call("POST", "/api/discovery/broadcast",
                         {"command": "Missed", "value": i})[1]["seq"]
                  for i in range(3)]
        wait_until(lambda: b.call("GET", "/api/discovery/agents")[1]
                   ["agents"] == [], timeout=6)
        assert agent.welcomes[-1] and len(agent.welcomes) == 1

        cut.mend()
        a.wait_line(r"msg=\"cluster reconnected\"", start=m)
        # What was missed is delivered, once, on the same link; node a's
        # agents are back in the cluster's list.
        agent.wait_for(lambda s: missed[-1] in [q for q, _ in s.events])
        exactly_once(agent, missed)
        assert len(agent.welcomes) == 1
        wait_until(lambda: len(b.call("GET", "/api/discovery/agents")[1]
                               ["agents"]) == 1)
        agent.stop()
    finally:
        stopped_cleanly([a, b])
        cut.close()


def test_hello_waits_for_cluster_state(tmp_path):
    """A node whose Redis is not there yet refuses hellos with 1013 (try
    again later) rather than welcome agents with a made-up state."""
    port = free_port()
    d = Discoveryd(tmp_path, extra="cluster:\n  redis: redis://127.0.0.1:%d\n"
                   "  node: lonely\n  timeout: 200ms\n" % port)
    try:
        agent = pyagent(d.ws_url, "web", "web-1")
        d.wait_line(r"cluster state not loaded yet|code=1013")
        st, body = d.call("POST", "/api/discovery/broadcast", {"command": "x"})
        assert st == 503
        redis = Redis(tmp_path / "redis", port=port)
        d.wait_line(r"msg=\"cluster synced\"")
        agent.wait_for(lambda s: s.welcomes, timeout=15)
        agent.stop()
        redis.stop()
    finally:
        stopped_cleanly([d])


def test_gate_fails_over_and_follows_the_cluster(tmp_path, nodes):
    """A gate linked to node a, polled without pause: node a is SIGKILLed,
    the gate moves to node b and answers 200 throughout; a notready
    declared on node c then locks it, and ready opens it again."""
    import types

    from gate_harness import Gate, Poller, Upstream

    a, b, c = nodes
    u = Upstream()
    cache = sidecar(tmp_path, c.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    g = Gate(tmp_path, types.SimpleNamespace(
        ws_url="%s, %s" % (a.ws_url, b.ws_url)), u.url)
    poller = None
    try:
        g.wait_line(r"msg=open why=")
        poller = Poller(g)
        mark = g.mark()
        sigkill(a)
        g.wait_line(r"msg=linked.*node=node-b", start=mark)
        statuses = poller.more(50)
        assert len(statuses) > 50 and set(statuses) == {200}, statuses
        assert g.count(r"msg=locked", mark) == 0, g.text()

        st, _ = c.call("POST", "/api/discovery/services/cache/notready")
        assert st == 200
        g.wait_line(r"msg=locked", start=mark)
        assert g.request("GET", "/echo")[0] == 423
        st, _ = b.call("POST", "/api/discovery/services/cache/ready")
        g.wait_line(r"msg=open why=", start=mark)
        assert g.request("GET", "/echo")[0] == 200
    finally:
        if poller:
            poller.stop()
        g.stop()
        cache.stop()
        u.stop()


def test_stalled_node_swept_then_rejoins(tmp_path, redis):
    """A node frozen for longer than node_ttl is given up by the others
    (its agents leave the cluster's list); once it runs again its heartbeat
    learns that, and it reports its agents and counts afresh."""
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        agent = pyagent(a.ws_url, "web", "web-1")
        agent.wait_for(lambda s: s.welcomes)

        def listed():
            return names(b.call("GET", "/api/discovery/agents")[1])
        wait_until(lambda: listed() == [("web", "web-1", "node-a")],
                   show=listed)
        a.kill(signal.SIGSTOP)
        try:
            b.wait_line(r"msg=\"cluster nodes dead\".*node-a")
            assert listed() == []
        finally:
            a.kill(signal.SIGCONT)
        a.wait_line(r"msg=\"cluster rejoined\"")
        wait_until(lambda: listed() == [("web", "web-1", "node-a")],
                   show=listed)
        wait_until(lambda: b.call("GET", "/api/discovery/services/web")[1]
                   .get("instances") == 1)
        agent.stop()
    finally:
        stopped_cleanly([a, b])


def test_frozen_redis_answers_fast_after_the_first_refusal(tmp_path, redis,
                                                            nodes):
    """With Redis frozen, the first write waits out cluster.timeout; the
    calls after it are refused (or read locally) at once instead of holding
    an HTTP thread each."""
    a = nodes[0]
    redis.kill(signal.SIGSTOP)
    try:
        assert a.call("POST", "/api/discovery/broadcast",
                      {"command": "One"})[0] == 503
        for _ in range(5):
            t0 = time.monotonic()
            assert a.call("POST", "/api/discovery/broadcast",
                          {"command": "Two"})[0] == 503
            assert a.call("GET", "/api/discovery/services")[0] == 200
            assert a.call("GET", "/api/discovery/info")[0] == 200
            assert time.monotonic() - t0 < 0.4
    finally:
        redis.kill(signal.SIGCONT)


def test_flushed_redis_is_a_new_history(tmp_path, redis, nodes):
    """FLUSHALL under the nodes: the next write starts a new epoch; every
    node notices (the stream's entries carry their epoch), relinks its
    agents (recovered:false) and reports its agents again."""
    a, b, c = nodes
    agent = pyagent(a.ws_url, "web", "web-1")
    agent.wait_for(lambda s: s.welcomes)
    old = a.call("GET", "/api/discovery/info")[1]["epoch"]
    assert redis.cli("FLUSHALL") == "OK"
    st, body = b.call("POST", "/api/discovery/broadcast", {"command": "New"})
    assert st == 202
    agent.wait_for(lambda s: len(s.welcomes) >= 2 and
                   s.welcomes[-1]["epoch"] != old)
    assert agent.welcomes[-1]["recovered"] is False

    def listed():
        return names(c.call("GET", "/api/discovery/agents")[1])
    wait_until(lambda: listed() == [("web", "web-1", "node-a")], show=listed)
    agent.stop()


def test_failover_to_a_node_that_is_behind(tmp_path, redis):
    """An agent fails over to a node that has read less of the stream than
    the agent has (that node was cut from Redis): its flags must end up
    right once the node catches up, never stay on the node's stale view."""
    cut = Cut(redis.port)
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", cut.url)
    c = node(tmp_path, "node-c", redis.url)
    try:
        web = sidecar(tmp_path, "%s, %s" % (a.ws_url, b.ws_url), "web",
                      "web-1", ["cache"], extra="ready: true\n")
        web.wait_line(r"msg=linked.*node=node-a")
        m = b.mark()
        cut.sever()
        b.wait_line(r"msg=\"cluster redis lost\"", start=m)
        sidecar(tmp_path, c.ws_url, "cache", "cache-1", extra="ready: true\n")
        wait_until(lambda: web.ready_status() == 200)
        wm = web.mark()
        sigkill(a)
        web.wait_line(r"msg=linked.*node=node-b", start=wm)
        cut.mend()
        b.wait_line(r"msg=\"cluster reconnected\"", start=m)
        wait_until(lambda: web.ready_status() == 200)
    finally:
        stopped_cleanly([a, b, c])
        cut.close()


def test_redis_gone_back_in_time_starts_a_new_epoch(tmp_path, redis, nodes):
    """Redis loses the tail of its history but keeps its epoch (an AOF
    with appendfsync everysec after a crash, a replica promoted with
    less): the nodes, which applied more than Redis now holds, notice and
    start a new epoch, so agents resync instead of silently missing the
    events that will reuse those seqs."""
    a, b, c = nodes
    agent = pyagent(a.ws_url, "web", "web-1")
    agent.wait_for(lambda s: s.welcomes)
    seqs_sent = [b.call("POST", "/api/discovery/broadcast",
                        {"command": "Tick", "value": i})[1]["seq"]
                 for i in range(3)]
    agent.wait_for(lambda s: seqs_sent[-1] in [q for q, _ in s.events])
    old = a.call("GET", "/api/discovery/info")[1]["epoch"]
    first = redis.cli("XRANGE", "discovery:log", "-", "+", "COUNT", "1")
    fields = first.split("\n")[1:]
    assert redis.cli("DEL", "discovery:log") == "1"
    redis.cli("XADD", "discovery:log", "%d-0" % seqs_sent[0], *fields)
    redis.cli("SET", "discovery:seq", str(seqs_sent[0]))
    a.wait_line(r"msg=\"cluster went back\"|msg=\"cluster epoch changed\"")
    agent.wait_for(lambda s: len(s.welcomes) >= 2, timeout=15)
    assert agent.welcomes[-1]["recovered"] is False
    assert agent.welcomes[-1]["epoch"] != old
    st, body = c.call("POST", "/api/discovery/broadcast", {"command": "After"})
    assert st == 202
    agent.wait_for(lambda s: body["seq"] in [q for q, _ in s.events])
