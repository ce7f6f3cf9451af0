"""Debian's HAProxy resolving through listen.dns (docs/dns.md, "HAProxy"):
`resolvers` plus `server-template` on the SRV name send requests only to
ready instances (real HTTP backends that say who they are), and stop
sending to one once it turns draining or its agent drops, within the
documented time (polled for with a generous deadline, never timed)."""

import http.client
import os
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dnsutil import HEARTBEAT, Probe, wait_until
from harness import WAIT, Discoveryd, Proc, write

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

CONFIG = """global
    log stderr format raw local0 notice
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
resolvers discovery
    nameserver d 127.0.0.1:%(dns)d
    accepted_payload_size 1232
    resolve_retries 3
    timeout resolve 500ms
    timeout retry 500ms
    hold valid 5s
    hold obsolete 0s
    hold nx 1s
frontend web
    bind unix@%(sock)s
    default_backend api
backend api
    balance roundrobin
    server-template api 8 _api._tcp.service.discovery resolvers discovery \
init-addr none
"""


def backend(name):
    """An HTTP server on a free port that answers its own name."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=WAIT)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(self.path)


def who(sock):
    """Who answers one request through HAProxy (None: no server, 503)."""
    c = UnixHTTP(sock)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read().decode()
        return body if r.status == 200 else None
    except OSError:
        return None
    finally:
        c.close()


def answered_by(sock, n=24):
    return {who(sock) for _ in range(n)}


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="no haproxy")
def test_haproxy_follows_the_srv_name(tmp_path):
    d = Discoveryd(tmp_path, heartbeat=HEARTBEAT, dns=True)
    servers = {n: backend(n) for n in ("b1", "b2", "b3")}
    probes, hap = {}, None
    try:
        for n, srv in servers.items():
            probes[n] = Probe(d, "api", n,
                              "127.0.0.1:%d" % srv.server_address[1])
        probes["b1"].say("ready 1")
        probes["b2"].say("ready 1")
        # b3 is linked but never ready: it is not in the SRV answer.
        sock = os.path.join(str(tmp_path), "haproxy.sock")
        cfg = write(os.path.join(str(tmp_path), "haproxy.cfg"),
                    CONFIG % {"dns": d.dns_port, "sock": sock})
        hap = Proc([HAPROXY, "-db", "-f", cfg], "haproxy")
        wait_until(lambda: os.path.exists(sock), what="haproxy's socket")
        wait_until(lambda: answered_by(sock) == {"b1", "b2"},
                   what="both ready instances")
        for _ in range(3):
            assert answered_by(sock) == {"b1", "b2"}
        # b2 drains: HAProxy stops sending it requests.
        probes["b2"].say("draining 1")
        wait_until(lambda: answered_by(sock) == {"b1"},
                   what="b2 gone after draining")
        probes["b2"].say("draining 0")
        wait_until(lambda: answered_by(sock) == {"b1", "b2"},
                   what="b2 back")
        # b1's agent drops: its link closes, and so does its route.
        probes["b1"].p.stdin.close()
        probes["b1"].p.wait(WAIT)
        wait_until(lambda: answered_by(sock) == {"b2"},
                   what="b1 gone after its agent dropped")
        probes["b3"].say("ready 1")
        wait_until(lambda: answered_by(sock) == {"b2", "b3"},
                   what="b3 once ready")
    finally:
        if hap:
            hap.stop()
        for p in probes.values():
            p.stop()
        for srv in servers.values():
            srv.shutdown()
            srv.server_close()
        assert d.stop() == 0, d.text()
