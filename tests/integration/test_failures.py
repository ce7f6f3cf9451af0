"""Faults: a frozen agent is dropped within the heartbeat timeout and its
service's readiness change is broadcast; agents come back after discoveryd
restarts."""

import signal

from harness import Discoveryd, Sidecar


def test_sigstopped_agent_dropped(daemon, tmp_path):
    web = Sidecar(tmp_path, daemon.ws_url, "web", "web-1",
                  depends_on=["cache"])
    cache = Sidecar(tmp_path, daemon.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    try:
        web.wait_line(r"msg=readiness service=cache ready=true")
        mark, dmark = web.mark(), daemon.mark()
        cache.kill(signal.SIGSTOP)
        daemon.wait_line(r"msg=dropping .*instance=cache-1 .*heartbeat timeout",
                         start=dmark)
        web.wait_line(r"msg=readiness service=cache ready=false", start=mark)
        assert web.ready_status() == 503
    finally:
        cache.kill(signal.SIGCONT)
        cache.stop()
        web.stop()


def test_agents_reconnect_after_restart(tmp_path):
    d = Discoveryd(tmp_path)
    http_port = int(d.http_addr.rsplit(":", 1)[1])
    agents_port = int(d.agents_addr.rsplit(":", 1)[1])
    web = Sidecar(tmp_path, d.ws_url, "web", "web-1", depends_on=["cache"])
    try:
        web.wait_line(r"msg=linked")
        mark = web.mark()
        assert d.stop() == 0
        web.wait_line(r"msg=unlinked", start=mark)
        d = Discoveryd(tmp_path, http_port=http_port, agents_port=agents_port)
        web.wait_line(r"msg=linked", start=mark)
        status, agents = d.call("GET", "/api/discovery/agents")
        assert [a["instance"] for a in agents["agents"]] == ["web-1"]
        mark = web.mark()
        d.call("POST", "/api/discovery/cacheready")
        web.wait_line(r"msg=readiness service=cache ready=true", start=mark)
    finally:
        web.stop()
        assert d.stop() == 0
