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
        # The others refuse to act for it, and say who should, once they
        # have seen its lease (at their next look, within node_ttl/3: a
        # sanitized run asked before it and got "another node").
        name = os.path.basename(str(holder.tmp))
        wait_views([others[0]], lambda v: v["a"].get("holder") == name,
                   "holder %s in the list of another" % name)
        st, body = others[0].call("POST", "/api/discovery/webhooks/a/enable")
        assert st == 409, body
        assert "node %s delivers a" % name in body["message"], body
        assert "holder" not in view(holder)
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


def wait_views(nodes, cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        views = [{h["name"]: h for h in
                  n.call("GET", "/api/discovery/webhooks")[1]["webhooks"]}
                 for n in nodes]
        if all(cond(v) for v in views):
            return views
        if time.monotonic() > deadline:
            raise AssertionError("no %s: %r" % (what, views))
        time.sleep(0.05)


def test_run_time_endpoints_are_shared_by_every_node(tmp_path, redis):
    """docs/webhooks.md, "Run-time endpoints": in cluster mode a PUT on any
    node stores the definition in Redis, every node takes it up, exactly
    one delivers it; a replace on another node reaches the one delivering
    (a secret rotation); a DELETE on a third removes it everywhere, with
    its keys; a node started later finds the definitions there."""
    old, new = new_secret(), new_secret()
    old_path = write_secret(os.path.join(str(tmp_path), "old"), old)
    new_path = write_secret(os.path.join(str(tmp_path), "new"), new)
    rx = Receiver([old])
    url = "redis://127.0.0.1:%d" % redis.port
    conf_path = write_secret(os.path.join(str(tmp_path), "c"), old)
    nodes = [node(tmp_path, "n1", url, extra=webhooks_yaml(
        conf={"url": "http://127.0.0.1:9/h", "secret_file": conf_path,
              "retry": {"initial": "1h", "max": "1h"}}))] + \
        [node(tmp_path, "n%d" % i, url) for i in (2, 3)]
    late = None
    try:
        body = {"url": rx.url, "secret_file": old_path}
        st, answer = nodes[0].call("PUT", "/api/discovery/webhooks/a", body)
        assert st == 201, answer
        # The config's names stay the config's, in cluster mode too.
        st, answer = nodes[0].call("PUT", "/api/discovery/webhooks/conf",
                                   body)
        assert st == 409, answer
        views = wait_views(nodes, lambda v: "a" in v, "a on every node")
        assert all(v["a"]["source"] == "api" for v in views)
        first = post(nodes[1], 5)
        rx.wait(lambda r: len(r.acked) >= 5, what="5 events")
        assert rx.acked_seqs() == first and rx.bad == []
        views = wait_views(nodes, lambda v: True, "views")
        assert sum(v["a"]["delivering"] for v in views) == 1
        # A rotation through another node: the one delivering takes it
        # within a renewal.
        st, answer = nodes[2].call("PUT", "/api/discovery/webhooks/a",
                                   {"url": rx.url, "secret_file": new_path})
        assert st == 200, answer
        rx.secrets = [new]
        second = post(nodes[0], 3, 5)
        rx.wait(lambda r: set(second) <= set(r.acked_seqs()), timeout=30,
                what="the events after the rotation")
        # A node started now finds the definition in Redis.
        late = node(tmp_path, "n4", url)
        wait_views([late], lambda v: "a" in v, "a on the late node")
        st, answer = nodes[1].call("DELETE", "/api/discovery/webhooks/a")
        assert st == 200, answer
        wait_views(nodes + [late], lambda v: "a" not in v, "a gone")
        assert "webhook:a:" not in redis.cli("KEYS", "*")
        assert redis.cli("HKEYS", "discovery:webhooks:defs") == ""
        n_before = len(rx.attempts)
        # The name is free again, from the current seq.
        st, answer = nodes[2].call("PUT", "/api/discovery/webhooks/a",
                                   {"url": rx.url, "secret_file": new_path})
        assert st == 201, answer
        last = post(nodes[0], 1, 8)
        rx.wait(lambda r: last[0] in r.acked_seqs(), what="the new a")
        assert [a["body"]["seq"] for a in rx.attempts[n_before:]] == last
    finally:
        for n in nodes + ([late] if late else []):
            assert n.stop() == 0, n.text()
        rx.close()


def test_a_run_time_endpoint_of_a_bare_cluster_starts_at_the_current_seq(
        tmp_path, redis):
    """Nodes without any endpoint copy no event (webhook_offer): the first
    PUT still starts at where the log stands, not at where it stood when
    the last endpoint left, so no reset notice comes first."""
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret])
    url = "redis://127.0.0.1:%d" % redis.port
    nodes = [node(tmp_path, "n%d" % i, url) for i in (1, 2)]
    try:
        before = post(nodes[0], 5)
        deadline = time.monotonic() + 30
        while True:  # n2 has read them from the stream
            st, info = nodes[1].call("GET", "/api/discovery/info")
            if info["seq"] >= before[-1] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        st, answer = nodes[1].call("PUT", "/api/discovery/webhooks/a",
                                   {"url": rx.url, "secret_file": path})
        assert st == 201, answer
        after = post(nodes[0], 3, 5)
        rx.wait(lambda r: len(r.acked) >= 3, what="3 events")
        assert [a["id"] for a in rx.attempts if "reset" in a["id"]] == []
        assert rx.acked_seqs() == after
    finally:
        for n in nodes:
            assert n.stop() == 0, n.text()
        rx.close()
