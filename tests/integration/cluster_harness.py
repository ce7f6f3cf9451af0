"""A real redis-server and discoveryd nodes sharing it (cluster mode).

Redis runs on a free port in the test's directory, with or without AOF, and
can be frozen, killed and started again on the same port and files. A Cut
is a TCP relay between one node and Redis that the test can sever, so that
node alone loses Redis while the others keep it.
"""

import os
import socket
import subprocess
import threading

import pytest

from harness import Discoveryd, Proc


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis(Proc):
    """redis-server on 127.0.0.1:port with its files in dir."""

    def __init__(self, dir, port=None, aof=False):
        self.dir, self.aof = str(dir), aof
        self.port = port or free_port()
        os.makedirs(self.dir, exist_ok=True)
        super().__init__(["redis-server", "--port", str(self.port),
                          "--bind", "127.0.0.1", "--dir", self.dir,
                          "--save", "", "--appendonly",
                          "yes" if aof else "no",
                          "--appendfsync", "always"], "redis")
        self.wait_line(r"Ready to accept connections")
        self.url = "redis://127.0.0.1:%d" % self.port

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] +
                              list(args), capture_output=True, text=True,
                              timeout=10).stdout.strip()

    def restart(self):
        """Stop (SIGTERM: AOF flushed) and start again, same port and files."""
        self.stop()
        return Redis(self.dir, self.port, self.aof)


class Cut:
    """A TCP relay to Redis that can be severed (and mended)."""

    def __init__(self, port):
        self.target = port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.url = "redis://127.0.0.1:%d" % self.port
        self.open = True
        self.conns = []
        self.mu = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.mu:
                if not self.open:
                    c.close()
                    continue
                try:
                    u = socket.create_connection(("127.0.0.1", self.target))
                except OSError:
                    c.close()
                    continue
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def sever(self):
        with self.mu:
            self.open = False
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns = []

    def mend(self):
        with self.mu:
            self.open = True

    def close(self):
        self.sever()
        self.lsock.close()


def node(tmp, name, redis_url, node_ttl="1500ms", timeout="500ms",
         extra="", **kw):
    """One discoveryd node of the cluster, in tmp/name (kw: Discoveryd's)."""
    d = os.path.join(str(tmp), name)
    os.makedirs(d, exist_ok=True)
    n = Discoveryd(d, extra="cluster:\n  redis: %s\n  node: %s\n"
                   "  node_ttl: %s\n  timeout: %s\n%s" %
                   (redis_url, name, node_ttl, timeout, extra), **kw)
    n.wait_line(r"msg=\"cluster synced\"")
    return n


@pytest.fixture
def redis(tmp_path):
    """A redis-server of the test's own (tests' conftest.py offer it)."""
    r = Redis(tmp_path / "redis")
    yield r
    r.stop()
