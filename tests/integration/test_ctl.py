"""discoveryctl against a real daemon: each command, --json, exit codes."""

import json
import os
import subprocess

from harness import BIN

CTL = os.path.join(BIN, "discoveryctl")


def ctl(daemon, *args, server=None):
    r = subprocess.run([CTL, "-s", server or daemon.base] + list(args),
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, NO_COLOR="1"))
    return r.returncode, r.stdout, r.stderr


def test_declarations(daemon):
    rc, out, _ = ctl(daemon, "--json", "ready", "api", "--ttl", "30s")
    body = json.loads(out)
    assert rc == 0 and body["ready"] and body["declared"] == "ready"
    assert 0 < body["ttl_ms"] <= 30000
    assert ctl(daemon, "notready", "api")[0] == 0
    rc, out, _ = ctl(daemon, "services")
    assert rc == 0 and "api" in out and "notready" in out
    rc, out, _ = ctl(daemon, "--json", "auto", "api")
    assert rc == 0 and json.loads(out)["declared"] is None


def test_events(daemon):
    rc, out, _ = ctl(daemon, "--json", "invalidate", "--service", "web",
                     "k1", "k2")
    assert rc == 0 and json.loads(out)["delivered"] == 0
    rc, out, _ = ctl(daemon, "--json", "broadcast", "--service", "web",
                     "--instance", "web-1", "--command", "Reload",
                     "--header", "n=1", "--value", '{"a":[1]}')
    assert rc == 0 and "seq" in json.loads(out)
    rc, out, _ = ctl(daemon, "--json", "cacheready")
    assert rc == 0 and json.loads(out)["service"] == "cache"
    rc, out, _ = ctl(daemon, "agents")
    assert rc == 0


def test_exit_codes(daemon):
    assert ctl(daemon, "service", "ghost")[0] == 4          # 404
    rc, _, err = ctl(daemon, "auto", "ghost")
    assert rc == 4 and "no such service" in err
    assert ctl(daemon, "ready", "Bad Name")[0] == 2          # checked locally
    assert ctl(daemon, "ready", "api", "--ttl", "soon")[0] == 2
    assert ctl(daemon, "broadcast", "--value", "{x")[0] == 2
    assert ctl(daemon, "frobnicate")[0] == 2
    assert ctl(daemon, "services", server="http://127.0.0.1:1")[0] == 3
