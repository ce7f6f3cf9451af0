#!/usr/bin/env python3
"""A tiny discovery agent in Python, written only against docs/protocol.md.

    agent.py ws://127.0.0.1:5917/ web web-1 cache api

It links as instance web-1 of service web, mirrors the readiness of cache
and api, prints every event, and reconnects with full-jitter backoff,
resuming from the last seq it processed, so it gets every event once.
With --exit-when-ready it exits 0 as soon as all its dependencies are
ready (the integration tests run it that way).

Needs python3-websockets (Debian) or `pip install websockets`.
"""

import asyncio
import json
import random
import sys

import websockets


async def run(url, service, instance, deps, exit_when_ready):
    epoch, seq, delay = None, 0, 0.1
    ready = {d: False for d in deps}
    while True:
        try:
            async with websockets.connect(
                    url, subprotocols=["discovery.v1"]) as ws:
                hello = {"type": "hello", "service": service,
                         "instance": instance, "depends_on": deps}
                if epoch:
                    hello["resume"] = {"epoch": epoch, "seq": seq}
                await ws.send(json.dumps(hello))
                welcome = json.loads(await ws.recv())
                if not welcome["recovered"]:
                    print("reset: flush whatever came from events", flush=True)
                    seq = welcome["seq"]
                epoch, delay = welcome["epoch"], 0.1
                ready.update(welcome["services"])
                print("linked", welcome["node"], ready, flush=True)
                if exit_when_ready and all(ready.values()):
                    return
                async for frame in ws:
                    ev = json.loads(frame)
                    if ev["seq"] <= seq:
                        continue            # already processed
                    seq = ev["seq"]
                    v = ev.get("value")
                    if ev["kind"] == "readiness" and v["service"] in ready:
                        ready[v["service"]] = v["ready"]
                    print(ev["seq"], ev["kind"], ev["command"], v, flush=True)
                    if exit_when_ready and all(ready.values()):
                        return
        except (OSError, websockets.WebSocketException) as e:
            print("unlinked:", e, flush=True)
        await asyncio.sleep(random.uniform(0, delay))    # full jitter
        delay = min(delay * 2, 30)


def main():
    args = [a for a in sys.argv[1:] if a != "--exit-when-ready"]
    if len(args) < 3:
        sys.exit(__doc__)
    asyncio.run(run(args[0], args[1], args[2], args[3:],
                    "--exit-when-ready" in sys.argv))


if __name__ == "__main__":
    main()
