"""The nginx example (auth_request on /.well-known/discovery-gate/check,
error_page 403 = @locked) with a real nginx: locked, nginx answers the
gate's real 423 (JSON or the loading page); open, nginx proxies to the app
itself."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from gate_harness import Gate, Upstream
from harness import ROOT, WAIT, Proc, write

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXAMPLES = [os.path.join(ROOT, "conf", "nginx-gate.conf")]

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX),
                                reason="nginx is not installed")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nginx(tmp, gate_addr, app_addr):
    example = next(p for p in EXAMPLES if os.path.exists(p))
    port = free_port()
    with open(example) as f:
        site = (f.read().replace("127.0.0.1:8080", gate_addr)
                .replace("127.0.0.1:3000", app_addr)
                .replace("127.0.0.1:8000", "127.0.0.1:%d" % port))
    prefix = os.path.join(str(tmp), "nginx")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    write(os.path.join(prefix, "site.conf"), site)
    conf = write(os.path.join(prefix, "nginx.conf"),
                 "daemon off;\nmaster_process off;\nworker_processes 1;\n"
                 "pid %s/nginx.pid;\nerror_log stderr warn;\n"
                 "events { worker_connections 256; }\n"
                 "http {\n access_log off;\n"
                 " client_body_temp_path %s/body;\n"
                 " proxy_temp_path %s/proxy;\n"
                 " fastcgi_temp_path %s/fcgi;\n uwsgi_temp_path %s/uwsgi;\n"
                 " scgi_temp_path %s/scgi;\n include %s/site.conf;\n}\n" %
                 ((prefix,) * 6 + (prefix,)))
    p = Proc([NGINX, "-p", prefix, "-c", conf], "nginx")
    # nginx logs nothing when it is up: wait for its port to accept.
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert p.p.poll() is None, p.text()
            assert time.monotonic() < deadline, p.text()
            time.sleep(0.02)
    return p, port


def get(port, path, accept=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        c.request("GET", path, headers={"Accept": accept} if accept else {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def test_nginx_auth_request(daemon, tmp_path):
    u = Upstream()
    g = Gate(tmp_path, daemon, u.url)
    nginx = None
    try:
        g.wait_line(r"msg=linked")
        nginx, port = start_nginx(tmp_path, g.addr, u.addr)
        status, h, body = get(port, "/echo")
        assert status == 423, body
        assert h["retry-after"] == "5"
        assert json.loads(body)["waiting_for"] == ["cache"]
        status, h, body = get(port, "/", "text/html")
        assert status == 423 and b"Application components are loading" in body
        status, _, body = get(port, "/.well-known/discovery-gate")
        assert status == 200 and json.loads(body)["open"] is False

        mark = g.mark()
        daemon.call("POST", "/api/discovery/cacheready")
        g.wait_line(r"msg=open why=", start=mark)
        status, h, body = get(port, "/echo")
        assert status == 200
        e = json.loads(body)
        # nginx, not the gate, proxied it: no Via from the gate.
        assert not any(k.lower() == "via" for k, _ in e["headers"])
        status, _, body = get(port, "/")
        assert status == 200 and b"The app is here" in body
    finally:
        if nginx:
            nginx.stop()
        assert g.stop() == 0, g.text()
        u.stop()
