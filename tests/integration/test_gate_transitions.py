"""The gate follows readiness: locked (423 + Retry-After, JSON for API
clients, the loading page for browsers) until `requires` is ready, open
(proxied) after, locked again on notready; /.well-known/discovery-gate and
its /check say the same; pass paths are always proxied; latch holds it open."""

import json

import pytest

from gate_harness import Gate, Upstream


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.stop()


def opened(gate, mark):
    gate.wait_line(r"msg=open why=", start=mark)


def locked(gate, mark):
    gate.wait_line(r"msg=locked why=", start=mark)


def test_locked_open_locked(daemon, upstream, tmp_path):
    g = Gate(tmp_path, daemon, upstream.url, requires=["cache", "api"])
    try:
        g.wait_line(r"msg=linked")
        status, h, body = g.request("GET", "/echo")
        assert status == 423
        assert h["retry-after"] == ["5"]
        assert json.loads(body) == {
            "error": "locked", "message": "application components are loading",
            "waiting_for": ["api", "cache"], "retry_after": 5}
        status, h, body = g.request("GET", "/", headers={
            "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert status == 423 and h["content-type"][0].startswith("text/html")
        assert b"Application components are loading" in body
        assert b"api, cache" in body and b"/.well-known/discovery-gate" in body
        assert g.request("GET", "/.well-known/discovery-gate/check")[0] == 403

        # cacheready opens cache; api still missing.
        mark = g.mark()
        daemon.call("POST", "/api/discovery/cacheready")
        # The gate publishes its new state, then logs it.
        g.wait_line(r"msg=state why=readiness", start=mark)
        assert g.state()["waiting_for"] == ["api"]
        assert json.loads(g.request("GET", "/x")[2])["waiting_for"] == ["api"]

        mark = g.mark()
        daemon.call("POST", "/api/discovery/services/api/ready")
        opened(g, mark)
        status, h, body = g.request("GET", "/echo")
        assert status == 200 and h["x-upstream"] == ["yes"]
        st = g.state()
        assert st["open"] is True and st["waiting_for"] == []
        assert st["services"] == {"api": True, "cache": True}
        assert g.request("GET", "/.well-known/discovery-gate/check")[0] == 204

        mark = g.mark()
        daemon.call("POST", "/api/discovery/services/cache/notready")
        locked(g, mark)
        status, _, body = g.request("POST", "/echo", body=b"{}")
        assert status == 423 and json.loads(body)["waiting_for"] == ["cache"]
        assert g.request("GET", "/.well-known/discovery-gate/check")[0] == 403
    finally:
        assert g.stop() == 0, g.text()


def test_pass_paths_and_503(daemon, upstream, tmp_path):
    g = Gate(tmp_path, daemon, upstream.url,
             extra="pass: [/healthz, /static/]\nlocked_status: 503\n"
                   "retry_after: 1500ms\n")
    try:
        g.wait_line(r"msg=linked")
        status, h, _ = g.request("GET", "/api/x")
        assert status == 503 and h["retry-after"] == ["2"]
        assert g.request("GET", "/healthz")[0] == 200
        assert g.request("GET", "/healthz?full=1")[0] == 200
        assert g.request("GET", "/healthz/deep")[0] == 200
        assert g.request("GET", "/healthzz")[0] == 503
        assert g.request("GET", "/static/app.js")[0] == 200
        assert g.request("GET", "/static")[0] == 503
    finally:
        assert g.stop() == 0, g.text()


def test_latch_keeps_it_open(daemon, upstream, tmp_path):
    g = Gate(tmp_path, daemon, upstream.url, extra="latch: true\n")
    try:
        g.wait_line(r"msg=linked")
        assert g.request("GET", "/echo")[0] == 423
        mark = g.mark()
        daemon.call("POST", "/api/discovery/services/cache/ready")
        opened(g, mark)
        mark = g.mark()
        daemon.call("POST", "/api/discovery/services/cache/notready")
        g.wait_line(r"msg=state why=readiness", start=mark)
        assert g.request("GET", "/echo")[0] == 200
        st = g.state()
        assert st["open"] is True and st["latched"] is True
        assert st["waiting_for"] == ["cache"]
    finally:
        assert g.stop() == 0, g.text()


def test_no_requires_is_open(daemon, upstream, tmp_path):
    g = Gate(tmp_path, daemon, upstream.url, requires=())
    try:
        assert g.request("GET", "/echo")[0] == 200
    finally:
        assert g.stop() == 0, g.text()
