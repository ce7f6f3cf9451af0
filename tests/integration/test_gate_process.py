"""discovery-gate as a process: -t, -h, -V, config errors with positions,
SIGHUP reloads the locked answers' policy, SIGTERM lets requests in flight
finish, and a loading_page file replaces the default page."""

import os
import signal
import subprocess
import threading

from gate_harness import Gate, Upstream
from harness import BIN, write

GATE = os.path.join(BIN, "discovery-gate")


def run(*args):
    p = subprocess.run([GATE] + list(args), capture_output=True, text=True,
                       timeout=15)
    return p.returncode, p.stdout + p.stderr


def test_flags_and_check(tmp_path):
    assert run("-h")[0] == 0 and "usage" in run("-h")[1]
    rc, out = run("-V")
    assert rc == 0 and out.startswith("discovery-gate ")
    good = write(os.path.join(str(tmp_path), "g.yaml"),
                 "upstream: http://127.0.0.1:3000\nrequires: [cache]\n"
                 "discovery: [ws://127.0.0.1:5917]\nservice: web\n")
    assert run("-t", "-c", good) == (0, "configuration OK\n")
    bad = write(os.path.join(str(tmp_path), "b.yaml"),
                "upstream: http://127.0.0.1:3000\ndiscovery: ws://x:1\n"
                "service: web\nlatch: maybe\n")
    rc, out = run("-t", "-c", bad)
    assert rc != 0 and out.startswith(bad + ":4:8: "), out
    odd = write(os.path.join(str(tmp_path), "d.yaml"),
                "upstream: http://127.0.0.1:3000\ndiscovery: ws://x:1\n"
                "service: web\nrequires: [Bad Name]\n")
    rc, out = run("-t", "-c", odd)
    assert rc != 0 and out.startswith(odd), out
    assert run("-t", "-c", "/nonexistent.yaml")[0] != 0


def test_requires_is_depends_on(tmp_path):
    """`requires:` is libagent's depends_on under the gate's name: either
    spelling, not both, and libagent's errors about its value point into
    the user's file, at the line and column."""
    head = ("upstream: http://127.0.0.1:3000\ndiscovery: ws://x:1\n"
            "service: web\n")

    def check(name, text):
        path = write(os.path.join(str(tmp_path), name), head + text)
        rc, out = run("-t", "-c", path)
        return rc, out, path

    for text in ("requires: [a, b]\n", "depends_on: [a, b]\n",
                 "\"requires\": [a]\n", "requires: []\n"):
        assert check("ok.yaml", text)[:2] == (0, "configuration OK\n"), text
    rc, out, path = check("both.yaml", "requires: [a]\nlatch: true\n"
                          "depends_on: [b]\n")
    assert rc != 0 and out == (path + ":6:1: 'depends_on' and 'requires' "
                               "are the same key; keep one\n"), out
    rc, out, path = check("map.yaml", "requires: {a: b}\n")
    assert rc != 0 and out == (path + ":4:11: 'requires' must be a string "
                               "or a list of strings\n"), out
    rc, out, path = check("entry.yaml", "requires:\n  - a\n  - [b]\n")
    assert rc != 0 and out == (path + ":6:5: entries of 'requires' must "
                               "be strings\n"), out
    rc, out, path = check("many.yaml", "requires: [%s]\n" % ", ".join(
        "s%d" % i for i in range(65)))
    assert rc != 0 and out.startswith(path + ":4:11: 'requires' has 65 "
                                      "entries"), out


def test_reload_and_loading_page(daemon, tmp_path):
    u = Upstream()
    page = write(os.path.join(str(tmp_path), "page.html"),
                 "<html><body>Custom: {{waiting_for}}</body></html>")
    g = Gate(tmp_path, daemon, u.url)
    try:
        g.wait_line(r"msg=linked")
        assert g.request("GET", "/")[0] == 423
        with open(g.config, "a") as f:
            f.write("locked_status: 503\nretry_after: 30s\n"
                    "loading_page: %s\n" % page)
        mark = g.mark()
        g.kill(signal.SIGHUP)
        g.wait_line(r"msg=reloaded", start=mark)
        status, h, body = g.request("GET", "/", headers={"Accept": "text/html"})
        assert status == 503 and h["retry-after"] == ["30"]
        assert body == b"<html><body>Custom: cache</body></html>"
        # A broken file is refused and the running policy kept.
        with open(g.config, "a") as f:
            f.write("latch: maybe\n")
        mark = g.mark()
        g.kill(signal.SIGHUP)
        g.wait_line(r"msg=reload_failed", start=mark)
        assert g.request("GET", "/")[0] == 503
    finally:
        assert g.stop() == 0, g.text()
        u.stop()


def test_sigterm_drains_requests_in_flight(daemon, tmp_path):
    u = Upstream()
    g = Gate(tmp_path, daemon, u.url, requires=())
    result = {}

    def slow():
        result["r"] = g.request("GET", "/slow?ms=700")

    try:
        t = threading.Thread(target=slow)
        t.start()
        u.wait_line(r"msg=slow_started")  # the request is in flight
        mark = g.mark()
        g.kill(signal.SIGTERM)
        g.wait_line(r"msg=stopping", start=mark)
        t.join(10)
        assert result["r"][0] == 200, result
        assert g.stop() == 0
        g.wait_line(r"msg=drained unfinished=0")
    finally:
        g.stop()
        u.stop()
