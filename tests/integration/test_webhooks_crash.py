"""SIGKILL discoveryd while it delivers webhooks, then restart it: every
event the API acknowledged reaches the receiver, in order, each webhook-id
accepted once apart from at most the one in flight at the kill (it may go
again: at-least-once, with the same id, which the receiver deduplicates)."""

import os
import signal
import threading
import urllib.error

from harness import Discoveryd
from webhook_recv import Receiver, fail_at_random, new_secret, webhooks_yaml
from webhook_recv import write_secret

EVENTS = 80


class Producer(threading.Thread):
    """Posts invalidations until EVENTS were acknowledged, riding through
    the daemon's death."""

    def __init__(self, holder):
        super().__init__(daemon=True)
        self.holder, self.acked = holder, []
        self.half = threading.Event()

    def run(self):
        while len(self.acked) < EVENTS:
            try:
                st, body = self.holder[0].call(
                    "POST", "/api/discovery/invalidate",
                    {"keys": ["k"], "service": "web"})
            except (OSError, urllib.error.URLError):
                continue
            if st == 202:
                self.acked.append(body["seq"])
            if len(self.acked) == EVENTS // 2:
                self.half.set()


def config(rx, path):
    return webhooks_yaml(a={"url": rx.url, "secret_file": path,
                            "retry": {"initial": "10ms", "max": "50ms"}})


def test_sigkill_mid_delivery_loses_nothing(tmp_path):
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret], answer=fail_at_random(0.2, seed=3))
    d = Discoveryd(tmp_path, extra=config(rx, path))
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    holder = [d]
    producer = Producer(holder)
    producer.start()
    try:
        assert producer.half.wait(60)
        rx.wait(lambda r: len(r.acked) >= 5, what="deliveries before "
                "the kill")
        d.kill(signal.SIGKILL)
        d.p.wait()
        d = Discoveryd(tmp_path, extra=config(rx, path), http_port=http,
                       agents_port=agents)
        holder[0] = d
        producer.join(120)
        assert not producer.is_alive()
        want = producer.acked
        rx.wait(lambda r: set(want) <= set(r.acked_seqs()), timeout=90,
                what="every acknowledged event")
        assert rx.bad == []
        seqs = rx.acked_seqs()
        first = []
        for s in seqs:
            if s not in first:
                first.append(s)
        # In order, nothing skipped from the first to the last.
        assert first == sorted(first)
        assert first == list(range(first[0], first[-1] + 1))
        dups = len(seqs) - len(first)
        assert dups <= 1, seqs
        # The same id each time an event went again.
        ids = [a["id"] for a in rx.attempts]
        epochs = {i.rsplit("-", 1)[0] for i in ids}
        assert len(epochs) == 1
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
