"""A pooled upstream connection that the app closes as the gate sends on
it: a request without a body is sent again on a new connection and
answered whole; one whose body already left gets a clean 502. Never a
broken answer."""

import json

import pytest

from gate_harness import Gate, RawUpstream, call

OK = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
      b"\r\nok")


def first_only(sock, head, index):
    """Answers the first request of each connection with keep-alive, then
    reads the next one and closes without a word."""
    if index == 0:
        sock.sendall(OK)
        return True
    return False


@pytest.fixture
def upstream():
    u = RawUpstream(first_only)
    yield u
    u.stop()


@pytest.fixture
def gate(daemon, upstream, tmp_path):
    # One thread: every request goes through the same pool.
    g = Gate(tmp_path, daemon, upstream.url, requires=(),
             extra="limits: { threads: 1 }\n")
    yield g
    assert g.stop() == 0, g.text()


def test_get_is_sent_again(gate, upstream):
    c = gate.conn()
    try:
        for _ in range(10):
            status, _, body = call(c, "GET", "/x")
            assert (status, body) == (200, b"ok")
    finally:
        c.close()
    # Each request after the first found the pooled connection dead.
    assert upstream.connections == 10


def test_body_sent_is_a_clean_502(gate, upstream):
    assert gate.request("GET", "/warm")[0] == 200  # one pooled connection
    status, h, body = gate.request("POST", "/x", body=b"payload")
    assert status == 502, body
    assert h["content-type"] == ["application/json"]
    assert json.loads(body)["error"] == "bad_gateway"
    # The gate goes on as before: a new connection, then a retried GET.
    status, _, body = gate.request("POST", "/x", body=b"payload")
    assert (status, body) == (200, b"ok")
    status, _, body = gate.request("GET", "/y")
    assert (status, body) == (200, b"ok")
