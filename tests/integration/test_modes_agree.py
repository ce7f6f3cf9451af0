"""A single node and a cluster agree.

The service object and the readiness rule exist twice: in C (the hub, for
a single node) and in Lua (cluster.lua, run by Redis). This runs one
script of agent links, status changes and HTTP calls against a single
node and against a two-node cluster (the agents split across the nodes,
the calls taken by each node in turn), and compares, field by field:

- every call's answer (status and body),
- the service objects and the list of services, read on every node,
- the agents list (who is linked, as which instance, how ready),
- the events the calls made, as GET /events and as a dependent agent
  received them.

What may differ is left out and said so: `delivered` (a cluster waits
only briefly for other nodes' counts), the agents' `node` and link times,
`ttl_ms`'s value (the clock runs; null or not is compared), and the seqs'
origin (compared from where the script began).
"""

import json
import time

from cluster_harness import node
from harness import WAIT, Discoveryd
from pyagent import PyAgent

CONF = "services:\n  api:\n    min_ready: 2\n"
# A link dropped by a slow machine comes back not ready: not this test's
# subject.
HEARTBEAT = "  interval: 1s\n  timeout: 30s\n"

# service, instance, depends_on, the cluster node it links to
AGENTS = [
    ("cache", "c1", (), 0),
    ("cache", "c2", (), 1),
    ("api", "a1", (), 0),
    ("api", "a2", (), 1),
    ("web", "w1", ("cache", "api"), 0),
]

NAMES = ("cache", "api", "web")

# (action, expected): the action is ("status", instance, ready),
# ("drop", instance) or ("call", method, path, body); expected holds
# fields of service objects every node must show before the next step.
SCRIPT = [
    (None, {"cache": {"instances": 2, "ready_instances": 0, "ready": False,
                      "dependents": 1},
            "api": {"instances": 2, "ready": False, "dependents": 1},
            "web": {"instances": 1, "ready": False}}),
    (("status", "c1", True), {"cache": {"ready_instances": 1,
                                        "ready": True}}),
    (("status", "a1", True), {"api": {"ready_instances": 1,
                                      "ready": False}}),
    (("status", "a2", True), {"api": {"ready_instances": 2,
                                      "ready": True}}),
    (("status", "w1", True), {"web": {"ready_instances": 1,
                                      "ready": True}}),
    (("call", "POST", "/api/discovery/services/api/notready", None),
     {"api": {"declared": "notready", "ready": False}}),
    (("call", "POST", "/api/discovery/services/cache/ready",
      {"ttl": "30s"}), {"cache": {"declared": "ready", "ready": True}}),
    (("status", "c1", False), {"cache": {"ready_instances": 0,
                                         "ready": True}}),
    (("call", "DELETE", "/api/discovery/services/api/declaration", None),
     {"api": {"declared": None, "ready": True}}),
    (("call", "DELETE", "/api/discovery/services/cache/declaration", None),
     {"cache": {"declared": None, "ready": False}}),
    (("drop", "a2"), {"api": {"instances": 1, "ready_instances": 1,
                              "ready": False}}),
    (("call", "POST", "/api/discovery/invalidate",
      {"keys": ["k1", "k2"], "service": "web"}), {}),
    (("call", "POST", "/api/discovery/broadcast",
      {"command": "Reload", "header": {"source": "ops"},
       "value": {"why": "deploy"}, "target": {"service": "cache"}}), {}),
    (("call", "POST", "/api/discovery/cacheready", None),
     {"cache": {"declared": "ready", "ready": True}}),
    (("call", "POST", "/api/discovery/services/lone/notready",
      {"ttl": "1h"}), {"lone": {"declared": "notready", "instances": 0}}),
    (("call", "POST", "/api/discovery/services/lone/ready", None),
     {"lone": {"declared": "ready", "ready": True}}),
    (("call", "POST", "/api/discovery/services/api/ready", None),
     {"api": {"declared": "ready", "ready": True}}),
    # Refusals: the same status, code and message.
    (("call", "GET", "/api/discovery/services/nosuch", None), {}),
    (("call", "DELETE", "/api/discovery/services/nosuch/declaration",
      None), {}),
    (("call", "POST", "/api/discovery/services/Bad!/ready", None), {}),
    (("call", "POST", "/api/discovery/services/api/ready",
      {"ttl": "soon"}), {}),
    (("call", "POST", "/api/discovery/invalidate", {"keys": "k"}), {}),
    (("call", "POST", "/api/discovery/broadcast", {"value": 1}), {}),
    (("drop", "w1"), {"cache": {"dependents": 0},
                      "api": {"dependents": 0}}),
]


