"""An agent that stops reading is closed with 1013 once its send queue
passes limits.send_queue; the others keep getting every event."""

import json

import websockets

from harness import Discoveryd, raw_link, ws_run


def test_slow_agent_closed_others_unharmed(tmp_path):
    d = Discoveryd(tmp_path, extra="limits:\n  send_queue: 64KiB\n",
                   heartbeat="  interval: 5s\n  timeout: 60s\n")
    try:
        # A tiny receive buffer: it stops taking bytes soon.
        slow, _ = raw_link(d.agents_addr, {"type": "hello", "service": "slow",
                                           "instance": "s-1"}, rcvbuf=4096)
        d.wait_line(r"msg=linked .*instance=s-1")
        blob = "x" * 60000

        async def scenario():
            fast = await websockets.connect(d.ws_url,
                                            subprotocols=["discovery.v1"],
                                            max_size=None)
            await fast.send(json.dumps({"type": "hello", "service": "fast",
                                        "instance": "f-1"}))
            await fast.recv()
            mark = d.mark()
            sent = 0
            for _ in range(400):
                st, body = d.call("POST", "/api/discovery/broadcast",
                                  {"command": "Blob", "value": blob})
                assert st == 202
                sent += 1
                ev = json.loads(await fast.recv())
                assert ev["seq"] == body["seq"]
                if d.count(r"instance=s-1 code=1013", mark):
                    break
            d.wait_line(r"msg=closing .*instance=s-1 code=1013 "
                        r"reason=\"send queue full\"", start=mark)
            # The fast agent got every one, in order, and keeps getting them.
            st, body = d.call("POST", "/api/discovery/invalidate",
                              {"keys": ["k"]})
            ev = json.loads(await fast.recv())
            assert ev["kind"] == "invalidate" and ev["seq"] == body["seq"]
            await fast.close()
            return sent

        assert ws_run(scenario()) > 1
        slow.close()
    finally:
        assert d.stop() == 0
