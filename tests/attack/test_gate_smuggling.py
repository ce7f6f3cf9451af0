"""A locked gate's app is reached by nothing but its pass paths, however
the request is framed. Each request here would, on a lenient proxy, make
the app read a second request (GET /secret) the gate never checked, or
hang a client: the gate refuses it with 400 (or 501/505) and closes, and
the app never sees /secret."""

import pytest

from gate_util import RecordingUpstream, locked_gate, raw_exchange, status_of

SECRET = b"GET /secret HTTP/1.1\r\nHost: a\r\n\r\n"


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


def refused(gate, data, status=400):
    got = raw_exchange(gate, data)
    assert status_of(got) == [status], got
    assert b"Connection: close" in got
    return got


CASES = [
    # two Content-Length headers, the first framing nothing
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
     b"Content-Length: %d\r\n\r\n" % len(SECRET) + SECRET, 400),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
     b"Content-Length: 0\r\n\r\n" % len(SECRET) + SECRET, 400),
    # the same value twice, and a list
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
     b"Content-Length: 5\r\n\r\nhello", 400),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"
     b"hello", 400),
    # Content-Length with Transfer-Encoding, both orders
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SECRET, 400),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 4\r\n\r\n0\r\n\r\n" + SECRET, 400),
    # a Transfer-Encoding other than a final chunked
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, "
     b"identity\r\n\r\n" + SECRET, 400),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity"
     b"\r\n\r\n" + SECRET, 400),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, "
     b"chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /healthz HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n", 400),
    # whitespace before a colon
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length : %d\r\n\r\n"
     % len(SECRET) + SECRET, 400),
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked"
     b"\r\n\r\n0\r\n\r\n" + SECRET, 400),
    # a bare CR inside a value, a bare LF ending a line
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nX-A: a\rContent-Length: %d\r\n"
     b"\r\n" % len(SECRET) + SECRET, 400),
    (b"POST /healthz HTTP/1.1\nHost: a\nContent-Length: %d\n\n"
     % len(SECRET) + SECRET, 400),
    (b"POST /healthz HTTP/1.1\r\nHost: a\nContent-Length: %d\r\n\r\n"
     % len(SECRET) + SECRET, 400),
    # obs-fold, and whitespace before the first field
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nX-A: a\r\n Content-Length: %d"
     b"\r\n\r\n" % len(SECRET) + SECRET, 400),
    (b"GET /healthz HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tx\r\n\r\n", 400),
    # control bytes
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: \x00X-B: 1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: \x7f\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-\x01: b\r\n\r\n", 400),
    # request lines
    (b"GET http://a/secret HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
    (b"GET /secret\r\n\r\n", 505),  # HTTP/0.9
    (b"GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    # Host: none in HTTP/1.1, or two
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    # an expectation nobody serves
    (b"POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n"
     b"Content-Length: 1\r\n\r\nx", 417),
]


@pytest.mark.parametrize("data,status", CASES)
def test_malformed_framing_is_refused(gate, app, data, status):
    refused(gate, data, status)
    assert "/secret" not in app.targets()
    assert b"/secret" not in app.all_bytes()
    assert gate.state()["open"] is False  # still serving


def test_pipelined_request_behind_a_pass_path_is_checked(gate, app):
    got = raw_exchange(gate, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n" +
                       b"GET /secret HTTP/1.1\r\nHost: a\r\n"
                       b"Connection: close\r\n\r\n")
    assert status_of(got) == [200, 423], got
    assert app.targets() == ["/healthz"]


def test_body_cut_short_never_reaches_another_request(gate, app):
    # The client promises 100 bytes, sends a request's worth, and goes.
    raw_exchange(gate, b"POST /healthz HTTP/1.1\r\nHost: a\r\n"
                 b"Content-Length: 100\r\n\r\n" + SECRET, timeout=0.5)
    # The next request must not be read by the app as the rest of that
    # body, nor the body as a request.
    got = raw_exchange(gate, b"GET /healthz/next HTTP/1.1\r\nHost: a\r\n"
                       b"Connection: close\r\n\r\n")
    assert status_of(got) == [200] and b"app:/healthz/next" in got
    assert "/secret" not in app.targets()


def test_chunked_body_is_reframed(gate, app):
    got = raw_exchange(gate, b"POST /healthz HTTP/1.1\r\nHost: a\r\n"
                       b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
                       b"\r\n5;ext=x\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
    assert status_of(got) == [200], got
    # What the app got is the gate's own framing of the same body.
    assert b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n" in app.all_bytes()
    assert b"ext=x" not in app.all_bytes()


def test_connection_cannot_strip_host_or_forwarded(gate, app):
    got = raw_exchange(gate, b"GET /healthz HTTP/1.1\r\nHost: app.example\r\n"
                       b"Connection: close, Host, X-Forwarded-For, Via\r\n\r\n")
    assert status_of(got) == [200], got
    head = app.heads[-1].lower()
    assert b"\r\nhost: app.example" in head
    assert b"\r\nx-forwarded-for: 127.0.0.1" in head
    assert b"\r\nvia: 1.1 discovery-gate" in head


def test_upgrade_on_a_pass_path_is_not_relayed(gate, app):
    got = raw_exchange(gate, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                       b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
                       b"Sec-WebSocket-Version: 13\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                       wait_close=False)
    assert status_of(got) == [423], got
    assert app.targets() == []


def test_long_forwarded_headers_keep_the_gate_s_own_entry(daemon, tmp_path,
                                                          app):
    g = locked_gate(tmp_path, daemon, app, extra="trust_forwarded: true\n")
    try:
        xff = ", ".join("10.0.%d.%d" % (i // 250, i % 250)
                        for i in range(1000))  # about 11 KiB
        via = ", ".join("1.1 p%d" % i for i in range(1000))
        got = raw_exchange(g, b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
                           b"X-Forwarded-For: %s\r\nVia: %s\r\n"
                           b"Connection: close\r\n\r\n" % (xff.encode(),
                                                           via.encode()))
        assert status_of(got) == [200], got[:300]
        head = app.heads[-1].decode()
        fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])
        # The client's chain is whole, and the last entry is the address
        # the gate saw: an attacker cannot choose it.
        assert fields["X-Forwarded-For"] == xff + ", 127.0.0.1"
        assert fields["Via"] == via + ", 1.1 discovery-gate"
    finally:
        assert g.stop() == 0, g.text()


def test_control_bytes_in_the_app_s_head_are_a_502(daemon, tmp_path):
    from gate_harness import Gate, RawUpstream

    def answer(sock, head, index):
        sock.sendall(b"HTTP/1.1 200 OK\r\nX-A: \x00Set-Cookie: s=1\r\n"
                     b"Content-Length: 2\r\n\r\nok")
        return False
    u = RawUpstream(answer)
    g = Gate(tmp_path, daemon, u.url, requires=())
    try:
        got = raw_exchange(g, b"GET / HTTP/1.1\r\nHost: a\r\n"
                           b"Connection: close\r\n\r\n")
        assert status_of(got) == [502], got
        assert b"Set-Cookie" not in got
    finally:
        assert g.stop() == 0, g.text()
        u.stop()
