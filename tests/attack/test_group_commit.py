"""Adversarial cases for the group commit (274125c): writes whose HTTP
connection is suspended while the hub runs them, against the paths that
stop or replace the libmicrohttpd daemon (SIGTERM, a TLS reload on
SIGHUP), and the durability promises of docs/durability.md."""

import http.client
import json
import os
import signal
import ssl
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                "integration"))

from certs import make_ca, make_server  # noqa: E402
from harness import Discoveryd, WAIT  # noqa: E402


def writers(d, n, acked, stop, errors, ctx=None):
    """n threads, each on one keep-alive connection, POSTing invalidations
    until stop is set or the daemon goes."""
    host, port = d.http_addr.rsplit(":", 1)

    def run(i):
        body = json.dumps({"keys": ["k%d" % i]})
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = (http.client.HTTPSConnection(
                        host, int(port), timeout=WAIT, context=ctx)
                        if ctx else http.client.HTTPConnection(
                            host, int(port), timeout=WAIT))
                conn.request("POST", "/api/discovery/invalidate", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                if r.status in (200, 202):
                    acked.append(json.loads(text)["seq"])
                else:
                    errors.append(r.status)
            except (OSError, http.client.HTTPException):
                conn = None
                if d.p.poll() is not None:
                    return
                time.sleep(0.01)
    ts = [threading.Thread(target=run, args=(i,), daemon=True)
          for i in range(n)]
    for t in ts:
        t.start()
    return ts


def wait_for(pred, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_sigterm_with_writes_in_flight_exits_0(tmp_path, slow_disk,
                                              monkeypatch):
    """SIGTERM while writers keep 32 writes in flight (a disk whose
    fdatasync takes 200 ms keeps them there): api_stop calls
    MHD_stop_daemon with write connections still suspended in the hub."""
    monkeypatch.setenv("SLOW_FDATASYNC_MS", "200")
    d = Discoveryd(tmp_path)
    acked, errors, stop = [], [], threading.Event()
    ts = writers(d, 32, acked, stop, errors)
    try:
        wait_for(lambda: len(acked) >= 1, "a write")
        d.p.send_signal(signal.SIGTERM)
        d.p.wait(WAIT)
    finally:
        stop.set()
        for t in ts:
            t.join(WAIT)
    rc = d.stop()
    assert rc == 0, (rc, d.text()[-3000:])


@pytest.fixture
def pki(tmp_path):
    dd = str(tmp_path)
    ca = make_ca(dd, "ca")
    server = make_server(dd, "server", ca)
    return {"dir": dd, "ca": ca, "server": server}


def test_tls_reload_with_writes_in_flight_keeps_serving(tmp_path, pki):
    """SIGHUP with TLS: reload_tls stops the old libmicrohttpd daemon,
    whose keep-alive connections have writes suspended in the hub."""
    key, crt = pki["server"]
    d = Discoveryd(tmp_path, tls={"cert": crt, "key": key,
                                  "ca": pki["ca"][1]})
    ctx = ssl.create_default_context(cafile=pki["ca"][1])
    acked, errors, stop = [], [], threading.Event()
    ts = writers(d, 32, acked, stop, errors, ctx)
    try:
        for _ in range(5):
            n = len(acked)
            wait_for(lambda: len(acked) >= n + 200 or d.p.poll() is not None,
                     "200 more writes")
            assert d.p.poll() is None, d.text()[-3000:]
            mark = d.mark()
            d.kill(signal.SIGHUP)
            d.wait_line(r"msg=reloaded", start=mark)
        assert d.p.poll() is None, d.text()[-3000:]
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        stop.set()
        for t in ts:
            t.join(WAIT)
        rc = d.stop()
    assert rc == 0, (rc, d.text()[-3000:])


def sse_ids(d, last, seconds):
    """Open the live stream with Last-Event-ID: last; the ids it sends in
    about `seconds`."""
    import socket
    host, port = d.http_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), WAIT)
    s.sendall(("GET /api/discovery/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Accept: text/event-stream\r\nLast-Event-ID: %d\r\n\r\n"
               % last).encode())
    buf, end = b"", time.monotonic() + seconds
    s.settimeout(0.1)
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    s.close()
    return [int(line[4:]) for line in buf.decode(errors="replace").split("\n")
            if line.startswith("id: ")]


