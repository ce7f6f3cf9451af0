"""Cases from an adversarial review of the gate, each one a way the gate
let through or passed on something it should not have.

- A chunked body whose framing is not RFC 9112's: the gate must refuse
  it, as it refuses a malformed head. Behind a front proxy (the gate
  behind a load balancer, connections_per_ip: 0), a proxy that frames
  the same bytes otherwise reads a different request boundary than the
  gate does (request smuggling between the two, "funky chunks").
- A header name that a CGI-style app (WSGI, PHP, Rack) reads as one of
  the gate's own: X_Forwarded_For becomes HTTP_X_FORWARDED_FOR there,
  exactly as X-Forwarded-For does, so the client chose the address the
  app sees.
- Body bytes of a 1xx interim head: a 1xx never has a body, so the
  bytes after its head are the final response; they must not end up in
  the client's body."""

import pytest

from gate_util import RecordingUpstream, locked_gate, raw_exchange, status_of

SECRET = b"GET /secret HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED = (b"POST /healthz HTTP/1.1\r\nHost: a\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")


@pytest.fixture
def app():
    u = RecordingUpstream()
    yield u
    u.stop()


@pytest.fixture
def gate(daemon, tmp_path, app):
    g = locked_gate(tmp_path, daemon, app)
    yield g
    assert g.stop() == 0, g.text()


BAD_CHUNKS = [
    # chunk data not followed by CRLF: any two bytes were taken for it
    CHUNKED + b"5\r\nhelloXX0\r\n\r\n",
    CHUNKED + b"5\r\nhello\n0\r\n\r\n" + SECRET,
    # a bare LF inside a chunk extension: a proxy that ends the line at
    # the LF reads the chunk data three bytes earlier
    CHUNKED + b"2;\nxx\r\nab\r\n0\r\n\r\n",
    # a CR after the chunk size followed by something other than LF
    CHUNKED + b"5\rXhello\r\n0\r\n\r\n",
    # a last chunk, or a trailer line, ending in a bare LF
    CHUNKED + b"5\r\nhello\r\n0\r\n\n",
    CHUNKED + b"5\r\nhello\r\n0\r\nX-T: a\nY: b\r\n\r\n",
    # a trailer field name that is not a token
    CHUNKED + b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n",
]


@pytest.mark.parametrize("data", BAD_CHUNKS)
def test_malformed_chunk_framing_is_refused(gate, app, data):
    got = raw_exchange(gate, data)
    codes = status_of(got)
    # Refused, whether before the app was asked or after: the client
    # gets the 400, never the app's answer to a body framed leniently.
    assert codes == [400], got
    assert b"/secret" not in app.all_bytes()


CGI_NAMES = [b"X_Forwarded_For", b"X-Forwarded_For", b"x_forwarded_for",
             b"X_Forwarded_Host", b"X_Forwarded_Proto",
             b"Content_Length", b"Transfer_Encoding"]


@pytest.mark.parametrize("name", CGI_NAMES)
def test_cgi_aliases_of_the_gate_s_own_headers_are_dropped(gate, app, name):
    got = raw_exchange(gate, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                       b"%s: 6.6.6.6\r\nConnection: close\r\n\r\n" % name)
    assert status_of(got) == [200], got
    head = app.heads[-1]
    lines = head.split(b"\r\n")[1:]
    # What a CGI gateway makes of each name: upper case, '-' as '_'.
    cgi = [line.partition(b":")[0].upper().replace(b"-", b"_")
           for line in lines]
    assert b"6.6.6.6" not in head, head
    assert cgi.count(b"X_FORWARDED_FOR") == 1, head
    assert cgi.count(b"X_FORWARDED_HOST") == 1, head
    assert cgi.count(b"X_FORWARDED_PROTO") == 1, head


def test_a_1xx_head_has_no_body(daemon, tmp_path):
    from gate_harness import Gate, RawUpstream

    def answer(sock, head, index):
        # A 1xx head that says Content-Length: what follows its head is
        # the final response, whatever it says (RFC 9110 15.2).
        sock.sendall(b"HTTP/1.1 100 Continue\r\nContent-Length: 6\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
        return True
    u = RawUpstream(answer)
    g = Gate(tmp_path, daemon, u.url, requires=())
    try:
        got = raw_exchange(g, b"GET / HTTP/1.1\r\nHost: a\r\n"
                           b"Connection: close\r\n\r\n")
        assert status_of(got) == [200], got
        assert got.endswith(b"\r\n\r\ngood"), got
    finally:
        assert g.stop() == 0, g.text()
        u.stop()


def test_a_bodiless_post_is_never_sent_twice(daemon, tmp_path):
    """A pooled connection that the app closes after reading a request:
    the app may have acted on it. A GET may be sent again (RFC 9110
    9.2.2); a POST, even without a body, may not: the client gets the
    502, and the app sees the POST once."""
    from gate_harness import Gate, RawUpstream

    seen = []

    def first_only(sock, head, index):
        seen.append(head.split("\r\n")[0])
        if index == 0:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        return False  # read it, acted on it, and died before answering
    u = RawUpstream(first_only)
    g = Gate(tmp_path, daemon, u.url, requires=(),
             extra="limits: { threads: 1 }\n")
    try:
        got = raw_exchange(g, b"GET /warm HTTP/1.1\r\nHost: a\r\n"
                           b"Connection: close\r\n\r\n")
        assert status_of(got) == [200], got  # one pooled connection
        got = raw_exchange(g, b"POST /pay HTTP/1.1\r\nHost: a\r\n"
                           b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        assert seen.count("POST /pay HTTP/1.1") == 1, seen
        assert status_of(got) == [502], got
    finally:
        assert g.stop() == 0, g.text()
        u.stop()


def test_dead_tunnels_do_not_hold_every_connection(daemon, tmp_path):
    """Tunnels whose clients went away, in front of an app that keeps its
    side open, were never closed: no timeout covers a tunnel, and
    eviction passes them over, so a few addresses could hold every
    connection of an open gate for good. A tunnel in which nothing moved
    for timeouts.idle is closed, and its connection goes to another."""
    import socket
    import threading
    import time
    from gate_harness import Gate, RawUpstream
    from harness import WAIT

    done = threading.Event()

    def switch(sock, head, index):
        if "Upgrade: x" not in head:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                     b"Connection: Upgrade\r\n\r\n")
        done.wait(WAIT * 2)  # an app that never closes its side
        return False
    u = RawUpstream(switch)
    g = Gate(tmp_path, daemon, u.url, requires=(),
             extra="limits: { connections: 4, connections_per_ip: 0 }\n"
                   "timeouts: { idle: 1s }\n")
    try:
        for _ in range(4):
            s = socket.create_connection((g.host, g.port))
            s.settimeout(WAIT)
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\n"
                      b"Connection: Upgrade\r\nUpgrade: x\r\n\r\n")
            assert s.recv(1000).startswith(b"HTTP/1.1 101 "), "no tunnel"
            s.close()  # the client is gone
        # Every connection is a dead tunnel now; a new client must get
        # in once they are past timeouts.idle.
        deadline = time.monotonic() + WAIT
        while True:
            got = raw_exchange(g, b"GET / HTTP/1.1\r\nHost: a\r\n"
                               b"Connection: close\r\n\r\n")
            if status_of(got) != [503] or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling a state the gate does not log
        assert status_of(got) == [200], got
    finally:
        done.set()
        assert g.stop() == 0, g.text()
        u.stop()
