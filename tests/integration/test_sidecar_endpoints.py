"""The sidecar's watched endpoints: `watch` passes through to libagent;
GET /endpoints/SERVICE answers from the agent's own copy (in the daemon
API's shape, even with the daemon gone); the on_endpoints hook gets the
newest set on stdin, coalesced, so a slow hook sees the newest set next
and never a backlog; a hook with nothing watched, and bad values, are
refused when the config is read."""

import json
import os
import signal
import subprocess

from harness import BIN, Discoveryd, Sidecar, write
from sidecar_util import (Instance, by_instance, daemon_endpoints, http_get,
                          wait_until)

# What the daemon's endpoints carry that a watcher is not sent.
DAEMON_ONLY = ("meta",)


def local(side, service, query=""):
    return http_get("%s/endpoints/%s%s" % (side.health, service, query))


def test_get_endpoints_is_the_local_copy(tmp_path):
    d = Discoveryd(tmp_path)
    one = two = side = None
    try:
        one = Instance(d, "api", "api-1", "10.0.0.1:80", weight=7)
        one.say("ready 1")
        two = Instance(d, "api", "api-2", "[2001:db8::2]:443")
        side = Sidecar(tmp_path, d.ws_url, "web", "web-1",
                       extra="watch: [api, db]\n")
        side.wait_line(r"msg=linked")
        st, h, doc = wait_until(
            lambda: (lambda r: r[0] == 200 and len(r[2]["endpoints"]) == 2
                     and r)(local(side, "api", "?state=any")),
            what="both api endpoints")
        want = daemon_endpoints(d, "api")
        assert doc["index"] == want["index"] and doc["service"] == "api"
        assert h["X-Discovery-Index"] == str(doc["index"])
        for e in want["endpoints"]:
            for k in DAEMON_ONLY:
                del e[k]
        assert by_instance(doc) == by_instance(want)
        assert by_instance(doc)["api-2"]["host"] == "2001:db8::2"
        assert by_instance(doc)["api-2"]["port"] == 443
        # The default is ready ones, as the daemon's.
        st, _, ready = local(side, "api")
        assert st == 200 and list(by_instance(ready)) == ["api-1"]
        assert local(side, "api", "?state=ready")[2] == ready
        assert local(side, "api", "?tag=blue")[2]["endpoints"] == []
        st, _, db = local(side, "db")
        assert st == 200 and db["endpoints"] == []
        for query, status in (("?state=busy", 400), ("?tag=Bad", 400)):
            assert local(side, "api", query)[0] == status, query
        for service in ("cache", "Bad", "api/x", ""):
            st, _, body = local(side, service)
            assert st == 404 and body["error"] == "not_watched", service
        # No round trip: with the daemon gone the copy still answers.
        d.stop()
        side.wait_line(r"msg=unlinked")
        st, _, after = local(side, "api", "?state=any")
        assert st == 200 and after == doc
    finally:
        for p in (one, two):
            if p:
                p.stop()
        if side:
            assert side.stop() == 0, side.text()
        d.stop()


def hook(tmp_path):
    """on_endpoints: saves run N's stdin and environment as run-N.json,
    then waits for the file `go` (so a test holds it while sets change)."""
    out = str(tmp_path / "runs")
    os.makedirs(out)
    script = write(str(tmp_path / "on_endpoints.sh"),
                   "#!/bin/sh\nd=%s\nn=$(ls $d | grep -c '^run-')\n"
                   "{ printf '{\"service\":\"%%s\",\"index\":\"%%s\","
                   "\"kind\":\"%%s\",\"stdin\":' \"$DISCOVERY_SERVICE\" "
                   "\"$DISCOVERY_INDEX\" \"$DISCOVERY_KIND\"; cat; "
                   "echo '}'; } > $d/.tmp\nmv $d/.tmp $d/run-$n.json\n"
                   "while [ ! -e %s/go ]; do sleep 0.02; done\n"
                   % (out, str(tmp_path)))
    os.chmod(script, 0o755)
    return script, out


