"""Slowloris against the HTTP API. libmicrohttpd's idle timeout restarts on
every byte, so a client dripping its request head held its connection for
as long as it liked, and limits.max_http_per_ip (64) times 16 loopback
addresses filled limits.max_http: every other client, /healthz included,
waited in the backlog. Now a request head must arrive within
limits.header_timeout and its body within limits.body_timeout; at
max_http the oldest connection that has sent no complete request (or has
not taken its answer within header_timeout) makes room for a new one;
refusals are counted in /metrics and logged at most once per 10 s, never
one line each."""

import fcntl
import re
import socket
import struct
import termios
import time
import urllib.request

from harness import WAIT, Discoveryd

ATTACKERS = ["127.0.0.%d" % i for i in range(2, 18)]     # 16 addresses


def open_from(d, source, first=b"GET /healthz HTTP/1.1\r\n"):
    host, port = d.http_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WAIT,
                                 source_address=(source, 0))
    s.sendall(first)
    return s


def closed_by_server(s, drip, deadline):
    """Send drip every 0.2 s until the server ends the connection (True)
    or deadline passes (False)."""
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = s.recv(4096)
            if not data:
                return True
        except socket.timeout:
            pass
        except ConnectionResetError:
            return True
        try:
            s.sendall(drip)
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def metric(d, name, labels=""):
    text = urllib.request.urlopen(d.base + "/metrics",
                                  timeout=WAIT).read().decode()
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)),
                  text, re.M)
    return float(m.group(1)) if m else None


def waiting_bytes(s):
    return struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0" * 4))[0]


