"""Sentinels that lie, or are slow: cluster.sentinels lists, before a real
redis-sentinel, one address where nothing listens, one that accepts and
never answers, one that answers garbage (bad ports, wrong types, a host
too long, bytes that are not RESP), and one that names the replica as the
master. The node must pass them all by, find the real master (ROLE says
so), and serve writes.

And when every sentinel names the same master, one that accepts and never
answers: each round of asking tries it once, not once per sentinel (each
try costs cluster.timeout or more, on an API thread too).

The liars are small RESP servers here: an attacker's, or a broken
sentinel's, answers, which no real one gives.
"""

import socket
import threading
import time

from cluster_harness import Redis, Sentinel, free_port, node
from harness import WAIT, Discoveryd


def bulk(s):
    b = s.encode() if isinstance(s, str) else s
    return b"$%d\r\n%s\r\n" % (len(b), b)


GARBAGE = [
    b"*2\r\n" + bulk("127.0.0.1") + bulk("port"),
    b"*2\r\n" + bulk("127.0.0.1") + bulk("0"),
    b"*2\r\n" + bulk("127.0.0.1") + bulk("70000"),
    b"*1\r\n" + bulk("127.0.0.1"),
    b"*2\r\n*0\r\n*0\r\n",
    b":6379\r\n",
    b"$-1\r\n",
    b"-IDONTKNOW no such master\r\n",
    b"*2\r\n" + bulk("h" * 300) + bulk("6379"),
    b"HTTP/1.1 400 Bad Request\r\n\r\n",
]


class Liar:
    """A TCP server on a free port speaking just enough RESP: AUTH is
    accepted, SENTINEL answered by answer(n) (n counts the questions; None:
    never answer). It counts the connections it accepted."""

    def __init__(self, answer):
        self.answer, self.asked, self.accepted = answer, 0, 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                data = c.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    cmd, buf = self._command(buf)
                    if cmd is None:
                        break
                    out = self._reply(cmd)
                    if out is None:
                        continue     # frozen: keep reading, never answer
                    c.sendall(out)
        except OSError:
            pass

    @staticmethod
    def _command(buf):
        """One RESP array of bulk strings off buf: (words, rest), or
        (None, buf) when incomplete."""
        lines = buf.split(b"\r\n")
        if not lines[0].startswith(b"*") or len(lines) < 2:
            return [lines[0]], b"\r\n".join(lines[1:])
        n = int(lines[0][1:])
        if len(lines) < 2 * n + 2:
            return None, buf
        words = [lines[2 + 2 * i] for i in range(n)]
        return words, b"\r\n".join(lines[2 * n + 1:])

    def _reply(self, cmd):
        verb = cmd[0].upper() if cmd else b""
        if verb == b"AUTH":
            return b"+OK\r\n"
        if verb == b"SENTINEL":
            with self.lock:
                n = self.asked
                self.asked += 1
            return self.answer(n)
        return b"-ERR unknown command\r\n"

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                c.close()


def master_answer(port):
    return lambda n: b"*2\r\n" + bulk("127.0.0.1") + bulk(str(port))


def test_lying_and_slow_sentinels_are_passed_by(tmp_path):
    master = Redis(tmp_path / "master")
    replica = Redis(tmp_path / "replica", replicaof=master.port)
    sentinel = Sentinel(tmp_path / "sentinel", master.port, quorum=1)
    liars = [Liar(lambda n: None),
             Liar(lambda n: GARBAGE[n % len(GARBAGE)]),
             Liar(master_answer(replica.port))]
    dead = "127.0.0.1:%d" % free_port()
    n = None
    try:
        n = node(tmp_path, "node-a",
                 [dead] + [l.addr for l in liars] + [sentinel.addr])
        n.wait_line(r'msg="cluster master" master=127\.0\.0\.1:%d ' %
                    master.port)
        assert n.count(r'msg="redis not master"') >= 1
        for i in range(3):
            st, body = n.call("POST", "/api/discovery/invalidate",
                              {"keys": ["k%d" % i]})
            assert st == 202, body
        st, text = n.call("GET", "/metrics")
        assert ('discovery_cluster_master_info{addr="127.0.0.1:%d"} 1' %
                master.port).encode() in text
        assert n.count(r'msg="cluster master changed"') == 0
    finally:
        codes = [n.stop()] if n else []
        for l in liars:
            l.close()
        for p in (sentinel, replica, master):
            p.stop()
        assert codes == [0], codes


def test_a_frozen_master_is_tried_once_a_round(tmp_path):
    frozen = Liar(lambda n: None)
    liars = [Liar(master_answer(frozen.port)) for _ in range(3)]
    d = Discoveryd(tmp_path, extra="cluster:\n  sentinels: [%s]\n"
                   "  master_name: disc\n  node: node-a\n"
                   "  timeout: 200ms\n" % ", ".join(l.addr for l in liars))
    try:
        # Each round asks liars[0] first (none named a master that
        # opened), then opens the frozen one at most once.
        deadline = time.monotonic() + WAIT
        while liars[0].asked < 4:
            assert time.monotonic() < deadline, "no sentinel was asked"
            time.sleep(0.1)          # polling a counter, not a sync
        with frozen.lock:
            tried = frozen.accepted
        with liars[0].lock:
            rounds = liars[0].asked
        assert tried <= rounds, (tried, rounds)
        st, _ = d.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
        assert st == 503
    finally:
        assert d.stop() == 0, d.text()
        frozen.close()
        for l in liars:
            l.close()
