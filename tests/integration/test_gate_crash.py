"""A gate polled continuously through a discoveryd SIGKILL and restart
answers 200 every time: libagent keeps its flags while unlinked, and the
restarted daemon holds the journal's readiness (restart grace) until the
cache instance is back."""

import signal
import threading

from gate_harness import Gate, Upstream
from harness import Discoveryd, Sidecar


def test_gate_stays_open_through_a_crash(tmp_path):
    d = Discoveryd(tmp_path)
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    u = Upstream()
    cache = Sidecar(tmp_path, d.ws_url, "cache", "cache-1",
                    extra="ready: true\n")
    g = Gate(tmp_path, d, u.url)
    statuses, stop = [], threading.Event()

    def poll():
        c = g.conn()
        while not stop.is_set():
            c.request("GET", "/echo")
            r = c.getresponse()
            r.read()
            statuses.append(r.status)

    try:
        g.wait_line(r"msg=open why=")
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        mark, cmark = g.mark(), cache.mark()
        d.stop(signal.SIGKILL)
        g.wait_line(r"msg=unlinked", start=mark)
        d = Discoveryd(tmp_path, http_port=http, agents_port=agents)
        g.wait_line(r"msg=linked", start=mark)
        cache.wait_line(r"msg=linked", start=cmark)
        d.wait_line(r"msg=\"restart grace done\" service=cache")
        n = len(statuses)
        while len(statuses) < n + 50 and poller.is_alive():
            poller.join(0.01)              # fifty more answers after
        stop.set()
        poller.join(10)
        assert len(statuses) > 50
        assert set(statuses) == {200}, statuses
        assert g.count(r"msg=locked", mark) == 0, g.text()
    finally:
        stop.set()
        g.stop()
        cache.stop()
        u.stop()
        assert d.stop() == 0
