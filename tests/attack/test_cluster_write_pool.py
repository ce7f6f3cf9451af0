"""Cluster writes on the store's pool of threads (store.c), their HTTP
connections suspended meanwhile: many more writers than threads, clients
that leave while their write waits, SIGTERM with writes queued, Redis cut
mid-load, pipelined requests on one connection. Each write carries a key of
its own (an invalidate's), so the stream in Redis tells which were applied:
one answered 202 must be there, one refused with "nothing was changed" must
not."""

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

from cluster_harness import Cut, node
from harness import Discoveryd
from test_tls import pki  # noqa: F401 (a fixture)

INV = "/api/discovery/invalidate"


def stream_keys(redis):
    """The invalidated keys in the cluster's stream, in stream order."""
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "--raw",
                          "XRANGE", "discovery:log", "-", "+"],
                         capture_output=True, text=True, timeout=30).stdout
    keys = []
    for line in out.splitlines():
        if line.startswith("{"):
            keys += json.loads(line).get("value", {}).get("keys", [])
    return keys


class Writers:
    """n threads, each on its own keep-alive connection, writing key
    w<i>-<j> in turn and sorting the answers."""

    def __init__(self, n, addr, timeout=30):
        self.addr, self.timeout = addr, timeout
        self.ok, self.refused, self.unknown, self.other = [], [], [], []
        self.mu = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,))
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def conn(self):
        host, port = self.addr.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port),
                                          timeout=self.timeout)

    def run(self, i):
        c, j = self.conn(), 0
        while not self.stop.is_set():
            key = "w%d-%d" % (i, j)
            j += 1
            try:
                c.request("POST", INV, body=json.dumps({"keys": [key]}),
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                status, body = r.status, r.read()
            except (OSError, http.client.HTTPException):
                c.close()
                with self.mu:
                    self.other.append((key, "connection"))
                if self.stop.is_set():
                    return
                time.sleep(0.05)
                c = self.conn()
                continue
            with self.mu:
                if status == 202:
                    self.ok.append(key)
                elif status == 503 and b"nothing was changed" in body:
                    self.refused.append(key)
                elif status == 503 and b"may or may not" in body:
                    self.unknown.append(key)
                else:
                    self.other.append((key, status, body[:200]))

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)
            assert not t.is_alive(), "a writer hung"


def check_stream(redis, w):
    keys = [k for k in stream_keys(redis) if k.startswith("w")]
    seen = set(keys)
    assert len(keys) == len(seen), "a write applied twice"
    lost = [k for k in w.ok if k not in seen]
    assert not lost, "answered 202, not applied: %r" % lost[:10]
    wrong = [k for k in w.refused if k in seen]
    assert not wrong, "'nothing was changed', applied: %r" % wrong[:10]
    return seen


def test_many_more_writers_than_threads(tmp_path, redis):
    """64 writers on the pool: every write answered, every 202 in the
    stream, each writer's writes in the stream in the order it made them."""
    a = node(tmp_path, "node-a", redis.url, timeout="2s", node_ttl="5s")
    try:
        w = Writers(64, a.http_addr)
        deadline = time.monotonic() + 20
        while len(w.ok) < 2000 and time.monotonic() < deadline:
            time.sleep(0.1)
        w.join()
        assert len(w.ok) >= 2000, (len(w.ok), w.other[:5])
        assert not w.other, w.other[:5]
        check_stream(redis, w)
        order = {}
        for k in stream_keys(redis):
            i, j = k[1:].split("-")
            assert order.get(i, -1) < int(j), "writer %s out of order" % i
            order[i] = int(j)
    finally:
        assert a.stop() == 0, a.text()[-3000:]


def test_sigterm_with_writes_queued(tmp_path, redis):
    """SIGTERM with 64 writers on the pool: the daemon exits 0 within
    its wait, and what it answered 202 is in the stream."""
    a = node(tmp_path, "node-a", redis.url, timeout="2s", node_ttl="5s")
    w = Writers(64, a.http_addr)
    try:
        deadline = time.monotonic() + 20
        while len(w.ok) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        rc = a.stop(signal.SIGTERM)
        assert rc == 0, a.text()[-3000:]
        assert time.monotonic() - t0 < 10
    finally:
        w.join()
        if a.p.poll() is None:
            a.stop()
    check_stream(redis, w)


def test_clients_leave_while_their_write_waits(tmp_path, redis):
    """Hundreds of clients send a write and close at once, while the pool
    is busy: the answers go nowhere (MHD completes those requests while
    their calls are with the pool), and the node serves on and exits 0."""
    a = node(tmp_path, "node-a", redis.url, timeout="2s", node_ttl="5s",
             extra="limits:\n  max_http: 4000\n  max_http_per_ip: 2000\n")
    host, port = a.http_addr.rsplit(":", 1)
    w = Writers(32, a.http_addr)
    try:
        body = json.dumps({"keys": ["gone"]}).encode()
        req = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
               b"application/json\r\nContent-Length: %d\r\n\r\n%s" %
               (INV.encode(), len(body), body))
        for _ in range(6):
            socks = []
            for _ in range(100):
                s = socket.create_connection((host, int(port)))
                s.sendall(req)
                socks.append(s)
            for i, s in enumerate(socks):
                if i % 2:       # a reset rather than a FIN for half
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
        st, _ = a.call("POST", INV, {"keys": ["after"]})
        assert st == 202
    finally:
        w.join()
        rc = a.stop()
    assert rc == 0, a.text()[-3000:]
    assert not w.other, w.other[:5]
    check_stream(redis, w)


