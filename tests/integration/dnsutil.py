"""What the DNS tests share: dig against a daemon's listen.dns, WebSocket
agents that keep answering pings while a test waits on dig, agent_probe
processes (libagent), and polling until an answer is what a test expects."""

import asyncio
import json
import os
import re
import subprocess
import threading
import time
import urllib.request

import websockets

from harness import BIN, WAIT, Proc

SUB = ["discovery.v1"]
# Links must outlive a slow dig (valgrind); a clean close still leaves at
# once, which is what the tests drop agents with.
HEARTBEAT = "  interval: 1s\n  timeout: 60s\n"


class Answer:
    def __init__(self, text):
        self.text = text
        m = re.search(r"status: (\w+)", text)
        self.status = m.group(1) if m else None
        m = re.search(r";; flags: ([a-z ]*);", text)
        self.flags = m.group(1).split() if m else []
        self.sections = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
        part = None
        for line in text.splitlines():
            m = re.match(r";; (\w+) SECTION:", line)
            if m:
                part = m.group(1)
                continue
            if not line or line.startswith(";"):
                part = None if not line else part
                continue
            if part in self.sections:
                f = line.split()
                self.sections[part].append(
                    (f[0].lower(), int(f[1]), f[3], " ".join(f[4:])))

    def records(self, section="ANSWER", rtype=None):
        return [r for r in self.sections[section]
                if rtype is None or r[2] == rtype]

    def rdata(self, rtype=None):
        return sorted(r[3] for r in self.records("ANSWER", rtype))


def dig(d, name, qtype="A", *opts, port=None):
    argv = ["dig", "-p", str(port or d.dns_port), "@127.0.0.1", name, qtype,
            "+time=%d" % max(2, int(WAIT / 3)), "+tries=2",
            "+nocookie"] + list(opts)
    r = subprocess.run(argv, capture_output=True, text=True,
                       timeout=WAIT * 3)
    return Answer(r.stdout)


def wait_until(cond, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def wait_rdata(d, name, qtype, want, *opts):
    """Poll until the answer's records are want (sorted rdata)."""
    last = []

    def ok():
        a = dig(d, name, qtype, *opts)
        last[:] = [a.rdata(qtype)]
        return a if a.rdata(qtype) == sorted(want) else None

    try:
        return wait_until(ok)
    except AssertionError:
        raise AssertionError("%s %s: %r, not %r" % (name, qtype, last,
                                                    sorted(want)))


def metric(d, name, labels=""):
    """A /metrics sample's value (0 when absent)."""
    with urllib.request.urlopen(d.base + "/metrics", timeout=WAIT) as r:
        text = r.read().decode()
    key = name + ("{%s}" % labels if labels else "")
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


class Agents:
    """WebSocket agents on an event loop of their own thread: they answer
    the daemon's pings while the test blocks on dig."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       daemon=True)
        self.thread.start()
        self.links = {}

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(
            WAIT * 2)

    def add(self, service, instance, address, state="ready", **kw):
        async def go():
            ws = await websockets.connect(self.daemon.ws_url,
                                          subprotocols=SUB, max_size=None)
            hello = {"type": "hello", "service": service,
                     "instance": instance, "address": address}
            hello.update(kw)
            await ws.send(json.dumps(hello))
            assert json.loads(await ws.recv())["type"] == "welcome"
            if state:
                await ws.send(json.dumps({"type": "status", "state": state,
                                          "ready": state == "ready"}))
            return ws
        self.links[instance] = self._run(go())

    def status(self, instance, state):
        self._run(self.links[instance].send(json.dumps(
            {"type": "status", "state": state, "ready": state == "ready"})))

    def drop(self, instance):
        self._run(self.links.pop(instance).close())

    def close(self):
        for i in list(self.links):
            self.drop(i)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class Probe(Proc):
    """agent_probe (libagent): ready/draining lines on stdin."""

    def __init__(self, daemon, service, instance, address):
        super().__init__([os.path.join(BIN, "..", "tests", "tools",
                                       "agent_probe"),
                          daemon.ws_url, service, instance],
                         "probe-" + instance,
                         env=dict(os.environ, AGENT_PROBE_ADDRESS=address),
                         stdin=subprocess.PIPE)
        self.wait_line(r"link state=linked")

    def say(self, line):
        mark = self.mark()
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        self.wait_line(r"set rc=0", start=mark)
