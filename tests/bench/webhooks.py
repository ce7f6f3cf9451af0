"""webhooks.py: webhook_events_per_s and webhook_lag_p99_ms (docs/bench.md),
with max_in_flight 1 and 16. For each: a fresh discoveryd with one webhook
endpoint on a local receiver that answers 204 at once (an asyncio server in
a process of its own), and invalidations posted as fast as the API takes
them (4 threads, keep-alive). events_per_s: N events over the time from the
first post to the last event received; lag: from an event's post to its
first arrival at the receiver. Prints one JSON line.

    python3 tests/bench/webhooks.py [N]      default 5000
"""

import base64
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BIN = os.environ.get("DISCOVERY_BIN", os.path.join(ROOT, "build", "bin"))
THREADS = 4

RECEIVER = r'''
import asyncio, json, sys, time
got = {}
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n, wid = 0, None
            for line in head.split(b"\r\n"):
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    n = int(v)
                elif k == b"webhook-id":
                    wid = v.strip().decode()
            if n:
                await reader.readexactly(n)
            body = b""
            if head.startswith(b"GET /stats"):
                body = json.dumps(got).encode()
            elif wid and wid not in got:
                got[wid] = time.monotonic()
            writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n" %
                         (b"200 OK" if body else b"204 No Content",
                          len(body)) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
'''


def stats(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/stats")
    got = json.loads(c.getresponse().read())
    c.close()
    return got


def produce(http_addr, n, sent, lock):
    host, port = http_addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"keys": ["k"], "service": "web"})
    while True:
        with lock:
            if sent["left"] <= 0:
                break
            sent["left"] -= 1
        t = time.monotonic()
        c.request("POST", "/api/discovery/invalidate", body,
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        answer = json.loads(r.read())
        if r.status == 202:
            with lock:
                sent["at"][answer["seq"]] = t
    c.close()


def one_run(tmp, n, max_in_flight):
    secret = os.path.join(tmp, "whsec")
    with open(secret, "w") as f:
        f.write("whsec_" + base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(secret, 0o600)
    rx = subprocess.Popen([sys.executable, "-c", RECEIVER],
                          stdout=subprocess.PIPE, text=True)
    rx_port = int(rx.stdout.readline())
    conf = os.path.join(tmp, "d.yaml")
    with open(conf, "w") as f:
        f.write("listen:\n  http: 127.0.0.1:0\n  agents: 127.0.0.1:0\n"
                "state_dir: %s\nnode: bench\n"
                "history: %d\nwebhooks:\n  bench:\n"
                "    url: http://127.0.0.1:%d/hook\n"
                "    secret_file: %s\n    max_in_flight: %d\n" %
                (os.path.join(tmp, "state"), max(10000, n * 2), rx_port,
                 secret, max_in_flight))
    # The log goes to a file: a pipe read by a thread of this process would
    # slow the daemon down with the producers' GIL.
    log_path = os.path.join(tmp, "discoveryd.log")
    log = open(log_path, "w")
    d = subprocess.Popen([os.path.join(BIN, "discoveryd"), "-c", conf],
                         stderr=log)
    http_addr = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and d.poll() is None:
        with open(log_path) as f:
            text = f.read()
        m = re.search(r"msg=listening listener=http addr=(\S+)", text)
        if m and "msg=ready" in text:
            http_addr = m.group(1)
            break
        time.sleep(0.05)
    if not http_addr:
        d.kill()
        rx.kill()
        raise SystemExit("discoveryd did not start:\n" + open(log_path).read())
    sent, lock = {"left": n, "at": {}}, threading.Lock()
    t0 = time.monotonic()
    workers = [threading.Thread(target=produce,
                                args=(http_addr, n, sent, lock))
               for _ in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    deadline = time.monotonic() + 120
    got = {}
    while time.monotonic() < deadline:
        got = stats(rx_port)
        if len(got) >= len(sent["at"]):
            break
        time.sleep(0.05)
    d.terminate()
    d.wait(30)
    log.close()
    rx.terminate()
    rx.wait(10)
    arrivals = {int(k.rsplit("-", 1)[1]): t for k, t in got.items()}
    lags = sorted((arrivals[s] - t) * 1000 for s, t in sent["at"].items()
                  if s in arrivals)
    if not lags or len(arrivals) < len(sent["at"]):
        return None, None
    last = max(arrivals.values())
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return len(lags) / (last - t0), p99


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    out = {"events": n}
    for mif in (1, 16):
        tmp = tempfile.mkdtemp(prefix="bench-webhooks-")
        try:
            rate, p99 = one_run(tmp, n, mif)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out["webhook_events_per_s_mif%d" % mif] = \
            round(rate, 1) if rate else None
        out["webhook_lag_p99_ms_mif%d" % mif] = \
            round(p99, 2) if p99 is not None else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
