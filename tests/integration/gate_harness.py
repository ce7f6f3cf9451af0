"""Helpers for the gate's tests: the test upstream (tests/gate/upstream.py),
a discovery-gate on free ports, and a few HTTP calls that show exactly
what came back (status, headers, body)."""

import http.client
import json
import os
import sys
import threading

from harness import BIN, ROOT, Proc, write

UPSTREAM = os.path.join(ROOT, "tests", "gate", "upstream.py")


class Upstream(Proc):
    """The test app, on a free port (or `port`)."""

    def __init__(self, port=0):
        super().__init__(["/usr/bin/python3", UPSTREAM, str(port)], "upstream")
        self.addr = self.wait_line(
            r"msg=listening listener=upstream addr=(\S+)").group(1)
        self.url = "http://" + self.addr


class Gate(Proc):
    """discovery-gate with a generated config; listens on a free port."""

    def __init__(self, tmp, daemon, upstream_url, requires=("cache",),
                 extra="", name="gate", wait_ready=True):
        self.config = write(os.path.join(str(tmp), name + ".yaml"),
                            "listen: 127.0.0.1:0\nupstream: %s\n"
                            "requires: [%s]\ndiscovery: [%s]\n"
                            "service: web\ninstance: %s\n"
                            "backoff: { initial: 50ms, max: 500ms }\n"
                            "heartbeat: { interval: 500ms, timeout: 1500ms }\n"
                            "%s" % (upstream_url, ", ".join(requires),
                                    daemon.ws_url if daemon else
                                    "ws://127.0.0.1:9", name, extra))
        # DISCOVERY_GATE_WRAPPER="valgrind -q --error-exitcode=99 ..."
        # runs the gate under a tool (the exit status tells the test).
        wrapper = os.environ.get("DISCOVERY_GATE_WRAPPER", "").split()
        super().__init__(wrapper + [os.path.join(BIN, "discovery-gate"), "-c",
                                    self.config], name)
        if wait_ready:
            self.addr = self.wait_line(
                r"msg=listening listener=http addr=(\S+)").group(1)
            self.wait_line(r"msg=ready")
            self.host, self.port = self.addr.rsplit(":", 1)
            self.port = int(self.port)
            self.url = "http://" + self.addr

    def conn(self, timeout=15):
        return http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        """(status, headers as a dict of lists, body bytes) on a new connection."""
        c = self.conn()
        try:
            return call(c, method, path, body, headers)
        finally:
            c.close()

    def state(self):
        status, _, body = self.request("GET", "/.well-known/discovery-gate")
        assert status == 200
        return json.loads(body)

    def rss_kib(self):
        """(VmRSS, VmHWM) of the gate, in KiB."""
        vals = {}
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    vals[k] = int(v.split()[0])
        return vals["VmRSS"], vals["VmHWM"]


class Poller:
    """GET PATH through the gate without pause, on one keep-alive
    connection, on a thread of its own; `statuses` holds every answer."""

    def __init__(self, gate, path="/echo"):
        self.gate, self.path = gate, path
        self.statuses = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn = self.gate.conn()
        while not self.stopping.is_set():
            conn.request("GET", self.path)
            r = conn.getresponse()
            r.read()
            self.statuses.append(r.status)

    def more(self, n):
        """Wait for n more answers (or the thread's end), then stop."""
        start = len(self.statuses)
        while len(self.statuses) < start + n and self.thread.is_alive():
            self.thread.join(0.01)
        self.stop()
        return self.statuses

    def stop(self):
        self.stopping.set()
        self.thread.join(10)


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    hdrs = {}
    for k, v in r.getheaders():
        hdrs.setdefault(k.lower(), []).append(v)
    return r.status, hdrs, data


class RawUpstream:
    """An upstream of a few lines for answers the test app does not give
    (a keep-alive socket closed under the gate, 1xx heads, a body that
    stalls): a real TCP server in this process that calls
    `answer(sock, head, index)` for each request head it reads, `index`
    counting the requests on that connection. `answer` returns False to
    close the connection. `connections` counts the connections."""

    def __init__(self, answer):
        import socket
        import threading
        self.answer = answer
        self.connections = 0
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.url = "http://127.0.0.1:%d" % self.srv.getsockname()[1]
        self.threads = []
        self.open = []
        self.running = True
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        import threading
        while self.running:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(s)
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, s):
        buf, index = b"", 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                if self.answer(s, head.decode("latin-1"), index) is False:
                    return
                index += 1
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.running = False
        self.srv.close()
        for s in self.open:
            try:
                s.close()
            except OSError:
                pass