def answered(d, path):
    """GET path, again while refused (every connection busy and younger
    than header_timeout), until answered: the body."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with urllib.request.urlopen(d.base + path, timeout=WAIT) as r:
                return r.read().decode()
        except OSError:
            assert time.monotonic() < deadline, "never answered"
            time.sleep(0.2)


def test_a_dripped_head_is_cut_at_header_timeout(tmp_path):
    d = Discoveryd(tmp_path, extra="limits:\n  header_timeout: 1s\n"
                                   "  body_timeout: 1s\n")
    try:
        s = open_from(d, "127.0.0.2", b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(s, b"X-Drip: 1\r\n", time.monotonic() + WAIT)
        s.close()
        # A head that came whole, then a body dripped byte by byte.
        s = open_from(d, "127.0.0.3",
                      b"POST /api/discovery/invalidate HTTP/1.1\r\n"
                      b"Host: 127.0.0.1\r\nContent-Length: 60000\r\n\r\n")
        assert closed_by_server(s, b" ", time.monotonic() + WAIT)
        s.close()
        assert metric(d, "discovery_http_timeouts_total",
                      '{phase="head"}') >= 1
        assert metric(d, "discovery_http_timeouts_total",
                      '{phase="body"}') >= 1
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0


def test_sixteen_addresses_cannot_fill_max_http(tmp_path):
    d = Discoveryd(tmp_path, extra="limits:\n  max_http: 32\n"
                                   "  max_http_per_ip: 4\n"
                                   "  header_timeout: 120s\n")
    held = []
    try:
        mark = d.mark()
        # Every address up to its cap, twice over max_http in all, each
        # connection a head that never ends (it waits for header_timeout,
        # far longer than this test, even under a sanitizer); then all of
        # it again.
        for _ in range(2):
            for source in ATTACKERS:
                for _ in range(4):
                    held.append(open_from(d, source))
        # Another client is answered, again and again. (A slow daemon, say
        # under valgrind, may refuse one while it has more connections to
        # close than API_CONN_SLACK: hence answered(), which tries again.)
        for _ in range(10):
            assert answered(d, "/healthz") == '{"status":"ok"}'
        assert '"services"' in answered(d, "/api/discovery/services")
        # Each of the 96 connections past max_http made room for itself or
        # was refused: at its address's cap (its own earlier ones not yet
        # evicted), or while the daemon had API_CONN_SLACK (32) shut down
        # and not yet closed. The first 32 past it always made room.
        evicted = metric(d, "discovery_http_evicted_total")
        refused = sum(metric(d, "discovery_http_refused_total",
                             '{reason="%s"}' % r)
                      for r in ("max_http", "max_http_per_ip"))
        assert evicted >= 32 and evicted + refused >= 96, (evicted, refused)
        # Not a line per evicted connection (libmicrohttpd says one for
        # each client gone mid-request): its lines are rate-limited.
        d.wait_line(r"msg=\"http admission\" .*evicted=", start=mark)
        assert len(d.lines) - mark < 40, "\n".join(d.lines[mark:])
        assert metric(d, "discovery_http_connections",
                      '{state="waiting"}') <= 32
        # And the attackers' oldest were the ones cut.
        assert closed_by_server(held[0], b"", time.monotonic() + WAIT)
    finally:
        for s in held:
            s.close()
        assert d.stop() == 0


def test_a_newcomer_may_evict_its_own_address_last_connection(tmp_path):
    """At max_http, a newcomer from A whose victim is A's only connection:
    A's record went with it, and the newcomer was counted on the freed one
    (a use after free under AddressSanitizer)."""
    d = Discoveryd(tmp_path, extra="limits:\n  max_http: 4\n"
                                   "  max_http_per_ip: 2\n"
                                   "  header_timeout: 120s\n")
    held = []
    try:
        # In this order, oldest first (no /metrics call in between: that
        # would be a connection too).
        for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]:
            held.append(open_from(d, source))
            time.sleep(0.3)
        held.append(open_from(d, "127.0.0.2"))
        assert closed_by_server(held[0], b"", time.monotonic() + WAIT)
        # 127.0.0.2 has one connection again, so one more is let in.
        held.append(open_from(d, "127.0.0.2"))
        assert closed_by_server(held[1], b"", time.monotonic() + WAIT)
        assert answered(d, "/healthz") == '{"status":"ok"}'
        assert metric(d, "discovery_http_refused_total",
                      '{reason="max_http_per_ip"}') == 0
    finally:
        for s in held:
            s.close()
        assert d.stop() == 0


def test_clients_that_read_nothing_are_evicted(tmp_path):
    """Pipelined requests whose answers are never read keep a connection
    busy (not idle) for as long as libmicrohttpd's idle timeout, 30 s: at
    max_http such a connection makes room once it has been stalled for
    header_timeout."""
    d = Discoveryd(tmp_path, extra="limits:\n  max_http: 32\n"
                                   "  max_http_per_ip: 2\n"
                                   "  header_timeout: 1s\n")
    host, port = d.http_addr.rsplit(":", 1)
    held = []
    try:
        for source in ATTACKERS:
            for _ in range(2):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.bind((source, 0))
                s.connect((host, int(port)))
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 200)
                held.append(s)
        # Every one of max_http connections is answering (and stalled):
        # none is waiting for a request.
        deadline = time.monotonic() + WAIT
        while not all(waiting_bytes(s) for s in held):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answered(d, "/healthz") == '{"status":"ok"}'
        text = answered(d, "/metrics")
        assert re.search(r"^discovery_http_evicted_total [1-9]", text, re.M)
    finally:
        for s in held:
            s.close()
        assert d.stop() == 0


def test_refusals_are_counted_not_logged_one_by_one(tmp_path):
    # The two held connections must outlive the 200 refusals, however slow
    # the daemon (a sanitized one took more than the default 10 s): were
    # they cut, each newcomer would be admitted, and wait out its own.
    d = Discoveryd(tmp_path, extra="limits:\n  max_http_per_ip: 2\n"
                                   "  header_timeout: 120s\n")
    held = []
    try:
        mark = d.mark()
        held = [open_from(d, "127.0.0.9") for _ in range(2)]
        # Both admitted before the first newcomer: connect() returns before
        # the daemon accepts, and its threads may take them in any order.
        deadline = time.monotonic() + WAIT
        while metric(d, "discovery_http_connections",
                     '{state="waiting"}') < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(200):
            s = open_from(d, "127.0.0.9", b"")
            assert closed_by_server(s, b"", time.monotonic() + WAIT)
            s.close()
        assert d.call("GET", "/healthz")[0] == 200
        assert metric(d, "discovery_http_refused_total",
                      '{reason="max_http_per_ip"}') >= 200
        d.wait_line(r"msg=\"http admission\" refused=\d+", start=mark)
        assert len(d.lines) - mark < 10, "\n".join(d.lines[mark:])
    finally:
        for s in held:
            s.close()
        assert d.stop() == 0


def open_stream(d, source):
    """A live event stream from source: (socket, status code)."""
    s = open_from(d, source, b"GET /api/discovery/events HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "closed before answering"
        head += chunk
    return s, int(head.split()[1])


def test_streams_have_caps_of_their_own(tmp_path):
    # max_http 64: max_streams is a quarter of it (auto), 16, and
    # max_streams_per_ip 8 (its default). Before, 64 streams filled it.
    d = Discoveryd(tmp_path, extra="limits:\n  max_http: 64\n")
    streams = []
    try:
        for _ in range(8):
            s, status = open_stream(d, "127.0.0.2")
            assert status == 200
            streams.append(s)
        s, status = open_stream(d, "127.0.0.2")
        assert status == 503                   # max_streams_per_ip
        s.close()
        refused = 0
        for source in ATTACKERS[1:]:
            for _ in range(4):
                s, status = open_stream(d, source)
                streams.append(s)
                refused += status == 503
        assert refused == 4 * 15 - 8           # 16 in all
        assert metric(d, "discovery_http_connections",
                      '{state="stream"}') == 16
        assert metric(d, "discovery_http_refused_total",
                      '{reason="max_streams"}') == refused
        assert metric(d, "discovery_http_refused_total",
                      '{reason="max_streams_per_ip"}') == 1
        # Calls, and streams from elsewhere once one ends, still work.
        for _ in range(5):
            assert d.call("GET", "/healthz")[0] == 200
        streams.pop(0).close()
        deadline = time.monotonic() + WAIT
        while True:
            # A stream learns its client left when it next writes.
            d.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
            s, status = open_stream(d, "127.0.0.1")
            streams.append(s)
            if status == 200 or time.monotonic() > deadline:
                break
        assert status == 200
    finally:
        for s in streams:
            s.close()
        assert d.stop() == 0


def test_reload_changes_the_deadlines(tmp_path):
    d = Discoveryd(tmp_path)
    try:
        with open(d.config, "a") as f:
            f.write("limits:\n  header_timeout: 500ms\n")
        mark = d.mark()
        d.kill(__import__("signal").SIGHUP)
        d.wait_line(r"msg=reloaded", start=mark)
        s = open_from(d, "127.0.0.4")
        assert closed_by_server(s, b"X: y\r\n", time.monotonic() + WAIT)
        s.close()
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0
