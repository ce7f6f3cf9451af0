"""Endpoint churn with links that stop reading (an adversarial review's
crash): watchers whose sends fail close while a set is being sent to the
others, and their closes close more (their service's readiness goes to
dependents whose queues are full). The daemon must neither crash nor
leak, and answer afterwards."""

import threading
import urllib.request

import websockets

from harness import Discoveryd, raw_link, ws_run
from test_endpoints import hello, status
from test_link_protocol import SUB, recv

TAGS = ["t%02d" % i for i in range(32)]


def test_churn_with_silent_watchers(tmp_path):
    # Every link comes from 127.0.0.1: its share of the accept rate is
    # the whole of it here (the churn is not what this test paces).
    d = Discoveryd(tmp_path, extra="limits:\n  send_queue: 4KiB\n"
                                   "  accept_share_per_ip: 100\n")
    socks = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            for svc in ("peer", "d1", "d2", "nope"):
                try:
                    urllib.request.urlopen(
                        d.base + "/api/discovery/services/%s/endpoints"
                        "?state=any" % svc, timeout=5).read()
                except OSError:
                    pass

    try:
        # Silent readers: they watch their own service and depend on the
        # others, and never read (a 1 KiB receive buffer).
        for i in range(40):
            s, _ = raw_link(d.agents_addr, {
                "type": "hello", "service": "peer", "instance": "s-%d" % i,
                "address": "10.2.0.%d:80" % (i + 1), "tags": TAGS,
                "depends_on": ["d1", "d2", "peer"], "watch": True},
                rcvbuf=1024)
            socks.append(s)
        th = threading.Thread(target=poll)
        th.start()

        async def scenario():
            for _ in range(15):
                links = []
                for i in range(30):
                    ws = await websockets.connect(
                        d.ws_url, subprotocols=SUB, max_size=None,
                        close_timeout=2)
                    await ws.send(hello(
                        service=["peer", "d1", "d2"][i % 3],
                        instance="c-%d" % i,
                        address="10.3.0.%d:80" % (i + 1), tags=TAGS,
                        watch=["peer", "d1", "d2"], depends_on=["peer"]))
                    links.append(ws)
                for ws in links:
                    try:
                        await recv(ws)
                        await ws.send(status(state="ready", load=0.5))
                    except websockets.ConnectionClosed:
                        pass
                for ws in links[::2]:
                    await ws.close()
                for ws in links[1::2]:
                    ws.transport.abort()

        ws_run(scenario())
        stop.set()
        th.join()
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        stop.set()
        for s in socks:
            s.close()
        assert d.stop() == 0, d.text()[-3000:]
