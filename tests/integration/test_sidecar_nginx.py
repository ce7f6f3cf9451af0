"""conf/nginx-upstream.sh with a real nginx: a sidecar watching `api`
runs it on every endpoint change; nginx proxies to real HTTP backends that
say who they are. Requests reach only ready instances; after one turns
not ready, or draining (SIGTERM with a drain), nginx stops sending to it."""

import http.client
import http.server
import os
import shutil
import signal
import socket
import threading
import time

import pytest

from harness import ROOT, WAIT, Proc, Sidecar, write
from sidecar_util import wait_until
from test_gate_nginx import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HOOK = os.path.join(ROOT, "conf", "nginx-upstream.sh")

pytestmark = pytest.mark.skipif(
    not os.path.exists(NGINX) or not shutil.which("jq"),
    reason="nginx or jq is not installed")


class Backend:
    """An HTTP server answering every GET with its name."""

    def __init__(self, name):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.addr = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def start_nginx(tmp, upstream):
    """nginx with a master (a reload is SIGHUP to it), proxying / to the
    upstream `api` that the hook writes."""
    port = free_port()
    prefix = os.path.join(str(tmp), "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = write(os.path.join(prefix, "nginx.conf"),
                 "daemon off;\nworker_processes 1;\n"
                 "pid %s/nginx.pid;\nerror_log stderr warn;\n"
                 "events { worker_connections 256; }\n"
                 "http {\n access_log off;\n"
                 " client_body_temp_path %s/body;\n"
                 " proxy_temp_path %s/proxy;\n"
                 " fastcgi_temp_path %s/fcgi;\n uwsgi_temp_path %s/uwsgi;\n"
                 " scgi_temp_path %s/scgi;\n include %s;\n"
                 " server {\n  listen 127.0.0.1:%d;\n"
                 "  location / { proxy_pass http://api; }\n }\n}\n" %
                 ((prefix,) * 6 + (upstream, port)))
    p = Proc([NGINX, "-p", prefix, "-c", conf], "nginx")
    pid = os.path.join(prefix, "nginx.pid")
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            up = True
        except OSError:
            up = False
        if up and os.path.exists(pid):
            return p, port, pid
        if p.p.poll() is not None or time.monotonic() > deadline:
            p.stop(signal.SIGQUIT)
            raise AssertionError("nginx did not start:\n" + p.text())
        time.sleep(0.02)


def http_get(port):
    """The backend's name nginx reached, or None (a 502, say)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read().decode()
        return body if r.status == 200 else None
    finally:
        c.close()


def served(port, n=30):
    return [http_get(port) for _ in range(n)]


def only(port, names):
    """Poll until n requests in a row reach only names (a reload takes a
    moment); then n more must too."""
    def settled():
        got = served(port)
        return set(got) <= names and None not in got
    wait_until(settled, timeout=2 * WAIT, what="only %s" % sorted(names))
    got = served(port)
    assert set(got) <= names and None not in got, got
    return set(got)


def test_nginx_sends_only_to_ready_instances(tmp_path, daemon):
    backends = {i: Backend("api-%d" % i) for i in (1, 2, 3)}
    ready = {i: str(tmp_path / ("ready-%d" % i)) for i in (1, 2, 3)}
    for i in (1, 2):
        write(ready[i], "")
    upstream = str(tmp_path / "api-upstream.conf")
    write(upstream, "upstream api { server 127.0.0.1:9 down; }\n")
    apis, lb, nginx = [], None, None
    try:
        for i, weight in ((1, 300), (2, 100), (3, 100)):
            apis.append(Sidecar(
                tmp_path, daemon.ws_url, "api", "api-%d" % i,
                extra="address: %s\nweight: %d\nready: \"test -e %s\"\n"
                      "ready_interval: 100ms\ndrain: 10m\n" %
                      (backends[i].addr, weight, ready[i])))
        nginx, port, pid = start_nginx(tmp_path, upstream)
        lb = Sidecar(tmp_path, daemon.ws_url, "lb", "lb-1",
                     extra="watch: [api]\nhooks:\n  on_endpoints: "
                           "NGINX_UPSTREAM_FILE=%s NGINX_PID_FILE=%s %s\n"
                           % (upstream, pid, HOOK))
        lb.wait_line(r"msg=hook hook=on_endpoints .*status=exit:0")
        # api-3 is not ready: it never gets a request.
        assert only(port, {"api-1", "api-2"}) == {"api-1", "api-2"}
        with open(upstream) as f:
            text = f.read()
        assert "server %s weight=300; # api-1" % backends[1].addr in text
        assert backends[3].addr not in text

        # api-2 turns not ready.
        os.unlink(ready[2])
        assert only(port, {"api-1"}) == {"api-1"}

        # api-3 turns ready; api-1 is stopped and drains.
        write(ready[3], "")
        mark = apis[0].mark()
        apis[0].kill(signal.SIGTERM)
        apis[0].wait_line(r"msg=draining", start=mark)
        assert only(port, {"api-3"}) == {"api-3"}
        assert apis[0].p.poll() is None  # still up: it was the drain
        apis[0].kill(signal.SIGTERM)
        assert apis[0].p.wait(WAIT) == 0

        # None ready: the placeholder, marked down; nginx answers 502.
        os.unlink(ready[3])
        wait_until(lambda: served(port, 5) == [None] * 5,
                   timeout=2 * WAIT, what="no ready endpoint")
        assert lb.count(r"msg=hook hook=on_endpoints .*status=exit:[1-9]") \
            == 0, lb.text()
    finally:
        for p in [lb] + apis:
            if p:
                p.stop(signal.SIGINT)
        if nginx:
            nginx.stop(signal.SIGQUIT)
        for b in backends.values():
            b.stop()
