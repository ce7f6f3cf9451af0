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


def test_events_follow(tmp_path):
    """events --follow prints events as they come, and after discoveryd
    dies and comes back it picks up where it was: none missed, none twice."""
    import signal
    from harness import Discoveryd, Proc
    d = Discoveryd(tmp_path)
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    _, first = d.call("POST", "/api/discovery/invalidate", {"keys": ["a"]})
    f = Proc([CTL, "-s", d.base, "--json", "events", "--after", "0",
              "--follow"], "follow", env=dict(os.environ, NO_COLOR="1"))
    try:
        f.wait_line(r'"seq":%d,' % first["seq"])
        _, second = d.call("POST", "/api/discovery/broadcast",
                           {"command": "Live"})
        f.wait_line(r'"seq":%d,.*"command":"Live"' % second["seq"])
        d.stop(signal.SIGKILL)
        d = Discoveryd(tmp_path, http_port=http, agents_port=agents)
        _, third = d.call("POST", "/api/discovery/invalidate", {"keys": ["c"]})
        f.wait_line(r'"seq":%d,' % third["seq"])
        seqs = [json.loads(l)["seq"] for l in f.lines if l.startswith("{")]
        assert seqs == [first["seq"], second["seq"], third["seq"]]
    finally:
        f.stop()
        assert d.stop() == 0


def test_bash_completion():
    """The completion script loads in bash and completes commands, roles
    and options."""
    from harness import ROOT
    script = os.path.join(ROOT, "discoveryd", "ctl", "discoveryctl.bash")

    def complete(*words):
        r = subprocess.run(
            ["bash", "-c", 'source "$0"; COMP_WORDS=("$@"); '
             'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _discoveryctl; '
             'echo "${COMPREPLY[@]}"', script, "discoveryctl"] + list(words),
            capture_output=True, text=True, check=True)
        return r.stdout.split()
    assert complete("inv") == ["invalidate"]
    assert complete("token", "issue", "--role", "") == ["agent", "admin",
                                                        "reader"]
    assert "--follow" in complete("events", "--")
    assert "put" in complete("webhooks", "")
    assert "--start-now" in complete("webhooks", "put", "a", "--")
    assert "--url" not in complete("webhooks", "list", "--")
