"""dns_agents.py: the instances the DNS benchmark asks about (tests/bench/
dns.sh). Links N instances of a service, each with an address and ready,
prints "linked N" once all are welcomed, then holds the links (answering
the daemon's pings) until it is killed.

    python3 tests/bench/dns_agents.py ws://HOST:PORT/ SERVICE N
"""

import asyncio
import json
import sys

import websockets


async def one(url, service, i):
    ws = await websockets.connect(url, subprotocols=["discovery.v1"])
    await ws.send(json.dumps({
        "type": "hello", "service": service, "instance": "%s-%d" % (service, i),
        "address": "10.5.%d.%d:%d" % (i // 250, i % 250 + 1, 8000 + i),
        "weight": 1 + i % 100}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    await ws.send(json.dumps({"type": "status", "state": "ready",
                              "ready": True}))
    return ws


async def main(url, service, n):
    links = [await one(url, service, i) for i in range(n)]
    print("linked %d" % len(links), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
