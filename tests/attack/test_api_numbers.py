"""Numbers reach agents byte for byte as the caller wrote them, on every
path an event takes: the API body, the frame agents get (a raw socket and
libagent), /api/discovery/events and the live stream, the journal replayed
after a restart (and an agent resuming through it), and cluster mode
through Redis. cJSON holds numbers as doubles: before the fix
9007199254740991 arrived as 9007199254740990 and 123456789012345678 as
1.2345678901234568e+17. Text that RFC 8259 does not call a number (01, 1.)
is refused, since it would now be passed on as written."""

import json
import os
import signal
import socket
import subprocess
import urllib.request

from cluster_harness import Redis, node
from harness import (BIN, WAIT, Discoveryd, Proc, raw_link, read_frame)

HEADER = b'{"n":123456789012345678,"f":1.10}'
VALUE = (b'{"max":9007199254740991,"big":9007199254740993,'
         b'"v":[123456789012345678,-0,1E+2,0.1,1e400,18446744073709551615,'
         b'-9007199254740993.5e-3,7]}')
BODY = b'{"command":"Exact","header":' + HEADER + b',"value":' + VALUE + b"}"


def post(d, raw):
    req = urllib.request.Request(d.base + "/api/discovery/broadcast",
                                 data=raw, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get_text(d, path):
    with urllib.request.urlopen(d.base + path, timeout=WAIT) as r:
        return r.read()


def exact(text):
    """text (bytes) carries the header and value as they were sent."""
    return (b'"header":' + HEADER in text) and (b'"value":' + VALUE in text)


def link(addr, instance, resume=None):
    hello = {"type": "hello", "service": "app", "instance": instance}
    if resume:
        hello["resume"] = resume
    s, rest = raw_link(addr, hello)
    op, welcome, rest = read_frame(s, rest)
    return s, rest, json.loads(welcome)


def next_command(s, rest):
    """The next command event's frame text (other frames skipped)."""
    while True:
        got = read_frame(s, rest)
        assert got, "the link closed"
        op, payload, rest = got
        if op == 1 and b'"kind":"command"' in payload:
            return payload, rest


def sse_first_event(d, after):
    """The data of the first logged event after seq `after`, live stream."""
    host, port = d.http_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    s.sendall(b"GET /api/discovery/events?after=%d HTTP/1.1\r\n"
              b"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n" % after)
    buf = b""
    while b"\nevent: event\ndata: " not in buf or \
            not buf.split(b"\nevent: event\ndata: ", 1)[1].count(b"\n"):
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    s.close()
    return buf.split(b"\nevent: event\ndata: ", 1)[1].split(b"\n", 1)[0]


def test_numbers_exact_through_api_agents_journal_and_sse(tmp_path):
    d = Discoveryd(tmp_path)
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    probe = Proc([os.path.join(BIN, "..", "tests", "tools", "agent_probe"),
                  d.ws_url, "app", "probe-1"], "probe",
                 stdin=subprocess.PIPE)
    try:
        s, rest, welcome = link(d.agents_addr, "raw-1")
        probe.wait_line(r"link state=linked")
        status, answer = post(d, BODY)
        assert status == 202, answer
        seq = answer["seq"]

        frame, rest = next_command(s, rest)
        assert exact(frame), frame
        line = probe.wait_line(r"event seq=%d kind=command .*value=(.*)$"
                               % seq)
        assert line.group(1).encode() == VALUE
        assert exact(get_text(d, "/api/discovery/events"))
        assert exact(sse_first_event(d, seq - 1))
        s.close()

        # The journal, replayed after a restart: the retained event, and
        # an agent that resumes from before it.
        assert d.stop() == 0
        d = Discoveryd(tmp_path, http_port=http, agents_port=agents)
        assert exact(get_text(d, "/api/discovery/events"))
        s, rest, welcome = link(d.agents_addr, "raw-2",
                                {"epoch": welcome["epoch"], "seq": seq - 1})
        assert welcome["recovered"], welcome
        frame, rest = next_command(s, rest)
        assert exact(frame), frame
        s.close()
    finally:
        probe.stop()
        assert d.stop() == 0


def test_numbers_exact_across_a_cluster(tmp_path):
    redis = Redis(tmp_path / "redis")
    a = node(tmp_path, "node-a", redis.url)
    b = node(tmp_path, "node-b", redis.url)
    try:
        s, rest, _ = link(b.agents_addr, "raw-b")
        b.wait_line(r"msg=linked .*instance=raw-b")
        status, answer = post(a, BODY)
        assert status == 202, answer
        frame, rest = next_command(s, rest)
        assert exact(frame), frame
        assert exact(get_text(b, "/api/discovery/events"))
        s.close()
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
        redis.stop(signal.SIGTERM)


def test_numbers_that_are_not_json_are_refused(daemon):
    for bad in (b"01", b"-01", b"1.", b"-.5", b"1.e5", b"00", b"1e"):
        status, body = post(daemon, b'{"command":"X","value":[' + bad + b"]}")
        assert status == 400, (bad, body)
        assert "number" in body["message"]
    _, log = daemon.call("GET", "/api/discovery/events")
    assert log["events"] == []
    assert daemon.call("GET", "/healthz")[0] == 200
