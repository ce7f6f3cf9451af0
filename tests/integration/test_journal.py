"""The durable journal: what survives a restart, a torn tail, a corrupt
record, a full disk, and compaction; GET /api/discovery/events."""

import asyncio
import json
import os
import signal
import struct
import subprocess

import websockets

from harness import Discoveryd, ws_run

SUB = ["discovery.v1"]


def restart(d, tmp_path, sig=signal.SIGKILL, **kw):
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    d.stop(sig)
    return Discoveryd(tmp_path, http_port=http, agents_port=agents, **kw)


def journal(tmp_path):
    return os.path.join(str(tmp_path), "state", "journal")


async def hello(d, resume=None, service="web", instance="w-1", deps=("cache",)):
    ws = await websockets.connect(d.ws_url, subprotocols=SUB)
    msg = {"type": "hello", "service": service, "instance": instance,
           "depends_on": list(deps)}
    if resume:
        msg["resume"] = resume
    await ws.send(json.dumps(msg))
    return ws, json.loads(await ws.recv())


def test_state_survives_sigkill(tmp_path):
    d = Discoveryd(tmp_path)
    d.call("POST", "/api/discovery/services/api/notready")
    d.call("POST", "/api/discovery/services/cache/ready", {"ttl": "1h"})
    d.call("POST", "/api/discovery/invalidate", {"keys": ["a"]})
    _, before = d.call("GET", "/api/discovery/events")
    d = restart(d, tmp_path)
    try:
        _, after = d.call("GET", "/api/discovery/events")
        assert after == before
        # notready on a new service changes no readiness: a declaration
        # record only, no event.
        assert after["complete"] and len(after["events"]) == 2
        _, api = d.call("GET", "/api/discovery/services/api")
        assert (api["declared"], api["ready"]) == ("notready", False)
        _, cache = d.call("GET", "/api/discovery/services/cache")
        assert cache["declared"] == "ready" and cache["ready"]
        assert 3500 * 1000 < cache["ttl_ms"] <= 3600 * 1000
        # The seq carries on in the same epoch.
        _, body = d.call("POST", "/api/discovery/invalidate", {"keys": ["b"]})
        assert body["seq"] == before["seq"] + 1
    finally:
        assert d.stop() == 0


def test_resume_across_restart(tmp_path):
    d = Discoveryd(tmp_path)

    async def first():
        ws, w = await hello(d)
        await ws.close()
        return w
    w = ws_run(first())
    d.call("POST", "/api/discovery/invalidate", {"keys": ["missed"]})
    d = restart(d, tmp_path)
    try:
        async def second():
            ws, welcome = await hello(d, {"epoch": w["epoch"], "seq": w["seq"]})
            ev = json.loads(await ws.recv())
            await ws.close()
            return welcome, ev
        welcome, ev = ws_run(second())
        assert welcome["recovered"] is True and welcome["replay"] == 1
        assert ev["value"] == {"keys": ["missed"]}
    finally:
        assert d.stop() == 0


def test_torn_tail_is_dropped(tmp_path):
    d = Discoveryd(tmp_path)
    d.call("POST", "/api/discovery/invalidate", {"keys": ["a"]})
    _, before = d.call("GET", "/api/discovery/events")
    d.stop(signal.SIGKILL)
    with open(journal(tmp_path), "ab") as f:       # half a record
        f.write(struct.pack("<II", 500, 0) + b'{"t":"ev","seq":')
    d = Discoveryd(tmp_path)
    try:
        d.wait_line(r"msg=journal .*new_epoch=no torn_tail=dropped")
        _, after = d.call("GET", "/api/discovery/events")
        assert after == before
    finally:
        assert d.stop() == 0


def test_corrupt_record_changes_epoch(tmp_path):
    d = Discoveryd(tmp_path)
    d.call("POST", "/api/discovery/services/api/notready")
    for k in range(3):
        d.call("POST", "/api/discovery/invalidate", {"keys": ["k%d" % k]})
    _, before = d.call("GET", "/api/discovery/events")
    d.stop(signal.SIGKILL)
    with open(journal(tmp_path), "r+b") as f:
        data = f.read()
        at = data.index(b'"k1"')
        f.seek(at)
        f.write(b'"X1"')                        # the checksum no longer fits
    d = Discoveryd(tmp_path)
    try:
        d.wait_line(r"msg=journal .*new_epoch=\"?corrupt journal")
        d.wait_line(r"msg=\"journal damaged\"")
        _, after = d.call("GET", "/api/discovery/events")
        assert after["epoch"] != before["epoch"] and after["events"] == []
        # The state before the damage is kept.
        assert d.call("GET", "/api/discovery/services/api")[1]["declared"] \
            == "notready"

        async def resume():
            ws, welcome = await hello(d, {"epoch": before["epoch"],
                                          "seq": before["seq"]})
            await ws.close()
            return welcome
        assert ws_run(resume())["recovered"] is False
    finally:
        assert d.stop() == 0


