"""GET /api/discovery/events with Accept: text/event-stream: every logged
event with its id, changes when agents link, Last-Event-ID resume, and a
clean end when the daemon stops."""

import json
import socket

import websockets

from harness import Discoveryd, WAIT, ws_run


class Stream:
    """A raw SSE client on a socket: undoes the chunked transfer encoding
    and parses events as they come."""

    def __init__(self, d, last_id=None, query=""):
        host, port = d.http_addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=WAIT)
        head = ("GET /api/discovery/events%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Accept: text/event-stream\r\n" % query)
        if last_id is not None:
            head += "Last-Event-ID: %s\r\n" % last_id
        self.s.sendall((head + "\r\n").encode())
        self.raw, self.text = b"", b""
        self.headers = self._raw_until(b"\r\n\r\n").decode()
        assert "chunked" in self.headers.lower()

    def _recv(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError
        self.raw += data

    def _raw_until(self, sep):
        while sep not in self.raw:
            self._recv()
        out, self.raw = self.raw.split(sep, 1)
        return out

    def _chunk(self):
        size = int(self._raw_until(b"\r\n"), 16)
        if size == 0:
            raise EOFError
        while len(self.raw) < size + 2:
            self._recv()
        self.text += self.raw[:size]
        self.raw = self.raw[size + 2:]

    def event(self):
        """The next event as a dict of its fields (comments skipped)."""
        while True:
            while b"\n\n" not in self.text:
                self._chunk()
            block, self.text = self.text.split(b"\n\n", 1)
            fields = {}
            for line in block.decode().split("\n"):
                if line and not line.startswith(":"):
                    k, _, v = line.partition(": ")
                    fields[k] = v
            if "data" in fields:
                return fields


def test_live_stream_and_resume(daemon):
    _, a = daemon.call("POST", "/api/discovery/invalidate", {"keys": ["a"]})
    _, b = daemon.call("POST", "/api/discovery/invalidate", {"keys": ["b"]})
    st = Stream(daemon, last_id=a["seq"])
    assert "text/event-stream" in st.headers
    ev = st.event()
    assert ev["id"] == str(b["seq"]) and ev["event"] == "event"
    assert json.loads(ev["data"])["value"] == {"keys": ["b"]}
    # Live from here on.
    _, c = daemon.call("POST", "/api/discovery/cacheready")
    ev = st.event()
    assert ev["id"] == str(c["seq"])
    assert json.loads(ev["data"])["header"] == {"CacheReady": 1}

    async def link():
        ws = await websockets.connect(daemon.ws_url,
                                      subprotocols=["discovery.v1"])
        await ws.send(json.dumps({"type": "hello", "service": "web",
                                  "instance": "w1"}))
        await ws.recv()
        await ws.close()
    ws_run(link())
    ev = st.event()
    assert ev["event"] == "change" and json.loads(ev["data"]) == \
        {"service": "web"}
    # A stream without Last-Event-ID starts live: the next event is new.
    fresh = Stream(daemon)
    _, d = daemon.call("POST", "/api/discovery/invalidate", {"keys": ["d"]})
    assert fresh.event()["id"] == str(d["seq"])
    fresh.s.close()
    st.s.close()
    assert daemon.call("GET", "/api/discovery/events?after=x",
                       headers={"Accept": "text/event-stream"})[0] == 400


def test_streams_end_when_the_daemon_stops(tmp_path):
    d = Discoveryd(tmp_path)
    st = Stream(d)
    d.kill(15)
    try:
        while True:
            st.event()
    except (EOFError, ConnectionResetError):
        pass
    assert d.stop() == 0
