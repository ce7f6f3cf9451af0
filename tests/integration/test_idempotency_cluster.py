"""Idempotency-Key in cluster mode: the key is checked and recorded by the
script run that makes the change, so a retry on another node replays, the
same key on two nodes at once makes one event, a reply lost between Redis
and the node (the script ran, the node answered 503) is retried safely, the
same key twice at once on one node is 409, and keys expire in Redis after
idempotency.retention."""

import json
import os
import signal
import subprocess
import threading
import time


from cluster_harness import Cut, node
from harness import BIN
from test_idempotency import raw_call

CTL = os.path.join(BIN, "discoveryctl")

INV = "/api/discovery/invalidate"


def seq(n):
    return n.call("GET", "/api/discovery/events")[1]["seq"]


def stopped(ns):
    for n in ns:
        rc = n.stop()
        assert rc == 0, (n.name, rc)


def wait_until(fn, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_retry_on_another_node_replays(tmp_path, redis):
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        st, _, first = raw_call(a, "POST", INV, {"keys": ["k"]}, key="x-1")
        assert st == 202
        s = json.loads(first)["seq"]
        for n in (a, b, a):
            st, h, body = raw_call(n, "POST", INV, {"keys": ["k"]},
                                   key="x-1")
            assert (st, body) == (202, first)
            assert h["idempotent-replayed"] == "true"
        st, _, body = raw_call(b, "POST", INV, {"keys": ["other"]},
                               key="x-1")
        assert st == 422 and json.loads(body)["error"] == "key_reused"
        for path in ("/api/discovery/services/web/ready",
                     "/api/discovery/cacheready"):
            st, _, one = raw_call(a, "POST", path, key="p" + path)
            assert st == 200
            st, h, two = raw_call(b, "POST", path, key="p" + path)
            assert (st, two) == (200, one), path
            assert h["idempotent-replayed"] == "true"
        st, _, one = raw_call(a, "POST", "/api/discovery/nodes/node-b/drain",
                              key="drain-b")
        assert st == 202
        st, h, two = raw_call(a, "POST", "/api/discovery/nodes/node-b/drain",
                              key="drain-b")
        assert (st, two) == (202, one) and h["idempotent-replayed"] == "true"
        assert wait_until(lambda: seq(b) >= s) and seq(a) == seq(b)
        ttl = int(redis.cli("PTTL", "discovery:idem:\nx-1"))
        assert 0 < ttl <= 24 * 3600 * 1000
        m = a.call("GET", "/metrics")[1].decode()
        assert "discovery_idempotent_replays_total 3" in m
    finally:
        stopped([a, b])


def test_own_drain_retried_on_another_node_replays(tmp_path, redis):
    """A node's drain of itself keeps its key in Redis, as every write
    does: the retry on another node gets the first answer (this node's
    links), not a drain request of its own."""
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        path = "/api/discovery/nodes/node-a/drain"
        st, h, one = raw_call(a, "POST", path, key="drain-self")
        assert st == 202 and "idempotent-replayed" not in h
        assert json.loads(one)["links"] == 0
        for n in (b, a):
            st, h, two = raw_call(n, "POST", path, key="drain-self")
            assert (st, two) == (202, one), n.name
            assert h["idempotent-replayed"] == "true"
    finally:
        stopped([a, b])


def test_same_key_on_two_nodes_at_once_one_event(tmp_path, redis):
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        before = seq(a)
        for round in range(5):
            key = "both-%d" % round
            got = []
            go = threading.Barrier(2)

            def post(n):
                go.wait()
                got.append(raw_call(n, "POST", INV, {"keys": [key]},
                                    key=key))

            ts = [threading.Thread(target=post, args=(n,)) for n in (a, b)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            ok = [json.loads(body)["seq"] for st, _, body in got
                  if st == 202]
            assert ok and len(set(ok)) == 1, got
            assert all(st in (202, 409) for st, _, _ in got), got
        # One event per key, whatever the interleaving.
        assert wait_until(lambda: seq(a) == before + 5 and
                          seq(b) == before + 5)
    finally:
        stopped([a, b])


def test_same_key_in_flight_on_one_node_409(tmp_path, redis):
    a = node(tmp_path, "node-a", redis.url, node_ttl="60s", timeout="20s",
             extra="log_level: debug\n")
    try:
        before = seq(a)
        first = []
        redis.kill(signal.SIGSTOP)
        try:
            mark = a.mark()
            t = threading.Thread(target=lambda: first.append(raw_call(
                a, "POST", INV, {"keys": ["k"]}, key="held")))
            t.start()
            a.wait_line(r"msg=\"idempotency key in flight\"", mark)
            st, _, body = raw_call(a, "POST", INV, {"keys": ["k"]},
                                   key="held")
            assert st == 409 and json.loads(body)["error"] == "in_flight"
        finally:
            redis.kill(signal.SIGCONT)
        t.join()
        # The held call ran (202) or, had Redis come back past its
        # deadline, changed nothing (503): either way a retry leaves
        # exactly one event.
        st = first[0][0]
        assert st in (202, 503)
        st, _, body = wait_until(lambda: (lambda r: r if r[0] == 202
                                          else None)(raw_call(
            a, "POST", INV, {"keys": ["k"]}, key="held")))
        assert wait_until(lambda: seq(a) == before + 1)
    finally:
        stopped([a])


class LosingRelay(Cut):
    """A TCP relay to Redis that, once armed, forwards the next command
    that carries `marker` to Redis and drops Redis's reply to it, then cuts
    that connection: the script ran, the node never heard."""

    def __init__(self, port, marker):
        self.marker = marker
        self.armed = threading.Event()
        self.lost = threading.Event()
        super().__init__(port)

    def relay(self, data, up, state):
        if up and self.armed.is_set() and self.marker in data:
            self.armed.clear()
            state["drop"] = True
        elif not up and state.get("drop"):
            self.lost.set()
            return None             # the reply is lost, the link cut
        return data


def test_lost_reply_then_retry_makes_one_event(tmp_path, redis):
    relay = LosingRelay(redis.port, b"lost-reply-key")
    a = node(tmp_path, "node-a", relay.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        before = seq(b)
        relay.armed.set()
        st, _, body = raw_call(a, "POST", INV, {"keys": ["k"]},
                               key="lost-reply-key")
        assert relay.lost.is_set()
        assert st == 503 and json.loads(body)["error"] == "unavailable"
        # The script ran although node-a answered 503:
        assert wait_until(lambda: seq(b) == before + 1)
        # The caller retries, on the other node: first told the call may
        # still be answering (409), then the first run's answer.
        def retry():
            r = raw_call(b, "POST", INV, {"keys": ["k"]},
                         key="lost-reply-key")
            return r if r[0] != 409 else None
        st, h, body = wait_until(retry)
        assert st == 202 and h["idempotent-replayed"] == "true"
        assert json.loads(body)["seq"] == before + 1
        # And on the node that lost the reply, once it has Redis again.
        st, h, again = wait_until(lambda: (lambda r: r if r[0] == 202
                                           else None)(raw_call(
            a, "POST", INV, {"keys": ["k"]}, key="lost-reply-key")))
        assert again == body and h["idempotent-replayed"] == "true"
        assert seq(b) == before + 1 and seq(a) == before + 1
    finally:
        stopped([a, b])
        relay.close()


def test_keys_expire_in_redis(tmp_path, redis):
    # timeout 2s: a loaded machine is not what this case is about.
    a = node(tmp_path, "node-a", redis.url, timeout="2s", node_ttl="4s",
             extra="idempotency:\n  retention: 5s\n")
    try:
        # Until the node has its Redis connection a write is refused
        # (503, nothing applied, the key not taken): retried.
        st, _, one = wait_until(lambda: (lambda r: r if r[0] != 503 else
                                         None)(raw_call(a, "POST", INV,
                                                        {"keys": ["k"]},
                                                        key="brief")))
        assert st == 202, one
        assert 0 < int(redis.cli("PTTL", "discovery:idem:\nbrief")) <= 5000
        wait_until(lambda: redis.cli("EXISTS", "discovery:idem:\nbrief")
                   == "0")
        st, h, two = raw_call(a, "POST", INV, {"keys": ["k"]}, key="brief")
        assert st == 202 and "idempotent-replayed" not in h
        assert json.loads(two)["seq"] == json.loads(one)["seq"] + 1
    finally:
        stopped([a])


def test_discoveryctl_retries_a_lost_reply_once(tmp_path, redis):
    """discoveryctl's own retries: the first try's reply is lost after the
    script ran (503), the retries get 503 (the node rests after a failed
    call), 409 (the first run may still be answering), then the replay."""
    relay = LosingRelay(redis.port, b"ctl-lost-key")
    a = node(tmp_path, "node-a", relay.url)
    try:
        before = seq(a)
        relay.armed.set()
        r = subprocess.run([CTL, "-s", a.base, "--json", "--idempotency-key",
                            "ctl-lost-key", "invalidate", "k"],
                           capture_output=True, text=True, timeout=120)
        assert relay.lost.is_set()
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["seq"] == before + 1
        assert wait_until(lambda: seq(a) == before + 1)
        events = a.call("GET", "/api/discovery/events?after=%d" % before)[1]
        assert len(events["events"]) == 1
    finally:
        stopped([a])
        relay.close()
