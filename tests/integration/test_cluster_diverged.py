"""A Redis whose history diverged under the nodes, with the same epoch and
a seq already past theirs, rotates the epoch: the agents relink with
recovered:false and a fresh snapshot, never a silent gap.

That is what a failover without cluster.min_replicas can leave: the
replica promoted lacked the last entries the nodes had read, and writes
on it since then took those seqs again with other events. The nodes are
frozen while Redis is made so (entries at and before their seq rewritten
with another ts, one more appended) after their connections were
killed, and they are let go: each finds, on reconnecting, another entry at its seq.
The real failover is tests/attack/test_failover_sentinel.py.
"""

import signal
import time

import pytest

from cluster_harness import Redis, node
from harness import WAIT
from pyagent import PyAgent

# Rewrite P.."log": the entries at seq-1 and seq get another ts (another
# history), and one more entry follows; P.."seq" moves past the nodes'.
DIVERGE = """
local P = ARGV[1]
local s = tonumber(redis.call('GET', P .. 'seq'))
local es = redis.call('XRANGE', P .. 'log', '-', '+')
redis.call('DEL', P .. 'log')
local last
for _, e in ipairs(es) do
  local f = e[2]
  if tonumber(string.match(e[1], '^(%d+)')) >= s - 1 then
    for i = 1, #f, 2 do
      if f[i] == 'ts' then f[i + 1] = tostring(tonumber(f[i + 1]) + 5000) end
    end
  end
  redis.call('XADD', P .. 'log', e[1], unpack(f))
  last = f
end
redis.call('XADD', P .. 'log', (s + 1) .. '-0', unpack(last))
redis.call('SET', P .. 'seq', s + 1)
return s
"""


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path / "redis")
    yield r
    r.stop()


def test_another_entry_at_the_nodes_seq_rotates_the_epoch(tmp_path, redis):
    ns = [node(tmp_path, "node-%s" % c, redis.url, node_ttl="6s")
          for c in "ab"]
    pys = [PyAgent([n.ws_url], "web", "py-%d" % i) for i, n in enumerate(ns)]
    try:
        for py in pys:
            py.wait_for(lambda s: s.welcomes, timeout=WAIT)
        epoch = pys[0].welcomes[0]["epoch"]
        for i in range(3):
            st, body = ns[i % 2].call("POST", "/api/discovery/invalidate",
                                      {"keys": ["k%d" % i]})
            assert st == 202, body
        seq = body["seq"]
        for py in pys:
            py.wait_for(lambda s: s.seq >= seq, timeout=WAIT)

        marks = [n.mark() for n in ns]
        for n in ns:
            n.kill(signal.SIGSTOP)
        try:
            # Their connections first: a reader blocked in XREAD on the
            # old history must not be handed the new one's entries (a
            # dead master's connection never is).
            redis.cli("CLIENT", "KILL", "TYPE", "normal")
            assert redis.cli("EVAL", DIVERGE, "0", "discovery:") == str(seq)
            assert redis.cli("GET", "discovery:epoch") == epoch
        finally:
            for n in ns:
                n.kill(signal.SIGCONT)

        for n, m in zip(ns, marks):
            n.wait_line(r'msg="cluster synced" epoch=(?!%s)' % epoch, m)
        assert sum(n.count(r'msg="cluster went back" epoch=%s seq=%d '
                           % (epoch, seq), m)
                   for n, m in zip(ns, marks)) >= 1
        for py in pys:
            py.wait_for(lambda s: any(w["epoch"] != epoch
                                      for w in s.welcomes), timeout=WAIT)
            w = [w for w in py.welcomes if w["epoch"] != epoch][0]
            assert w["recovered"] is False, w
        # The cluster goes on, on the new epoch. (The API thread's own
        # connection was killed too: its first call may answer 503.)
        deadline = time.monotonic() + WAIT
        while True:
            st, body = ns[0].call("POST", "/api/discovery/invalidate",
                                  {"keys": ["after"]})
            if st == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.1)          # a client's retry pace
        assert st == 202, body
        for py in pys:
            py.wait_for(lambda s: s.seq >= body["seq"] and
                        s.epoch != epoch, timeout=WAIT)
    finally:
        for py in pys:
            py.stop()
        codes = [n.stop() for n in ns]
        assert codes == [0, 0], codes
