"""DNS (docs/dns.md) against a real discoveryd with real agents, asked with
dig: A, AAAA and SRV with the targets' addresses, the tag forms, NXDOMAIN
and NODATA with the SOA, REFUSED outside the domain, TC over UDP and the
whole answer over TCP, draining and dropped instances leaving the answers,
and every limit gone past: malformed and truncated packets, unsupported
types and classes, TCP lengths, timeouts and the connection cap, a flood
from one source."""

import os
import socket
import struct
import subprocess

import pytest

from dnsutil import (HEARTBEAT, Agents, Probe, dig, metric, wait_rdata,
                     wait_until)
from harness import BIN, WAIT, Discoveryd, write

ZONE = "service.discovery."


@pytest.fixture
def dnsd(tmp_path):
    d = Discoveryd(tmp_path, heartbeat=HEARTBEAT, dns=True,
                   extra="dns:\n  ttl: 7s\n  negative_ttl: 3s\n"
                         "  tcp_timeout: 1s\n")
    agents = Agents(d)
    d.agents = agents
    yield d
    agents.close()
    assert d.stop() == 0, d.text()


def api_agents(a):
    a.add("api", "api-1", "10.0.0.1:80", tags=["blue"], weight=5)
    a.add("api", "api-2", "10.0.0.2:81")
    a.add("api", "api-3", "[2001:db8::3]:82", weight=7)
    a.add("api", "api-4", "web.example:84", weight=9)
    a.add("api", "api-5", "10.0.0.5:85", state="draining")
    a.add("api", "api-6", "10.0.0.6:86", state=None)  # never said ready
    a.add("idle", "idle-1", "10.0.1.1:80", state=None)


def test_a_aaaa_srv_and_tags(dnsd):
    api_agents(dnsd.agents)
    a = wait_rdata(dnsd, "api." + ZONE, "A", ["10.0.0.1", "10.0.0.2"])
    assert a.status == "NOERROR" and "aa" in a.flags
    assert {r[1] for r in a.records()} == {7}  # dns.ttl
    wait_rdata(dnsd, "API.Service.Discovery.", "AAAA", ["2001:db8::3"])
    wait_rdata(dnsd, "blue.api." + ZONE, "A", ["10.0.0.1"])
    srv = dig(dnsd, "_api._tcp." + ZONE, "SRV")
    assert srv.rdata("SRV") == sorted([
        "1 5 80 0a000001.addr.discovery.",
        "1 100 81 0a000002.addr.discovery.",
        "1 7 82 20010db8000000000000000000000003.addr.discovery.",
        "1 9 84 web.example."])
    extra = {(r[0], r[2], r[3]) for r in srv.records("ADDITIONAL")
             if r[2] in ("A", "AAAA")}
    assert extra == {
        ("0a000001.addr.discovery.", "A", "10.0.0.1"),
        ("0a000002.addr.discovery.", "A", "10.0.0.2"),
        ("20010db8000000000000000000000003.addr.discovery.", "AAAA",
         "2001:db8::3")}
    # The targets resolve on their own too.
    assert dig(dnsd, "0a000002.addr.discovery.").rdata("A") == ["10.0.0.2"]
    # The Consul form for a tag: _SERVICE._TAG.
    assert dig(dnsd, "_api._blue." + ZONE, "SRV").rdata("SRV") == \
        ["1 5 80 0a000001.addr.discovery."]
    # Rotation: the first record moves from one query to the next.
    firsts = {dig(dnsd, "api." + ZONE, "SRV").records()[0][3]
              for _ in range(6)}
    assert len(firsts) > 1
    assert metric(dnsd, "discovery_dns_queries_total",
                  'transport="udp",rcode="NOERROR"') >= 8


def soa_of(ans):
    soa = ans.records("AUTHORITY", "SOA")
    assert len(soa) == 1, ans.text
    assert soa[0][0] == "discovery." and soa[0][1] == 3  # negative_ttl
    assert soa[0][3].split()[-1] == "3"                  # its minimum
    return soa


