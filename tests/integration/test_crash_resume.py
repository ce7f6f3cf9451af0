"""SIGKILL discoveryd mid-stream and restart it: every event arrives
exactly once, in order, at a libagent client, at the sidecar's hooks and at
an agent written in Python against the documented protocol."""

import os
import signal
import subprocess
import threading
import urllib.error

from harness import BIN, Discoveryd, Proc, Sidecar, write
from pyagent import PyAgent

EVENTS = 120


class Producer(threading.Thread):
    """Posts invalidations to web until EVENTS were acknowledged, riding
    through the daemon's death (a call may fail, and may or may not have
    been recorded: the log decides)."""

    def __init__(self, holder):
        super().__init__(daemon=True)
        self.holder, self.acked = holder, []
        self.half = threading.Event()

    def run(self):
        while len(self.acked) < EVENTS:
            try:
                st, body = self.holder[0].call(
                    "POST", "/api/discovery/invalidate",
                    {"keys": ["k"], "service": "web"})
            except (OSError, urllib.error.URLError):
                continue
            if st == 202:
                self.acked.append(body["seq"])
            if len(self.acked) == EVENTS // 2:
                self.half.set()


def test_sigkill_midstream_exactly_once(tmp_path):
    d = Discoveryd(tmp_path)
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    out = os.path.join(str(tmp_path), "hook.seqs")
    hook = write(os.path.join(str(tmp_path), "hook.sh"),
                 "#!/bin/sh\necho $DISCOVERY_SEQ >> %s\n" % out)
    os.chmod(hook, 0o755)
    side = Sidecar(tmp_path, d.ws_url, "web", "side-1",
                   extra="hooks:\n  on_invalidate: %s\n" % hook)
    probe = Proc([os.path.join(BIN, "..", "tests", "tools", "agent_probe"),
                  d.ws_url, "web", "probe-1"], "probe",
                 stdin=subprocess.PIPE)
    py = PyAgent(d.ws_url, "web", "py-1")
    holder = [d]
    try:
        side.wait_line(r"msg=linked")
        probe.wait_line(r"link state=linked")
        py.wait_for(lambda a: a.welcomes)
        producer = Producer(holder)
        producer.start()
        producer.half.wait(30)
        d.stop(signal.SIGKILL)
        holder[0] = d = Discoveryd(tmp_path, http_port=http,
                                   agents_port=agents)
        producer.join(60)
        assert len(producer.acked) == EVENTS

        _, log = d.call("GET", "/api/discovery/events")
        assert log["complete"]
        want = [e["seq"] for e in log["events"] if e["kind"] == "invalidate"]
        assert set(producer.acked) <= set(want)
        last = want[-1]

        py.wait_for(lambda a: a.seq >= last)
        assert [s for s, k in py.events if k == "invalidate"] == want
        assert len(py.welcomes) >= 2          # it did lose the daemon
        assert all(w["recovered"] for w in py.welcomes[1:])

        probe.wait_line(r"event seq=%d kind=invalidate" % last)
        got = [int(l.split()[1].split("=")[1]) for l in probe.lines
               if l.startswith("event ") and "kind=invalidate" in l]
        assert got == want
        assert probe.count(r"link state=linked") >= 2
        assert probe.count(r"link state=linked .*reset=1") == 1  # the first

        side.wait_line(r"msg=hook hook=on_invalidate seq=%d " % last)
        with open(out) as f:
            assert [int(x) for x in f.read().split()] == want
    finally:
        py.stop()
        probe.stop()
        side.stop()
        assert d.stop() == 0