def test_redis_cut_and_mended_under_load(tmp_path, redis):
    """The node's Redis connections are cut twice under 48 writers: each
    write is answered, none answered 202 is missing from the stream, and
    none refused with "nothing was changed" is in it."""
    cut = Cut(redis.port)
    a = node(tmp_path, "node-a", cut.url, timeout="1s", node_ttl="3s")
    w = Writers(48, a.http_addr)
    try:
        for _ in range(2):
            mark = len(w.ok)
            deadline = time.monotonic() + 15
            while len(w.ok) < mark + 300 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(w.ok) >= mark + 300, (len(w.ok), w.other[:5])
            cut.sever()
            time.sleep(1.5)
            cut.mend()
        mark = len(w.ok)
        deadline = time.monotonic() + 20
        while len(w.ok) < mark + 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(w.ok) >= mark + 300, "no writes after Redis came back"
    finally:
        w.join()
        cut.close()
        rc = a.stop()
    assert rc == 0, a.text()[-3000:]
    assert w.refused, "the cut refused nothing"
    check_stream(redis, w)


def test_pipelined_writes_apply_in_order(tmp_path, redis):
    """40 writes pipelined on one connection (sent before any answer):
    40 answers, in order, and the writes in the stream in that order."""
    a = node(tmp_path, "node-a", redis.url, timeout="2s", node_ttl="5s")
    host, port = a.http_addr.rsplit(":", 1)
    try:
        reqs = b""
        for j in range(40):
            body = json.dumps({"keys": ["p-%d" % j]}).encode()
            reqs += (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" %
                     (INV.encode(), len(body), body))
        s = socket.create_connection((host, int(port)), timeout=20)
        s.sendall(reqs)
        f = s.makefile("rb")
        seqs = []
        for j in range(40):
            status = int(f.readline().split()[1])
            length = 0
            while True:
                line = f.readline().strip()
                if not line:
                    break
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            body = f.read(length)
            assert status == 202, (j, status, body)
            seqs.append(json.loads(body)["seq"])
        s.close()
        assert seqs == sorted(seqs)
        keys = [k for k in stream_keys(redis) if k.startswith("p-")]
        assert keys == ["p-%d" % j for j in range(40)]
        # A reader sees its own write at once.
        st, body = a.call("POST", INV, {"keys": ["mine"]})
        st2, ev = a.call("GET", "/api/discovery/events")
        assert st == 202 and ev["seq"] >= body["seq"], (body, ev)
    finally:
        assert a.stop() == 0, a.text()[-3000:]


class SlowRedis(Cut):
    """A relay that holds each command 0.4 s on its way to Redis: every
    write takes a second or so of its pool thread."""

    def relay(self, data, up, state):
        if up:
            time.sleep(0.4)
        return data


def read_answer(s):
    """(status, body) of the one answer on s; (None, b"") if none came."""
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                n = int(head.lower().split(b"content-length:")[1]
                        .split(b"\r\n")[0])
                if len(body) >= n:
                    break
    except OSError:
        pass
    if not data.startswith(b"HTTP/"):
        return None, b""
    return int(data.split()[1]), data.partition(b"\r\n\r\n")[2]


