"""Every numeric query value and header is a plain decimal: strtoull read
`?after=%20-1` as 2^64-1, and took a sign or a leading space anywhere.
HEAD on a read route answers as GET does, without the body (it answered
405); a HEAD never changes anything, so HEAD /cacheready stays 405."""

import http.client
import socket

from harness import WAIT


def head(d, path, headers=None):
    host, port = d.http_addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    c.request("HEAD", path, headers=headers or {})
    r = c.getresponse()
    out = (r.status, dict(r.getheaders()), r.read())
    c.close()
    return out


def test_numbers_in_queries_are_plain_decimals(daemon):
    daemon.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
    for query in ("after=%20-1", "after=%20", "after=%2B1", "after=1%20",
                  "after=-1", "after=0x1", "after=01", "after=1e3",
                  "after=18446744073709551616", "limit=%205", "limit=%2B5",
                  "limit=-0"):
        status, body = daemon.call("GET", "/api/discovery/events?" + query)
        assert status == 400, (query, body)
        if query.startswith("after"):          # the stream's resume point
            status, body = daemon.call(
                "GET", "/api/discovery/events?" + query,
                headers={"Accept": "text/event-stream"})
            assert status == 400, (query, body)
    for value in ("+1", "1 x", "0x1", "01", "18446744073709551616"):
        status, body = daemon.call(
            "GET", "/api/discovery/events",
            headers={"Accept": "text/event-stream", "Last-Event-ID": value})
        assert status == 400, (value, body)
    # Plain decimals still work.
    status, body = daemon.call("GET", "/api/discovery/events?after=0&limit=1")
    assert status == 200 and len(body["events"]) == 1
    status, body = daemon.call("GET", "/api/discovery/events?after=1")
    assert status == 200 and body["events"] == []
    assert daemon.call("GET", "/healthz")[0] == 200


def test_head_answers_as_get(daemon):
    daemon.call("POST", "/api/discovery/services/web/notready")
    for path in ("/healthz", "/", "/metrics", "/api/discovery/services",
                 "/api/discovery/services/web", "/api/discovery/agents",
                 "/api/discovery/info", "/api/discovery/events",
                 "/api/discovery/sd/prometheus"):
        status, headers, body = head(daemon, path)
        assert status == 200, path
        assert body == b"", path
        assert int(headers["Content-Length"]) > 0, path
    status, _, _ = head(daemon, "/api/discovery/services/nosuch")
    assert status == 404
    # The live stream's head, and no stream held open behind it.
    status, headers, body = head(daemon, "/api/discovery/events",
                                 {"Accept": "text/event-stream"})
    assert status == 200 and body == b""
    assert headers["Content-Type"] == "text/event-stream"
    assert daemon.call("GET", "/healthz")[0] == 200


def test_head_cacheready_changes_nothing(daemon):
    status, headers, _ = head(daemon, "/api/discovery/cacheready")
    assert status == 405 and headers["Allow"] == "GET, POST"
    assert daemon.call("GET", "/api/discovery/services/cache")[0] == 404
    _, log = daemon.call("GET", "/api/discovery/events")
    assert log["events"] == []
    # A raw HEAD too, on a kept-alive connection, then a GET on it.
    host, port = daemon.http_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    s.sendall(b"HEAD /api/discovery/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
              b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    buf = b""
    while buf.count(b"HTTP/1.1 200") < 2 or not buf.endswith(b"}"):
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    s.close()
    assert buf.endswith(b'{"status":"ok"}')


def test_too_many_query_parameters_get_414_at_once(daemon):
    """libmicrohttpd keeps each parameter in a 32 KiB pool; from about 600
    on it ran out, logged a 431 it never sent, and the client waited for
    header_timeout. Past 128 the answer is 414, at once, on any route and
    method."""
    host, port = daemon.http_addr.rsplit(":", 1)
    status, _ = daemon.call("GET", "/api/discovery/endpoints?" +
                            "&".join("state=any" for _ in range(128)))
    assert status != 414
    for n in (129, 700, 5000):
        query = "&".join("a%d=1" % i for i in range(n))
        for method, path in (("GET", "/api/discovery/services"),
                             ("POST", "/api/discovery/invalidate"),
                             ("GET", "/api/discovery/events")):
            # One send: the answer may come (and the connection close)
            # before a body sent on its own would be read.
            body = b'{"keys":["k"]}' if method == "POST" else b""
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"%s %s?%s HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" %
                      (method.encode(), path.encode(), query.encode(),
                       len(body), body))
            head = s.recv(64)
            s.close()
            assert head.startswith(b"HTTP/1.1 414 "), (n, method, path, head)
    # Nothing of the refused POSTs was applied.
    status, body = daemon.call("GET", "/api/discovery/events?after=0")
    assert status == 200 and body["events"] == [], body
    assert daemon.call("GET", "/healthz")[0] == 200


def test_a_nul_anywhere_in_the_uri_is_400(daemon):
    """Decoded, a %00 cut what followed: ?tag=blue%00x was read as blue,
    services/web%00x as services/web."""
    daemon.call("POST", "/api/discovery/services/web/notready")
    for path in ("/api/discovery/endpoints?service=web&tag=blue%00x",
                 "/api/discovery/endpoints?service=web&state=any%00x",
                 "/api/discovery/services/web%00x",
                 "/api/discovery/services/web%00",
                 "/api/discovery/events?after=0%00",
                 "/healthz%00"):
        status, body = daemon.call("GET", path)
        assert status == 400, (path, status, body)
        assert "NUL" in body["message"]
    status, body = daemon.call("POST", "/api/discovery/services/web%00x/ready")
    assert status == 400, body
    assert daemon.call("GET", "/api/discovery/services/web")[1]["ready"] is \
        False
