"""The agent listener's descriptor budget (link_admit.c, REFUSED_FULL at
n_conns >= max_conns; n_conns counted by peers_hold/peers_put). A count
that leaked on some path would lock every agent out for good, so each kind
of connection is churned well past the budget: closed at once, closed
mid-request, plain HTTP that never upgrades, garbage, reset after the
upgrade, linked then gone, linked then closed by the hub (a bad frame),
TLS handshakes that fail. Afterwards a full budget of new agents must
still link, with no listener_full refusal; and with HTTP and DNS busy
under a low file limit the API keeps answering."""

import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

from harness import BIN, UPGRADE, Proc, WAIT, masked_frame, write
from cluster_harness import redis  # noqa: F401 (a fixture)
from test_tls import pki  # noqa: F401 (a fixture)


def metric(http, name):
    r = subprocess.run(["curl", "-s", "-m", "5", "http://%s/metrics" % http],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def start(tmp_path, nofile, extra=""):
    cfg = write(os.path.join(str(tmp_path), "d.yaml"),
                "listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0%s }\n"
                "state_dir: %s\nlimits: { max_http: 32, accept_rate: 0, "
                "max_agents_per_ip: 0 }\n"
                "heartbeat: { hello_timeout: 2s, interval: 10s, "
                "timeout: 70s }\n%s" %
                (", dns: 127.0.0.1:0" if "dns" in extra else "", tmp_path,
                 extra.replace("dns", "")))
    d = Proc(["prlimit", "--nofile=%d" % nofile,
              os.path.join(BIN, "discoveryd"), "-c", cfg], "discoveryd")
    a = d.wait_line(r"listener=agents addr=(\S+):(\d+)")
    http = d.wait_line(r"listener=http addr=(\S+)").group(1)
    d.wait_line(r"msg=ready")
    return d, (a.group(1), int(a.group(2))), http


def hello(i):
    return masked_frame(0x1, json.dumps(
        {"type": "hello", "service": "churn", "instance": "c%d" % i})
        .encode())


def rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def upgraded(addr):
    s = socket.create_connection(addr, WAIT)
    s.sendall(UPGRADE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return s, buf


def churn_once(addr, kind, i):
    s = socket.create_connection(addr, WAIT)
    if kind == "close":
        s.close()
    elif kind == "rst":
        rst(s)
    elif kind == "half-request":
        s.sendall(UPGRADE[:30])
        s.close()
    elif kind == "plain-http":
        s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(2)
        try:
            s.recv(4096)
        except OSError:
            pass
        s.close()
    elif kind == "garbage":
        s.sendall(b"\x16\x03\x01\x00\x05hello" + os.urandom(64))
        s.close()
    elif kind == "upgrade-rst":
        s.close()
        s, _ = upgraded(addr)
        rst(s)
    elif kind == "linked-gone":
        s.close()
        s, _ = upgraded(addr)
        s.sendall(hello(i))
        time.sleep(0.005)
        s.close()
    elif kind == "bad-frame":
        s.close()
        s, _ = upgraded(addr)
        s.sendall(hello(i) + masked_frame(0x1, b"{not json"))
        s.settimeout(2)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()


KINDS = ("close", "rst", "half-request", "plain-http", "garbage",
         "upgrade-rst", "linked-gone", "bad-frame")


def churn(addr, n_per_kind, threads=8):
    errors = []

    def run(t):
        for j in range(n_per_kind * len(KINDS) // threads):
            kind = KINDS[(t + j) % len(KINDS)]
            try:
                churn_once(addr, kind, t * 100000 + j)
            except OSError as e:
                errors.append((kind, e))

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def fill(addr, n):
    """n agents linked at once; returns their sockets, or fails."""
    socks = []
    for i in range(n):
        s, buf = upgraded(addr)
        assert buf.startswith(b"HTTP/1.1 101"), (i, buf[:80])
        s.sendall(hello(900000 + i))
        socks.append(s)
    return socks


def test_budget_count_does_not_leak_under_churn(tmp_path):
    # 256 - max_http (32) - 64: a budget of 160 connections.
    d, addr, http = start(tmp_path, 256)
    try:
        errors = churn(addr, 800)
        assert len(errors) < 50, errors[:5]
        # The count comes back once the hub has closed what it holds.
        deadline = time.monotonic() + 10
        while metric(http, "discovery_links") > 0 and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        full0 = metric(http, 'discovery_accepts_refused_total'
                             '{reason="listener_full"}')
        socks = fill(addr, 158)
        assert metric(http, "discovery_agents_connected") >= 0
        assert metric(http, 'discovery_accepts_refused_total'
                            '{reason="listener_full"}') == full0
        for s in socks:
            s.close()
        r = subprocess.run(["curl", "-s", "-m", "5", "http://%s/healthz"
                            % http], capture_output=True, text=True)
        assert r.stdout == '{"status":"ok"}'
    finally:
        assert d.stop() == 0, d.text()[-3000:]


def test_failed_tls_handshakes_do_not_leak_the_count(tmp_path, pki):  # noqa
    """TLS on the agent listener: handshakes cut midway, with a client
    that does not trust the server, or plain text on the TLS port."""
    key, crt = pki["server"]
    d, addr, http = start(tmp_path, 256, "tls:\n  cert: %s\n  key: %s\n" %
                          (crt, key))
    rogue = ssl.create_default_context(cafile=pki["rogue"][1])
    good = ssl.create_default_context(cafile=pki["ca"][1])
    good.check_hostname = False
    try:
        for i in range(300):
            s = socket.create_connection(addr, WAIT)
            k = i % 4
            if k == 0:
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                rst(s)
                continue
            if k == 1:
                s.sendall(UPGRADE)
                time.sleep(0.002)
                s.close()
                continue
            try:
                t = (rogue if k == 2 else good).wrap_socket(
                    s, server_hostname="localhost")
                if k == 3:
                    t.sendall(UPGRADE)
                    t.recv(4096)
                t.close()
            except (ssl.SSLError, OSError):
                s.close()
        deadline = time.monotonic() + 10
        while metric(http, "discovery_links") > 0 and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        socks = []
        for i in range(158):
            s = good.wrap_socket(socket.create_connection(addr, WAIT),
                                 server_hostname="localhost")
            s.sendall(UPGRADE)
            buf = s.recv(4096)
            assert buf.startswith(b"HTTP/1.1 101"), (i, buf[:80])
            socks.append(s)
        assert metric(http, 'discovery_accepts_refused_total'
                            '{reason="listener_full"}') == 0
        for s in socks:
            s.close()
    finally:
        assert d.stop() == 0, d.text()[-3000:]


def cpu_ticks(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def test_cluster_node_at_its_file_limit_keeps_answering(tmp_path, redis):
    """A cluster node (16 write threads, each its own Redis connection)
    under a file limit of 200, DNS on: agents fill their budget, HTTP and
    DNS over TCP are held past their caps. The process stays under its
    limit, does not spin (no EMFILE loop), and writes still go through."""
    cfg = write(os.path.join(str(tmp_path), "d.yaml"),
                "listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0, "
                "dns: 127.0.0.1:0 }\nstate_dir: %s\nnode: n1\n"
                "limits: { max_http: 32, accept_rate: 0, max_agents_per_ip: "
                "0, max_http_per_ip: 1000 }\n"
                "heartbeat: { hello_timeout: 60s, interval: 10s, "
                "timeout: 70s }\ncluster:\n  redis: %s\n  node: n1\n" %
                (tmp_path, redis.url))
    d = Proc(["prlimit", "--nofile=200", os.path.join(BIN, "discoveryd"),
              "-c", cfg], "discoveryd")
    held = []
    try:
        a = d.wait_line(r"listener=agents addr=(\S+):(\d+)")
        addr = (a.group(1), int(a.group(2)))
        http = d.wait_line(r"listener=http addr=(\S+)").group(1)
        dns = int(d.wait_line(r"listener=dns addr=\S+:(\d+)").group(1))
        d.wait_line(r"cluster synced")

        def write_call(key):
            return subprocess.run(
                ["curl", "-s", "-m", "8", "-X", "POST", "-H",
                 "Content-Type: application/json", "-d",
                 '{"keys":["%s"]}' % key,
                 "http://%s/api/discovery/invalidate" % http],
                capture_output=True, text=True).stdout

        # Every write thread makes its Redis connection.
        ts = [threading.Thread(target=write_call, args=("w%d" % i,))
              for i in range(40)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        linked = 0
        for i in range(120):
            s, buf = upgraded(addr)
            held.append(s)
            if buf.startswith(b"HTTP/1.1 101"):
                s.sendall(hello(i))
                linked += 1
        assert 20 < linked < 120
        port = int(http.rsplit(":", 1)[1])
        for _ in range(40):
            held.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(100):
            held.append(socket.create_connection(("127.0.0.1", dns)))
        time.sleep(1)
        assert len(os.listdir("/proc/%d/fd" % d.p.pid)) <= 200
        c0 = cpu_ticks(d.p.pid)
        time.sleep(2)
        assert cpu_ticks(d.p.pid) - c0 < 50, "spinning"
        for s in held[120:132]:     # some HTTP room again
            s.close()
        time.sleep(0.5)
        out = []
        ts = [threading.Thread(target=lambda i=i: out.append(
            write_call("z%d" % i))) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert all('"seq"' in o for o in out), out
    finally:
        for s in held:
            s.close()
        assert d.stop() == 0, d.text()[-3000:]
