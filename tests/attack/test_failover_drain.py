"""Draining a node for a rolling upgrade, three nodes over a real Redis.

`discoveryctl drain node-a`, sent to node-c, reaches node-a through Redis;
node-a closes its links in steps (drain.batch every drain.interval) with
1012 and the drain hint, refuses new hellos with 1013, answers /healthz
503 and says so in info. libagent (agent_probe), the sidecar and the
Python agent move to the next node of their list and resume there with
recovered:true; every event posted meanwhile, without pause, to the
other nodes reaches each of them exactly once, and readiness does not
flap while the agents move. SIGTERM with drain: set drains the same way,
then stops.
"""

import json
import os
import signal
import subprocess
import threading

import pytest

from cluster_harness import node
from harness import BIN, WAIT, Proc, Sidecar, raw_link, read_frame, write
from pyagent import PyAgent

DRAIN = "drain:\n  batch: 2\n  interval: 300ms\n"
PROBE = os.path.join(BIN, "..", "tests", "tools", "agent_probe")


@pytest.fixture
def made():
    """Agents and nodes, stopped with the test even when it fails; every
    node must have exited 0 (a sanitizer's or valgrind's error is not)."""
    procs = []
    yield procs
    codes = [(p.name, p.stop()) for p in reversed(procs)]
    assert all(rc == 0 for name, rc in codes if name == "discoveryd"), codes


def cluster(tmp_path, redis, made):
    ns = [node(tmp_path, "node-%s" % c, redis.url, extra=DRAIN) for c in "abc"]
    made.extend(ns)
    return ns


def probe(made, urls, instance):
    p = Proc([PROBE, ",".join(urls), "web", instance, "cache"], instance,
             stdin=subprocess.PIPE)
    made.append(p)
    return p


class Producer(threading.Thread):
    """Invalidations for every agent, posted without pause to the nodes
    that stay, until told to stop; the seqs acknowledged are kept."""

    def __init__(self, targets):
        super().__init__(daemon=True)
        self.targets, self.acked = targets, []
        self.stopping = False

    def run(self):
        i = 0
        while not self.stopping:
            st, body = self.targets[i % len(self.targets)].call(
                "POST", "/api/discovery/invalidate", {"keys": ["k%d" % i]})
            assert st == 202, body
            self.acked.append(body["seq"])
            i += 1

    def stop(self):
        self.stopping = True
        self.join(WAIT)


def probe_seqs(p):
    return [int(l.split()[1].split("=")[1]) for l in p.lines
            if l.startswith("event ") and "kind=invalidate" in l]


def once_each(got, wanted, who):
    missing = sorted(set(wanted) - set(got))
    twice = sorted(s for s in set(got) if got.count(s) > 1)
    assert not missing and not twice, "%s: missing %s, twice %s" % (
        who, missing, twice)


def hook(tmp_path):
    out = os.path.join(str(tmp_path), "hook.seqs")
    script = write(os.path.join(str(tmp_path), "hook.sh"),
                   "#!/bin/sh\necho $DISCOVERY_SEQ >> %s\n" % out)
    os.chmod(script, 0o755)
    return script, out