def run(out, n):
    with open(os.path.join(out, "run-%d.json" % n)) as f:
        return json.load(f)


def test_a_slow_hook_sees_the_newest_set_not_a_backlog(tmp_path, daemon):
    script, out = hook(tmp_path)
    one = Instance(daemon, "api", "api-1", "10.0.0.1:80")
    side = None
    try:
        one.say("ready 1")
        wait_until(lambda: by_instance(daemon_endpoints(daemon, "api"))
                   .get("api-1", {}).get("state") == "ready")
        side = Sidecar(tmp_path, daemon.ws_url, "web", "web-1",
                       extra="watch: [api]\nlog_level: debug\n"
                             "hooks:\n  on_endpoints: %s\n  timeout: 10m\n"
                             % script)
        # Run 0: the welcome's set; the hook now holds the thread.
        side.wait_line(r"msg=hook_queued hook=on_endpoints service=api")
        wait_until(lambda: os.path.exists(os.path.join(out, "run-0.json")))
        first = run(out, 0)
        assert first["kind"] == "endpoints" and first["service"] == "api"
        assert first["index"] == str(first["stdin"]["index"])
        assert [e["state"] for e in first["stdin"]["endpoints"]] == ["ready"]

        # Changes while it runs, each a set of its own (each waited for
        # in the agent's copy, so the daemon cannot merge them).
        for i in range(1, 11):
            one.say("load %.2f" % (i / 100))
            final = wait_until(
                lambda: (lambda r: r[2]["endpoints"][0]["load"] == i / 100
                         and r[2])(local(side, "api")), what="load %d" % i)
        # Its set has reached the hook queue (the callback came).
        side.wait_line(r"msg=hook_queued hook=on_endpoints service=api "
                       r"index=%d " % final["index"])
        write(str(tmp_path / "go"), "")
        side.wait_line(r"msg=hook hook=on_endpoints .*status=exit:0 "
                       r".*index=%d" % final["index"])
        assert run(out, 1)["stdin"] == final
        # One more change: the next run is that one, nothing stale between.
        one.say("draining 1")
        side.wait_line(r"msg=hook hook=on_endpoints .*status=exit:0 .*"
                       r"run=3 ")
        last = run(out, 2)["stdin"]
        assert last["index"] > final["index"]
        assert last["endpoints"][0]["state"] == "draining"
        assert side.count(r"msg=hook hook=on_endpoints") == 3
        assert not os.path.exists(os.path.join(out, "run-3.json"))
    finally:
        if side:
            assert side.stop() == 0
        one.stop()


def check(tmp_path, text):
    path = write(str(tmp_path / "check.yaml"),
                 "discovery: [ws://127.0.0.1:1]\nservice: web\n" + text)
    r = subprocess.run([os.path.join(BIN, "discovery-agent"), "-t", "-c",
                        path], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test_bad_sidecar_values_are_refused(tmp_path):
    ok = check(tmp_path, "watch: [api]\nhooks:\n  on_endpoints: /bin/true\n"
                         "drain: 0\nload_command: echo 0.5\n"
                         "load_interval: 100ms\n")
    assert ok == (0, "configuration OK\n"), ok
    for text, key in (
            # A hook for endpoints nothing watches.
            ("hooks:\n  on_endpoints: /bin/true\n", "hooks.on_endpoints"),
            ("depends_on: []\nwatch_depends_on: true\n"
             "hooks:\n  on_endpoints: /bin/true\n", "hooks.on_endpoints"),
            ("drain: 5\n", "drain"),
            ("drain: -1s\n", "drain"),
            ("drain: 2h\n", "drain"),
            ("drain: soon\n", "drain"),
            ("load_interval: 10ms\n", "load_interval"),
            ("load_interval: often\n", "load_interval"),
            ("load_timeout: 0\n", "load_timeout"),
            ("load_command: [a]\n", "load_command")):
        rc, said = check(tmp_path, text)
        assert rc != 0 and key in said, (text, said)
