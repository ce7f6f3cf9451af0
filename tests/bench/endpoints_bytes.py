"""endpoints_bytes.py: endpoints_update_bytes_1k (docs/bench.md). A fresh
discoveryd, N instances of service api with addresses (ready), one agent
watching api; then, R times, one instance turns not ready and ready again. Counts the bytes
the watcher receives for each change (WebSocket frames, headers included)
and, for scale, the whole set's message. Prints one JSON line.

    python3 tests/bench/endpoints_bytes.py [N [R]]     default 1000, 10
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SUB = ["discovery.v1"]


def frame_bytes(payload):
    """A server's (unmasked) WebSocket frame carrying payload."""
    n = len(payload.encode())
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


async def instance(url, i):
    ws = await websockets.connect(url, subprotocols=SUB)
    await ws.send(json.dumps({
        "type": "hello", "service": "api", "instance": "api-%d" % i,
        "address": "10.6.%d.%d:%d" % (i // 250, i % 250 + 1, 8000 + i),
        "weight": 1 + i % 100, "tags": ["blue"]}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    await ws.send(json.dumps({"type": "status", "ready": True}))
    return ws


async def settle(ws, held, want_ready, n):
    """Apply messages to held until n instances are listed, want_ready of
    them ready; the last message's text."""
    raw = None
    while sum(e["state"] == "ready" for e in held.values()) != want_ready \
            or len(held) != n:
        raw = await asyncio.wait_for(ws.recv(), 60)
        msg = json.loads(raw)
        if msg.get("type") != "endpoints":
            continue
        if "endpoints" in msg:
            held.clear()
            held.update({e["instance"]: e for e in msg["endpoints"]})
        else:
            for g in msg["gone"]:
                held.pop(g, None)
            held.update({e["instance"]: e for e in msg["set"]})
    return raw


async def run(url, n, rounds):
    links = [await instance(url, i) for i in range(n)]
    watcher = await websockets.connect(url, subprotocols=SUB, max_size=None)
    await watcher.send(json.dumps({"type": "hello", "service": "web",
                                   "instance": "watcher", "watch": ["api"]}))
    welcome = json.loads(await watcher.recv())
    held = {e["instance"]: e for e in welcome["endpoints"]["api"]["endpoints"]}
    await settle(watcher, held, n, n)
    full = json.dumps(welcome["endpoints"]["api"])
    deltas = []
    for r in range(rounds):
        # One instance goes not ready, then ready again: two changes.
        for ready, want in ((False, n - 1), (True, n)):
            await links[r % n].send(json.dumps({"type": "status",
                                                "ready": ready}))
            deltas.append(frame_bytes(await settle(watcher, held, want,
                                                   n)))
    for ws in links + [watcher]:
        await ws.close()
    return {"instances": n, "rounds": rounds,
            "delta_bytes": sorted(deltas)[len(deltas) // 2],
            "delta_bytes_max": max(deltas),
            "full_set_bytes": frame_bytes(full)}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    tmp = tempfile.mkdtemp(prefix="epbytes.")
    conf = os.path.join(tmp, "discoveryd.yaml")
    with open(conf, "w") as f:
        f.write("listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }\n"
                "state_dir: %s\nlimits: { max_agents_per_ip: 0, "
                "accept_rate: 0 }\n" % os.path.join(tmp, "state"))
    log = open(os.path.join(tmp, "server.log"), "w+")
    # Its log goes to a file: a pipe no one reads would stall it.
    d = subprocess.Popen([os.path.join(ROOT, "build/bin/discoveryd"), "-c",
                          conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        agents = None
        for _ in range(600):
            text = open(log.name).read()
            if "msg=ready" in text:
                agents = text.split("listener=agents addr=")[1].split()[0]
                break
            time.sleep(0.05)
        out = asyncio.run(run("ws://%s/" % agents, n, rounds))
        print(json.dumps(out))
    finally:
        d.terminate()
        d.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
