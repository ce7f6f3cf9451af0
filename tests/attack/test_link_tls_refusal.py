"""A WebSocket handshake refused for its token is answered over TLS too.

With tls: on, a missing or bad token gets 401 (a token without the right
role 403), with the API's JSON error and WWW-Authenticate, through the TLS
session, instead of plain bytes that the client reads as a broken
connection. The daemon lingers on what it refuses: a client that pipelined
frames behind its request still reads the whole answer.
"""

import json
import os
import socket
import ssl
import subprocess

import pytest
import websockets

from certs import make_ca, make_server
from harness import (BIN, Discoveryd, UPGRADE, WAIT, masked_frame, write,
                     ws_run)


@pytest.fixture
def wss(tmp_path):
    d = str(tmp_path)
    ca = make_ca(d, "ca")
    key, crt = make_server(d, "server", ca)
    secret = write(os.path.join(d, "secret"), os.urandom(32).hex() + "\n")
    os.chmod(secret, 0o600)
    daemon = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % secret,
                        tls={"cert": crt, "key": key, "ca": ca[1]})
    yield daemon, secret, ca[1]
    assert daemon.stop() == 0


def token(secret, role):
    return subprocess.run(
        [os.path.join(BIN, "discoveryctl"), "token", "issue", "--role", role,
         "--ttl", "1h", "--secret-file", secret], capture_output=True,
        text=True, check=True).stdout.strip()


def answer(d, cafile, request, pipelined=b""):
    """Send the handshake (and more) over TLS; everything read back."""
    host, port = d.agents_addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection((host, int(port)), WAIT)
    s = ctx.wrap_socket(raw, server_hostname=host)
    s.settimeout(WAIT)
    try:
        s.sendall(request + pipelined)
    except OSError:
        pass                    # closed while still sending: read anyway
    buf = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except (ssl.SSLError, ConnectionResetError):
        pass
    s.close()
    return buf


def parse(buf):
    assert buf, "no answer: the connection was closed without one"
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(l.split(": ", 1) for l in lines[1:])
    return lines[0], headers, json.loads(body)


def with_auth(value):
    return UPGRADE.replace(b"\r\n\r\n", b"\r\nAuthorization: %s\r\n\r\n"
                           % value.encode())


def test_missing_token_gets_401_over_tls(wss):
    d, secret, ca = wss
    status, headers, body = parse(answer(d, ca, UPGRADE))
    assert status == "HTTP/1.1 401 Unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert headers["Content-Type"] == "application/json"
    assert body["error"] == "unauthorized"
    assert d.call("GET", "/healthz")[0] == 200


def test_bad_token_and_wrong_role_over_tls(wss):
    d, secret, ca = wss
    status, _, body = parse(answer(d, ca, with_auth("Bearer nope")))
    assert status.startswith("HTTP/1.1 401") and body["error"] == "unauthorized"
    status, _, body = parse(answer(d, ca, with_auth(
        "Bearer " + token(secret, "reader"))))
    assert status == "HTTP/1.1 403 Forbidden" and body["error"] == "forbidden"

    async def client():
        ctx = ssl.create_default_context(cafile=ca)
        try:
            await websockets.connect(d.ws_url, ssl=ctx,
                                     subprotocols=["discovery.v1"])
        except websockets.InvalidStatusCode as e:
            return e.status_code
    assert ws_run(client()) == 401
    assert d.call("GET", "/healthz")[0] == 200


def test_refusal_survives_pipelined_frames(wss):
    """200 KB of frames sent behind the refused request: the answer is
    still read whole (the daemon does not reset what it refuses)."""
    d, secret, ca = wss
    frames = masked_frame(0x1, b"x" * 100) * 2000
    status, _, body = parse(answer(d, ca, UPGRADE, frames))
    assert status.startswith("HTTP/1.1 401") and body["error"] == "unauthorized"
    assert d.call("GET", "/healthz")[0] == 200
