"""Nobody starves the gate: one address holds at most its share of the
connections, a connection that sends no whole request head in time is
cut, and when every connection is taken the one that waited longest
without a request makes room for a new one. Refusals are counted in the
log, not written one line each."""

import select
import socket
import time

import pytest

from gate_util import RecordingUpstream, WAIT, locked_gate, raw_exchange, \
    status_of

EXTRA = ("limits: { connections: 60, connections_per_ip: 20, threads: 2 }\n"
         "timeouts: { header: 1s }\n")


@pytest.fixture
def app():
    u = RecordingUpstream()
    yield u
    u.stop()


@pytest.fixture
def gate(daemon, tmp_path, app):
    g = locked_gate(tmp_path, daemon, app, extra=EXTRA)
    yield g
    assert g.stop() == 0, g.text()


def connect(gate, source, n, send=b""):
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.connect((gate.host, gate.port))
        if send:
            s.sendall(send)
        out.append(s)
    return out


def closed_by_gate(socks, want, timeout=WAIT):
    """Wait until `want` of socks were closed by the gate; return them."""
    closed = set()
    deadline = time.monotonic() + timeout
    while len(closed) < want and time.monotonic() < deadline:
        r, _, _ = select.select([s for s in socks if s not in closed], [], [],
                                0.2)
        for s in r:
            try:
                data = s.recv(65536)
                while data:
                    data = s.recv(65536)
            except OSError:
                pass
            closed.add(s)
    return closed


def healthz_from(gate, source):
    got = raw_exchange(gate, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                       b"Connection: close\r\n\r\n", source=source)
    return status_of(got)


def test_one_address_holds_only_its_share(gate):
    socks = connect(gate, "127.0.0.2", 50)
    try:
        refused = closed_by_gate(socks, 30)
        assert len(refused) == 30
        # another address is served at once
        assert healthz_from(gate, "127.0.0.3") == [200]
        # and the refusals were counted, not logged one by one
        gate.wait_line(r"msg=refused .*per_ip=[1-9]")
        assert gate.count(r"msg=refused") <= 2
    finally:
        for s in socks:
            s.close()


def test_slow_heads_from_many_addresses_make_room(gate):
    partial = b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
    socks = []
    try:
        for i in range(2, 6):  # 4 addresses x 15: every connection taken
            socks += connect(gate, "127.0.0.%d" % i, 15, send=partial)
        # A client from elsewhere still gets its answer: the slow head
        # that waited longest goes.
        assert healthz_from(gate, "127.0.0.9") == [200]
        # And every slow head is cut once timeouts.header has passed.
        assert len(closed_by_gate(socks, len(socks))) == len(socks)
    finally:
        for s in socks:
            s.close()


def test_a_head_dripped_byte_by_byte_is_cut(gate):
    s = socket.create_connection((gate.host, gate.port))
    head = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"a" * 200
    got = b""
    try:
        for i in range(len(head)):
            try:
                s.sendall(head[i:i + 1])
            except OSError:
                break
            r, _, _ = select.select([s], [], [], 0.05)
            if r:
                got = s.recv(65536)
                break
    finally:
        s.close()
    # 200 bytes at 50 ms is 10 s: the gate cut it long before, with 408.
    assert status_of(got) == [408], got
    assert healthz_from(gate, "127.0.0.1") == [200]


def test_idle_connection_before_any_request_is_cut(gate):
    s = socket.create_connection((gate.host, gate.port))
    try:
        assert closed_by_gate([s], 1)
    finally:
        s.close()


def test_head_over_the_limit_is_431(gate):
    got = raw_exchange(gate, b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " +
                       b"x" * 40000 + b"\r\n\r\n")
    assert status_of(got) == [431], got[:200]
    got = raw_exchange(gate, b"GET /healthz HTTP/1.1\r\nHost: a\r\n" +
                       b"".join(b"X-%d: 1\r\n" % i for i in range(200)) +
                       b"\r\n")
    assert status_of(got) == [431], got[:200]
    assert healthz_from(gate, "127.0.0.1") == [200]
