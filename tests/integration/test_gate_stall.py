"""timeouts.stall: an upstream that stops sending in the middle of a body
does not hold the client for ever: after `stall` without a byte the
gate cuts the client's connection (so the short body cannot pass for a
whole one). A client that reads slowly is not a stalled upstream."""

import hashlib
import http.client
import threading
import time

import pytest

from gate_harness import Gate, RawUpstream

BIG = bytes(range(256)) * 4096 * 2  # 2 MiB through a 32 KiB buffer
release = threading.Event()


def answer(sock, head, index):
    target = head.split(" ")[1]
    if target == "/stall":
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" +
                     b"x" * 10)
        release.wait(10)
        return False
    if target == "/stall-chunked":
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"a\r\n0123456789\r\n")
        release.wait(10)
        return False
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BIG)
                 + BIG)
    return True


@pytest.fixture
def gate(daemon, tmp_path):
    release.clear()
    u = RawUpstream(answer)
    g = Gate(tmp_path, daemon, u.url, requires=(),
             extra="timeouts: { stall: 1s }\nlimits: { buffer: 32KiB }\n")
    yield g
    release.set()
    assert g.stop() == 0, g.text()
    u.stop()


@pytest.mark.parametrize("path", ["/stall", "/stall-chunked"])
def test_stalled_body_is_cut(gate, path):
    c = gate.conn(timeout=10)
    try:
        started = time.monotonic()
        c.request("GET", path)
        r = c.getresponse()
        assert r.status == 200
        with pytest.raises(http.client.IncompleteRead) as e:
            r.read()
        assert len(e.value.partial) == 10  # what came before the stall
        assert 0.8 < time.monotonic() - started < 8
    finally:
        c.close()
    gate.wait_line(r"msg=upstream_failed .*stalled mid-body")


def test_slow_client_is_not_a_stall(gate):
    c = gate.conn(timeout=10)
    try:
        c.request("GET", "/big")
        r = c.getresponse()
        assert r.status == 200
        time.sleep(2.5)  # the client reads nothing: the gate's buffer fills
        body = r.read()
    finally:
        c.close()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(BIG).hexdigest()
