"""What the gate's attack cases share: an upstream that records exactly
what it receives, raw requests on a socket of their own, and a locked
gate in front of that upstream."""

import os
import re
import socket
import threading
import time

from gate_harness import Gate
from harness import WAIT


class RecordingUpstream:
    """A real TCP app that answers every request it parses (by its own
    Content-Length) with 200 and the target, and records every byte and
    every request head it got, per connection."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(128)
        self.url = "http://127.0.0.1:%d" % self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.raw = []          # bytes per connection
        self.heads = []        # every request head parsed, in order
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def targets(self):
        with self.lock:
            return [h.split(b" ")[1].decode("latin-1") for h in self.heads]

    def all_bytes(self):
        with self.lock:
            return b"".join(bytes(r) for r in self.raw)

    def _accept(self):
        while self.running:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.raw.append(bytearray())
                raw = self.raw[-1]
            threading.Thread(target=self._serve, args=(s, raw),
                             daemon=True).start()

    def _serve(self, s, raw):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    with self.lock:
                        raw += data
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                with self.lock:
                    self.heads.append(head)
                length, chunked = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    if name.strip().lower() == b"transfer-encoding":
                        chunked = True
                while chunked and b"0\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    with self.lock:
                        raw += data
                    buf += data
                if chunked:  # the gate's own framing: no trailers
                    length = buf.index(b"0\r\n\r\n") + 5
                while len(buf) < length:
                    data = s.recv(65536)
                    if not data:
                        return
                    with self.lock:
                        raw += data
                    buf += data
                buf = buf[length:]
                target = head.split(b" ")[1]
                body = b"app:" + target
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body)
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.running = False
        self.srv.close()


def raw_exchange(gate, data, source="127.0.0.1", wait_close=True,
                 timeout=5):
    """Send bytes on a new connection (from `source`) and read what comes
    back until the gate closes it (or timeout)."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect((gate.host, gate.port))
    got = b""
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                block = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not block:
                break
            got += block
            if not wait_close and b"\r\n\r\n" in got:
                break
    finally:
        s.close()
    return got


def status_of(answer):
    """The status codes of every response in what came back."""
    codes = []
    while answer.startswith(b"HTTP/1.1 "):
        head, _, rest = answer.partition(b"\r\n\r\n")
        codes.append(int(head[9:12]))
        m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
        length = int(m.group(1)) if m else 0
        if codes[-1] in (100, 101, 204, 304):
            length = 0
        answer = rest[length:]
    return codes


def locked_gate(tmp_path, daemon, upstream, extra=""):
    """A gate waiting for `cache` (never ready here), passing /healthz."""
    return Gate(tmp_path, daemon, upstream.url, requires=("cache",),
                extra="pass: [/healthz, /static/]\n" + extra)


__all__ = ["RecordingUpstream", "raw_exchange", "status_of", "locked_gate",
           "WAIT", "os"]
