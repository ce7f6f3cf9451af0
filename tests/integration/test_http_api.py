"""The HTTP API: every endpoint, its answers and its error codes."""

import socket

from harness import WAIT


def test_healthz(daemon):
    assert daemon.call("GET", "/healthz") == (200, {"status": "ok"})


def test_declare_ready_notready_auto(daemon):
    status, svc = daemon.call("POST", "/api/discovery/services/api/ready")
    assert status == 200
    assert svc["name"] == "api" and svc["ready"] is True
    assert svc["declared"] == "ready" and svc["ttl_ms"] is None
    assert svc["seq"] >= 1

    status, svc = daemon.call("POST", "/api/discovery/services/api/notready")
    assert (status, svc["ready"], svc["declared"]) == (200, False, "notready")

    status, svc = daemon.call("DELETE", "/api/discovery/services/api/declaration")
    assert (status, svc["ready"], svc["declared"]) == (200, False, None)
    # Nothing refers to it any more: it is gone.
    assert daemon.call("GET", "/api/discovery/services/api")[0] == 404


def test_ttl_runs_out(daemon):
    mark = daemon.mark()
    status, svc = daemon.call("POST", "/api/discovery/services/web/ready",
                              {"ttl": "300ms"})
    assert status == 200 and svc["ready"] and 0 < svc["ttl_ms"] <= 300
    daemon.wait_line(r"msg=readiness service=web ready=false", start=mark)


def test_cacheready(daemon):
    for method in ("GET", "POST"):
        status, body = daemon.call(method, "/api/discovery/cacheready")
        assert status == 200
        assert body["service"] == "cache" and body["ready"] is True
        assert body["delivered"] == 0 and body["seq"] >= 1
    # NetCoreStack's spelling of the route works too.
    assert daemon.call("GET", "/api/Discovery/CacheReady")[0] == 200
    status, svc = daemon.call("GET", "/api/discovery/services/cache")
    assert status == 200 and svc["declared"] == "ready"


def test_lists(daemon):
    daemon.call("POST", "/api/discovery/services/b/ready")
    daemon.call("POST", "/api/discovery/services/a/notready")
    status, body = daemon.call("GET", "/api/discovery/services")
    assert status == 200
    names = [s["name"] for s in body["services"]]
    assert names == sorted(names) and {"a", "b"} <= set(names)
    assert daemon.call("GET", "/api/discovery/agents") == (200, {"agents": []})


def test_invalidate_and_broadcast(daemon):
    status, body = daemon.call("POST", "/api/discovery/invalidate",
                               {"keys": ["k1", "k2"], "service": "web"})
    assert status == 202 and body["delivered"] == 0 and body["seq"] >= 1
    seq = body["seq"]
    status, body = daemon.call("POST", "/api/discovery/broadcast",
                               {"command": "DataSend", "header": {"X": 1},
                                "value": [1, 2],
                                "target": {"service": "web",
                                           "instance": "web-1"}})
    assert status == 202 and body["seq"] == seq + 1


