"""Start the real binaries on port 0 and wait for what they log.

Every process's stderr is read on a thread into a list of lines; tests wait
for a line matching a pattern (a condition variable, never a sleep). Daemons
log the address they bound ("msg=listening listener=http addr=...") before
"msg=ready", so a test reads its ports back from the log.
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The programs under test: build/bin, or $DISCOVERY_BIN (make SANITIZE=...
# builds into a tree of its own and points the tests there).
BIN = os.environ.get("DISCOVERY_BIN", os.path.join(ROOT, "build", "bin"))
WAIT = float(os.environ.get("DISCOVERY_TEST_WAIT", "15"))


class Proc:
    """A child process whose stderr lines can be waited for."""

    def __init__(self, argv, name, env=None, stdin=subprocess.DEVNULL):
        self.name = name
        self.lines = []
        self.cv = threading.Condition()
        wrapper = os.environ.get("DISCOVERY_TEST_WRAPPER")
        if wrapper and name == "discoveryd":
            argv = wrapper.split() + argv
        self.p = subprocess.Popen(argv, stdin=stdin,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  env=env, errors="replace")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def mark(self):
        """Position in the log; wait_line(start=mark) sees only newer lines."""
        with self.cv:
            return len(self.lines)

    def wait_line(self, pattern, start=0, timeout=WAIT):
        """Wait for a line matching pattern at or after index start."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cv:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and
                                 not self.reader.is_alive()):
                    raise AssertionError(
                        "%s: no line matching %r; log:\n%s" %
                        (self.name, pattern, "\n".join(self.lines[-40:])))
                self.cv.wait(left)

    def count(self, pattern, start=0):
        rx = re.compile(pattern)
        with self.cv:
            return sum(1 for l in self.lines[start:] if rx.search(l))

    def kill(self, sig):
        self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=WAIT):
        if self.p.stdin:
            self.p.stdin.close()
        if self.p.poll() is None:
            try:
                self.p.send_signal(signal.SIGCONT)
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.reader.join(5)
        if self.p.returncode != 0:
            # Shown only when the test fails: why it did not exit 0 (a
            # sanitizer's report, say).
            print("exit %d; log:\n%s" % (self.p.returncode, self.text()[-20000:]))
        return self.p.returncode

    def text(self):
        with self.cv:
            return "\n".join(self.lines)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class Discoveryd(Proc):
    """discoveryd on free ports with a generated config."""

    def __init__(self, tmp, extra="", http_port=0, agents_port=0,
                 heartbeat="  interval: 500ms\n  timeout: 1500ms\n",
                 tls=None, dns=False, binary=None):
        """tls: {"cert": path, "key": path, "ca": path} for https/wss;
        dns: listen.dns on a free port too (self.dns_port); binary: another
        discoveryd than BIN's (an installed one)."""
        self.tmp = tmp
        self.tls = tls
        if tls:
            extra += "tls:\n  cert: %s\n  key: %s\n" % (tls["cert"],
                                                       tls["key"])
        self.config = write(os.path.join(str(tmp), "discoveryd.yaml"),
                            "listen:\n  http: 127.0.0.1:%d\n"
                            "  agents: 127.0.0.1:%d\n%s"
                            "state_dir: %s\nnode: test-node\n"
                            "heartbeat:\n%s%s" %
                            (http_port, agents_port,
                             "  dns: 127.0.0.1:0\n" if dns else "",
                             os.path.join(str(tmp), "state"), heartbeat,
                             extra))
        super().__init__([binary or os.path.join(BIN, "discoveryd"), "-c",
                          self.config], "discoveryd")
        http = self.wait_line(r"msg=listening listener=http addr=(\S+)")
        agents = self.wait_line(r"msg=listening listener=agents addr=(\S+)")
        if dns:
            self.dns_port = int(self.wait_line(
                r"msg=listening listener=dns addr=\S+:(\d+)").group(1))
        self.wait_line(r"msg=ready")
        self.http_addr = http.group(1)
        self.agents_addr = agents.group(1)
        scheme = "s" if tls else ""
        self.base = "http%s://%s" % (scheme, self.http_addr)
        self.ws_url = "ws%s://%s/" % (scheme, self.agents_addr)
        self.ssl = None
        if tls:
            import ssl
            self.ssl = ssl.create_default_context(cafile=tls["ca"])

    def call(self, method, path, body=None, raw=None, headers=None):
        """One HTTP call: (status, parsed JSON body or None)."""
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=WAIT,
                                        context=self.ssl) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text


class Sidecar(Proc):
    """discovery-agent with a generated config; health on a free port (or
    health_listen, when the test must know it before the start)."""

    def __init__(self, tmp, daemon_url, service, instance, depends_on=(),
                 extra="", name=None, health_listen="127.0.0.1:0",
                 binary=None):
        """binary: another discovery-agent than BIN's (an installed one)."""
        name = name or "agent-" + instance
        # SIGTERM drains for `drain` (5s by default) before it closes:
        # tests stop at once unless they say otherwise.
        if not re.search(r"^drain:", extra, re.M):
            extra += ("\n" if extra and not extra.endswith("\n") else "") + \
                "drain: 0\n"
        self.config = write(os.path.join(str(tmp), name + ".yaml"),
                            "discovery: [%s]\nservice: %s\ninstance: %s\n"
                            "depends_on: [%s]\n"
                            "backoff: { initial: 50ms, max: 500ms }\n"
                            "heartbeat: { interval: 500ms, timeout: 1500ms }\n"
                            "health:\n  listen: %s\n%s" %
                            (daemon_url, service, instance,
                             ", ".join(depends_on), health_listen, extra))
        super().__init__([binary or os.path.join(BIN, "discovery-agent"),
                          "-c", self.config], name)
        m = self.wait_line(r"msg=listening listener=health addr=(\S+)")
        self.health = "http://" + m.group(1)

    def ready_status(self):
        try:
            with urllib.request.urlopen(self.health + "/ready",
                                        timeout=WAIT) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code


# A WebSocket upgrade to the agent listener, written by hand, for peers that
# misbehave on purpose (frozen, not reading) where a library would not.
UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Protocol: discovery.v1\r\n\r\n")


def masked_frame(opcode, payload):
    """One client frame (masked with a zero key), payload under 64 KiB."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0xfe]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def raw_link(addr, hello=None, rcvbuf=None):
    """Upgrade a plain socket to an agent link and send hello (a dict) if
    given. Returns (socket, the bytes that came after the 101 head)."""
    host, port = addr.rsplit(":", 1)
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(WAIT)
    s.connect((host, int(port)))
    s.sendall(UPGRADE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "closed during the upgrade"
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 101"), buf[:80]
    if hello is not None:
        s.sendall(masked_frame(0x1, json.dumps(hello).encode()))
    return s, buf[buf.index(b"\r\n\r\n") + 4:]


def read_frame(s, buf):
    """One unmasked server frame: (opcode, payload, rest) or None at EOF."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                return False
            buf += chunk
        return True
    if not need(2):
        return None
    n, head = buf[1] & 0x7f, 2
    if n == 126:
        if not need(4):
            return None
        n, head = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if not need(10):
            return None
        n, head = int.from_bytes(buf[2:10], "big"), 10
    if not need(head + n):
        return None
    return buf[0] & 0x0f, buf[head:head + n], buf[head + n:]


def ws_run(coro):
    """Run one asyncio WebSocket scenario to completion."""
    return asyncio.run(asyncio.wait_for(coro, WAIT))
