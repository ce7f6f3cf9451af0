"""The cluster mirror corks the hub around a batch of the stream
(cluster_mirror.c): each link's share goes in one write at the uncork.
Every agent on every node still gets every event once and in order while
writers on both nodes fill batches; a consumer that never reads is closed
at the uncork (send queue full) without disturbing the others; and a
history gap found mid-batch (the node's Redis cut while the stream is
trimmed past it) relinks that node's agents during the cork, and the
node carries on (also under ASan)."""

import socket
import threading
import time

from cluster_harness import Cut, node
from dnsutil import wait_until
from harness import raw_link, ws_run
from test_batched_delivery import broadcasts, check, collect


def agents_on(nodes, want):
    got = {n.name + str(i): [] for i, n in enumerate(nodes)}
    done = []

    def agent(n, into):
        ws_run(collect(n, want, into))
        done.append(True)
    threads = [threading.Thread(target=agent, args=(n, got[n.name + str(i)]))
               for i, n in enumerate(nodes)]
    for t in threads:
        t.start()
    return got, done, threads


def test_every_agent_on_every_node_gets_every_event(tmp_path, redis):
    small = "limits:\n  send_queue: 64KiB\n"
    a = node(tmp_path, "node-a", redis.url, timeout="2s", node_ttl="5s",
             extra=small, heartbeat="  interval: 1s\n  timeout: 30s\n")
    b = node(tmp_path, "node-b", redis.url, timeout="2s", node_ttl="5s",
             extra=small, heartbeat="  interval: 1s\n  timeout: 30s\n")
    a.name, b.name = "a", "b"
    last = []
    try:
        # One that never reads, with a tiny buffer, on b.
        slow, _ = raw_link(b.agents_addr, {"type": "hello", "service": "slow",
                                           "instance": "s-1"}, rcvbuf=4096)
        got, done, threads = agents_on(
            [a, b, b], lambda: last[0] if last else None)
        wait_until(lambda: all(got.values()), what="agents linked")
        acked, stop = [], threading.Event()
        ws = broadcasts(a, stop, acked, 16) + broadcasts(b, stop, acked, 16)
        try:
            wait_until(lambda: len(acked) >= 1000, what="the broadcasts")
            # Big ones, for the reader that never reads to overflow.
            for k in range(80):
                st, body = a.call("POST", "/api/discovery/broadcast", {
                    "command": "Batch", "value": {
                        "w": 99, "n": k, "pad": "p" * k, "big": "x" * 40000}})
                assert st == 202, body
                acked.append((body["seq"], 99, k))
            wait_until(lambda: len(acked) >= 1600, what="the broadcasts")
        finally:
            stop.set()
            for w in ws:
                w.join()
        last.append(max(s for s, _, _ in acked))
        for t in threads:
            t.join(60)
        assert len(done) == 3, "an agent did not get the last event"
        for events in got.values():
            check(events, acked)
            seqs = [e[0] for e in events if e != "linked"]
            assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a hole"
        b.wait_line(r"instance=s-1 .*send queue full")
        slow.close()
    finally:
        assert a.stop() == 0, a.text()[-3000:]
        assert b.stop() == 0, b.text()[-3000:]


def test_history_gap_found_mid_batch(tmp_path, redis):
    """history: 16 and node b's Redis cut while a writes hundreds: when b
    reads again, the stream is trimmed past what it had: relink_all from
    inside the corked batch. b's agents are closed with 1012 and link
    again; b keeps serving and stops cleanly."""
    cut = Cut(redis.port)
    a = node(tmp_path, "node-a", redis.url, timeout="1s", node_ttl="3s",
             extra="history: 16\n")
    b = node(tmp_path, "node-b", cut.url, timeout="1s", node_ttl="3s",
             extra="history: 16\n")
    links = []
    try:
        for i in range(20):
            s, _ = raw_link(b.agents_addr, {"type": "hello", "service": "g",
                                            "instance": "g-%d" % i})
            links.append(s)
        b.wait_line(r"msg=linked .*instance=g-19")
        acked, stop = [], threading.Event()
        ws = broadcasts(a, stop, acked, 8)
        try:
            wait_until(lambda: len(acked) >= 50, what="writes")
            cut.sever()
            mark = len(acked)
            wait_until(lambda: len(acked) >= mark + 300, what="more writes")
            cut.mend()
            b.wait_line(r"cluster (gap|relink|history reset)")
            time.sleep(1)
        finally:
            stop.set()
            for w in ws:
                w.join()
        # The links were closed (1012) or dropped; new ones link.
        closed = 0
        for s in links:
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
                closed += 1
            except (socket.timeout, OSError):
                pass
        assert closed == len(links), closed
        s, _ = raw_link(b.agents_addr, {"type": "hello", "service": "g",
                                        "instance": "again"})
        b.wait_line(r"msg=linked .*instance=again")
        s.close()
    finally:
        for s in links:
            s.close()
        cut.close()
        assert a.stop() == 0, a.text()[-3000:]
        assert b.stop() == 0, b.text()[-3000:]