def test_errors(daemon):
    c = daemon.call
    assert c("GET", "/nope")[0] == 404
    assert c("GET", "/api/discovery/nope")[1]["error"] == "not_found"
    assert c("GET", "/api/discovery/services/ghost")[0] == 404
    assert c("DELETE", "/api/discovery/services/ghost/declaration")[0] == 404
    assert c("PUT", "/api/discovery/services")[0] == 405
    assert c("GET", "/api/discovery/invalidate")[0] == 405
    assert c("POST", "/api/discovery/services/x/declaration")[0] == 405
    # Malformed or invalid bodies: 400, the message names the field.
    status, body = c("POST", "/api/discovery/invalidate", raw=b"{not json")
    assert status == 400 and body["error"] == "bad_request"
    status, body = c("POST", "/api/discovery/invalidate", {"keys": "k"})
    assert status == 400 and "keys" in body["message"]
    status, body = c("POST", "/api/discovery/invalidate", {"keys": []})
    assert status == 400 and "keys" in body["message"]
    status, body = c("POST", "/api/discovery/invalidate",
                     {"keys": ["k"], "service": "Bad Name"})
    assert status == 400 and "service" in body["message"]
    status, body = c("POST", "/api/discovery/invalidate",
                     {"keys": ["k"], "extra": 1})
    assert status == 400 and "extra" in body["message"]
    status, body = c("POST", "/api/discovery/broadcast", {"header": {}})
    assert status == 400 and "command" in body["message"]
    status, body = c("POST", "/api/discovery/broadcast",
                     {"command": "X", "header": []})
    assert status == 400 and "header" in body["message"]
    status, body = c("POST", "/api/discovery/services/web/ready",
                     {"ttl": "soon"})
    assert status == 400 and "ttl" in body["message"]
    assert c("POST", "/api/discovery/services/UPPER/ready")[0] == 400
    assert c("POST", "/api/discovery/services/" + "a" * 64 + "/ready")[0] == 400
    # Past the caps.
    status, body = c("POST", "/api/discovery/invalidate",
                     {"keys": ["k%d" % i for i in range(1001)]})
    assert status == 400
    deep = b"[" * 40 + b"]" * 40
    status, body = c("POST", "/api/discovery/invalidate",
                     raw=b'{"keys":' + deep + b"}")
    assert status == 400 and "nested" in body["message"]
    status, body = c("POST", "/api/discovery/invalidate",
                     raw=b'{"keys":["' + b"x" * 70000 + b'"]}')
    assert status == 413 and body["error"] == "too_large"


def test_chunked_body_over_cap(daemon):
    """No Content-Length: the cap still holds while the body streams in."""
    host, port = daemon.http_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    s.sendall(b"POST /api/discovery/invalidate HTTP/1.1\r\nHost: x\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 8192
    try:
        for _ in range(10):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    reply = s.recv(4096)
    s.close()
    assert reply.startswith(b"HTTP/1.1 413")


def test_header_caps(daemon):
    """Headers are capped at 32 KiB per request: one huge header, or
    thousands of small ones, get 431 and the daemon carries on."""
    host, port = daemon.http_addr.rsplit(":", 1)
    for headers in (b"X-Big: " + b"a" * 40000 + b"\r\n",
                    b"".join(b"X-H%d: v\r\n" % i for i in range(3000))):
        s = socket.create_connection((host, int(port)), timeout=WAIT)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 431")
        s.close()
    assert daemon.call("GET", "/healthz")[0] == 200


def test_bodies_parsed_as_strictly_as_frames(daemon):
    """Found by fuzzing: a body agents could not decode must never reach
    the log (resume would replay it forever), nor trailing data or NULs."""
    for raw in (b'{"command":"C","value":"\xff"}',
                b'{"command":"C","value":"a\x00b"}',
                b'{"command":"C","value":"\\u0000"}',
                b'{"command":"C"}{"command":"D"}'):
        st, body = daemon.call("POST", "/api/discovery/broadcast", raw=raw)
        assert st == 400, (raw, body)
    st, _ = daemon.call("POST", "/api/discovery/invalidate",
                        raw=b'{"keys":["\xc3\x28"]}')
    assert st == 400
    st, _ = daemon.call("POST", "/api/discovery/services/x/ready",
                        raw=b"\x00\x00")
    assert st == 400
    _, events = daemon.call("GET", "/api/discovery/events")
    assert events["events"] == []


def test_info(daemon):
    daemon.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
    status, info = daemon.call("GET", "/api/discovery/info")
    assert status == 200
    assert info["node"] == "test-node" and info["seq"] == 1
    assert info["auth"] is False and info["version"]
    assert len(info["epoch"]) == 32 and info["history"] == 1
    assert daemon.call("POST", "/api/discovery/info")[0] == 405
