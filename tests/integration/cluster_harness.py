"""A real redis-server and discoveryd nodes sharing it (cluster mode).

Redis runs on a free port in the test's directory, with or without AOF, and
can be frozen, killed and started again on the same port and files, or as a
replica of another; Sentinel runs redis-sentinel on a free port with its own
config file (sentinel rewrites it) watching a master. A Cut
is a TCP relay between one node and Redis that the test can sever, so that
node alone loses Redis while the others keep it.
"""

import os
import socket
import subprocess
import threading

import pytest

from harness import Discoveryd, Proc, write


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis(Proc):
    """redis-server on 127.0.0.1:port with its files in dir."""

    def __init__(self, dir, port=None, aof=False, replicaof=None):
        self.dir, self.aof = str(dir), aof
        self.port = port or free_port()
        os.makedirs(self.dir, exist_ok=True)
        extra = ["--replicaof", "127.0.0.1", str(replicaof)] if replicaof \
            else []
        super().__init__(["redis-server", "--port", str(self.port),
                          "--bind", "127.0.0.1", "--dir", self.dir,
                          "--save", "", "--appendonly",
                          "yes" if aof else "no",
                          "--appendfsync", "always",
                          "--repl-diskless-sync-delay", "0"] + extra, "redis")
        self.wait_line(r"Ready to accept connections")
        if replicaof:
            self.wait_line(r"MASTER <-> REPLICA sync: Finished with success")
        self.url = "redis://127.0.0.1:%d" % self.port

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] +
                              list(args), capture_output=True, text=True,
                              timeout=10).stdout.strip()

    def restart(self):
        """Stop (SIGTERM: AOF flushed) and start again, same port and files."""
        self.stop()
        return Redis(self.dir, self.port, self.aof)


class Sentinel(Proc):
    """redis-sentinel on 127.0.0.1:port watching the master on master_port
    as `name`; quick to act (down after 2 s) so that tests stay short.

    Not 1 s: Sentinel pings every second at most, and with
    down-after-milliseconds 1000 a master it has just switched to can be
    found "down" before its first PING is answered, all sentinels at once:
    they fail over again, back to the old master."""

    def __init__(self, dir, master_port, name="disc", quorum=2):
        self.port = free_port()
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = write(os.path.join(self.dir, "sentinel-%d.conf" %
                                       self.port),
                          "port %d\nbind 127.0.0.1\ndir %s\n"
                          "sentinel monitor %s 127.0.0.1 %d %d\n"
                          "sentinel down-after-milliseconds %s 2000\n"
                          "sentinel failover-timeout %s 5000\n"
                          "sentinel parallel-syncs %s 1\n" %
                          (self.port, self.dir, name, master_port, quorum,
                           name, name, name))
        super().__init__(["redis-sentinel", self.conf], "sentinel")
        self.wait_line(r"\+monitor master %s " % name)
        self.addr = "127.0.0.1:%d" % self.port

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] +
                              list(args), capture_output=True, text=True,
                              timeout=10).stdout.strip()


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
            state = {}                  # the connection's, for relay()
            for a, b, up in ((c, u, True), (u, c, False)):
                threading.Thread(target=self._pump, args=(a, b, up, state),
                                 daemon=True).start()

    def relay(self, data, up, state):
        """What of data goes on (up: towards Redis), or None to cut the
        connection there: a subclass's hook."""
        return data

    def _pump(self, a, b, up, state):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                data = self.relay(data, up, state)
                if data is None:
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
         extra="", heartbeat=None, dns=False):
    """One discoveryd node of the cluster, in tmp/name. redis_url may also
    be a list of sentinels (HOST:PORT), watching the master "disc".
    heartbeat: the links' section, if not the harness's; dns: listen.dns
    too."""
    d = os.path.join(str(tmp), name)
    os.makedirs(d, exist_ok=True)
    where = "redis: %s\n" % redis_url if isinstance(redis_url, str) else \
        "sentinels: [%s]\n  master_name: disc\n" % ", ".join(redis_url)
    kw = {"heartbeat": heartbeat} if heartbeat else {}
    kw["dns"] = dns
    n = Discoveryd(d, extra="cluster:\n  %s  node: %s\n"
                   "  node_ttl: %s\n  timeout: %s\n%s" %
                   (where, name, node_ttl, timeout, extra), **kw)
    n.wait_line(r"msg=\"cluster synced\"")
    return n


@pytest.fixture
def redis(tmp_path):
    """A redis-server of the test's own (tests' conftest.py offer it)."""
    r = Redis(tmp_path / "redis")
    yield r
    r.stop()
