"""A single node drained: its links close in steps with 1012 and the
drain hint, new hellos get 1013, /healthz 503 and info "drained"; the
instances it moves away keep their readiness (nothing announced), so that
a restart afterwards is held by restart grace; discoveryctl drain's table
and exit codes. (Three nodes over Redis: tests/attack/test_failover_drain.py.)
"""

import json
import os
import subprocess

import websockets

from harness import BIN, Discoveryd, masked_frame, raw_link, ws_run

SUB = ["discovery.v1"]
CTL = os.path.join(BIN, "discoveryctl")


def ctl(d, *args):
    r = subprocess.run([CTL, "-s", d.base] + list(args), capture_output=True,
                       text=True, timeout=30, env=dict(os.environ,
                                                       NO_COLOR="1"))
    return r.returncode, r.stdout, r.stderr


def test_drain_one_node(tmp_path):
    d = Discoveryd(tmp_path, extra="drain: {batch: 2, interval: 100ms}\n"
                                   "restart_grace: 60s\n")
    try:
        cache, _ = raw_link(d.agents_addr, {"type": "hello", "service":
                                            "cache", "instance": "c1"})
        cache.sendall(masked_frame(0x1, b'{"type":"status","ready":true}'))
        d.wait_line(r"msg=readiness service=cache ready=true")

        async def scenario():
            links = []
            for i in range(4):
                ws = await websockets.connect(d.ws_url, subprotocols=SUB)
                await ws.send(json.dumps({"type": "hello", "service": "web",
                                          "instance": "w%d" % i,
                                          "depends_on": ["cache"]}))
                await ws.recv()
                links.append(ws)
            assert ctl(d, "drain", "nope")[0] == 4
            rc, out, _ = ctl(d, "drain", "test-node")
            assert rc == 0 and out.split()[:6] == [
                "NODE", "DRAINING", "LINKS", "test-node", "yes", "5"]
            for ws in links:
                await ws.wait_closed()
                assert ws.close_code == 1012
                assert ws.close_reason == "drain spread_ms=100"
            late = await websockets.connect(d.ws_url, subprotocols=SUB)
            await late.send(json.dumps({"type": "hello", "service": "web",
                                        "instance": "late"}))
            await late.wait_closed()
            assert (late.close_code, late.close_reason) == \
                (1013, "node draining")
        ws_run(scenario())
        d.wait_line(r"msg=drained links=5")
        assert d.count(r'msg="drain step"') == 3
        assert d.call("GET", "/healthz") == (503, {"status": "draining"})
        assert d.call("GET", "/api/discovery/info")[1]["state"] == "drained"
        # The drain announced nothing: cache is as ready as before.
        st, svc = d.call("GET", "/api/discovery/services/cache")
        assert svc["ready"] is True
        st, log = d.call("GET", "/api/discovery/events")
        assert [e["value"]["ready"] for e in log["events"]
                if e["kind"] == "readiness"] == [True]
        cache.close()
    finally:
        assert d.stop() == 0
    # So the journal still says ready, and restart grace holds it.
    d = Discoveryd(tmp_path, extra="restart_grace: 60s\n")
    try:
        st, svc = d.call("GET", "/api/discovery/services/cache")
        assert svc["ready"] and svc["restart_grace"]
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0