class Deployment:
    """One node, or a cluster: where agents link, who takes calls, and
    the nodes that are read."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.calls = 0
        self.agents = {}
        self.dropped = {}           # their records are still read
        self.base = seq_of(nodes[0])

    def link(self):
        for service, instance, deps, at in AGENTS:
            n = self.nodes[at % len(self.nodes)]
            self.agents[instance] = PyAgent(n.ws_url, service, instance,
                                            deps)
        for a in self.agents.values():
            a.wait_for(lambda a: a.welcomes)

    def call(self, method, path, body):
        n = self.nodes[self.calls % len(self.nodes)]
        self.calls += 1
        return n.call(method, path, body)

    def stop(self):
        for a in self.agents.values():
            a.stop()


def seq_of(n):
    return n.call("GET", "/api/discovery/info")[1]["seq"]


def service_view(obj, base):
    """A service object as both modes must give it."""
    v = dict(obj)
    v.pop("delivered", None)
    v["ttl_ms"] = v.get("ttl_ms") is not None
    if "seq" in v:
        v["seq"] -= base
    return v


def answer_view(status, body, base):
    if isinstance(body, dict) and "name" in body:
        return status, service_view(body, base)
    if isinstance(body, dict):
        body = dict(body)
        body.pop("delivered", None)
        if "seq" in body:
            body["seq"] -= base
    return status, body


def services_view(n, base):
    st, body = n.call("GET", "/api/discovery/services")
    assert st == 200
    return [service_view(s, base) for s in body["services"]]


def agents_view(n):
    st, body = n.call("GET", "/api/discovery/agents")
    assert st == 200
    keep = ("service", "instance", "ready", "depends_on", "address", "meta")
    return sorted((json.dumps({k: a.get(k) for k in keep}, sort_keys=True)
                   for a in body["agents"]))


def events_view(n, base):
    st, body = n.call("GET", "/api/discovery/events?after=%d" % base)
    assert st == 200 and body["complete"]
    out = []
    for e in body["events"]:
        e = dict(e)
        e["seq"] -= base
        e.pop("epoch", None)
        e.pop("time", None)
        e.pop("ts", None)
        out.append(e)
    return out


def shows(n, expected):
    for name, fields in expected.items():
        st, obj = n.call("GET", "/api/discovery/services/" + name)
        if st != 200 or any(obj.get(k) != v for k, v in fields.items()):
            return False
    return True


def settle(d, expected):
    deadline = time.monotonic() + WAIT
    while not all(shows(n, expected) for n in d.nodes):
        assert time.monotonic() < deadline, (
            "never showed %s: %s" % (expected, [
                [n.call("GET", "/api/discovery/services/" + s)[1]
                 for s in expected] + [agents_view(n)] for n in d.nodes]))
        time.sleep(0.05)


def step(d, action):
    """Run one action; the call's answer, if it was a call."""
    if action is None:
        return None
    if action[0] == "status":
        d.agents[action[1]].status(action[2])
    elif action[0] == "drop":
        d.dropped[action[1]] = d.agents.pop(action[1])
        d.dropped[action[1]].stop()
    else:
        return answer_view(*d.call(*action[1:]), d.base)
    return None


def test_a_single_node_and_a_cluster_agree(tmp_path, redis):
    (tmp_path / "single").mkdir()
    one = Discoveryd(tmp_path / "single", extra=CONF, heartbeat=HEARTBEAT)
    a = node(tmp_path, "node-a", redis.url, extra=CONF, heartbeat=HEARTBEAT)
    b = node(tmp_path, "node-b", redis.url, extra=CONF, heartbeat=HEARTBEAT)
    single, cluster = Deployment([one]), Deployment([a, b])
    try:
        for d in (single, cluster):
            d.link()
        for i, (action, expected) in enumerate(SCRIPT):
            answers = [step(d, action) for d in (single, cluster)]
            assert answers[0] == answers[1], (i, action, answers)
            for d in (single, cluster):
                settle(d, expected)
            want = services_view(one, single.base)
            for n in (a, b):
                assert services_view(n, cluster.base) == want, (i, action)
                # Another node's agents come from Redis, reported a moment
                # after the change (coalesced): they agree once it is there.
                deadline = time.monotonic() + WAIT
                while agents_view(n) != agents_view(one) and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
                assert agents_view(n) == agents_view(one), (i, action)
        assert events_view(a, cluster.base) == events_view(one, single.base)
        assert events_view(b, cluster.base) == events_view(one, single.base)
        # What a dependent received, in order. w1 was dropped last: its
        # record stays.
        got = [[(s - d.base, k) for s, k in d.dropped["w1"].events]
               for d in (single, cluster)]
        assert got[0] == got[1] and got[0], got
    finally:
        for d in (single, cluster):
            d.stop()
        for n in (one, a, b):
            assert n.stop() == 0, n.text()

