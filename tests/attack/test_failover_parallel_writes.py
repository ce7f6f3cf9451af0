"""The Sentinel failover of test_failover_sentinel.py, with the writes
now in parallel on each node's pool of threads: 12 writers round robin on
three nodes while the master is SIGKILLed. With min_replicas: 1 every
write answered 2xx reaches every agent once and in order, on one epoch;
no write gets an answer other than 202 or 503; the nodes exit 0."""

import signal
import time

from cluster_harness import Redis, node
from test_failover_sentinel import (HEARTBEAT, NODE_TTL, RESUME_BOUND,
                                    Writer, agents_on, in_order_once,
                                    made, probe_seqs,  # noqa: F401
                                    replicated_pair)
from harness import WAIT


def test_parallel_writes_through_a_master_sigkill(tmp_path, made):  # noqa
    master, replica, sentinels = replicated_pair(tmp_path, made)
    addrs = [s.addr for s in sentinels]
    ns = [node(tmp_path, "node-%s" % c, addrs, node_ttl=NODE_TTL,
               extra="  min_replicas: 1\n", heartbeat=HEARTBEAT)
          for c in "abc"]
    made.extend(ns)
    pys, probes = agents_on(made, ns)
    writers = [Writer(ns[i % 3:] + ns[:i % 3]) for i in range(12)]
    try:
        for w in writers:
            w.start()
        for w in writers:
            w.wait_acked(10)
        master.kill(signal.SIGKILL)
        killed = time.monotonic()
        for s in sentinels:
            s.wait_line(r"\+switch-master disc 127\.0\.0\.1 %d 127\.0\.0\.1 %d"
                        % (master.port, replica.port))
        made.append(Redis(tmp_path / "master", port=master.port,
                          replicaof=replica.port))
        for w in writers:
            w.wait_acked(10, after=killed, timeout=RESUME_BOUND + WAIT)
        for w in writers:
            w.stop()
        for w in writers:
            assert not w.other, w.other[:5]
        acked = sorted(s for w in writers for s, _ in w.acked)
        assert len(acked) == len(set(acked)), "one seq acked twice"
        last = acked[-1]
        for py in pys:
            py.wait_for(lambda s: s.seq >= last, timeout=WAIT)
            in_order_once([q for q, k in py.events if k == "invalidate"],
                          acked, py.instance)
            assert len(py.welcomes) == 1, py.welcomes
        for p in probes:
            p.wait_line(r"event seq=%d kind=invalidate" % last)
            in_order_once(probe_seqs(p), acked, p.name)
    finally:
        for w in writers:
            w.stop()
        for py in pys:
            py.stop()
