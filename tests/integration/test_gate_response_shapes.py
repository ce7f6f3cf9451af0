"""Every shape of upstream response reaches the client whole, as the
upstream meant it: HEAD, 204 and 304 without a body, 1xx heads skipped,
bodies far larger than limits.buffer (Content-Length, chunked with
trailers, or delimited by the close), and a garbled response is a 502."""

import hashlib
import http.client
import json
import socket

import pytest

from gate_harness import Gate, RawUpstream, call

BIG = bytes(range(256)) * 4096 * 3  # 3 MiB, the buffer is 32 KiB


def answer(sock, head, index):
    target = head.split(" ")[1]
    method = head.split(" ")[0]
    if target == "/204":
        sock.sendall(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
    elif target == "/304":
        sock.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n"
                     b"Content-Length: 99\r\n\r\n")
    elif target == "/early":
        sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
    elif target == "/big":
        body = b"" if method == "HEAD" else BIG
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                     % len(BIG) + body)
    elif target == "/chunked":
        out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
               b"Trailer: X-Sum\r\n\r\n"]
        for i in range(0, len(BIG), 100000):
            part = BIG[i:i + 100000]
            out.append(b"%x;ext=1\r\n" % len(part) + part + b"\r\n")
        out.append(b"0\r\nX-Sum: 1\r\n\r\n")
        sock.sendall(b"".join(out))
    elif target == "/close":
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BIG)
        return False
    elif target == "/garbage":
        sock.sendall(b"HTTP/1.1 2x0 what\r\n\r\n")
        return False
    elif target == "/empty-value":
        sock.sendall(b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-B: b\r\n"
                     b"Content-Length: 0\r\n\r\n")
    else:
        sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    return True


@pytest.fixture
def gate(daemon, tmp_path):
    u = RawUpstream(answer)
    g = Gate(tmp_path, daemon, u.url, requires=(),
             extra="limits: { buffer: 32KiB }\n")
    yield g
    assert g.stop() == 0, g.text()
    u.stop()


def test_no_body_answers(gate):
    c = gate.conn()
    try:
        status, h, body = call(c, "GET", "/204")
        assert (status, body, h["x-a"]) == (204, b"", ["1"])
        assert "content-length" not in h and "transfer-encoding" not in h
        status, h, body = call(c, "GET", "/304")
        assert (status, body, h["etag"]) == (304, b"", ['"e"'])
        status, h, body = call(c, "HEAD", "/big")
        assert (status, body) == (200, b"")
        assert h["content-length"] == [str(len(BIG))]
        status, h, body = call(c, "GET", "/empty-value")
        # libmicrohttpd cannot send an empty value: that header is left
        # out, the rest of the answer is whole.
        assert (status, h["x-b"]) == (200, ["b"])
        # The same client connection still works after all of them.
        status, _, body = call(c, "GET", "/early")
        assert (status, body) == (200, b"final")
    finally:
        c.close()


def test_bodies_larger_than_the_buffer(gate):
    want = hashlib.sha256(BIG).hexdigest()
    for path in ("/big", "/chunked", "/close"):
        status, h, body = gate.request("GET", path)
        assert status == 200, path
        assert hashlib.sha256(body).hexdigest() == want, path
        assert "trailer" not in h and "connection" not in h


def test_http10_client_without_host(gate):
    s = socket.create_connection((gate.host, gate.port))
    try:
        s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            block = s.recv(1 << 20)
            if not block:
                break
            data += block
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert body == BIG


def test_garbled_response_is_502(gate):
    status, _, body = gate.request("GET", "/garbage")
    assert status == 502
    e = json.loads(body)
    assert e["error"] == "bad_gateway" and "invalid" in e["message"].lower()
    gate.wait_line(r"msg=upstream_failed .*status=502")