def test_sse_opened_in_a_commit_sends_each_event_once(tmp_path):
    """An SSE stream opened in the same hub pass as writes replays their
    events from the log (run_sse_open) and then gets them again when the
    commit delivers what it held: ids must still rise, each once."""
    d = Discoveryd(tmp_path)
    acked, errors, stop = [], [], threading.Event()
    ts = writers(d, 32, acked, stop, errors)
    bad = []
    try:
        wait_for(lambda: len(acked) >= 200, "200 writes")
        for _ in range(40):
            ids = sse_ids(d, max(acked) - 3, 0.3)
            if any(b <= a for a, b in zip(ids, ids[1:])):
                bad.append(ids[:40])
    finally:
        stop.set()
        for t in ts:
            t.join(WAIT)
    rc = d.stop()
    assert not bad, "%d of 40 streams repeated ids, e.g. %s" % (len(bad),
                                                                bad[0])
    assert rc == 0


SLOW_SYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
/* fdatasync takes SLOW_FDATASYNC_MS longer: a slow disk. */
int fdatasync(int fd)
{
	static int (*real)(int);
	const char *ms = getenv("SLOW_FDATASYNC_MS");
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (ms) {
		long n = atol(ms);
		struct timespec t = { n / 1000, (n % 1000) * 1000000L };
		nanosleep(&t, NULL);
	}
	return real(fd);
}
"""


@pytest.fixture
def slow_disk(tmp_path, monkeypatch):
    import subprocess
    src = tmp_path / "slow.c"
    so = tmp_path / "slow.so"
    src.write_text(SLOW_SYNC_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src),
                    "-ldl"], check=True)
    monkeypatch.setenv("LD_PRELOAD", str(so))
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") +
                       ":verify_asan_link_order=0")
    monkeypatch.setenv("SLOW_FDATASYNC_MS", "1500")
    return so


def test_sse_change_of_a_declaration_waits_for_its_commit(tmp_path,
                                                         slow_disk):
    """docs/design.md, "Group commit": nothing of a commit is seen before
    it is durable, no SSE line. call_declare pushes `event: change`
    (hub_sse_change, local.c) as it runs, before the commit's fdatasync:
    with a slow fdatasync the stream says the declaration changed while
    its write is still unanswered (and, the readiness event being held,
    change now comes before the event it used to follow)."""
    import socket
    d = Discoveryd(tmp_path)
    host, port = d.http_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), WAIT)
    s.sendall(b"GET /api/discovery/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Accept: text/event-stream\r\n\r\n")
    buf = b""
    while b"retry:" not in buf:
        buf += s.recv(65536)
    answered = []

    def declare():
        answered.append(time.monotonic())
        answered.append(d.call("POST", "/api/discovery/services/web/ready"))
    t = threading.Thread(target=declare)
    t.start()
    s.settimeout(WAIT)
    while b"event: change" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    seen_at = time.monotonic()
    t.join(WAIT)
    while b"event: event" not in buf:
        buf += s.recv(65536)
    s.close()
    text = buf.decode(errors="replace")
    rc = d.stop()
    assert answered[1][0] == 200, answered
    # Its fdatasync alone takes 1.5 s: a line sooner came before it.
    assert seen_at - answered[0] >= 1.4, (
        "`event: change` came %.2f s after the call, before its "
        "fdatasync (1.5 s) was done" % (seen_at - answered[0]))
    assert text.index("event: event") < text.index("event: change"), text
    assert rc == 0


def test_a_link_closed_while_a_commit_delivers_keeps_seqs_rising(tmp_path):
    """hub_hold_end delivers the commit's held events one by one; one that
    fills a slow link's send queue closes it (link_close -> unlink_instance
    -> the service's readiness event), and that event, journaled and
    delivered at once since the hold is over, reaches the dependents
    before the rest of the held events, whose seqs are lower: an agent
    sees seqs go back (docs/protocol.md: they increase), and libagent
    drops the older ones as duplicates (agent/lib/session.c)."""
    from harness import masked_frame, raw_link, read_frame
    d = Discoveryd(tmp_path, extra="limits:\n  send_queue: 64KiB\n",
                   heartbeat="  interval: 5s\n  timeout: 60s\n")
    seen, done = [], threading.Event()
    try:
        obs, rest = raw_link(d.agents_addr, {
            "type": "hello", "service": "api", "instance": "a-1",
            "depends_on": ["web"]})

        def observe():
            nonlocal rest
            while not done.is_set():
                f = read_frame(obs, rest)
                if not f:
                    return
                op, payload, rest = f
                if op == 0x1:
                    m = json.loads(payload)
                    if m.get("type") == "event":
                        seen.append((m["seq"], m["kind"]))
        t = threading.Thread(target=observe, daemon=True)
        t.start()
        # A libagent client too, a dependent of web like the observer.
        from harness import Proc, ROOT
        import subprocess
        probe = Proc([os.path.join(ROOT, "build", "tests", "tools",
                                   "agent_probe"),
                      d.ws_url, "api2", "p-1", "web"], "probe",
                     stdin=subprocess.PIPE)
        probe.wait_line(r"link state=linked")
        slow_round = 0
        bad = None
        while slow_round < 5 and bad is None:
            slow_round += 1
            mark = d.mark()
            slow, _ = raw_link(d.agents_addr, {
                "type": "hello", "service": "web", "instance": "w-1"},
                rcvbuf=4096)
            slow.sendall(masked_frame(0x1, json.dumps(
                {"type": "status", "ready": True}).encode()))
            d.wait_line(r"msg=readiness service=web ready=true", start=mark)
            blob = "x" * 20000
            acked, errors, stop = [], [], threading.Event()
            host, port = d.http_addr.rsplit(":", 1)

            def post():
                c = http.client.HTTPConnection(host, int(port), timeout=WAIT)
                while not stop.is_set():
                    c.request("POST", "/api/discovery/broadcast",
                              json.dumps({"command": "Blob",
                                          "value": blob}),
                              {"Content-Type": "application/json"})
                    r = c.getresponse()
                    r.read()
                    acked.append(r.status)
            ps = [threading.Thread(target=post, daemon=True)
                  for _ in range(16)]
            for p in ps:
                p.start()
            d.wait_line(r"instance=w-1 code=1013", start=mark)
            d.wait_line(r"msg=readiness service=web ready=false",
                        start=mark)
            time.sleep(0.3)
            stop.set()
            for p in ps:
                p.join(WAIT)
            slow.close()
            time.sleep(0.3)
            seqs = [s for s, _ in seen]
            for i in range(1, len(seqs)):
                if seqs[i] <= seqs[i - 1]:
                    lo = max(0, i - 4)
                    bad = seen[lo:i + 4]
                    break
        # Every command the raw observer got, libagent should have too.
        import re
        last = max(s for s, k in seen if k == "command")
        probe.wait_line(r"event seq=(\d+) kind=command", timeout=5)
        time.sleep(1)
        got = {int(m) for m in re.findall(r"event seq=(\d+) kind=command",
                                          probe.text())}
        lost = sorted(s for s, k in seen if k == "command" and
                      s not in got and s <= last)
        probe.stop()
    finally:
        done.set()
        rc = d.stop()
    assert bad is None, ("seqs went back at the observer: %s; libagent "
                         "never passed on commands %s" % (bad, lost[:20]))
    assert not lost, lost[:20]
    assert rc == 0


def test_sustained_writes_do_not_starve_the_agent_links(tmp_path):
    """A guard (passes today): hub_drain_requests takes calls until the
    queue is empty, committing every GROUP_COMMIT_MAX, and writes no
    longer hold an HTTP thread; were writers to keep the queue from ever
    emptying, lws_service would not run and links would go unserved (no
    pings, pongs unread, then heartbeat timeouts). 60 keep-alive wrk
    clients (max_http_per_ip is 64) do not get there."""
    from harness import masked_frame, raw_link, read_frame
    d = Discoveryd(tmp_path, heartbeat="  interval: 300ms\n  timeout: 1500ms\n")
    pings, done = [], threading.Event()
    try:
        obs, rest = raw_link(d.agents_addr, {
            "type": "hello", "service": "api", "instance": "a-1"})

        def observe():
            nonlocal rest
            while not done.is_set():
                try:
                    f = read_frame(obs, rest)
                except OSError:
                    return
                if not f:
                    return
                op, payload, rest = f
                if op == 0x9:
                    pings.append(time.monotonic())
                    obs.sendall(masked_frame(0xA, payload))
        t = threading.Thread(target=observe, daemon=True)
        t.start()
        d.wait_line(r"msg=linked .*instance=a-1")
        wait_for(lambda: len(pings) >= 2, "pings before the load")
        import subprocess
        lua = tmp_path / "post.lua"
        lua.write_text('wrk.method = "POST"\n'
                       'wrk.body = \'{"keys":["k"]}\'\n'
                       'wrk.headers["Content-Type"] = "application/json"\n')
        start = time.monotonic()
        out = subprocess.run(["wrk", "-t2", "-c60", "-d6s", "-s", str(lua),
                              d.base + "/api/discovery/invalidate"],
                             capture_output=True, text=True).stdout
        acked = [line for line in out.split("\n") if "Requests/sec" in line]
        during = [p for p in pings if p >= start]
        gaps = [b - a for a, b in zip([start] + during, during)]
        killed = d.count(r"instance=a-1 reason=\"heartbeat timeout\"")
    finally:
        done.set()
        rc = d.stop()
    assert not killed, "the link was dropped for a heartbeat timeout"
    assert gaps and max(gaps) < 1.5, (acked, len(during), gaps[-5:])
    assert rc == 0


def test_disk_full_in_the_middle_of_a_commit(tmp_path):
    """The file-size limit falls in the middle of a pass's batch: the
    writes before it are answered, those after it 503 (journal_append
    cuts them back to j->size, which counts the batch's unsynced
    records), and after a restart every answered seq is there, the
    history has no gap and the journal no torn tail."""
    import subprocess
    d = Discoveryd(tmp_path, extra="history: 20000\n")
    path = os.path.join(str(tmp_path), "state", "journal")
    acked, errors, stop = [], [], threading.Event()
    ts = writers(d, 24, acked, stop, errors)
    try:
        wait_for(lambda: len(acked) >= 300, "300 writes")
        for _ in range(3):
            size = os.path.getsize(path)
            subprocess.run(["prlimit", "--pid", str(d.p.pid),
                            "--fsize=%d:unlimited" % (size + 20000)],
                           check=True)
            n = len(errors)
            wait_for(lambda: len(errors) >= n + 50, "503s")
            subprocess.run(["prlimit", "--pid", str(d.p.pid),
                            "--fsize=unlimited"], check=True)
            n = len(acked)
            wait_for(lambda: len(acked) >= n + 300, "writes again")
    finally:
        stop.set()
        for t in ts:
            t.join(WAIT)
    assert set(errors) == {503}, set(errors)
    assert d.stop() == 0
    d = Discoveryd(tmp_path, extra="history: 20000\n")
    try:
        assert not d.count(r"journal damaged"), d.text()[-2000:]
        _, got = d.call("GET", "/api/discovery/events?limit=20000")
        seqs = [e["seq"] for e in got["events"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert set(acked) <= set(seqs)
        assert len(set(acked)) == len(acked)
    finally:
        assert d.stop() == 0


FAIL_SYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
/* The FAIL_FDATASYNC_AT-th fdatasync fails with EIO, without syncing
 * (a disk that lost the write); each one that works writes the file's
 * size then to SYNCED_SIZE_FILE. */
int fdatasync(int fd)
{
	static int (*real)(int);
	static int n;
	const char *at = getenv("FAIL_FDATASYNC_AT");
	const char *out = getenv("SYNCED_SIZE_FILE");
	struct stat st;
	int rc;
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	if (at && ++n == atoi(at)) {
		errno = EIO;
		return -1;
	}
	rc = real(fd);
	if (rc == 0 && out && fstat(fd, &st) == 0) {
		char buf[32];
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int len = snprintf(buf, sizeof(buf), "%lld", (long long)st.st_size);
		if (o >= 0) {
			(void)!write(o, buf, (size_t)len);
			close(o);
		}
	}
	return rc;
}
"""


