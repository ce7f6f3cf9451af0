"""The agent listener cannot be crowded out from one address.

Connections count against their source address from the accept, upgraded
or not; an address churning connections spends its own share of the
accept rate, not everyone's; a connection that never upgrades is cut after
heartbeat.hello_timeout, however many requests it makes meanwhile. Real
agents from other loopback addresses (127.0.0.3, ...) still link while
127.0.0.2 attacks, the refusals are logged in summary, and /healthz
answers afterwards.
"""

import json
import selectors
import socket
import struct
import threading
import time

from harness import (Discoveryd, UPGRADE, WAIT, masked_frame, read_frame)

ATTACKER = "127.0.0.2"
HELLO = {"type": "hello", "service": "web", "instance": "w"}


def connect_from(source, addr, blocking=True):
    """A TCP socket from source (an address of 127/8) to addr."""
    host, port = addr.rsplit(":", 1)
    s = socket.socket()
    # The port is picked at connect(), per destination: thousands of
    # connections from one address need no more than that.
    s.setsockopt(socket.SOL_IP, 24, 1)          # IP_BIND_ADDRESS_NO_PORT
    s.bind((source, 0))
    if blocking:
        s.settimeout(WAIT)
        s.connect((host, int(port)))
    else:
        s.setblocking(False)
        s.connect_ex((host, int(port)))
    return s


def reset(s):
    """Close with a reset (no TIME_WAIT), as an attacker would."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def upgrade(source, addr, timeout=3):
    """One upgrade from source: the status line's code, or None when the
    connection closed or stayed silent. The socket is returned open on
    101, else closed."""
    try:
        s = connect_from(source, addr)
        s.settimeout(timeout)
        s.sendall(UPGRADE)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                s.close()
                return None, None, b""
            buf += chunk
    except OSError:
        return None, None, b""
    code = int(buf.split(b" ", 2)[1])
    if code != 101:
        s.close()
        return code, None, b""
    return code, s, buf[buf.index(b"\r\n\r\n") + 4:]


def link_from(source, addr, instance):
    """Link as an agent from source within WAIT, retrying refused or
    stalled attempts; returns the welcome."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        code, s, rest = upgrade(source, addr)
        if code != 101:
            continue
        s.settimeout(WAIT)
        s.sendall(masked_frame(0x1, json.dumps(dict(HELLO, instance=instance))
                               .encode()))
        frame = read_frame(s, rest)
        s.close()
        if frame:
            return json.loads(frame[1])
    raise AssertionError("no link from %s within %ss" % (source, WAIT))


class Holder(threading.Thread):
    """Keeps n silent connections from source open, reopening each one
    the daemon closes."""

    def __init__(self, source, addr, n):
        super().__init__(daemon=True)
        self.source, self.addr, self.n = source, addr, n
        self.opened = 0
        self.stopping = False
        self.sel = selectors.DefaultSelector()

    def open_one(self):
        s = connect_from(self.source, self.addr, blocking=False)
        self.sel.register(s, selectors.EVENT_READ)
        self.opened += 1

    def run(self):
        for _ in range(self.n):
            self.open_one()
        while not self.stopping:
            for key, _ in self.sel.select(0.2):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(key.fileobj)
                    reset(key.fileobj)
                    self.open_one()
        for key in list(self.sel.get_map().values()):
            reset(key.fileobj)

    def stop(self):
        self.stopping = True
        self.join(WAIT)


class Churner(threading.Thread):
    """Opens connections from source and resets them at once, flat out."""

    def __init__(self, source, addr):
        super().__init__(daemon=True)
        self.source, self.addr = source, addr
        self.attempts = 0
        self.stopping = False

    def run(self):
        while not self.stopping:
            try:
                reset(connect_from(self.source, self.addr))
            except OSError:
                pass
            self.attempts += 1

    def stop(self):
        self.stopping = True
        self.join(WAIT)


def wait_until(fn, what):
    deadline = time.monotonic() + WAIT
    while not fn():
        assert time.monotonic() < deadline, "timed out: " + what
        time.sleep(0.05)


def refused(d, reason):
    st, text = d.call("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith('discovery_accepts_refused_total{reason="%s"}'
                           % reason):
            return float(line.split()[-1])
    raise AssertionError("no refusal counter for " + reason)


def test_silent_sockets_from_one_address(tmp_path):
    """1,500 silent sockets from one address, kept open: at most
    max_agents_per_ip of them are ever held, the rest are refused at the
    accept, and an agent from another address links at once."""
    d = Discoveryd(tmp_path, extra="limits:\n  max_agents: 200\n"
                                   "  max_agents_per_ip: 50\n")
    holder = Holder(ATTACKER, d.agents_addr, 1500)
    try:
        holder.start()
        wait_until(lambda: holder.opened >= 1500, "the attacker's sockets")
        welcome = link_from("127.0.0.3", d.agents_addr, "w3")
        assert welcome["type"] == "welcome"
        assert refused(d, "max_agents_per_ip") > 0
        # One line per reason and ten seconds, not one per refusal.
        assert d.count(r"msg=admission") <= 6, d.text()[-3000:]
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        holder.stop()
        assert d.stop() == 0


def test_churn_from_one_address(tmp_path):
    """An address that opens and resets connections flat out spends its
    own share of accept_rate (a tenth), never the whole bucket: another
    address is admitted every time."""
    d = Discoveryd(tmp_path, extra="limits:\n  accept_rate: 30\n"
                                   "  accept_burst: 30\n")
    churners = [Churner(ATTACKER, d.agents_addr) for _ in range(2)]
    try:
        for c in churners:
            c.start()
        wait_until(lambda: sum(c.attempts for c in churners) >= 300,
                   "the attacker's churn")
        for i in range(3):      # the share of 127.0.0.3: a burst of 3
            code, s, _ = upgrade("127.0.0.4", d.agents_addr)
            assert code == 101, "attempt %d from 127.0.0.4: %s" % (i, code)
            s.close()
        assert refused(d, "accept_share_per_ip") > 100
        assert d.count(r"msg=admission") <= 6, d.text()[-3000:]
    finally:
        for c in churners:
            c.stop()
        assert d.call("GET", "/healthz")[0] == 200
        assert d.stop() == 0


def test_requests_that_never_upgrade_are_cut(tmp_path):
    """Keep-alive requests reset lws's idle timer, not the handshake
    deadline: a connection that asks for pages and never upgrades is cut
    after hello_timeout."""
    d = Discoveryd(tmp_path, heartbeat="  interval: 500ms\n  timeout: 1500ms\n"
                                       "  hello_timeout: 1s\n")
    try:
        s = connect_from("127.0.0.5", d.agents_addr)
        s.settimeout(1)
        deadline = time.monotonic() + WAIT
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                data = s.recv(4096)
                while data and b"\r\n\r\n" not in data:
                    data += s.recv(4096)
                closed = not data
            except socket.timeout:
                pass
            except OSError:
                closed = True
            if not closed:
                time.sleep(0.3)         # a slow client, not a flood
        s.close()
        assert closed, "a connection that never upgraded was kept"
        assert refused(d, "handshake_timeout") == 1
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0
