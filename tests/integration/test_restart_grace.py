"""Restart grace: readiness restored from the journal holds until the
instances are back (or the grace ends), and libagent keeps its flags while
unlinked, so a dependent never sees its dependency go down because
discoveryd crashed or restarted."""

import signal

from harness import Discoveryd, Sidecar


def ports(d):
    return (int(d.http_addr.rsplit(":", 1)[1]),
            int(d.agents_addr.rsplit(":", 1)[1]))


def test_dependents_stay_ready_through_a_crash(tmp_path):
    d = Discoveryd(tmp_path, extra="restart_grace: 60s\n")
    http, agents = ports(d)
    cache = Sidecar(tmp_path, d.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    web = Sidecar(tmp_path, d.ws_url, "web", "web-1", depends_on=["cache"])
    try:
        web.wait_line(r"msg=readiness service=cache ready=true")
        mark = web.mark()
        d.stop(signal.SIGKILL)
        assert web.ready_status() == 200          # unlinked: flags kept
        d = Discoveryd(tmp_path, http_port=http, agents_port=agents,
                       extra="restart_grace: 60s\n")
        # Before any agent is back, the journal's readiness holds.
        st, svc = d.call("GET", "/api/discovery/services/cache")
        assert svc["ready"] is True
        web.wait_line(r"msg=linked", start=mark)
        # Its instance back and ready, the grace has done its job.
        d.wait_line(r"msg=\"restart grace done\" service=cache "
                    r"reason=instances")
        st, svc = d.call("GET", "/api/discovery/services/cache")
        assert svc["ready"] and not svc["restart_grace"]
        assert web.ready_status() == 200
        assert web.count(r"readiness service=cache ready=false", mark) == 0
    finally:
        web.stop()
        cache.stop()
        assert d.stop() == 0


def test_grace_ends_without_instances(tmp_path):
    d = Discoveryd(tmp_path, extra="restart_grace: 400ms\n")
    http, agents = ports(d)
    cache = Sidecar(tmp_path, d.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    web = Sidecar(tmp_path, d.ws_url, "web", "web-1", depends_on=["cache"])
    try:
        web.wait_line(r"msg=readiness service=cache ready=true")
        d.stop(signal.SIGKILL)        # cache's readiness is journaled true
        cache.stop(signal.SIGKILL)    # and its instance never comes back
        mark = web.mark()
        d = Discoveryd(tmp_path, http_port=http, agents_port=agents,
                       extra="restart_grace: 400ms\n")
        assert d.call("GET", "/api/discovery/services/cache")[1]["ready"]
        d.wait_line(r"msg=\"restart grace over\" services=1")
        web.wait_line(r"msg=readiness service=cache ready=false", start=mark)
        assert web.ready_status() == 503
    finally:
        web.stop()
        cache.stop()
        assert d.stop() == 0
