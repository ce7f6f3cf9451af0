"""GET /api/discovery/sd/prometheus: the ready endpoints in Prometheus's
HTTP SD format, one target group per endpoint, from real sidecars on a
real discoveryd (and two cluster nodes); ?service= filters, bad filters
are 400, and the reader role is needed when auth is on."""

import json
import re
import signal
import urllib.error
import urllib.request

from harness import WAIT, Discoveryd, Sidecar
from cluster_harness import node
from sidecar_util import wait_until
from test_auth import bearer, issue, secret

SD = "/api/discovery/sd/prometheus"
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def get(d, query="", headers=None, method="GET"):
    """(status, Content-Type, parsed body)."""
    req = urllib.request.Request(d.base + SD + query, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            st, ct, text = r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        st, ct, text = e.code, e.headers["Content-Type"], e.read()
    return st, ct, json.loads(text) if text and ct == "application/json" \
        else text or None


def targets(d, query=""):
    st, ct, body = get(d, query)
    assert st == 200 and ct == "application/json", (st, ct, body)
    return body


def instances(groups):
    return [g["labels"]["__meta_discovery_instance"] for g in groups]


def sidecar(tmp_path, d, service, instance, address, extra=""):
    return Sidecar(tmp_path, d.ws_url, service, instance,
                   extra="address: \"%s\"\n%s" % (address, extra))


def test_one_group_per_ready_endpoint(tmp_path, daemon):
    d = daemon
    cars = [
        sidecar(tmp_path, d, "web", "web-2", "127.0.0.1:8082"),
        sidecar(tmp_path, d, "web", "web-1", "10.0.0.1:8081",
                "tags: [blue, eu-1]\nweight: 7\nmeta:\n  zone: a-1\n"
                "  metrics_port: 9102\n  we.ird-key: v\n  a/b: w\n"),
        sidecar(tmp_path, d, "api", "api-1", "[2001:db8::5]:443",
                "meta:\n  metrics_port: 9102\n"),
        # Not ready: listed by the endpoints API (state=any), not here.
        sidecar(tmp_path, d, "web", "web-3", "127.0.0.1:8083",
                "ready: false\n"),
        # No address: not an endpoint.
        Sidecar(tmp_path, d.ws_url, "web", "web-4"),
    ]
    try:
        groups = wait_until(lambda: len(targets(d)) == 3 and targets(d),
                            what="three ready endpoints")
        # Sorted by service, then node and instance; one target each.
        assert instances(groups) == ["api-1", "web-1", "web-2"]
        for g in groups:
            assert len(g["targets"]) == 1
            assert all(LABEL_NAME.match(k) for k in g["labels"]), g
            assert all(isinstance(v, str) for v in g["labels"].values())
        api, web1, web2 = groups
        assert web1["targets"] == ["10.0.0.1:8081"]
        assert web1["labels"] == {
            "service": "web",
            "__meta_discovery_service": "web",
            "__meta_discovery_instance": "web-1",
            "__meta_discovery_node": "test-node",
            "__meta_discovery_address": "10.0.0.1:8081",
            "__meta_discovery_host": "10.0.0.1",
            "__meta_discovery_port": "8081",
            "__meta_discovery_weight": "7",
            "__meta_discovery_tags": ",blue,eu-1,",
            "__meta_discovery_meta_zone": "a-1",
            "__meta_discovery_meta_metrics_port": "9102",
            "__meta_discovery_metrics_address": "10.0.0.1:9102",
            "__meta_discovery_meta_we_ird_key": "v",
            "__meta_discovery_meta_a_b": "w",
        }
        assert web2["labels"]["__meta_discovery_tags"] == ""
        assert "__meta_discovery_metrics_address" not in web2["labels"]
        # An IPv6 host is bracketed again in the address to scrape.
        assert api["targets"] == ["[2001:db8::5]:443"]
        assert api["labels"]["__meta_discovery_host"] == "2001:db8::5"
        assert api["labels"]["__meta_discovery_metrics_address"] == \
            "[2001:db8::5]:9102"
        # HEAD answers the same, without a body.
        st, ct, body = get(d, method="HEAD")
        assert (st, ct, body) == (200, "application/json", None)

        # A drain takes the endpoint out (it is no longer ready) before
        # the sidecar has closed its link.
        drain = sidecar(tmp_path, d, "web", "web-5", "127.0.0.1:8085",
                        "drain: 10m\n")
        cars.append(drain)
        wait_until(lambda: "web-5" in instances(targets(d)), what="web-5")
        drain.kill(signal.SIGTERM)
        drain.wait_line(r"msg=draining")
        wait_until(lambda: "web-5" not in instances(targets(d)),
                   what="web-5 gone while draining")
        assert drain.p.poll() is None
    finally:
        for c in cars:
            c.kill(signal.SIGINT)
            assert c.stop() == 0
    wait_until(lambda: targets(d) == [], what="no targets left")


def test_service_filter(tmp_path, daemon):
    d = daemon
    cars = [sidecar(tmp_path, d, svc, svc + "-1", "127.0.0.1:%d" % port)
            for svc, port in (("web", 8081), ("api", 8082), ("db", 8083))]
    try:
        wait_until(lambda: len(targets(d)) == 3, what="three endpoints")
        services = {
            "?service=api": ["api-1"],
            "?service=web,api": ["api-1", "web-1"],
            "?service=web&service=db": ["db-1", "web-1"],
            "?service=web,web&service=web": ["web-1"],
            "?service=nosuch": [],
            "?service=nosuch,db": ["db-1"],
        }
        for query, want in services.items():
            assert instances(targets(d, query)) == want, query
        # 64 names is the most; every one may be unknown.
        many = ",".join("s%d" % i for i in range(63))
        assert instances(targets(d, "?service=web," + many)) == ["web-1"]
    finally:
        for c in cars:
            assert c.stop() == 0


def test_bad_filters_are_400(daemon):
    d = daemon
    bad = ["?service=", "?service", "?service=Web", "?service=web,,api",
           "?service=web,", "?service=-web", "?service=a%20b",
           "?service=" + "a" * 64, "?services=web", "?tag=blue",
           "?service=" + ",".join("s%d" % i for i in range(65))]
    for query in bad:
        st, ct, body = get(d, query)
        assert (st, ct, body["error"]) == \
            (400, "application/json", "bad_request"), query
        assert "'service'" in body["message"] or "query" in \
            body["message"], (query, body)
    st, _, body = get(d, method="POST")
    assert (st, body["error"]) == (405, "method_not_allowed")
    # The 400s were answered, and nothing broke: an empty list still.
    assert targets(d) == []


def test_hostile_queries(tmp_path, daemon):
    d = daemon
    car = sidecar(tmp_path, d, "web", "web-1", "127.0.0.1:8081")
    try:
        wait_until(lambda: targets(d), what="web-1")
        # A NUL must not cut a name short into another one.
        for query in ("?service=web%00x", "?service%00=web",
                      "?service=%00"):
            st, _, body = get(d, query)
            assert (st, body["error"]) == (400, "bad_request"), query
        # A name repeated is one name; past 128 parameters, 414
        # (docs/api.md, "Limits").
        assert instances(targets(d, "?" + "&".join(
            ["service=web"] * 128))) == ["web-1"]
        assert get(d, "?" + "&".join(["service=web"] * 300))[0] == 414
        # 64 names of the longest kind: the most there may be.
        longest = ["%s%s" % (i, "x" * 60) for i in range(100, 163)]
        assert instances(targets(d, "?service=" + ",".join(
            longest + ["web"]))) == ["web-1"]
        # A URL past the header limit is refused whole, and the daemon
        # answers the next one.
        assert get(d, "?service=" + "a" * 40000)[0] == 414
        assert instances(targets(d)) == ["web-1"]
    finally:
        assert car.stop() == 0


def test_reader_role(tmp_path):
    s = secret(tmp_path, "secret")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % s)
    try:
        st, _, body = get(d)
        assert (st, body["error"]) == (401, "unauthorized")
        st, _, body = get(d, headers=bearer(issue(s, "agent", "web")))
        assert (st, body["error"]) == (403, "forbidden")
        for role in ("reader", "admin"):
            st, _, body = get(d, headers=bearer(issue(s, role)))
            assert (st, body) == (200, []), role
        # Prometheus may send the token in the URL too, as a read.
        st, _, body = get(d, "?service=web&token=" + issue(s, "reader"))
        assert (st, body) == (200, [])
        st, _, body = get(d, "?token=" + issue(s, "reader") + "&service=")
        assert st == 400
    finally:
        assert d.stop() == 0


def test_cluster_lists_every_node(tmp_path, redis):
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    # api has an instance on node-b only.
    cars = [sidecar(tmp_path, b, "api", "api-b", "127.0.0.1:8083"),
            sidecar(tmp_path, a, "web", "web-a", "127.0.0.1:8081"),
            sidecar(tmp_path, b, "web", "web-b", "127.0.0.1:8082")]
    try:
        for n in (a, b):
            groups = wait_until(
                lambda: len(targets(n)) == 3 and targets(n),
                what="both nodes' endpoints on " + n.http_addr)
            assert [(g["labels"]["__meta_discovery_node"],
                     g["labels"]["__meta_discovery_instance"])
                    for g in groups] == [("node-b", "api-b"),
                                         ("node-a", "web-a"),
                                         ("node-b", "web-b")]
        cars.pop().kill(signal.SIGINT)
        wait_until(lambda: instances(targets(a)) == ["api-b", "web-a"],
                   what="web-b gone from node-a's answer")
        assert instances(targets(a, "?service=api")) == ["api-b"]
    finally:
        for c in cars:
            c.stop()
        assert a.stop() == 0 and b.stop() == 0