def test_drain_moves_every_agent_and_loses_nothing(tmp_path, redis, made):
    a, b, c = cluster(tmp_path, redis, made)
    urls = [a.ws_url, b.ws_url, c.ws_url]
    cache = Sidecar(tmp_path, ", ".join(urls), "cache", "cache-1",
                    extra="ready: true\n")
    made.append(cache)
    script, out = hook(tmp_path)
    # The queue holds every run: the writers (on the nodes' write pools)
    # outrun a hook process per event on a loaded machine, and a full
    # queue drops runs by design (hook_overflow), which is not the drain.
    side = Sidecar(tmp_path, ", ".join(urls), "web", "side-1", ["cache"],
                   extra="hooks:\n  on_invalidate: %s\n  queue: 100000\n"
                   % script)
    made.append(side)
    probes = [probe(made, urls, "probe-%d" % i) for i in range(3)]
    py = PyAgent(urls, "web", "py-1", ["cache"])
    try:
        for p in probes:
            p.wait_line(r"link state=linked .*node=node-a")
        py.wait_for(lambda s: s.welcomes)
        assert py.welcomes[0]["node"] == "node-a"
        side.wait_line(r"readiness service=cache ready=true")
        a.wait_line(r"msg=readiness service=cache ready=true")

        producer = Producer([b, c])
        producer.start()
        mark = a.mark()
        r = subprocess.run([os.path.join(BIN, "discoveryctl"), "-s", c.base,
                            "--json", "drain", "node-a"],
                           capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"node": "node-a", "draining": True,
                                        "links": None}
        a.wait_line(r"msg=draining links=6 batch=2", mark)
        a.wait_line(r"msg=drained links=6", mark)
        # In steps, not all at once.
        assert a.count(r'msg="drain step" closed=2', mark) == 3

        # Drained: out of the balancer's pool, and no agent comes back.
        assert a.call("GET", "/healthz") == (503, {"status": "draining"})
        assert a.call("GET", "/api/discovery/info")[1]["state"] == "drained"
        s, rest = raw_link(a.agents_addr, {"type": "hello", "service": "web",
                                           "instance": "late"})
        op, payload, _ = read_frame(s, rest)
        s.close()
        assert (op, int.from_bytes(payload[:2], "big")) == (0x8, 1013)

        for p in probes:
            p.wait_line(r"link state=unlinked code=1012")
            p.wait_line(r"link state=linked .*recovered=1 .*node=node-[bc]")
        py.wait_for(lambda s: len(s.welcomes) >= 2 and
                    s.welcomes[-1]["node"] != "node-a")
        assert all(w["recovered"] for w in py.welcomes[1:])
        side.wait_line(r"linked url=\S+ node=node-[bc] .*recovered=true")

        producer.stop()
        wanted = producer.acked
        assert len(wanted) > 10
        last = max(wanted)
        for p in probes:
            p.wait_line(r"event seq=%d kind=invalidate" % last)
            once_each(probe_seqs(p), wanted, p.name)
        py.wait_for(lambda s: s.seq >= last)
        once_each([q for q, k in py.events if k == "invalidate"], wanted,
                  "py-1")
        side.wait_line(r"msg=hook hook=on_invalidate seq=%d " % last)
        assert side.count(r"msg=hook_overflow") == 0, side.text()[-2000:]
        with open(out) as f:
            once_each([int(x) for x in f.read().split()], wanted, "side-1")

        # cache's instance moved too: readiness never flapped.
        st, log = c.call("GET", "/api/discovery/events")
        assert [e["value"]["ready"] for e in log["events"]
                if e["kind"] == "readiness" and
                e["value"]["service"] == "cache"] == [True]
        assert b.call("GET", "/healthz")[0] == 200
    finally:
        py.stop()


def test_sigterm_with_drain_moves_agents_then_stops(tmp_path, redis, made):
    a, b, c = cluster(tmp_path, redis, made)
    urls = [b.ws_url, c.ws_url]
    probes = [probe(made, urls, "probe-%d" % i) for i in range(3)]
    for p in probes:
        p.wait_line(r"link state=linked .*node=node-b")
    producer = Producer([a, c])
    producer.start()
    b.kill(signal.SIGTERM)
    b.wait_line(r"msg=stopping signal=TERM drain=true")
    b.wait_line(r"msg=drained links=3")
    assert b.p.wait(WAIT) == 0, b.text()
    for p in probes:
        p.wait_line(r"link state=unlinked code=1012")
        p.wait_line(r"link state=linked .*recovered=1 .*node=node-c")
    producer.stop()
    last = max(producer.acked)
    for p in probes:
        p.wait_line(r"event seq=%d kind=invalidate" % last)
        once_each(probe_seqs(p), producer.acked, p.name)
    assert c.call("GET", "/healthz")[0] == 200