def test_full_disk_503_then_recovers(tmp_path):
    d = Discoveryd(tmp_path)
    try:
        d.call("POST", "/api/discovery/invalidate", {"keys": ["a"]})
        size = os.path.getsize(journal(tmp_path))
        # The disk is full: not one more byte fits in the journal.
        subprocess.run(["prlimit", "--pid", str(d.p.pid),
                        "--fsize=%d:unlimited" % size], check=True)
        st, body = d.call("POST", "/api/discovery/invalidate",
                          {"keys": ["x" * 200]})
        assert (st, body["error"]) == (503, "unavailable")
        assert os.path.getsize(journal(tmp_path)) == size
        _, events = d.call("GET", "/api/discovery/events")
        good = events["seq"]
        # A declaration that cannot be recorded is not applied.
        st, _ = d.call("POST", "/api/discovery/services/web/ready")
        assert st == 503
        assert d.call("GET", "/api/discovery/services/web")[0] == 404
        # Space is back: calls work again and no seq was lost or reused.
        subprocess.run(["prlimit", "--pid", str(d.p.pid),
                        "--fsize=unlimited"], check=True)
        st, body = d.call("POST", "/api/discovery/invalidate", {"keys": ["b"]})
        assert st == 202 and body["seq"] == good + 1
        assert d.call("POST", "/api/discovery/services/web/ready")[0] == 200
    finally:
        assert d.stop() == 0
    # Everything acknowledged is on disk.
    d = Discoveryd(tmp_path)
    try:
        _, events = d.call("GET", "/api/discovery/events")
        seqs = [e["seq"] for e in events["events"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert d.call("GET", "/api/discovery/services/web")[1]["ready"]
    finally:
        assert d.stop() == 0


def test_compaction_bounds_the_journal(tmp_path):
    d = Discoveryd(tmp_path, extra="history: 16\n")
    try:
        d.call("POST", "/api/discovery/services/api/notready")
        for k in range(1100):
            d.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
        d.wait_line(r"msg=compacted events=16 services=1")
        _, before = d.call("GET", "/api/discovery/events")
        assert len(before["events"]) == 16
        assert os.path.getsize(journal(tmp_path)) < 200 * 1024
    finally:
        d = restart(d, tmp_path, extra="history: 16\n")
    try:
        _, after = d.call("GET", "/api/discovery/events")
        assert after == before
        assert d.call("GET", "/api/discovery/services/api")[1]["declared"] \
            == "notready"
    finally:
        assert d.stop() == 0


def test_events_endpoint(daemon):
    for k in range(5):
        daemon.call("POST", "/api/discovery/invalidate", {"keys": ["k%d" % k]})
    _, all_ = daemon.call("GET", "/api/discovery/events")
    seqs = [e["seq"] for e in all_["events"]]
    assert len(seqs) == 5 and all_["seq"] == seqs[-1]
    _, some = daemon.call("GET", "/api/discovery/events?after=%d&limit=2"
                          % seqs[1])
    assert [e["seq"] for e in some["events"]] == seqs[2:4]
    assert some["more"] is True and some["complete"] is True
    assert all_["events"][0]["type"] == "event"
    assert daemon.call("GET", "/api/discovery/events?after=-1")[0] == 400
    assert daemon.call("GET", "/api/discovery/events?after=x")[0] == 400
    assert daemon.call("POST", "/api/discovery/events")[0] == 405


def test_concurrent_writes_share_fdatasyncs_and_survive_sigkill(tmp_path):
    """Writes in flight together share one fdatasync (a group commit:
    docs/durability.md), and every one answered is in the journal after a
    SIGKILL taken while others were still in flight, across compactions
    (a history of 200 is compacted every 1,424 records); the seqs
    answered are distinct and the history has no gap."""
    import threading
    import urllib.request
    from dnsutil import metric

    d = Discoveryd(tmp_path, extra="history: 200\n")
    acked, stop = [], threading.Event()

    def writer(i):
        body = json.dumps({"keys": ["k%d" % i]}).encode()
        while not stop.is_set():
            req = urllib.request.Request(
                d.base + "/api/discovery/invalidate", data=body,
                method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    acked.append(json.loads(r.read())["seq"])
            except OSError:
                return      # the daemon is gone
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    try:
        from dnsutil import wait_until
        wait_until(lambda: len(acked) >= 3500, what="3500 writes")
        syncs = metric(d, "discovery_journal_fsync_seconds_count")
        writes = len(acked)
        assert syncs < writes, (syncs, writes)
        commits = metric(d, "discovery_journal_commits_total")
        shared = metric(d, "discovery_journal_committed_records_total")
        assert 0 < commits < shared, (commits, shared)
        d.p.send_signal(signal.SIGKILL)     # others still in flight
        stop.set()
        for t in threads:
            t.join()
    finally:
        stop.set()
    assert len(set(acked)) == len(acked)
    d = restart(d, tmp_path, extra="history: 200\n")
    try:
        _, got = d.call("GET", "/api/discovery/events?limit=5000")
        seqs = [e["seq"] for e in got["events"]]
        assert len(seqs) == 200
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert seqs[-1] >= max(acked)
        kept = {s for s in acked if s >= seqs[0]}
        assert kept <= set(seqs), sorted(kept - set(seqs))[:5]
        _, info = d.call("GET", "/api/discovery/info")
        assert info["seq"] == seqs[-1]
    finally:
        assert d.stop() == 0
