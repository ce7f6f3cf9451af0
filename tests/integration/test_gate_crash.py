"""A gate polled continuously through a discoveryd SIGKILL and restart
answers 200 every time: libagent keeps its flags while unlinked, and the
restarted daemon holds the journal's readiness (restart grace) until the
cache instance is back."""

import signal

from gate_harness import Gate, Poller, Upstream
from harness import Discoveryd, Sidecar


def test_gate_stays_open_through_a_crash(tmp_path):
    d = Discoveryd(tmp_path)
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    u = Upstream()
    cache = Sidecar(tmp_path, d.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    g = Gate(tmp_path, d, u.url)
    poller = None
    try:
        g.wait_line(r"msg=open why=")
        poller = Poller(g)
        mark, cmark = g.mark(), cache.mark()
        d.stop(signal.SIGKILL)
        g.wait_line(r"msg=unlinked", start=mark)
        d = Discoveryd(tmp_path, http_port=http, agents_port=agents)
        g.wait_line(r"msg=linked", start=mark)
        cache.wait_line(r"msg=linked", start=cmark)
        d.wait_line(r"msg=\"restart grace done\" service=cache")
        statuses = poller.more(50)         # fifty more answers after
        assert len(statuses) > 50
        assert set(statuses) == {200}, statuses
        assert g.count(r"msg=locked", mark) == 0, g.text()
    finally:
        if poller:
            poller.stop()
        g.stop()
        cache.stop()
        u.stop()
        assert d.stop() == 0