def test_nxdomain_nodata_refused(dnsd):
    api_agents(dnsd.agents)
    wait_rdata(dnsd, "api." + ZONE, "A", ["10.0.0.1", "10.0.0.2"])
    for name, qtype in (("nope." + ZONE, "A"), ("_nope._tcp." + ZONE, "SRV"),
                        ("x.discovery.", "A"), ("zz.addr.discovery.", "A")):
        a = dig(dnsd, name, qtype)
        assert a.status == "NXDOMAIN" and not a.records(), a.text
        soa_of(a)
    # Known, nothing ready; known, no record of that type: NODATA.
    for name, qtype in (("idle." + ZONE, "A"), ("api." + ZONE, "MX"),
                        ("api." + ZONE, "TXT"), ("red.api." + ZONE, "A")):
        a = dig(dnsd, name, qtype)
        assert a.status == "NOERROR" and not a.records(), (name, a.text)
        soa_of(a)
    assert dig(dnsd, "discovery.", "SOA").records("ANSWER", "SOA")
    for name in ("example.com.", "xdiscovery.", "discovery.example."):
        assert dig(dnsd, name).status == "REFUSED"
    assert dig(dnsd, "api." + ZONE, "ANY").status == "NOTIMP"
    # Class CH (or any but IN): nothing of ours is in it.
    assert dig(dnsd, "api." + ZONE, "A", "-c", "CH").status == "REFUSED"
    assert metric(dnsd, "discovery_dns_queries_total",
                  'transport="udp",rcode="NXDOMAIN"') >= 4
    assert metric(dnsd, "discovery_dns_queries_total",
                  'transport="udp",rcode="REFUSED"') >= 4


def test_truncated_over_udp_complete_over_tcp(dnsd):
    want = []
    for i in range(120):
        dnsd.agents.add("many", "m-%d" % i, "10.2.0.%d:%d" % (i + 1, 2000 + i))
        want.append("10.2.0.%d" % (i + 1))
    wait_rdata(dnsd, "many." + ZONE, "A", want, "+tcp")
    before = metric(dnsd, "discovery_dns_truncated_total")
    # 512 bytes without EDNS0: TC, no records.
    a = dig(dnsd, "many." + ZONE, "A", "+noedns", "+ignore")
    assert "tc" in a.flags and not a.records(), a.text
    # EDNS0 asks for more, capped at max_udp_size (1232): still TC.
    a = dig(dnsd, "many." + ZONE, "A", "+bufsize=65000", "+ignore")
    assert "tc" in a.flags
    # dig retries over TCP on its own: the whole set.
    a = dig(dnsd, "many." + ZONE, "A", "+noedns")
    assert "tc" not in a.flags and a.rdata("A") == sorted(want)
    srv = dig(dnsd, "_many._tcp." + ZONE, "SRV", "+tcp")
    assert len(srv.records("ANSWER", "SRV")) == 120
    assert len(srv.records("ADDITIONAL", "A")) == 120
    assert metric(dnsd, "discovery_dns_truncated_total") >= before + 2
    assert metric(dnsd, "discovery_dns_queries_total",
                  'transport="tcp",rcode="NOERROR"') >= 3
    # A small answer fits the EDNS0 size without TC.
    dnsd.agents.add("few", "f-1", "10.3.0.1:1")
    wait_rdata(dnsd, "few." + ZONE, "A", ["10.3.0.1"])


def test_draining_and_dropped_leave_the_answers(dnsd):
    one = Probe(dnsd, "pay", "pay-1", "10.9.0.1:7001")
    two = Probe(dnsd, "pay", "pay-2", "10.9.0.2:7002")
    try:
        one.say("ready 1")
        two.say("ready 1")
        wait_rdata(dnsd, "pay." + ZONE, "A", ["10.9.0.1", "10.9.0.2"])
        two.say("draining 1")
        wait_rdata(dnsd, "pay." + ZONE, "A", ["10.9.0.1"])
        wait_rdata(dnsd, "_pay._tcp." + ZONE, "SRV",
                   ["1 100 7001 0a090001.addr.discovery."])
        two.say("draining 0")
        wait_rdata(dnsd, "pay." + ZONE, "A", ["10.9.0.1", "10.9.0.2"])
        one.p.stdin.close()  # the agent goes: its link closes
        one.p.wait(WAIT)
        wait_rdata(dnsd, "pay." + ZONE, "A", ["10.9.0.2"])
        two.say("ready 0")
        a = wait_rdata(dnsd, "pay." + ZONE, "A", [])
        assert a.status == "NOERROR"  # still known: NODATA
    finally:
        one.stop()
        two.stop()


