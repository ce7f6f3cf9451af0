"""The sidecar's SIGTERM is Kubernetes' preStop: it reports draining (the
daemon lists the instance as draining, out of the ready endpoints; the
sidecar's /ready answers 503), waits `drain`, then closes and exits 0; the
instance leaves the endpoints only then. A second SIGTERM, or a SIGINT,
ends the wait at once; drain: 0 closes at once."""

import signal
import time

from harness import WAIT, Sidecar
from sidecar_util import by_instance, daemon_endpoints, http_get, wait_until

# Long enough for the daemon (slow under valgrind) to be seen listing the
# instance as draining while the sidecar waits.
DRAIN_S = max(2.0, WAIT / 5)


def state(daemon):
    return by_instance(daemon_endpoints(daemon, "api")).get(
        "api-1", {}).get("state")


def sidecar(tmp_path, daemon, drain):
    s = Sidecar(tmp_path, daemon.ws_url, "api", "api-1",
                extra="address: 127.0.0.1:8080\ndrain: %s\n" % drain)
    wait_until(lambda: state(daemon) == "ready", what="api-1 ready")
    return s


def test_sigterm_drains_then_closes(tmp_path, daemon):
    s = sidecar(tmp_path, daemon, "%dms" % (DRAIN_S * 1000))
    try:
        assert s.ready_status() == 200
        mark = s.mark()
        start = time.monotonic()
        s.kill(signal.SIGTERM)
        s.wait_line(r"msg=draining drain_ms=%d" % (DRAIN_S * 1000),
                    start=mark)
        # Still linked and listed, as draining: out of the ready set.
        wait_until(lambda: state(daemon) == "draining", what="draining")
        assert s.p.poll() is None, "exited before it was seen draining"
        assert daemon_endpoints(daemon, "api", "")["endpoints"] == []
        st, _, body = http_get(s.health + "/ready")
        assert st == 503 and body["draining"] is True and body["ready"] \
            is False
        assert s.p.wait(DRAIN_S + WAIT) == 0
        elapsed = time.monotonic() - start
        # It waited the drain (a lower bound only: never faster).
        assert elapsed >= DRAIN_S - 0.1, elapsed
        s.wait_line(r"msg=drained", start=mark)
        s.wait_line(r"msg=stopped", start=mark)
        wait_until(lambda: state(daemon) is None, what="api-1 gone")
    finally:
        assert s.stop() == 0


def test_a_second_signal_ends_the_drain(tmp_path, daemon):
    for second in (signal.SIGTERM, signal.SIGINT):
        s = sidecar(tmp_path, daemon, "10m")
        try:
            mark = s.mark()
            s.kill(signal.SIGTERM)
            s.wait_line(r"msg=draining drain_ms=600000", start=mark)
            wait_until(lambda: state(daemon) == "draining")
            s.kill(second)
            assert s.p.wait(WAIT) == 0
            s.wait_line(r"msg=drain_cut signal=%s" %
                        ("TERM" if second == signal.SIGTERM else "INT"),
                        start=mark)
            wait_until(lambda: state(daemon) is None, what="api-1 gone")
        finally:
            assert s.stop() == 0


def test_sigint_and_drain_0_close_at_once(tmp_path, daemon):
    for sig, drain in ((signal.SIGINT, "10m"), (signal.SIGTERM, "0")):
        s = sidecar(tmp_path, daemon, drain)
        try:
            s.kill(sig)
            assert s.p.wait(WAIT) == 0
            s.wait_line(r"msg=stopped")
            assert s.count(r"msg=draining") == 0
        finally:
            assert s.stop() == 0
        wait_until(lambda: state(daemon) is None, what="api-1 gone")
