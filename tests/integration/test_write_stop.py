"""Writes in flight (their connections suspended while the hub commits
them, docs/design.md "Group commit") when the HTTP side stops: at SIGTERM,
and at each SIGHUP with TLS, which replaces the HTTP daemon. libmicrohttpd
aborts a stop that finds a connection suspended, so the daemon must let
those writes finish first: it exits cleanly, and keeps answering across
reloads."""

import json
import signal
import threading
import time
import urllib.request

from dnsutil import wait_until
from harness import Discoveryd
from test_tls import pki, tls_daemon  # noqa: F401 (a fixture)


class Writers:
    def __init__(self, d, n=32):
        self.d, self.acked, self.stop = d, [], threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,))
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def run(self, i):
        body = json.dumps({"keys": ["k%d" % i]}).encode()
        while not self.stop.is_set():
            req = urllib.request.Request(
                self.d.base + "/api/discovery/invalidate", data=body,
                method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10,
                                            context=self.d.ssl) as r:
                    self.acked.append(json.loads(r.read())["seq"])
            except OSError:
                time.sleep(0.01)    # refused while the daemon turns over

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def test_sigterm_while_writes_are_in_flight(tmp_path):
    d = Discoveryd(tmp_path)
    w = Writers(d)
    try:
        wait_until(lambda: len(w.acked) >= 500, what="500 writes")
        assert d.stop(signal.SIGTERM) == 0, d.text()[-2000:]
    finally:
        w.join()


def test_tls_reloads_while_writes_are_in_flight(tmp_path, pki):  # noqa
    d = tls_daemon(tmp_path, pki)
    w = Writers(d)
    try:
        for n in range(5):
            mark = len(w.acked)
            wait_until(lambda: len(w.acked) >= mark + 200,
                       what="writes after reload %d" % n)
            d.p.send_signal(signal.SIGHUP)
        mark = len(w.acked)
        wait_until(lambda: len(w.acked) >= mark + 200, what="writes after")
        assert d.p.poll() is None, d.text()[-2000:]
    finally:
        w.join()
    assert d.stop() == 0, d.text()[-2000:]