def test_failed_fdatasync_records_are_not_served_after_the_restart(
        tmp_path, monkeypatch):
    """A failed fdatasync ends the process (docs/durability.md: "the
    restart replays what is durable"). But the failed commit's records are
    still in the file (the page cache), not known to be on disk: the
    restart serves them as history, and replays them to agents, though a
    crash can still take them back and none of them was ever answered."""
    import subprocess
    src, so = tmp_path / "fail.c", tmp_path / "fail.so"
    src.write_text(FAIL_SYNC_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src),
                    "-ldl"], check=True)
    monkeypatch.setenv("LD_PRELOAD", str(so))
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") +
                       ":verify_asan_link_order=0")
    monkeypatch.setenv("FAIL_FDATASYNC_AT", "200")
    synced_file = tmp_path / "synced"
    monkeypatch.setenv("SYNCED_SIZE_FILE", str(synced_file))
    path = os.path.join(str(tmp_path), "state", "journal")
    d = Discoveryd(tmp_path, extra="history: 20000\n")
    acked, errors, stop = [], [], threading.Event()
    ts = writers(d, 24, acked, stop, errors)
    try:
        d.p.wait(WAIT)
    finally:
        stop.set()
        for t in ts:
            t.join(WAIT)
    assert d.p.returncode == 1
    assert d.count(r"msg=\"journal fdatasync failed\"")
    d.stop()
    synced = int(synced_file.read_text())
    left = os.path.getsize(path)
    monkeypatch.delenv("LD_PRELOAD")
    d = Discoveryd(tmp_path, extra="history: 20000\n")
    try:
        _, got = d.call("GET", "/api/discovery/events?limit=20000")
        last = got["events"][-1]["seq"]
    finally:
        assert d.stop() == 0
    assert left == synced, (
        "the journal kept %d bytes past its last good fdatasync (the "
        "failed commit's records, never answered, not known to be on "
        "disk); the restart serves them as history up to seq %d "
        "(last answered: %d)" % (left - synced, last, max(acked)))


def test_clients_gone_while_their_writes_are_suspended(tmp_path, slow_disk):
    """Clients that send a write and leave (RST) while it waits for its
    commit: the resumed connection's answer goes nowhere, its request and
    hub_req are freed once (ASan), and the writes were applied."""
    import socket
    d = Discoveryd(tmp_path)
    host, port = d.http_addr.rsplit(":", 1)
    body = b'{"keys":["gone"]}'
    req = (b"POST /api/discovery/invalidate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body))
    for _ in range(12):
        s = socket.create_connection((host, int(port)), WAIT)
        s.sendall(req)
        time.sleep(0.1)     # read, and suspended in the hub
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    wait_for(lambda: d.count(r"msg=event kind=invalidate") >= 1,
             "a write applied", timeout=60)
    n = -1
    while n != d.count(r"msg=event kind=invalidate"):
        n = d.count(r"msg=event kind=invalidate")
        time.sleep(3)     # more than a commit's 1.5 s fdatasync
    assert d.call("GET", "/healthz")[0] == 200
    assert d.stop() == 0