def test_sigterm_with_a_long_queue(tmp_path, redis):
    """1000 writes queued on the pool, each a second's work: more than
    the 30 s the HTTP side waits at SIGTERM. libmicrohttpd aborts a stop
    that finds a connection suspended (it did: SIGABRT after 30 s); those
    not begun are answered 503 stopping instead, and are not applied."""
    cut = SlowRedis(redis.port)
    a = node(tmp_path, "node-a", cut.url, timeout="5s", node_ttl="10s",
             extra="limits:\n  max_http: 4000\n  max_http_per_ip: 2000\n")
    host, port = a.http_addr.rsplit(":", 1)
    socks = []
    try:
        for i in range(1000):
            body = json.dumps({"keys": ["w%d-0" % i]}).encode()
            s = socket.create_connection((host, int(port)), timeout=20)
            s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type:"
                      b" application/json\r\nContent-Length: %d\r\n\r\n%s" %
                      (INV.encode(), len(body), body))
            socks.append(s)
        time.sleep(1)
        t0 = time.monotonic()
        rc = a.stop(signal.SIGTERM, timeout=40)
        took = time.monotonic() - t0
        assert rc == 0, a.text()[-3000:]
        assert took < 15, took
        answers = [read_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
        cut.close()
        if a.p.poll() is None:
            a.stop()
    w = Writers(0, a.http_addr)
    for i, (st, body) in enumerate(answers):
        if st == 202:
            w.ok.append("w%d-0" % i)
        elif st == 503 and b"nothing was changed" in body:
            w.refused.append("w%d-0" % i)
    assert w.ok and w.refused, (len(w.ok), len(w.refused))
    assert len(w.ok) + len(w.refused) == len(answers), \
        [a for a in answers if a[0] not in (202, 503)][:5]
    check_stream(redis, w)


def test_one_key_from_many_writers_at_once(tmp_path, redis):
    """48 writers send the same Idempotency-Key at once, now truly in
    parallel on the pool, ten rounds: one event per key in the stream;
    every answer is the first one (202, or a byte-for-byte replay) or 409
    in_flight; a retry afterwards replays it byte for byte."""
    a = node(tmp_path, "node-a", redis.url, timeout="2s", node_ttl="5s")
    host, port = a.http_addr.rsplit(":", 1)
    try:
        for round in range(10):
            key, answers = "idem-%d" % round, []
            body = json.dumps({"keys": ["i%d" % round]})
            go = threading.Barrier(48)

            def one():
                c = http.client.HTTPConnection(host, int(port), timeout=30)
                go.wait()
                c.request("POST", INV, body=body,
                          headers={"Content-Type": "application/json",
                                   "Idempotency-Key": key})
                r = c.getresponse()
                answers.append((r.status, r.read()))
                c.close()
            ts = [threading.Thread(target=one) for _ in range(48)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            firsts = {b for st, b in answers if st == 202}
            assert len(firsts) == 1, answers
            assert all(st in (202, 409) for st, _ in answers), answers
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            c.request("POST", INV, body=body,
                      headers={"Content-Type": "application/json",
                               "Idempotency-Key": key})
            r = c.getresponse()
            assert (r.status, r.read()) == (202, firsts.pop())
            assert r.getheader("Idempotent-Replayed") == "true"
            c.close()
        keys = [k for k in stream_keys(redis) if k.startswith("i")]
        assert keys == ["i%d" % r for r in range(10)], keys
    finally:
        assert a.stop() == 0, a.text()[-3000:]


def test_sigterm_with_writes_held_by_a_frozen_redis(tmp_path, redis):
    """cluster.timeout 35s and Redis frozen (SIGSTOP) with 20 writes in
    flight on the pool: their calls hold their threads for the timeout,
    past the 30 s the HTTP side waited at SIGTERM before it stopped
    anyway, and libmicrohttpd aborted (SIGABRT) on the suspended
    connections. The wait now covers the store's longest call."""
    a = node(tmp_path, "node-a", redis.url, timeout="35s", node_ttl="70s")
    host, port = a.http_addr.rsplit(":", 1)
    socks = []
    try:
        redis.kill(signal.SIGSTOP)
        for i in range(20):
            body = json.dumps({"keys": ["f%d" % i]}).encode()
            s = socket.create_connection((host, int(port)), timeout=60)
            s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type:"
                      b" application/json\r\nContent-Length: %d\r\n\r\n%s" %
                      (INV.encode(), len(body), body))
            socks.append(s)
        time.sleep(1)
        # Up to ~60 s: the writes hold the HTTP side's stop for the 35 s
        # timeout, and the writer's heartbeat, due node_ttl/3 (23 s) after
        # the start and sent to the frozen Redis before the store's
        # threads are told to stop, holds their join for its own 35 s.
        rc = a.stop(signal.SIGTERM, timeout=120)
        assert rc == 0, a.text()[-3000:]
        for s in socks:
            st, body = read_answer(s)
            assert st == 503, (st, body)
    finally:
        redis.kill(signal.SIGCONT)
        for s in socks:
            s.close()
        if a.p.poll() is None:
            a.stop()


def test_tls_reloads_with_writes_on_the_pool(tmp_path, redis, pki):  # noqa
    """SIGHUP with TLS restarts the HTTP side while 32 writers keep the
    pool busy: the node keeps running, and the answers hold (202 applied,
    "nothing was changed" not)."""
    key, crt = pki["server"]
    d = os.path.join(str(tmp_path), "node-a")
    os.makedirs(d)
    a = Discoveryd(d, tls={"cert": crt, "key": key, "ca": pki["ca"][1]},
                   extra="cluster:\n  redis: %s\n  node: node-a\n"
                   "  node_ttl: 5s\n  timeout: 2s\n" % redis.url)
    a.wait_line(r"msg=\"cluster synced\"")
    w = TLSWriters(32, a.http_addr, a.ssl)
    try:
        for _ in range(4):
            mark = len(w.ok)
            deadline = time.monotonic() + 20
            while len(w.ok) < mark + 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(w.ok) >= mark + 200, (len(w.ok), w.other[:3])
            a.p.send_signal(signal.SIGHUP)
        assert a.p.poll() is None, a.text()[-3000:]
    finally:
        w.join()
        rc = a.stop()
    assert rc == 0, a.text()[-3000:]
    check_stream(redis, w)


class TLSWriters(Writers):
    def __init__(self, n, addr, ctx):
        self.ctx = ctx
        super().__init__(n, addr)

    def conn(self):
        host, port = self.addr.rsplit(":", 1)
        return http.client.HTTPSConnection(host, int(port),
                                           timeout=self.timeout,
                                           context=self.ctx)
