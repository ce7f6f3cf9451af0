"""A group commit's events go to each link in one write (docs/design.md,
"Group commit"): several WebSocket frames back to back. Every agent still
gets every event, whole, once, in seq order, whatever reads them: a plain
WebSocket client, libagent, and one over TLS (lws writes the frames raw,
through its TLS layer)."""

import asyncio
import json
import threading
import urllib.request

import websockets

from dnsutil import wait_until
from harness import Discoveryd, ws_run
from test_link_protocol import SUB
from test_tls import pki, tls_daemon  # noqa: F401 (a fixture)
from test_watch import close, probe

def broadcasts(d, stop, acked, writers):
    """writers threads POSTing broadcasts, each its writer and count in
    the value, until stop."""
    def run(i):
        n = 0
        while not stop.is_set():
            body = json.dumps({"command": "Batch", "value": {
                "w": i, "n": n, "pad": "p" * (n % 300)}}).encode()
            req = urllib.request.Request(
                d.base + "/api/discovery/broadcast", data=body,
                method="POST", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30,
                                        context=d.ssl) as r:
                acked.append((json.loads(r.read())["seq"], i, n))
            n += 1
    threads = [threading.Thread(target=run, args=(i,))
               for i in range(writers)]
    for t in threads:
        t.start()
    return threads


async def collect(d, want, into, ssl=None):
    """A plain WebSocket agent: every event until seq `want()`."""
    ws = await websockets.connect(d.ws_url, subprotocols=SUB, ssl=ssl,
                                  max_size=None)
    await ws.send(json.dumps({"type": "hello", "service": "web",
                              "instance": "w-%d" % id(into)}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    into.append("linked")
    top = 0
    while not (want() and top >= want()):
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        except asyncio.TimeoutError:
            continue        # caught up: is the last one known yet?
        if m["type"] != "event":
            continue
        into.append((m["seq"], m["value"]["w"], m["value"]["n"],
                     m["value"]["pad"]))
        top = m["seq"]
    await ws.close()


def check(got, acked):
    events = [e for e in got if e != "linked"]
    seqs = [e[0] for e in events]
    assert seqs == sorted(set(seqs)), "seqs not rising once each"
    by_seq = {s: (w, n) for s, w, n in acked}
    for s, w, n, pad in events:
        if s in by_seq:
            assert (w, n) == by_seq[s] and pad == "p" * (n % 300), s
    first = seqs[0]
    assert {s for s in by_seq if s >= first} <= set(seqs)


def run_case(d, ssl=None, writers=32, count=1500):
    acked, stop, got, done = [], threading.Event(), [], []
    last = []

    def agent():
        ws_run(collect(d, lambda: last[0] if last else None, got, ssl))
        done.append(True)
    t = threading.Thread(target=agent)
    t.start()
    wait_until(lambda: got, what="the agent linked")
    threads = broadcasts(d, stop, acked, writers)
    try:
        wait_until(lambda: len(acked) >= count, what="the broadcasts")
    finally:
        stop.set()
        for w in threads:
            w.join()
    last.append(max(s for s, _, _ in acked))
    t.join(60)
    assert done, "the agent did not get the last event"
    check(got, acked)
    # Commits did share: fewer fdatasyncs than events.
    with urllib.request.urlopen(d.base + "/metrics", timeout=30,
                                context=d.ssl) as r:
        commits = [float(line.split()[-1]) for line in
                   r.read().decode().splitlines()
                   if line.startswith("discovery_journal_commits_total ")]
    assert commits and commits[0] < len(acked)
    return acked


def test_every_agent_gets_every_event_of_batched_writes(tmp_path):
    d = Discoveryd(tmp_path)
    web = probe(d, "web-9")
    try:
        acked = run_case(d)
        # libagent, through its own frame parser, got every one too.
        top = max(s for s, _, _ in acked)
        web.wait_line(r"event seq=%d kind=command" % top)
        seqs = [int(x) for x in __import__("re").findall(
            r"event seq=(\d+) kind=command", web.text())]
        assert seqs == sorted(set(seqs))
        assert {s for s, _, _ in acked if s >= seqs[0]} <= set(seqs)
    finally:
        close(web)
        assert d.stop() == 0, d.text()[-2000:]


def test_batched_writes_over_tls(tmp_path, pki):  # noqa: F811
    # Python's TLS reads slower than 32 writers write: fewer, so that the
    # agent keeps up (and answers its pings in time).
    d = tls_daemon(tmp_path, pki,
                   heartbeat="  interval: 1s\n  timeout: 30s\n")
    try:
        run_case(d, ssl=d.ssl, writers=8, count=400)
    finally:
        assert d.stop() == 0, d.text()[-2000:]
