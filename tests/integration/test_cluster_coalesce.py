"""cluster.coalesce: under a sustained stream a node's reader waits a
little before it reads on, so that each link gets more in one write
(docs/design.md, "Coalescing in cluster mode"). Nothing of it may cost
an event or its order: writes from many clients at once, through two
nodes, reach an agent on each node whole and in seq order, with the
pause on (the default) and, after a SIGHUP, off (read again without a
restart). Nothing here asserts a time."""

import contextlib
import signal
import threading

from cluster_harness import node
from harness import write
from pyagent import PyAgent


def burst(n, count, clients=8):
    """count broadcasts from `clients` threads at once; their seqs."""
    seqs, lock = [], threading.Lock()

    def one(k):
        for i in range(k, count, clients):
            st, body = n.call("POST", "/api/discovery/broadcast",
                              {"command": "C%d" % i})
            assert st == 202, (st, body)
            with lock:
                seqs.append(body["seq"])

    ts = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sorted(seqs)


def received(agent, seqs):
    """The agent got exactly seqs, in order, after what it had."""
    want = set(seqs)
    agent.wait_for(lambda s: want <= {q for q, _ in s.events})
    got = [q for q, _ in agent.events if q in want]
    assert got == seqs, got


@contextlib.contextmanager
def two_nodes(tmp_path, redis):
    """Nodes a and b, each with one agent linked (web-0 on a, web-1 on
    b); both stop cleanly after."""
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    agents = []
    try:
        agents = [PyAgent(n.ws_url, "web", "web-%d" % i)
                  for i, n in enumerate((a, b))]
        for agent in agents:
            agent.wait_for(lambda s: s.welcomes)
        yield a, b, agents
    finally:
        for agent in agents:
            agent.stop()
        codes = [n.stop() for n in (a, b)]
        assert codes == [0, 0], codes


def test_a_sustained_stream_arrives_whole_and_in_order(tmp_path, redis):
    with two_nodes(tmp_path, redis) as (a, b, agents):
        seqs = burst(a, 300)
        assert len(set(seqs)) == 300
        for agent in agents:
            received(agent, seqs)

        # Off, on SIGHUP: no restart for it, and the stream goes on.
        for n in (a, b):
            with open(n.config) as f:
                text = f.read()
            write(n.config, text.replace("cluster:\n",
                                         "cluster:\n  coalesce: 0\n", 1))
            mark = n.mark()
            n.kill(signal.SIGHUP)
            n.wait_line(r"msg=reloaded", start=mark)
            assert n.count(r"key=cluster ", mark) == 0
        seqs = burst(b, 100)
        assert seqs[0] > 300
        for agent in agents:
            received(agent, seqs)


def test_an_ack_that_is_no_count_is_not_counted(tmp_path, redis):
    """The acks a write takes (pipelined LPOPs, then BLPOP) are "NODE
    COUNT"; a value in the ack list that is not one, a negative count
    (strtoull reads "-5" as 2^64-5) or a count with junk after it, is no
    node's ack: `delivered` stays the links', and the real ack of node b
    is still waited for."""
    with two_nodes(tmp_path, redis) as (a, b, agents):
        st, first = a.call("POST", "/api/discovery/broadcast",
                           {"command": "C0"})
        assert st == 202 and first["delivered"] == 2, first
        # Whatever seq the next write takes, its ack list starts with them.
        ahead = range(first["seq"] + 1, first["seq"] + 6)
        for seq in ahead:
            redis.cli("RPUSH", "discovery:ack:%d" % seq, "node-b -5",
                      "node-b 7x", "node-b", " 3",
                      "node-b 99999999999999999999")
        st, r = a.call("POST", "/api/discovery/broadcast", {"command": "C1"})
        assert st == 202 and r["seq"] in ahead, r
        assert r["delivered"] == 2, r
