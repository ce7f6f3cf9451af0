"""A link lives no longer than its token.

Tokens are checked at the handshake, and again while the link lives: a
link whose token expires (exp plus the 60 s of clock skew the handshake
allows) is closed with 1008, and so is one whose token was signed by a
secret that a reload (SIGHUP) dropped. Links whose secret is still loaded
stay, across any number of reloads.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import time

import websockets

from harness import Discoveryd, WAIT, write, ws_run

SUB = ["discovery.v1"]
LEEWAY = 60


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def secret(tmp_path, name):
    path = os.path.join(str(tmp_path), name)
    write(path, os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def token(secret_file, exp, role="agent"):
    """A token signed with secret_file, expiring at exp (made here:
    discoveryctl issues no token that has already expired)."""
    key = open(secret_file, "rb").read().rstrip(b"\r\n")
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"role": role, "exp": int(exp)}
    if role == "agent":
        claims["svc"] = "web"
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key, ("%s.%s" % (head, body)).encode(),
                   hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64(sig))


def config(current, previous=None):
    text = "auth:\n  secret_file: %s\n" % current
    if previous:
        text += "  previous_secret_file: %s\n" % previous
    return text


async def linked(d, tok, instance):
    ws = await websockets.connect(
        d.ws_url, subprotocols=SUB,
        extra_headers={"Authorization": "Bearer " + tok})
    await ws.send(json.dumps({"type": "hello", "service": "web",
                              "instance": instance}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def closed(ws):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT)
    except websockets.ConnectionClosed:
        return ws.close_code, ws.close_reason


def instances(d):
    return sorted(a["instance"] for a in
                  d.call("GET", "/api/discovery/agents",
                         headers={"Authorization": "Bearer " + d.admin})[1]
                  ["agents"])


def test_link_closed_when_its_token_expires(tmp_path):
    s = secret(tmp_path, "secret")
    d = Discoveryd(tmp_path, extra=config(s))
    d.admin = token(s, time.time() + 3600, "admin")
    try:
        # Accepted at the handshake (within the leeway), expired soon after.
        short = token(s, time.time() - LEEWAY + 2)
        long = token(s, time.time() + 3600)

        async def scenario():
            a = await linked(d, short, "short")
            b = await linked(d, long, "long")
            code = await closed(a)
            assert instances(d) == ["long"]
            await b.close()
            return code
        assert ws_run(scenario()) == (1008, "token expired")
        st, text = d.call("GET", "/metrics",
                          headers={"Authorization": "Bearer " + d.admin})
        assert 'discovery_links_closed_total{reason="token"} 1' in \
            text.decode()
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0


def test_link_closed_when_its_secret_is_dropped(tmp_path):
    old, new = secret(tmp_path, "old"), secret(tmp_path, "new")
    d = Discoveryd(tmp_path, extra=config(new, old))
    d.admin = token(new, time.time() + 3600, "admin")
    exp = time.time() + 3600

    def reload(text):
        mark = d.mark()
        write(d.config, open(d.config).read().split("auth:")[0] + text)
        d.kill(signal.SIGHUP)
        d.wait_line(r"msg=reloaded", start=mark)

    try:
        async def scenario():
            a = await linked(d, token(old, exp), "old")
            b = await linked(d, token(new, exp), "new")
            # The same secrets again: nobody is closed.
            reload(config(new, old))
            assert instances(d) == ["new", "old"]
            # The rotation is over: the old secret goes, and its link.
            reload(config(new))
            assert await closed(a) == (1008, "token secret dropped")
            assert instances(d) == ["new"]
            await b.close()
        ws_run(scenario())
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0
