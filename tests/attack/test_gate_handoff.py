"""Connections a gate worker hands over to a lighter one (agent/gate/
worker.c) stay behind the lock: each request is checked by the worker
that owns the connection, whichever accepted it. The attacker sends its
requests in the same write as the connect (the bytes wait in the socket
before the new owner watches it) and pipelines a locked request behind a
passed one: every connection is answered, nothing locked reaches the
app."""

import threading

from gate_util import RecordingUpstream, raw_exchange, status_of
from gate_harness import Gate
from harness import Discoveryd


def test_handed_over_connections_stay_locked(tmp_path):
    d = Discoveryd(tmp_path)
    up = RecordingUpstream()
    g = Gate(tmp_path, d, up.url, requires=("cache",),
             extra="pass: [/healthz]\nlog_level: debug\n"
                   "limits: { threads: 3 }\n")
    answers = [None] * 90
    req = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /healthz/../secret HTTP/1.1\r\nHost: x\r\n"
           b"Connection: close\r\n\r\n")

    def one(i):
        answers[i] = raw_exchange(g, req, source="127.0.0.%d" % (1 + i % 4))
    try:
        ts = [threading.Thread(target=one, args=(i,)) for i in range(90)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        handed = g.text().count("msg=accepted") - sum(
            1 for line in g.text().splitlines()
            if "msg=accepted" in line and
            line.split("worker=")[1].split()[0] ==
            line.split("owner=")[1].split()[0])
        assert handed > 0, "no connection was handed over"
        for a in answers:
            codes = status_of(a)
            assert codes[0] == 200 and all(c in (423, 404, 400)
                                           for c in codes[1:]), codes
        assert set(up.targets()) <= {"/healthz"}, up.targets()
    finally:
        assert g.stop() == 0, g.text()[-2000:]
        up.stop()
        assert d.stop() == 0
