"""Open, the gate is a reverse proxy: every method, the raw request target,
hop-by-hop headers removed both ways, X-Forwarded-* and Via set, keep-alive
to the client and a pool of upstream connections, 502 when the upstream is
down and 504 when it is too slow."""

import json
import socket

import pytest

from gate_harness import Gate, Upstream, call


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.stop()


@pytest.fixture
def gate(daemon, upstream, tmp_path):
    g = Gate(tmp_path, daemon, upstream.url, requires=(),
             extra="timeouts: { upstream: 500ms, connect: 1s }\n")
    yield g
    assert g.stop() == 0, g.text()


def echo(gate, method, path="/echo", body=None, headers=None):
    status, h, data = gate.request(method, path, body, headers)
    assert status == 200, data
    return h, json.loads(data)


def test_every_method(gate):
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                   "PROPFIND", "PURGE"):
        _, e = echo(gate, method, body=b"abc" if method != "GET" else None)
        assert e["method"] == method
        assert e["size"] == (0 if method == "GET" else 3)
    status, h, data = gate.request("HEAD", "/echo")
    assert status == 200 and data == b"" and h["x-upstream"] == ["yes"]
    assert int(h["content-length"][0]) > 0


def test_target_and_headers(gate):
    h, e = echo(gate, "GET", "/echo/a%2Fb/../c?q=a+b&x=%20&flag", headers={
        "Connection": "keep-alive, X-Secret", "X-Secret": "hop",
        "Keep-Alive": "timeout=5", "TE": "trailers",
        "X-Forwarded-For": "6.6.6.6", "Via": "1.0 earlier",
        "X-App": "kept", "Cookie": "c=1", "Host": "app.example"})
    assert e["target"] == "/echo/a%2Fb/../c?q=a+b&x=%20&flag"
    got = {k.lower(): v for k, v in e["headers"]}
    for hop in ("x-secret", "keep-alive", "te", "connection", "expect"):
        assert hop not in got, got
    assert got["x-app"] == "kept" and got["cookie"] == "c=1"
    assert got["host"] == "app.example"
    assert got["x-forwarded-for"] == "127.0.0.1"  # not trusted: replaced
    assert got["x-forwarded-proto"] == "http"
    assert got["x-forwarded-host"] == "app.example"
    assert got["via"] == "1.0 earlier, 1.1 discovery-gate"
    assert "accept" not in got  # curl adds none of its own
    # The upstream's hop-by-hop headers do not reach the client.
    assert "x-hop" not in h and "keep-alive" not in h
    assert h["set-cookie"] == ["a=1", "b=2"]
    assert h["via"] == ["1.1 discovery-gate"]


def test_keep_alive_and_upstream_pool(gate, upstream):
    c = gate.conn()
    try:
        peers = set()
        for i in range(20):
            status, _, _ = call(c, "GET", "/echo?i=%d" % i)
            assert status == 200
            peers.add(c.sock.getsockname())
        assert len(peers) == 1  # one client connection, kept alive
        _, _, body = call(c, "GET", "/conns")
        # 21 requests, all but the first on pooled upstream connections
        # (one per worker thread at most).
        assert json.loads(body)["connections"] <= 2
    finally:
        c.close()


def test_502_when_upstream_down(daemon, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    g = Gate(tmp_path, daemon, "http://127.0.0.1:%d" % port, requires=())
    try:
        status, h, body = g.request("GET", "/x")
        assert status == 502
        e = json.loads(body)
        assert e["error"] == "bad_gateway"
        assert "127.0.0.1:%d" % port in e["message"]
        g.wait_line(r"msg=upstream_failed .*status=502")
    finally:
        assert g.stop() == 0, g.text()


def test_504_when_upstream_slow(gate):
    status, _, body = gate.request("GET", "/slow?ms=3000")
    assert status == 504
    e = json.loads(body)
    assert e["error"] == "upstream_timeout" and "500 ms" in e["message"]
    # A fast request right after is fine.
    assert gate.request("GET", "/slow?ms=10")[0] == 200


def test_answer_in_two_writes_does_not_wait_for_a_delayed_ack(daemon, tmp_path):
    """An app that writes its head, then its body: the gate passes each on
    as it comes, and the second must not wait for the client's delayed ACK
    of the first (Nagle: 40 ms a request). TCP_NODELAY on client sockets."""
    import statistics
    import threading
    import time

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                return
            buf += d
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                time.sleep(0.002)  # the app computes its body
                c.sendall(b"hello")

    threading.Thread(target=serve, daemon=True).start()
    g = Gate(tmp_path, daemon, "http://127.0.0.1:%d" % srv.getsockname()[1],
             requires=())
    try:
        c = g.conn()
        took = []
        for _ in range(20):
            t = time.monotonic()
            c.request("GET", "/")
            r = c.getresponse()
            assert r.status == 200 and r.read() == b"hello"
            took.append(time.monotonic() - t)
        c.close()
        # Each would take 40 ms or more with the wait; 2 ms without.
        assert statistics.median(took) < 0.025, took
    finally:
        g.stop()
        srv.close()
