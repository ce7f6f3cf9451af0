"""Debian's prometheus, configured with the scrape config and the rules of
docs/operations.md (taken from the page itself), finds real sidecars
through a real discoveryd's HTTP service discovery (auth on: a reader
token), scrapes their /metrics, drops a sidecar from its targets as soon
as it drains, and records the time since a service was last ready."""

import json
import os
import re
import signal
import subprocess
import urllib.parse
import urllib.request

import yaml

from cluster_harness import free_port
from harness import ROOT, WAIT, Discoveryd, Proc, Sidecar, write
from sidecar_util import wait_until
from test_auth import bearer, issue, secret

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
# Prometheus and its SD refresh a second apart: leave it a few rounds.
SLOW = WAIT * 2


def doc_block(key):
    """The YAML block of docs/operations.md that holds key, parsed."""
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        text = f.read()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    found = [b for b in blocks if re.search(r"^%s:" % key, b, re.M)]
    assert len(found) == 1, "docs/operations.md: one %s block" % key
    return yaml.safe_load(found[0])


def prometheus_config(tmp, d, token_file, rules_file):
    """The doc's scrape config, pointed at d, every second."""
    scrape = doc_block("scrape_configs")
    for job in scrape["scrape_configs"]:
        job["scrape_interval"] = "1s"
        if "authorization" in job:
            job["authorization"]["credentials_file"] = token_file
        for static in job.get("static_configs", []):
            static["targets"] = [d.http_addr]
        for sd in job.get("http_sd_configs", []):
            url = urllib.parse.urlsplit(sd["url"])
            sd["url"] = urllib.parse.urlunsplit(
                url._replace(netloc=d.http_addr))
            sd["refresh_interval"] = "1s"
            sd["authorization"]["credentials_file"] = token_file
    scrape["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    scrape["rule_files"] = [rules_file]
    # YAML is a superset of JSON: no emitter needed.
    return write(os.path.join(tmp, "prometheus.yml"), json.dumps(scrape))


class Prometheus(Proc):
    def __init__(self, tmp, config):
        self.base = "http://127.0.0.1:%d" % free_port()
        super().__init__([PROMETHEUS, "--config.file=" + config,
                          "--web.listen-address=" + self.base[7:],
                          "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                          "--log.level=info"], "prometheus")
        self.wait_line(r"Server is ready to receive web requests", timeout=SLOW)

    def api(self, path, **query):
        url = self.base + "/api/v1/" + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=WAIT) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def targets(self, job):
        """{instance label: target} of job's active targets."""
        return {t["labels"].get("instance"): t
                for t in self.api("targets", state="active")["activeTargets"]
                if t["labels"]["job"] == job}

    def query(self, expr):
        """{instance label (or service label): value} of an instant query."""
        return {r["metric"].get("instance", r["metric"].get("service")):
                float(r["value"][1])
                for r in self.api("query", query=expr)["result"]}


def check(*args):
    r = subprocess.run([PROMTOOL, "check"] + list(args), capture_output=True,
                       text=True, timeout=WAIT)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_prometheus_finds_scrapes_and_drops_sidecars(tmp_path):
    tmp = str(tmp_path)
    key = secret(tmp_path, "secret")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % key)
    reader = write(os.path.join(tmp, "reader.token"),
                   issue(key, "reader") + "\n")
    agent = write(os.path.join(tmp, "web.token"),
                  issue(key, "agent", "web") + "\n")
    admin = bearer(issue(key, "admin"))
    rules = write(os.path.join(tmp, "rules.yml"),
                  json.dumps(doc_block("groups")))
    assert "SUCCESS: 3 rules found" in check("rules", rules)
    config = prometheus_config(tmp, d, reader, rules)
    check("config", config)

    st, _ = d.call("POST", "/api/discovery/services/cache/ready",
                   headers=admin)
    assert st == 200
    cars, prom = {}, None
    try:
        for name in ("web-1", "web-2"):
            port = free_port()
            cars[name] = Sidecar(
                tmp_path, d.ws_url, "web", name, depends_on=("cache",),
                health_listen="127.0.0.1:%d" % port,
                extra="address: 127.0.0.1:%d\ntoken_file: %s\n"
                      "meta:\n  metrics_port: %d\ndrain: 10m\n" %
                      (free_port(), agent, port))
            cars[name].port = port
        prom = Prometheus(tmp, config)

        # Both sidecars, found through discoveryd, scraped at their
        # health port, labelled with their service and instance id.
        found = wait_until(
            lambda: (lambda t: set(t) == set(cars) and
                     all(x["health"] == "up" for x in t.values()) and t)(
                prom.targets("discovery-agents")),
            timeout=SLOW, what="both sidecars up")
        for name, t in found.items():
            assert t["labels"]["service"] == "web"
            assert t["labels"]["discovery_node"] == "test-node"
            assert t["scrapeUrl"] == \
                "http://127.0.0.1:%d/metrics" % cars[name].port
        wait_until(lambda: list(prom.targets("discoveryd").values())[0][
            "health"] == "up", timeout=SLOW, what="discoveryd scraped")

        # Their metrics, as scraped.
        wait_until(lambda: prom.query(
            'discovery_agent_linked{job="discovery-agents"}') ==
            {"web-1": 1.0, "web-2": 1.0}, timeout=SLOW, what="linked")
        assert prom.query('discovery_agent_ready{service="web"}') == \
            {"web-1": 1.0, "web-2": 1.0}
        since = "service:discovery_seconds_since_ready:min"
        wait_until(lambda: 0 <= prom.query(since).get("cache", -1) < 10,
                   timeout=SLOW, what="cache ready lately")

        # A drain takes web-2 out of the targets while it still runs.
        cars["web-2"].kill(signal.SIGTERM)
        cars["web-2"].wait_line(r"msg=draining")
        wait_until(lambda: set(prom.targets("discovery-agents")) ==
                   {"web-1"}, timeout=SLOW, what="web-2 dropped")
        assert cars["web-2"].p.poll() is None, "it left before it drained"

        # Not ready: the time since it was grows past the scrapes.
        st, _ = d.call("POST", "/api/discovery/services/cache/notready",
                       headers=admin)
        assert st == 200
        wait_until(lambda: prom.query(since).get("cache", 0) > 3,
                   timeout=SLOW, what="cache not ready for 3 s")
        assert prom.query('discovery_agent_dependency_ready{instance='
                          '"web-1"}') == {"web-1": 0.0}
    finally:
        if prom:
            assert prom.stop() == 0, prom.text()[-3000:]
        for car in cars.values():
            car.kill(signal.SIGINT)
            assert car.stop() == 0
        assert d.stop() == 0
