"""A webhook's holder whose stream reader is stuck for good (its reads of
the stream stall, every other Redis call of its goes through: its lease
renewals too): it delivers nothing past what it has read, and while it
kept renewing its lease no other node could take the endpoint over, which
stalled for ever. A node whose reader's last read is older than a read's
block plus cluster.timeout now renews and takes no lease (as if Redis were
away): the holder stands by before its lease lapses, and another node
delivers."""

import os

from cluster_harness import node
from test_webhook_cutoff import ReaderStall, delivering, post, wait
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret


def test_a_holder_whose_reader_is_stuck_lets_the_endpoint_go(tmp_path,
                                                             redis):
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret])
    extra = webhooks_yaml(a={"url": rx.url, "secret_file": path})
    relay = ReaderStall(redis.port)
    n1 = node(tmp_path, "n1", relay.url, extra=extra)
    nodes = [n1]
    try:
        wait(lambda: delivering(n1), "n1 delivering")
        n2 = node(tmp_path, "n2", "redis://127.0.0.1:%d" % redis.port,
                  extra=extra)
        nodes.append(n2)
        first = post(n2, 4)
        rx.wait(lambda r: set(first) <= set(r.acked_seqs()), what="4")
        relay.reader_go.clear()       # n1's reader, only, for good
        second = post(n2, 4, 4)
        rx.wait(lambda r: set(second) <= set(r.acked_seqs()),
                what="the events after n1's reader got stuck", timeout=20)
        assert delivering(n2)
    finally:
        relay.reader_go.set()
        for n in nodes:
            if n.p.poll() is None:
                assert n.stop() == 0, n.text()[-3000:]
        relay.close()
        rx.close()
