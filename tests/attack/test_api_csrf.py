"""A web page open on the operator's machine attacks the default setup (no
auth, loopback): cross-site GET /cacheready (an <img>), a notready
declaration, a text/plain invalidation or broadcast (a form or fetch that
needs no preflight), and DNS rebinding (a name of the attacker's that
resolves to 127.0.0.1, so the browser sends a foreign Host). Each is
refused before anything changes; scripts and curl, which send no Origin,
Sec-Fetch-Site or Referer, keep working, the NetCoreStack GET included.
With auth on, a token in the URL never authorizes a write."""

import http.client
import json
import os
import subprocess

from harness import BIN, WAIT, Discoveryd, write

EVIL = "http://evil.example"


def request(d, method, path, headers=None, body=None):
    host, port = d.http_addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    h = {"Host": d.http_addr}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    text = r.read()
    c.close()
    try:
        return r.status, json.loads(text) if text else None
    except ValueError:
        return r.status, text


def unchanged(d):
    """Nothing was logged, nothing declared."""
    _, log = d.call("GET", "/api/discovery/events")
    assert log["events"] == [], log
    status, _ = d.call("GET", "/api/discovery/services/web")
    assert status == 404


ATTACKS = [
    # (method, path, headers, body): what a page on another site can send.
    ("GET", "/api/discovery/cacheready",
     {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
      "Sec-Fetch-Dest": "image", "Referer": EVIL + "/page"}, None),
    ("GET", "/api/Discovery/CacheReady",
     {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, None),
    # Old browsers: no Sec-Fetch-*, a Referer only.
    ("GET", "/api/discovery/cacheready", {"Referer": EVIL + "/"}, None),
    # Another port of localhost is the same site, not the same origin.
    ("GET", "/api/discovery/cacheready",
     {"Sec-Fetch-Site": "same-site", "Referer": "http://localhost:3000/"},
     None),
    ("POST", "/api/discovery/services/web/notready",
     {"Origin": EVIL, "Content-Type": "text/plain"}, b""),
    ("POST", "/api/discovery/services/web/notready",
     {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}, b""),
    ("POST", "/api/discovery/invalidate",
     {"Origin": EVIL, "Content-Type": "text/plain"},
     b'{"keys":["SimpleCacheItem"]}'),
    ("POST", "/api/discovery/broadcast",
     {"Origin": "null", "Content-Type": "text/plain"},
     b'{"command":"Reload"}'),
    ("POST", "/api/discovery/broadcast",
     {"Origin": EVIL, "Sec-Fetch-Site": "cross-site",
      "Content-Type": "application/x-www-form-urlencoded"},
     b'{"command":"Reload"}'),
    ("DELETE", "/api/discovery/services/web/declaration",
     {"Origin": EVIL}, None),
]


def test_cross_site_requests_are_refused(daemon):
    for method, path, headers, body in ATTACKS:
        status, answer = request(daemon, method, path, headers, body)
        assert status == 403, (method, path, headers, answer)
        assert answer["error"] == "cross_site"
    unchanged(daemon)
    assert daemon.call("GET", "/healthz")[0] == 200


def test_rebinding_a_foreign_host_is_refused(daemon):
    port = daemon.http_addr.rsplit(":", 1)[1]
    for host in ("evil.example:" + port, "evil.example", "127.0.0.1.nip.io:"
                 + port, "localhost.evil.example", "x", "[::1]x", "a:b:c"):
        for method, path, body in (("GET", "/api/discovery/services", None),
                                   ("GET", "/api/discovery/cacheready", None),
                                   ("POST", "/api/discovery/invalidate",
                                    b'{"keys":["k"]}'),
                                   ("GET", "/", None)):
            status, answer = request(daemon, method, path, {"Host": host},
                                     body)
            assert status == 421, (host, path, answer)
    unchanged(daemon)
    # What names this daemon: addresses, localhost, listen.http's host.
    for host in ("127.0.0.1:" + port, "127.0.0.1", "localhost:" + port,
                 "LOCALHOST", "localhost.", "dash.localhost:" + port,
                 "[::1]:" + port, "10.1.2.3"):
        status, _ = request(daemon, "GET", "/api/discovery/services",
                            {"Host": host})
        assert status == 200, host


def test_same_origin_scripts_and_curl_keep_working(daemon):
    base = "http://" + daemon.http_addr
    # The dashboard's own calls: same origin.
    status, _ = request(daemon, "POST", "/api/discovery/services/web/ready",
                        {"Origin": base, "Sec-Fetch-Site": "same-origin",
                         "Referer": base + "/"}, b"")
    assert status == 200
    # The page itself, reached by a link from another site.
    status, text = request(daemon, "GET", "/",
                           {"Sec-Fetch-Site": "cross-site",
                            "Sec-Fetch-Mode": "navigate",
                            "Referer": EVIL + "/wiki"})
    assert status == 200 and b"<html" in text.lower()
    # A bookmark or a typed URL.
    status, _ = request(daemon, "GET", "/api/discovery/services",
                        {"Sec-Fetch-Site": "none"})
    assert status == 200
    # curl and scripts send none of the browser's headers: the
    # NetCoreStack GET, and a write.
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        base + "/api/Discovery/CacheReady"],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.stdout == "200"
    r = subprocess.run([os.path.join(BIN, "discoveryctl"), "--server", base,
                        "invalidate", "SimpleCacheItem"],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    assert daemon.call("GET", "/healthz")[0] == 200


def test_allowed_hosts(tmp_path):
    d = Discoveryd(tmp_path, extra="allowed_hosts: [discovery.internal, "
                                   "\"*.corp.example\"]\n")
    try:
        for host, want in (("discovery.internal", 200),
                           ("Discovery.Internal:443", 200),
                           ("a.corp.example", 200), ("b.a.corp.example", 200),
                           ("corp.example", 421), ("evil.example", 421)):
            status, _ = request(d, "GET", "/api/discovery/info",
                                {"Host": host})
            assert status == want, host
        # Behind a TLS proxy that passes Host on: the Origin's scheme is
        # https, its authority the Host.
        status, _ = request(d, "POST", "/api/discovery/invalidate",
                            {"Host": "discovery.internal",
                             "Origin": "https://discovery.internal"},
                            b'{"keys":["k"]}')
        assert status == 202
        status, _ = request(d, "POST", "/api/discovery/invalidate",
                            {"Host": "discovery.internal",
                             "Origin": "https://a.corp.example"},
                            b'{"keys":["k"]}')
        assert status == 403
    finally:
        assert d.stop() == 0
    bad = write(os.path.join(str(tmp_path), "bad.yaml"),
                "allowed_hosts: [\"evil.example/x\"]\n")
    r = subprocess.run([os.path.join(BIN, "discoveryd"), "-t", "-c", bad],
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode != 0 and "allowed_hosts" in r.stderr


def test_token_in_url_never_authorizes_a_write(tmp_path):
    secret = write(os.path.join(str(tmp_path), "secret"), "s" * 40)
    os.chmod(secret, 0o600)

    def token(role):
        return subprocess.run([os.path.join(BIN, "discoveryctl"), "token",
                               "issue", "--role", role, "--ttl", "1h",
                               "--secret-file", secret],
                              capture_output=True, text=True,
                              check=True).stdout.strip()
    admin, reader = token("admin"), token("reader")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % secret)
    try:
        for path in ("/api/discovery/cacheready?token=" + admin,
                     "/api/Discovery/CacheReady?token=" + admin):
            status, answer = request(d, "GET", path)
            assert status == 401, answer
            assert "URL" in answer["message"]
        status, _ = request(d, "POST", "/api/discovery/invalidate?token=" +
                            admin, None, b'{"keys":["k"]}')
        assert status == 401
        _, log = d.call("GET", "/api/discovery/events",
                        headers={"Authorization": "Bearer " + admin})
        assert log["events"] == []
        # Reads may still take it from the URL (EventSource), and a
        # write its header.
        status, _ = request(d, "GET", "/api/discovery/services?token=" +
                            reader)
        assert status == 200
        status, _ = request(d, "GET", "/api/discovery/cacheready",
                            {"Authorization": "Bearer " + admin})
        assert status == 200
    finally:
        assert d.stop() == 0
