"""A webhook's delivering node cut off from Redis (docs/webhooks.md,
"Cluster mode"): its lease lapses and another node takes the endpoint
over from the cursor in Redis. Whatever the cut-off node still has in
flight, or sends once it is back, the cursor in Redis never goes back and
the receiver acknowledges every event, in order."""

import os
import signal
import threading
import time

from cluster_harness import Cut, node
from test_webhooks_cluster import post, view
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret


class Stall(Cut):
    """A relay that can hold what passes (the peer's packets are delayed,
    not lost: they reach Redis once it is let go)."""

    def __init__(self, port):
        super().__init__(port)
        self.go = threading.Event()
        self.go.set()

    def relay(self, data, up, state):
        self.go.wait()
        return data


def delivering(n):
    return view(n)["delivering"]


def wait(cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


class CursorWatch:
    """Reads the endpoint's cursor in Redis every few ms, and records
    each value it takes."""

    def __init__(self, redis, name="a"):
        self.redis, self.name = redis, name
        self.seen, self.stop = [], threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        key = None
        while not self.stop.is_set():
            if key is None:
                keys = self.redis.cli("KEYS", "*webhook:%s:cursor" %
                                      self.name).split()
                key = keys[0] if keys else None
            else:
                v = self.redis.cli("GET", key)
                if v and (not self.seen or self.seen[-1] != v):
                    self.seen.append(v)
            time.sleep(0.01)

    def seqs(self):
        self.stop.set()
        self.t.join()
        return [int(v.split()[1]) for v in self.seen]


def cut_off_holder(tmp_path, redis, relay_class, cut):
    """n1 (through relay_class) delivers; it has failed attempts in
    flight when cut(relay) cuts it off; n2 takes over; n1 comes back."""
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    failing = threading.Event()
    rx = Receiver([secret], answer=lambda rec, k:
                  503 if failing.is_set() else 200)

    def extra(name):       # each node's URL says who sent an attempt
        return webhooks_yaml(a={"url": "%s/%s" % (rx.url, name),
                                "secret_file": path,
                                "retry": {"initial": "20ms", "max": "50ms"}})
    relay = relay_class(redis.port)
    direct = "redis://127.0.0.1:%d" % redis.port
    n1 = node(tmp_path, "n1", relay.url, extra=extra("n1"))
    nodes = [n1]
    watch = CursorWatch(redis)
    try:
        wait(lambda: delivering(n1), "n1 delivering")
        n2 = node(tmp_path, "n2", direct, extra=extra("n2"))
        nodes.append(n2)
        first = post(n2, 8)
        rx.wait(lambda r: len(r.acked) >= 8, what="the first 8 events")
        failing.set()
        second = post(n2, 4, 8)
        rx.wait(lambda r: len(r.attempts) >= 12, what="failing attempts")
        cut(relay)
        wait(lambda: delivering(n2), "n2 taking over")
        failing.clear()
        rx.wait(lambda r: set(first + second) <= set(r.acked_seqs()),
                what="every event from n2")
        third = post(n2, 4, 12)
        rx.wait(lambda r: set(third) <= set(r.acked_seqs()),
                what="the events after the takeover")
        relay.mend()
        if isinstance(relay, Stall):
            relay.go.set()
        time.sleep(3)            # n1 back: renewals, saves, retries
        fourth = post(n2, 4, 16)
        rx.wait(lambda r: set(fourth) <= set(r.acked_seqs()),
                what="the events once n1 is back")
        time.sleep(1)
        seen = watch.seqs()
        assert seen == sorted(seen), "the cursor went back: %r" % seen
        assert seen[-1] == fourth[-1], seen
        once = []
        for s in rx.acked_seqs():
            if s not in once:
                once.append(s)
        assert once == first + second + third + fourth, rx.acked_seqs()
        # One node delivers at a time: n1 stopped before its lease could
        # lapse, so nothing of its reached the receiver once n2 began.
        who = [a["path"].rsplit("/", 1)[1] for a in rx.attempts]
        assert "n1" not in who[who.index("n2"):], who
        assert rx.bad == []
    finally:
        watch.stop.set()
        for n in nodes:
            if n.p.poll() is None:
                assert n.stop() == 0, n.text()
        relay.close()
        rx.close()


def test_a_severed_holder_never_moves_the_cursor_back(tmp_path, redis):
    cut_off_holder(tmp_path, redis, Cut, lambda r: r.sever())


def test_a_stalled_holder_never_moves_the_cursor_back(tmp_path, redis):
    def stall(r):
        r.go.clear()
    cut_off_holder(tmp_path, redis, Stall, stall)


class ReaderStall(Stall):
    """A Stall that can go on holding the stream reader's connection (the
    one that reads the stream, XREAD and XREVRANGE) once the rest is let
    go: the node's copy of the stream stays behind Redis."""

    def __init__(self, port):
        super().__init__(port)
        self.reader_go = threading.Event()
        self.reader_go.set()

    def relay(self, data, up, state):
        if up and (b"XREAD" in data or b"XREVRANGE" in data):
            state["reader"] = True
        (self.reader_go if state.get("reader") else self.go).wait()
        return data


def test_a_holder_behind_the_stream_waits_for_the_cursor(tmp_path, redis):
    """n1's copy of the stream is behind the cursor n2 left in Redis, its
    stream reader stuck: it does not take the endpoint while its reader
    is stuck, and once the reader is let go it takes it from the cursor:
    no reset notice, the cursor never goes back (a node that took the
    gap for history running out sent a reset and moved it back)."""
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret])
    extra = webhooks_yaml(a={"url": rx.url, "secret_file": path})
    relay = ReaderStall(redis.port)
    n1 = node(tmp_path, "n1", relay.url, extra=extra)
    nodes = [n1]
    watch = CursorWatch(redis)
    try:
        wait(lambda: delivering(n1), "n1 delivering")
        n2 = node(tmp_path, "n2", "redis://127.0.0.1:%d" % redis.port,
                  extra=extra)
        nodes.append(n2)
        first = post(n2, 8)
        rx.wait(lambda r: set(first) <= set(r.acked_seqs()), what="8")
        relay.go.clear()
        relay.reader_go.clear()
        wait(lambda: delivering(n2), "n2 taking over")
        second = post(n2, 8, 8)
        rx.wait(lambda r: set(second) <= set(r.acked_seqs()), what="16")
        relay.go.set()                 # all but n1's stream reader
        n2.kill(signal.SIGKILL)
        n2.p.wait()
        time.sleep(3)                  # n2's lease lapsed long since
        assert not delivering(n1)
        relay.reader_go.set()
        wait(lambda: delivering(n1), "n1 taking the endpoint back")
        third = post(n1, 4, 16)
        rx.wait(lambda r: set(third) <= set(r.acked_seqs()), what="20")
        time.sleep(0.5)
        seen = watch.seqs()
        assert seen == sorted(seen), "the cursor went back: %r" % seen
        assert [i for i in rx.acked if i.endswith("-reset")] == []
        once = []
        for s in rx.acked_seqs():
            if s not in once:
                once.append(s)
        assert once == first + second + third, rx.acked_seqs()
    finally:
        watch.stop.set()
        relay.go.set()
        relay.reader_go.set()
        for n in nodes:
            if n.p.poll() is None:
                assert n.stop() == 0, n.text()
        relay.close()
        rx.close()
