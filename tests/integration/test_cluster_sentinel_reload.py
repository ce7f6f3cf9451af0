"""A node that finds Redis through Sentinel (cluster.sentinels, no
cluster.redis) reloads its configuration on SIGHUP: it stays up, and a
changed sentinel key is logged as needing a restart. One redis-server and
one redis-sentinel; nothing here waits on sentinel's timings.
"""

import signal

from cluster_harness import Redis, Sentinel, node
from harness import write


def test_sighup_with_sentinels_keeps_running(tmp_path):
    redis = Redis(tmp_path / "redis")
    sentinel = Sentinel(tmp_path / "sentinel", redis.port, quorum=1)
    n = None
    try:
        n = node(tmp_path, "node-a", [sentinel.addr])
        n.wait_line(r'msg="cluster master" master=127\.0\.0\.1:%d ' %
                    redis.port)
        # The same file: nothing to restart for.
        mark = n.mark()
        n.kill(signal.SIGHUP)
        n.wait_line(r"msg=reloaded", start=mark)
        assert n.count(r"key=cluster ", mark) == 0
        # Another master_name: the node goes on, and says it needs a
        # restart for it.
        with open(n.config) as f:
            text = f.read()
        write(n.config, text.replace("master_name: disc",
                                     "master_name: other"))
        mark = n.mark()
        n.kill(signal.SIGHUP)
        n.wait_line(r"msg=reloaded", start=mark)
        assert n.count(r"key=cluster note=\"needs a restart\"", mark) == 1
        st, _ = n.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
        assert st == 202
    finally:
        codes = [n.stop()] if n else []
        sentinel.stop()
        redis.stop()
        assert codes == [0], codes