# ---- past every limit ------------------------------------------------------

def query(name, qtype=1, qid=0x5151, flags=0x0100, qclass=1):
    """A DNS query, written by hand to be broken on purpose."""
    wire = b"".join(bytes([len(l)]) + l.encode()
                    for l in name.strip(".").split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 0) + wire + \
        struct.pack(">HH", qtype, qclass)


def udp(dnsd, src="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.connect(("127.0.0.1", dnsd.dns_port))
    s.settimeout(WAIT)
    return s


def answers_only_to(s, good_id):
    """After the bad packets, a good query: its answer is the next one in
    (one thread answers in order), so a bad one answered would come first."""
    s.send(query("api." + ZONE, qid=good_id))
    got = s.recv(4096)
    return struct.unpack(">H", got[:2])[0] == good_id


def rcode_of(reply):
    return struct.unpack(">H", reply[2:4])[0] & 0xF


def test_malformed_and_truncated_udp(dnsd):
    s = udp(dnsd)
    dropped = metric(dnsd, "discovery_dns_dropped_total")
    s.send(b"\x12\x34\x01")                           # shorter than a header
    s.send(query("api." + ZONE, flags=0x8400))        # a response: ignored
    assert answers_only_to(s, 0x0101)
    assert metric(dnsd, "discovery_dns_dropped_total") == dropped + 2
    good = query("api." + ZONE, qid=0x0202)
    for bad in (good[:15], good[:-2], good[:12] + b"\x3f" + b"a" * 20,
                struct.pack(">HHHHHH", 0x0202, 0x0100, 0, 0, 0, 0),
                struct.pack(">HHHHHH", 0x0202, 0x0100, 2, 0, 0, 0) +
                good[12:] + good[12:]):
        s.send(bad)
        reply = s.recv(4096)
        assert struct.unpack(">H", reply[:2])[0] == 0x0202
        assert rcode_of(reply) == 1, bad                # FORMERR
    # Past DNS_QUERY_MAX: read cut short; what follows the question is
    # ignored (libldns reads no further), so the question is answered.
    s.send(good + b"\xff" * 5000)
    reply = s.recv(4096)
    assert struct.unpack(">H", reply[:2])[0] == 0x0202
    assert rcode_of(reply) == 3                         # NXDOMAIN: no api
    s.send(query("api." + ZONE, flags=0x2900))          # opcode UPDATE
    assert rcode_of(s.recv(4096)) == 4                  # NOTIMP
    for qtype in (255, 252, 251):                       # ANY, AXFR, IXFR
        s.send(query("api." + ZONE, qtype=qtype))
        assert rcode_of(s.recv(4096)) == 4
    s.send(query("api." + ZONE, qclass=3))              # CHAOS
    assert rcode_of(s.recv(4096)) == 5                  # REFUSED
    s.send(b"\x03\x03\x01\x00" + os.urandom(300))     # noise, not QR
    reply = s.recv(4096)
    assert reply[:2] == b"\x03\x03" and rcode_of(reply) == 1
    assert answers_only_to(s, 0x0404)
    assert metric(dnsd, "discovery_dns_queries_total",
                  'transport="udp",rcode="FORMERR"') >= 5
    s.close()


def tcp(dnsd):
    c = socket.create_connection(("127.0.0.1", dnsd.dns_port), WAIT)
    c.settimeout(WAIT)
    return c


def read_msg(c):
    head = b""
    while len(head) < 2:
        chunk = c.recv(2 - len(head))
        if not chunk:
            return None
        head += chunk
    n = struct.unpack(">H", head)[0]
    body = b""
    while len(body) < n:
        chunk = c.recv(n - len(body))
        assert chunk
        body += chunk
    return body


def closed(c):
    try:
        return c.recv(1) == b""
    except ConnectionResetError:
        return True


def test_tcp_limits(dnsd):
    q = query("api." + ZONE, qid=7)
    # Two queries in one write: two answers, in order.
    c = tcp(dnsd)
    c.sendall(struct.pack(">H", len(q)) + q + struct.pack(">H", len(q)) +
              query("api." + ZONE, qid=8))
    assert read_msg(c)[:2] == b"\x00\x07"
    assert read_msg(c)[:2] == b"\x00\x08"
    # Then idle past dns.tcp_timeout (1s): closed.
    assert closed(c)
    # Length 0, or past DNS_QUERY_MAX: closed at once.
    errors = metric(dnsd, "discovery_dns_tcp_errors_total")
    for head in (b"\x00\x00", b"\xff\xff"):
        c = tcp(dnsd)
        c.sendall(head + b"x" * 10)
        assert closed(c)
    assert metric(dnsd, "discovery_dns_tcp_errors_total") == errors + 2
    # A query sent a byte at a time, too slowly: the timeout runs from the
    # connection's start, not from each byte.
    timeouts = metric(dnsd, "discovery_dns_tcp_timeouts_total")
    c = tcp(dnsd)
    c.sendall(struct.pack(">H", len(q)) + q[:5])
    assert closed(c)
    assert metric(dnsd, "discovery_dns_tcp_timeouts_total") == timeouts + 1


def test_tcp_connection_cap(tmp_path):
    d = Discoveryd(tmp_path, heartbeat=HEARTBEAT, dns=True,
                   extra="dns:\n  max_tcp: 4\n  tcp_timeout: 5m\n")
    try:
        q = query("api." + ZONE)
        held = []
        for i in range(4):
            c = tcp(d)
            c.sendall(struct.pack(">H", len(q)) + q)
            assert read_msg(c)  # accepted and served
            held.append(c)
        # dns.max_tcp (4): a fifth connection is closed at once.
        extra = tcp(d)
        assert closed(extra)
        extra.close()
        assert metric(d, "discovery_dns_tcp_refused_total") == 1
        assert metric(d, "discovery_dns_tcp_connections") == 4
        for c in held:
            c.close()
        # Room again once the held ones are gone.
        wait_until(lambda: metric(d, "discovery_dns_tcp_connections") == 0)
        assert dig(d, "api." + ZONE, "A", "+tcp").status == "NXDOMAIN"
    finally:
        assert d.stop() == 0, d.text()


def test_a_flood_from_one_source_is_rate_limited(tmp_path):
    d = Discoveryd(tmp_path, heartbeat=HEARTBEAT, dns=True,
                   extra="dns:\n  rate_per_source: 1\n  burst: 5\n")
    try:
        flood = udp(d)
        for i in range(300):
            flood.send(query("api." + ZONE, qid=i))
        # Another source is answered all the same.
        other = udp(d, src="127.0.0.2")
        other.send(query("api." + ZONE, qid=0x4242))
        assert struct.unpack(">H", other.recv(512)[:2])[0] == 0x4242
        # The flood: the burst and what the rate refilled, the rest dropped
        # and counted.
        wait_until(lambda: metric(d, "discovery_dns_rate_limited_total") +
                   metric(d, "discovery_dns_queries_total",
                          'transport="udp",rcode="NXDOMAIN"') >= 300,
                   what="the flood counted")
        limited = metric(d, "discovery_dns_rate_limited_total")
        assert limited >= 200, limited
        flood.settimeout(0.2)
        got = 0
        try:
            while True:
                flood.recv(512)
                got += 1
        except socket.timeout:
            pass
        assert got == 300 - limited
        # Over TCP, a source past its rate is closed.
        c = tcp(d)
        q = query("api." + ZONE)
        c.sendall((struct.pack(">H", len(q)) + q) * 20)
        n = 0
        while read_msg(c) is not None:
            n += 1
        assert n < 20
    finally:
        assert d.stop() == 0, d.text()


def test_config_is_checked(tmp_path):
    base = "listen:\n  dns: 127.0.0.1:0\nstate_dir: %s\n" % tmp_path
    for extra, words in (
            ("dns:\n  domain: -bad.example\n", "dns.domain"),
            ("dns:\n  domain: a..b\n", "dns.domain"),
            ("dns:\n  ttl: 1500ms\n", "whole seconds"),
            ("dns:\n  rate_per_source: -1\n", "rate_per_source"),
            ("dns:\n  max_udp_size: 100\n", "max_udp_size"),
            ("dns:\n  max_tcp: 0\n", "max_tcp"),
            ("dns:\n  colour: blue\n", "colour")):
        path = write(os.path.join(str(tmp_path), "c.yaml"), base + extra)
        r = subprocess.run([os.path.join(BIN, "discoveryd"), "-t", "-c",
                            path], capture_output=True, text=True)
        assert r.returncode != 0 and words in r.stderr, (extra, r.stderr)
    path = write(os.path.join(str(tmp_path), "c.yaml"),
                 "listen:\n  dns: nowhere\nstate_dir: %s\n" % tmp_path)
    r = subprocess.run([os.path.join(BIN, "discoveryd"), "-t", "-c", path],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "2:8: 'dns': must be host:port" in \
        r.stderr, r.stderr
    path = write(os.path.join(str(tmp_path), "c.yaml"),
                 base + "dns:\n  domain: Disc.Example.\n  ttl: 0\n")
    r = subprocess.run([os.path.join(BIN, "discoveryd"), "-t", "-c", path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_cluster_answers_span_the_nodes(tmp_path, redis):
    """In cluster mode one node's DNS answers the other nodes' ready
    endpoints too (the board spans the cluster), and drops a dead node's
    within the node TTL."""
    import signal
    from cluster_harness import node
    a = node(tmp_path, "node-a", redis.url, dns=True, heartbeat=HEARTBEAT)
    b = node(tmp_path, "node-b", redis.url, heartbeat=HEARTBEAT)
    on_a, on_b = Agents(a), Agents(b)
    try:
        on_a.add("api", "api-1", "10.0.0.1:80")
        on_b.add("api", "api-2", "10.0.0.2:80")
        on_b.add("api", "api-3", "10.0.0.3:80", state="draining")
        wait_rdata(a, "api." + ZONE, "A", ["10.0.0.1", "10.0.0.2"])
        on_b.status("api-3", "ready")
        wait_rdata(a, "api." + ZONE, "A", ["10.0.0.1", "10.0.0.2",
                                            "10.0.0.3"])
        b.kill(signal.SIGKILL)
        b.p.wait()
        wait_rdata(a, "api." + ZONE, "A", ["10.0.0.1"])
    finally:
        on_b.loop.call_soon_threadsafe(on_b.loop.stop)
        on_a.close()
        assert a.stop() == 0, a.text()
        b.stop()


def rss_kib(d):
    with open("/proc/%d/status" % d.p.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_answer_cache_keeps_no_old_sets(tmp_path):
    """The answers kept per DNS thread are bounded in bytes: they never
    hold the sets they came from, whose every change (here 600 of a set
    of 200 endpoints with 100 kB of meta and tags) would otherwise stay
    in memory for as long as some slot remembered it."""
    d = Discoveryd(tmp_path, heartbeat=HEARTBEAT, dns=True,
                   extra="endpoints:\n  coalesce: 1ms\n")
    agents = Agents(d)
    try:
        for i in range(200):
            agents.add("big", "big-%d" % i, "10.9.%d.%d:80" % (i // 250,
                                                              i % 250 + 1),
                       tags=["t%02d" % t for t in range(32)],
                       meta={"note": "m" * 300})
        s = udp(d)

        def churn(rounds):
            index = None
            for r in range(rounds):
                agents.status("big-0", "draining" if r % 2 else "ready")
                index = wait_until(
                    lambda: (lambda i: i if i != index else None)(
                        d.call("GET", "/api/discovery/services/big/"
                               "endpoints")[1]["index"]),
                    what="set %d published" % r)
                s.send(query("big." + ZONE, qid=r))
                assert struct.unpack(">H", s.recv(4096)[:2])[0] == r

        churn(50)
        before = rss_kib(d)
        churn(600)
        grown = rss_kib(d) - before
        # Old sets held: ~60 MB. Answers alone: at most a few MB. Under
        # ASan (freed memory waits in its quarantine) or valgrind RSS
        # says nothing of what is held: the churn runs, unmeasured.
        if not (os.environ.get("DISCOVERY_SANITIZE") or
                os.environ.get("DISCOVERY_TEST_WRAPPER")):
            assert grown < 16 * 1024, "RSS grew by %d KiB" % grown
    finally:
        agents.close()
        assert d.stop() == 0, d.text()
