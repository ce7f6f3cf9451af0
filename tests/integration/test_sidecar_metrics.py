"""The sidecar's GET /metrics on its health listener: Prometheus text that
promtool and the Python client's parser read (label values escaped), with
its readiness and its dependencies' (and when each was last ready), the
link (across a daemon restart) and the drain, and each hook run counted
by hook and result."""

import signal
import subprocess
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from harness import WAIT, Discoveryd, Sidecar
from sidecar_util import wait_until

TYPE = "text/plain; version=0.0.4; charset=utf-8"


def scrape(car):
    """{(name, frozenset(labels)): value}, checked by promtool first."""
    with urllib.request.urlopen(car.health + "/metrics", timeout=WAIT) as r:
        assert r.status == 200 and r.headers["Content-Type"] == TYPE
        text = r.read().decode()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=WAIT)
    assert lint.returncode == 0, lint.stdout + lint.stderr + text
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def has(car, name, want, **labels):
    return value(scrape(car), name, **labels) == want


def declare(d, service, what):
    st, body = d.call("POST", "/api/discovery/services/%s/%s" %
                      (service, what))
    assert st == 200, body


def test_readiness_and_escaping(tmp_path, daemon):
    d = daemon
    # Every printable byte may be in an instance id: " and \ need escapes.
    instance = 'we"b\\1{x}=,'
    car = Sidecar(tmp_path, d.ws_url, "web", instance,
                  depends_on=("cache", "api"), name="agent-odd")
    try:
        wait_until(lambda: has(car, "discovery_agent_linked", 1),
                   what="linked")
        m = scrape(car)
        assert value(m, "discovery_agent_info", agent_service="web",
                     agent_instance=instance, version="0.1.0") == 1
        assert value(m, "discovery_agent_node_info", node="test-node") == 1
        assert value(m, "discovery_agent_links_total") == 1
        assert value(m, "discovery_agent_ready") == 0
        for dep in ("cache", "api"):
            assert value(m, "discovery_agent_dependency_ready",
                         dependency=dep) == 0
            # Never ready since the sidecar started.
            assert value(m, "discovery_agent_dependency_last_ready_"
                         "timestamp_seconds", dependency=dep) == 0

        declare(d, "cache", "ready")
        declare(d, "api", "ready")
        wait_until(lambda: has(car, "discovery_agent_ready", 1),
                   what="ready")
        assert car.ready_status() == 200
        m = scrape(car)
        last = "discovery_agent_dependency_last_ready_timestamp_seconds"
        # Ready now: the gauge is now.
        assert abs(value(m, last, dependency="api") - time.time()) < 5
        assert value(m, "discovery_agent_events_total") >= 2

        declare(d, "api", "notready")
        gone = time.time()
        wait_until(lambda: has(car, "discovery_agent_dependency_ready", 0,
                               dependency="api"), what="api not ready")
        time.sleep(0.3)  # time must pass for the gauge to stay behind
        m = scrape(car)
        # When it was last ready: before the notready, not now.
        t = value(m, last, dependency="api")
        assert gone - 5 < t <= gone + 0.05, (t, gone)
        assert time.time() - value(m, last, dependency="cache") < 5
        assert value(m, "discovery_agent_ready") == 0
    finally:
        assert car.stop() == 0


def test_hook_runs_are_counted(tmp_path, daemon):
    d = daemon
    car = Sidecar(tmp_path, d.ws_url, "web", "web-1", extra=(
        "hooks:\n"
        "  on_invalidate: grep -q '\"ok\"'\n"
        "  on_command: sleep 5\n"
        "  timeout: 300ms\n"))
    runs = "discovery_agent_hook_runs_total"
    try:
        m = scrape(car)
        # Configured hooks show every result from 0; others none.
        for hook in ("on_invalidate", "on_command"):
            for result in ("ok", "failed", "signal", "timeout", "cancelled",
                           "error"):
                assert value(m, runs, hook=hook, result=result) == 0
        assert not [k for k in m if k[0] == runs and
                    ("hook", "on_readiness") in k[1]]

        for keys in (["ok"], ["no"], ["ok"]):
            mark = car.mark()
            st, body = d.call("POST", "/api/discovery/invalidate",
                              {"keys": keys, "service": "web"})
            assert st == 202, body
            car.wait_line(r"msg=hook hook=on_invalidate .*status=exit:%d" %
                          (0 if keys == ["ok"] else 1), start=mark)
        mark = car.mark()
        st, body = d.call("POST", "/api/discovery/broadcast",
                          {"command": "Go", "target": {"service": "web"}})
        assert st == 202, body
        car.wait_line(r"msg=hook hook=on_command .*status=timeout",
                      start=mark)
        # The line is written after the count: no wait needed.
        m = scrape(car)
        assert value(m, runs, hook="on_invalidate", result="ok") == 2
        assert value(m, runs, hook="on_invalidate", result="failed") == 1
        assert value(m, runs, hook="on_command", result="timeout") == 1
        assert value(m, runs, hook="on_command", result="ok") == 0
        assert value(m, "discovery_agent_hooks_waiting") == 0
        assert value(m, "discovery_agent_hooks_dropped_total") == 0
    finally:
        assert car.stop() == 0


def test_link_and_drain(tmp_path):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
    d = Discoveryd(tmp_path / "one")
    port = int(d.agents_addr.rsplit(":", 1)[1])
    car = Sidecar(tmp_path, d.ws_url, "web", "web-1", extra="drain: 10m\n")
    try:
        wait_until(lambda: has(car, "discovery_agent_linked", 1),
                   what="linked")
        assert d.stop() == 0
        wait_until(lambda: has(car, "discovery_agent_linked", 0),
                   what="unlinked")
        wait_until(lambda: value(scrape(car), "discovery_agent_connect_"
                                 "failures_total") >= 1,
                   what="a failed attempt")
        m = scrape(car)
        assert value(m, "discovery_agent_unlinks_total") == 1
        assert value(m, "discovery_agent_link_attempts") >= 1
        # The same port again: the agent links again.
        d = Discoveryd(tmp_path / "two", agents_port=port)
        wait_until(lambda: has(car, "discovery_agent_links_total", 2),
                   what="linked again")
        m = scrape(car)
        assert value(m, "discovery_agent_linked") == 1
        assert value(m, "discovery_agent_link_attempts") == 0

        assert value(m, "discovery_agent_draining") == 0
        mark = car.mark()
        car.kill(signal.SIGTERM)
        car.wait_line(r"msg=draining", start=mark)
        m = scrape(car)
        assert value(m, "discovery_agent_draining") == 1
        assert value(m, "discovery_agent_ready") == 0
        car.kill(signal.SIGINT)
        assert car.p.wait(WAIT) == 0
    finally:
        car.stop()
        assert d.stop() == 0
