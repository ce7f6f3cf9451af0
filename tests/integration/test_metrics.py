"""/metrics in the Prometheus text format, parsed by the real client
library (python3-prometheus-client): agents by service, links opened and
closed by reason, events by kind, the delivery latency histogram, queue
drops, HTTP requests by route and code, journal fsync latency, cluster."""

import asyncio
import json
import os
import urllib.request

import websockets
from prometheus_client.parser import text_string_to_metric_families

from harness import Discoveryd, WAIT, ws_run


def scrape(d, headers=None):
    req = urllib.request.Request(d.base + "/metrics", headers=headers or {})
    with urllib.request.urlopen(req, timeout=WAIT) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_metrics(daemon):
    async def scenario():
        a = await websockets.connect(daemon.ws_url, subprotocols=["discovery.v1"])
        await a.send(json.dumps({"type": "hello", "service": "web",
                                 "instance": "w1", "depends_on": ["cache"]}))
        await a.recv()
        bad = await websockets.connect(daemon.ws_url,
                                       subprotocols=["discovery.v1"])
        await bad.send("{nope")
        await bad.wait_closed()
        daemon.call("POST", "/api/discovery/cacheready")
        daemon.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
        await a.recv()
        await a.recv()
        s = scrape(daemon)
        await a.close()
        return s

    s = ws_run(scenario())
    assert value(s, "discovery_agents_connected", service="web") == 1
    assert value(s, "discovery_links_opened_total") == 2
    assert value(s, "discovery_links_closed_total", reason="invalid") == 1
    assert value(s, "discovery_events_total", kind="readiness") == 1
    assert value(s, "discovery_events_total", kind="invalidate") == 1
    assert value(s, "discovery_delivery_seconds_count") >= 2
    assert value(s, "discovery_delivery_seconds_bucket", le="+Inf") == \
        value(s, "discovery_delivery_seconds_count")
    assert value(s, "discovery_journal_fsync_seconds_count") >= 2
    assert value(s, "discovery_service_ready", service="cache") == 1
    assert value(s, "discovery_cluster_enabled") == 0
    assert value(s, "discovery_http_requests_total",
                 route="/api/discovery/cacheready", code="200") == 1
    assert value(s, "discovery_http_requests_total",
                 route="/api/discovery/invalidate", code="202") == 1
    daemon.call("GET", "/api/discovery/services/ghost")
    s = scrape(daemon)
    assert value(s, "discovery_http_requests_total",
                 route="/api/discovery/services/{name}", code="404") == 1
    assert value(s, "discovery_send_queue_drops_total") == 0


def test_metrics_need_a_reader_token(tmp_path):
    secret = os.path.join(str(tmp_path), "s")
    with open(secret, "w") as f:
        f.write("x" * 40)
    os.chmod(secret, 0o600)
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % secret)
    try:
        import subprocess
        from harness import BIN
        token = subprocess.run(
            [os.path.join(BIN, "discoveryctl"), "token", "issue", "--role",
             "reader", "--secret-file", secret], capture_output=True,
            text=True, check=True).stdout.strip()
        try:
            scrape(d)
            assert False, "no token must be refused"
        except urllib.error.HTTPError as e:
            assert e.code == 401
        s = scrape(d, {"Authorization": "Bearer " + token})
        assert value(s, "discovery_cluster_enabled") == 0
    finally:
        assert d.stop() == 0
