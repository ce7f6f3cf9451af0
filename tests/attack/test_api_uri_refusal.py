"""The URI refusals made in libmicrohttpd's URI log callback (api.c,
uri_seen): past 128 query parameters 414, a %00 anywhere 400. Their edges:
exactly 128 and 129, empty parameters, a bare '?', absolute-form URIs,
HTTP/1.0, a body after a refusal (never read as the next request), headers
too big after a refused URI, connections that die before the first call."""

import socket

from harness import WAIT

H = b"Host: 127.0.0.1\r\n"
Q128 = b"&".join(b"a%d=1" % i for i in range(128))
Q129 = b"&".join(b"a%d=1" % i for i in range(129))


def exchange(d, data):
    """Send data, read until the server closes: the status lines."""
    host, port = d.http_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    out = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass            # an answer before all of data was read
    s.close()
    return [int(line.split()[1]) for line in out.split(b"\r\n")
            if line.startswith(b"HTTP/1.")]


def get(uri, version=b"HTTP/1.1"):
    return b"GET " + uri + b" " + version + b"\r\n" + H + \
        b"Connection: close\r\n\r\n"


def post(uri, body, close=False):
    return (b"POST " + uri + b" HTTP/1.1\r\n" + H +
            b"Content-Type: application/json\r\n" +
            (b"Connection: close\r\n" if close else b"") +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def test_edges_of_the_parameter_count(daemon):
    svc = b"/api/discovery/services"
    assert exchange(daemon, get(svc + b"?" + Q128)) == [200]
    assert exchange(daemon, get(svc + b"?" + Q129)) == [414]
    assert exchange(daemon, get(svc + b"?" + b"&" * 128)) == [414]
    assert exchange(daemon, get(svc + b"?" + b"&" * 127)) == [200]
    assert exchange(daemon, get(svc + b"?")) == [200]
    assert exchange(daemon, get(b"?" + Q129)) == [414]
    assert exchange(daemon, get(svc + b"?" + Q129, b"HTTP/1.0")) == [414]
    assert exchange(daemon, get(b"http://127.0.0.1" + svc + b"?" + Q129)) \
        == [414]
    assert exchange(daemon, get(b"http://127.0.0.1" + svc + b"%00")) == [400]
    # %25 00 is a literal "%00" once decoded, not a NUL: a bad name.
    assert exchange(daemon, get(svc + b"/web%2500")) == [400]
    # Long values, past 128 of them.
    assert exchange(daemon, get(svc + b"?" + b"&".join(
        b"a%d=" % i + b"x" * 200 for i in range(129)))) == [414]
    assert daemon.call("GET", "/healthz")[0] == 200


def test_a_body_after_a_refusal_is_not_the_next_request(daemon):
    """A refused POST's body is a whole request: it must never run."""
    inner = post(b"/api/discovery/invalidate", b'{"keys":["smuggled"]}')
    for uri in (b"/api/discovery/invalidate?" + Q129,
                b"/api/discovery/invalidate%00",
                b"/api/discovery/invalidate?k=%00"):
        got = exchange(daemon, post(uri, inner))
        assert got[0] in (400, 414) and 202 not in got, (uri, got)
        # The refusal, then a request kept alive on the connection.
        got = exchange(daemon, get(uri.replace(b"invalidate", b"info"))
                       .replace(b"Connection: close\r\n", b"") +
                       get(b"/healthz"))
        assert got[0] in (400, 414) and 202 not in got, (uri, got)
    status, body = daemon.call("GET", "/api/discovery/events?after=0")
    assert status == 200 and body["events"] == [], body


def test_refused_uris_whose_connection_dies_early(daemon):
    """Refused in the callback, then gone before the first call (or with
    headers too big for the pool): nothing leaks, the API still answers
    and the daemon stops cleanly (the fixture, under ASan too)."""
    big = b"GET /x?" + Q129 + b" HTTP/1.1\r\n" + H + \
        b"".join(b"X-%d: %s\r\n" % (i, b"v" * 900) for i in range(40)) + \
        b"\r\n"
    got = exchange(daemon, big)
    assert got and got[0] in (414, 431), got
    host, port = daemon.http_addr.rsplit(":", 1)
    for i in range(40):
        for data in (b"GET /x?" + Q129 + b" HTTP/1.1\r\n",
                     b"GET /x%00 HTTP/1.1\r\n" + H,
                     b"POST /api/discovery/invalidate%00 HTTP/1.1\r\n" + H +
                     b"Content-Length: 100\r\n\r\n{"):
            s = socket.create_connection((host, int(port)))
            s.sendall(data)
            s.close()
    for _ in range(100):
        try:
            if daemon.call("GET", "/healthz")[0] == 200:
                break
        except OSError:
            pass        # per-IP admission, until the dead ones are closed
    assert daemon.call("GET", "/healthz")[0] == 200
