"""The seed's flow (NetCoreStack): three sidecars wait on `cache`; one call
to cacheready makes every /ready answer 200."""

from harness import Sidecar


def test_cacheready_opens_every_agent(daemon, tmp_path):
    agents = [Sidecar(tmp_path, daemon.ws_url, "web", "web-%d" % i,
                      depends_on=["cache"]) for i in range(3)]
    try:
        for a in agents:
            a.wait_line(r"msg=linked")
            assert a.ready_status() == 503
        marks = [a.mark() for a in agents]
        status, body = daemon.call("POST", "/api/discovery/cacheready")
        assert status == 200 and body["delivered"] == 3
        for a, m in zip(agents, marks):
            a.wait_line(r"msg=readiness service=cache ready=true", start=m)
            assert a.ready_status() == 200
        # And back: maintenance mode on cache locks them again.
        marks = [a.mark() for a in agents]
        daemon.call("POST", "/api/discovery/services/cache/notready")
        for a, m in zip(agents, marks):
            a.wait_line(r"msg=readiness service=cache ready=false", start=m)
            assert a.ready_status() == 503
    finally:
        for a in agents:
            assert a.stop() == 0, a.text()


def test_derived_readiness_from_instances(daemon, tmp_path):
    """A cache sidecar with `ready: true` makes cache ready for its
    dependents; stopping it makes cache not ready again."""
    web = Sidecar(tmp_path, daemon.ws_url, "web", "web-1",
                  depends_on=["cache"])
    try:
        web.wait_line(r"msg=linked")
        mark = web.mark()
        cache = Sidecar(tmp_path, daemon.ws_url, "cache", "cache-1",
                        extra="ready: true\n")
        web.wait_line(r"msg=readiness service=cache ready=true", start=mark)
        assert web.ready_status() == 200
        mark = web.mark()
        assert cache.stop() == 0
        web.wait_line(r"msg=readiness service=cache ready=false", start=mark)
        assert web.ready_status() == 503
    finally:
        web.stop()
