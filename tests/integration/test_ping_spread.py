"""The heartbeat's pings to links that came together (a storm: a restart,
a failover) are spread over the interval, not sent in one tick, where
they and their pongs stall whatever fan-out runs then (docs/design.md,
"Heartbeat"). Each link's first ping comes at a random point of its first
interval."""

import select
import time

from harness import Discoveryd, masked_frame, raw_link, read_frame

INTERVAL = 2.0


def test_pings_to_a_storm_are_spread_over_the_interval(tmp_path):
    d = Discoveryd(tmp_path, heartbeat="  interval: 2s\n  timeout: 30s\n")
    links = []
    try:
        for i in range(60):
            s, rest = raw_link(d.agents_addr, {
                "type": "hello", "service": "web", "instance": "w-%d" % i})
            links.append([s, rest, None, time.monotonic()])
        by_fd = {s.fileno(): link for link in links for s in [link[0]]}
        deadline = time.monotonic() + 4 * INTERVAL
        while any(link[2] is None for link in links):
            assert time.monotonic() < deadline, "pings missing"
            ready, _, _ = select.select(list(by_fd), [], [], 0.5)
            for fd in ready:
                link = by_fd[fd]
                while True:     # every frame read so far
                    frame = read_frame(link[0], link[1])
                    assert frame, "a link closed"
                    op, payload, link[1] = frame
                    if op == 0x9:
                        if link[2] is None:
                            link[2] = time.monotonic()
                        link[0].sendall(masked_frame(0xA, payload))
                    if len(link[1]) < 2:
                        break
        # Each first ping after its own link's upgrade: an interval and
        # at most a tick (a quarter of it) before; uniform over the
        # interval now (60 draws span most of it).
        after = sorted(link[2] - link[3] for link in links)
        spread = after[-1] - after[0]
        assert spread > INTERVAL / 2, \
            "first pings %.2f to %.2f s after their links came" % (
                after[0], after[-1])
    finally:
        for link in links:
            link[0].close()
        assert d.stop() == 0, d.text()
