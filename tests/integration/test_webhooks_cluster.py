"""Webhooks in cluster mode: three nodes over one Redis, one endpoint. Exactly
one node delivers it (its lease); SIGKILL that node and another takes over
from the cursor in Redis within node_ttl: every event arrives, in order,
at most the one in flight at the kill twice."""

import os
import signal
import time

from cluster_harness import node
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret


def post(n, count, start=0):
    seqs = []
    for i in range(count):
        st, body = n.call("POST", "/api/discovery/invalidate",
                          {"keys": ["k%d" % (start + i)], "service": "web"})
        assert st == 202, body
        seqs.append(body["seq"])
    return seqs


def view(n):
    st, body = n.call("GET", "/api/discovery/webhooks")
    assert st == 200, body
    return body["webhooks"][0]


def deliverers(nodes, timeout=30):
    """The nodes whose list says they deliver, once exactly one does."""
    deadline = time.monotonic() + timeout
    while True:
        who = [n for n in nodes if view(n)["delivering"]]
        if len(who) == 1:
            return who
        if time.monotonic() > deadline:
            raise AssertionError("delivering: %d nodes" % len(who))
        time.sleep(0.05)


def test_one_node_delivers_and_another_takes_over(tmp_path, redis):
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret])
    extra = webhooks_yaml(a={"url": rx.url, "secret_file": path})
    url = "redis://127.0.0.1:%d" % redis.port
    nodes = [node(tmp_path, "n%d" % i, url, extra=extra) for i in (1, 2, 3)]
    try:
        first = post(nodes[0], 10)
        try:
            rx.wait(lambda r: len(r.acked) >= 10, what="10 events")
        except AssertionError:
            for n in nodes:
                print(n.text()[-3000:])
            raise
        assert rx.acked_seqs() == first
        holder = deliverers(nodes)[0]
        others = [n for n in nodes if n is not holder]
        # The others refuse to act for it, and say who should.
        st, body = others[0].call("POST", "/api/discovery/webhooks/a/enable")
        assert st == 409, body
        holder.kill(signal.SIGKILL)
        holder.p.wait()
        second = post(others[0], 10, 10)
        rx.wait(lambda r: set(first + second) <= set(r.acked_seqs()),
                timeout=60, what="every event after the kill")
        seqs = rx.acked_seqs()
        once = []
        for s in seqs:
            if s not in once:
                once.append(s)
        assert once == first + second
        assert len(seqs) - len(once) <= 1, seqs
        assert rx.bad == []
        deliverers(others)
        # The cursor is the cluster's: the new holder shows it.
        new = [n for n in others if view(n)["delivering"]][0]
        deadline = time.monotonic() + 30
        while view(new)["cursor"] != second[-1]:
            assert time.monotonic() < deadline, view(new)
            time.sleep(0.05)
    finally:
        for n in nodes:
            if n.p.poll() is None:
                assert n.stop() == 0, n.text()
        rx.close()


def test_sigkill_of_the_delivering_node_mid_flow(tmp_path, redis):
    import threading
    from webhook_recv import fail_at_random

    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret], answer=fail_at_random(0.2, seed=5))
    extra = webhooks_yaml(a={"url": rx.url, "secret_file": path,
                             "retry": {"initial": "10ms", "max": "50ms"}})
    url = "redis://127.0.0.1:%d" % redis.port
    nodes = [node(tmp_path, "n%d" % i, url, extra=extra) for i in (1, 2, 3)]
    try:
        post(nodes[0], 1)
        rx.wait(lambda r: r.acked, what="the first event")
        holder = deliverers(nodes)[0]
        writer = [n for n in nodes if n is not holder][0]
        acked, done = [], threading.Event()

        def produce():
            for i in range(60):
                acked.extend(post(writer, 1, i))
            done.set()
        t = threading.Thread(target=produce, daemon=True)
        t.start()
        rx.wait(lambda r: len(r.acked) >= 15, what="deliveries before "
                "the kill")
        holder.kill(signal.SIGKILL)
        holder.p.wait()
        assert done.wait(60)
        rx.wait(lambda r: set(acked) <= set(r.acked_seqs()), timeout=60,
                what="every event after the kill")
        seqs = rx.acked_seqs()
        once = []
        for s in seqs:
            if s not in once:
                once.append(s)
        assert once == list(range(1, once[-1] + 1)), seqs
        assert len(seqs) - len(once) <= 1, seqs
        assert rx.bad == []
    finally:
        for n in nodes:
            if n.p.poll() is None:
                assert n.stop() == 0, n.text()
        rx.close()


def test_disabled_passes_to_the_next_holder(tmp_path, redis):
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret], answer=lambda rec, k: 410)
    extra = webhooks_yaml(a={"url": rx.url, "secret_file": path})
    url = "redis://127.0.0.1:%d" % redis.port
    nodes = [node(tmp_path, "n%d" % i, url, extra=extra) for i in (1, 2)]
    try:
        holder = deliverers(nodes)[0]
        other = [n for n in nodes if n is not holder][0]
        post(other, 1)
        deadline = time.monotonic() + 30
        while not view(holder)["disabled"]:
            assert time.monotonic() < deadline, view(holder)
            time.sleep(0.05)
        holder.kill(signal.SIGKILL)
        holder.p.wait()
        deliverers([other])
        h = view(other)
        assert h["disabled"] and "410" in h["disabled_reason"], h
        assert len(rx.attempts) == 1
    finally:
        for n in nodes:
            if n.p.poll() is None:
                assert n.stop() == 0, n.text()
        rx.close()


def test_run_time_endpoints_are_refused_in_cluster_mode(tmp_path, redis):
    """docs/webhooks.md, "Run-time endpoints": the nodes' configs are the
    list in cluster mode; a PUT answers 409 whether or not the node has
    webhooks: of its own, and nothing is defined."""
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    url = "redis://127.0.0.1:%d" % redis.port
    with_hooks = node(tmp_path, "n1", url, extra=webhooks_yaml(
        a={"url": "http://127.0.0.1:9/h", "secret_file": path}))
    bare = node(tmp_path, "n2", url)
    try:
        for n in (with_hooks, bare):
            for name in ("a", "b"):
                st, body = n.call("PUT", "/api/discovery/webhooks/" + name,
                                  {"url": "http://127.0.0.1:9/h",
                                   "secret_file": path})
                assert st == 409, body
                assert "cluster mode" in body["message"], body
        st, body = bare.call("GET", "/api/discovery/webhooks")
        assert st == 200 and body == {"webhooks": []}
        assert [h["name"] for h in
                with_hooks.call("GET", "/api/discovery/webhooks")[1]
                ["webhooks"]] == ["a"]
    finally:
        for n in (with_hooks, bare):
            assert n.stop() == 0, n.text()
