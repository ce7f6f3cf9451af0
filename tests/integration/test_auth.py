"""Tokens: HS256 JWTs with roles, checked on the API and before the
WebSocket upgrade; an agent token registers only as its service; two
secrets during a rotation; tokens issued by discoveryctl."""

import asyncio
import json
import os
import subprocess

import pytest
import websockets

from harness import BIN, Discoveryd, Sidecar, write, ws_run

CTL = os.path.join(BIN, "discoveryctl")
SUB = ["discovery.v1"]


def secret(tmp_path, name):
    path = os.path.join(str(tmp_path), name)
    write(path, os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def issue(secret_file, role, service=None, ttl="1h"):
    args = [CTL, "token", "issue", "--role", role, "--ttl", ttl,
            "--secret-file", secret_file, "--sub", "test " + role]
    if service:
        args += ["--service", service]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return r.stdout.strip()


@pytest.fixture
def secured(tmp_path):
    s = secret(tmp_path, "secret")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % s)
    yield d, s
    assert d.stop() == 0


def bearer(token):
    return {"Authorization": "Bearer " + token}


def test_api_roles(secured, tmp_path):
    d, s = secured
    admin, reader = issue(s, "admin"), issue(s, "reader")
    agent = issue(s, "agent", "web")
    other = issue(secret(tmp_path, "other"), "admin")
    assert d.call("GET", "/healthz")[0] == 200            # always open
    st, body = d.call("GET", "/api/discovery/services")
    assert (st, body["error"]) == (401, "unauthorized")
    for bad in ("garbage", other, admin + "x", "Basic " + admin):
        hdr = {"Authorization": bad} if bad.startswith("Basic") else bearer(bad)
        assert d.call("GET", "/api/discovery/services", headers=hdr)[0] == 401
    assert d.call("GET", "/api/discovery/services", headers=bearer(reader))[0] == 200
    st, body = d.call("POST", "/api/discovery/services/x/ready",
                      headers=bearer(reader))
    assert (st, body["error"]) == (403, "forbidden")
    assert d.call("GET", "/api/discovery/agents", headers=bearer(agent))[0] == 403
    assert d.call("POST", "/api/discovery/services/x/ready",
                  headers=bearer(admin))[0] == 200


def test_expired_token(secured):
    d, s = secured
    fresh = issue(s, "admin", ttl="1s")
    # A token whose exp the 60 s leeway no longer covers, signed here with
    # Python's hmac (discoveryctl never issues one in the past).
    import base64
    import hashlib
    import hmac
    import time
    key = open(s, "rb").read().rstrip(b"\n")

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = b64(json.dumps({"role": "admin",
                             "exp": int(time.time()) - 120}).encode())
    sig = b64(hmac.new(key, head + b"." + claims, hashlib.sha256).digest())
    old = (head + b"." + claims + b"." + sig).decode()
    st, body = d.call("GET", "/api/discovery/services", headers=bearer(old))
    assert st == 401 and "expired" in body["message"]
    assert d.call("GET", "/api/discovery/services",
                  headers=bearer(fresh))[0] == 200


def test_link_needs_a_token_before_upgrade(secured):
    d, s = secured
    agent = issue(s, "agent", "web")
    reader = issue(s, "reader")

    async def status(headers=None, url=None):
        try:
            ws = await websockets.connect(url or d.ws_url, subprotocols=SUB,
                                          extra_headers=headers or {})
        except websockets.InvalidStatusCode as e:
            return e.status_code
        await ws.close()
        return 101

    async def hello_as(service, token, query=False):
        url = d.ws_url + ("?token=" + token if query else "")
        ws = await websockets.connect(
            url, subprotocols=SUB,
            extra_headers={} if query else bearer(token))
        await ws.send(json.dumps({"type": "hello", "service": service,
                                  "instance": "i-1"}))
        try:
            return json.loads(await ws.recv())["type"]
        except websockets.ConnectionClosed:
            return ws.close_code

    assert ws_run(status()) == 401
    assert ws_run(status(bearer("nope"))) == 401
    assert ws_run(status(bearer(reader))) == 403
    assert ws_run(status(bearer(agent))) == 101
    assert ws_run(hello_as("web", agent)) == "welcome"
    assert ws_run(hello_as("web", agent, query=True)) == "welcome"
    assert ws_run(hello_as("api", agent)) == 1008      # not its service
    assert ws_run(hello_as("api", issue(s, "admin"))) == "welcome"
    d.wait_line(r"msg=linked .*sub=\"test agent\"")


def test_secret_rotation(tmp_path):
    old, new = secret(tmp_path, "old"), secret(tmp_path, "new")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % old)
    try:
        by_old = issue(old, "admin")
        assert d.call("GET", "/api/discovery/agents", headers=bearer(by_old))[0] == 200
        # The rotation window: the new secret signs, the old one still counts.
        with open(d.config) as f:
            text = f.read()
        write(d.config, text.replace(
            "secret_file: %s" % old,
            "secret_file: %s\n  previous_secret_file: %s" % (new, old)))
        mark = d.mark()
        d.kill(1)
        d.wait_line(r"msg=reloaded", start=mark)
        by_new = issue(new, "admin")
        for t in (by_old, by_new):
            assert d.call("GET", "/api/discovery/agents", headers=bearer(t))[0] == 200
        # The window closes.
        write(d.config, text.replace("secret_file: %s" % old,
                                     "secret_file: %s" % new))
        mark = d.mark()
        d.kill(1)
        d.wait_line(r"msg=reloaded", start=mark)
        assert d.call("GET", "/api/discovery/agents", headers=bearer(by_old))[0] == 401
        assert d.call("GET", "/api/discovery/agents", headers=bearer(by_new))[0] == 200
    finally:
        assert d.stop() == 0


def test_clients_send_tokens(secured, tmp_path):
    d, s = secured
    token_file = os.path.join(str(tmp_path), "web.token")
    write(token_file, issue(s, "agent", "web") + "\n")
    good = Sidecar(tmp_path, d.ws_url, "web", "good",
                   extra="token_file: %s\n" % token_file)
    bad = Sidecar(tmp_path, d.ws_url, "web", "bad")
    try:
        good.wait_line(r"msg=linked")
        bad.wait_line(r"msg=connect_failed .*401")
        r = subprocess.run([CTL, "-s", d.base, "--token", issue(s, "reader"),
                            "--json", "agents"], capture_output=True, text=True)
        assert r.returncode == 0
        assert [a["instance"] for a in json.loads(r.stdout)["agents"]] == ["good"]
        r = subprocess.run([CTL, "-s", d.base, "ready", "web"],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "401" in r.stderr
    finally:
        good.stop()
        bad.stop()


def test_secret_file_must_be_private(tmp_path):
    s = secret(tmp_path, "loose")
    os.chmod(s, 0o644)
    from test_config import check
    rc, out, _ = check(tmp_path, "auth:\n  secret_file: %s\n" % s)
    # -t checks the shape; the daemon refuses to start on a readable secret.
    assert rc == 0
    r = subprocess.run([os.path.join(BIN, "discoveryd"), "-c",
                        os.path.join(str(tmp_path), "d.yaml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and s in r.stderr


def test_cacheready_needs_admin_even_as_get(secured):
    """Found by fuzzing: GET cacheready changes state, so a reader token
    may not call it."""
    d, s = secured
    st, body = d.call("GET", "/api/discovery/cacheready",
                      headers=bearer(issue(s, "reader")))
    assert st == 403 and body["message"] == "a reader token cannot change anything"
    assert d.call("GET", "/api/discovery/cacheready",
                  headers=bearer(issue(s, "admin")))[0] == 200
