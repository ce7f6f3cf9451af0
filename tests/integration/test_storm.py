"""A restart storm: 2,000 agents lose discoveryd (SIGKILL) and all come
back, resumed (recovered:true), through admission control that refuses
some of them at first. The time it takes is printed, not asserted."""

import asyncio
import json
import random
import signal
import time

import websockets

from harness import Discoveryd, WAIT

AGENTS = 2000
SUB = ["discovery.v1"]
LIMITS = ("limits:\n  accept_rate: 1000\n  accept_burst: 200\n"
          "  accept_share_per_ip: 100\n"
          "  max_agents_per_ip: 0\n")


class Storm:
    def __init__(self):
        self.linked = 0
        self.resumed = 0
        self.refused = 0
        self.all_linked = asyncio.Event()
        self.all_resumed = asyncio.Event()


async def agent(i, url, storm):
    epoch = seq = None
    delay = 0.1
    while True:
        try:
            ws = await websockets.connect(url[0], subprotocols=SUB,
                                          open_timeout=30, ping_interval=None)
        except (OSError, asyncio.TimeoutError,
                websockets.WebSocketException) as e:
            if isinstance(e, websockets.InvalidStatusCode):
                storm.refused += 1
            await asyncio.sleep(random.uniform(0, delay))   # full jitter
            delay = min(delay * 2, 2.0)
            continue
        delay = 0.1
        try:
            hello = {"type": "hello", "service": "web", "instance": "a%d" % i,
                     "depends_on": ["cache"]}
            if epoch:
                hello["resume"] = {"epoch": epoch, "seq": seq}
            await ws.send(json.dumps(hello))
            welcome = json.loads(await ws.recv())
        except websockets.WebSocketException:
            continue
        if epoch is None:
            epoch, seq = welcome["epoch"], welcome["seq"]
            storm.linked += 1
            if storm.linked == AGENTS:
                storm.all_linked.set()
            try:
                await ws.wait_closed()
            except websockets.WebSocketException:
                pass
            continue
        assert welcome["recovered"] is True, welcome
        storm.resumed += 1
        if storm.resumed == AGENTS:
            storm.all_resumed.set()
        await ws.close()
        return


def test_restart_storm(tmp_path):
    d = Discoveryd(tmp_path, extra=LIMITS,
                   heartbeat="  interval: 2s\n  timeout: 10s\n")
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents_port = int(d.agents_addr.rsplit(":", 1)[1])
    url = [d.ws_url]
    holder = [d]

    async def scenario():
        storm = Storm()
        tasks = [asyncio.ensure_future(agent(i, url, storm))
                 for i in range(AGENTS)]
        await asyncio.wait_for(storm.all_linked.wait(), 60)
        holder[0].stop(signal.SIGKILL)
        start = time.monotonic()
        holder[0] = Discoveryd(tmp_path, http_port=http,
                               agents_port=agents_port, extra=LIMITS,
                               heartbeat="  interval: 2s\n  timeout: 10s\n")
        await asyncio.wait_for(storm.all_resumed.wait(), 120)
        took = time.monotonic() - start
        await asyncio.gather(*tasks)
        return took, storm.refused

    try:
        took, refused = asyncio.run(scenario())
        print("storm: %d agents resumed in %.2f s after the restart "
              "(%d connections refused by admission control)"
              % (AGENTS, took, refused))
        d = holder[0]
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert holder[0].stop() == 0
