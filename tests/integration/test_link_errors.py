"""Bad input on the agent link gets its close code; the daemon stays up."""

import json
import os
import socket

import websockets

from harness import (Discoveryd, WAIT, masked_frame, raw_link, read_frame,
                     ws_run)

SUB = ["discovery.v1"]
HELLO = json.dumps({"type": "hello", "service": "web", "instance": "w"})


async def closed_with(daemon, *frames, max_size=None):
    ws = await websockets.connect(daemon.ws_url, subprotocols=SUB,
                                  max_size=max_size)
    try:
        for f in frames:
            await ws.send(f)
        while True:
            await ws.recv()
    except websockets.ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason


def test_close_codes(daemon):
    async def scenario():
        assert (await closed_with(daemon, "{nope"))[0] == 1007
        assert (await closed_with(daemon, "\"just a string\""))[0] == 1007
        code, reason = await closed_with(daemon, json.dumps(
            {"type": "hello", "service": "Bad Name", "instance": "w"}))
        assert code == 1007 and "service" in reason
        assert (await closed_with(daemon, json.dumps(
            {"type": "status", "ready": True})))[0] == 1008
        assert (await closed_with(daemon, HELLO, HELLO))[0] == 1008
        assert (await closed_with(daemon, json.dumps(
            {"type": "welcome"})))[0] in (1007, 1008)
        assert (await closed_with(daemon, b"\x00\x01"))[0] == 1003
        assert (await closed_with(daemon, "[" * 100 + "]" * 100))[0] == 1007
        big = json.dumps({"type": "hello", "service": "web", "instance": "w",
                          "meta": {"x": "y" * 70000}})
        assert (await closed_with(daemon, big))[0] == 1009

    ws_run(scenario())
    assert daemon.call("GET", "/healthz")[0] == 200


def test_fragmented_over_cap(daemon):
    """Fragments adding up to one byte over max_message (64 KiB): the cap
    is crossed by the last one, so nothing the client sends is left unread
    when the daemon closes (unread data would make the close an RST)."""
    async def scenario():
        ws = await websockets.connect(daemon.ws_url, subprotocols=SUB)
        try:
            await ws.send(["x" * 8192] * 8 + ["x"])
            await ws.recv()
        except websockets.ConnectionClosed:
            pass
        return ws.close_code

    assert ws_run(scenario()) == 1009


def test_one_frame_over_cap(daemon):
    """One frame one byte over max_message: lws hands it over in pieces,
    and the last one crosses the cap."""
    hello = json.dumps({"type": "hello", "service": "web", "instance": "w",
                        "meta": {"x": ""}})
    big = hello.replace('""', '"' + "y" * (64 * 1024 + 1 - len(hello)) + '"')
    assert len(big) == 64 * 1024 + 1

    async def scenario():
        return await closed_with(daemon, big)

    assert ws_run(scenario())[0] == 1009


def test_hello_timeout(tmp_path):
    d = Discoveryd(tmp_path, heartbeat="  interval: 2s\n  timeout: 5s\n"
                                       "  hello_timeout: 300ms\n")
    try:
        async def scenario():
            ws = await websockets.connect(d.ws_url, subprotocols=SUB)
            await ws.wait_closed()
            return ws.close_code, ws.close_reason
        assert ws_run(scenario()) == (1008, "no hello in time")
    finally:
        assert d.stop() == 0


def test_max_agents(tmp_path):
    d = Discoveryd(tmp_path, extra="limits:\n  max_agents: 2\n")
    try:
        async def scenario():
            a = await websockets.connect(d.ws_url, subprotocols=SUB)
            b = await websockets.connect(d.ws_url, subprotocols=SUB)
            c = await websockets.connect(d.ws_url, subprotocols=SUB)
            await c.wait_closed()
            assert c.close_code == 1013
            await a.close()
            await b.close()
        ws_run(scenario())
    finally:
        assert d.stop() == 0


def test_per_ip_limits(tmp_path):
    d = Discoveryd(tmp_path, extra="limits:\n  max_agents_per_ip: 2\n"
                                   "  max_http_per_ip: 2\n")
    try:
        async def scenario():
            a = await websockets.connect(d.ws_url, subprotocols=SUB)
            b = await websockets.connect(d.ws_url, subprotocols=SUB)
            # Counted from the accept: the third is refused before its
            # upgrade, with the 503 of admission control.
            try:
                await websockets.connect(d.ws_url, subprotocols=SUB)
                assert False, "a third connection was accepted"
            except websockets.InvalidStatusCode as e:
                assert e.status_code == 503
            await a.close()
            # A slot is free again.
            e = await websockets.connect(d.ws_url, subprotocols=SUB)
            await e.send(HELLO)
            assert json.loads(await e.recv())["type"] == "welcome"
            await b.close()
            await e.close()
        ws_run(scenario())
        host, port = d.http_addr.rsplit(":", 1)
        # Each held connection is answered (and so counted) before the
        # next opens: which of several racing connections libmicrohttpd's
        # threads refuse is not defined. Keep-alive holds them open.
        held = []
        for _ in range(2):
            s = socket.create_connection((host, int(port)), WAIT)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(s)
        third = socket.create_connection((host, int(port)), WAIT)
        try:                                    # refused: closed at once
            third.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert third.recv(100) == b""
        except ConnectionResetError:
            pass
        for s in held + [third]:
            s.close()
    finally:
        assert d.stop() == 0


def test_frozen_peer_dropped(daemon):
    """A peer that never answers pings is dropped within the timeout."""
    mark = daemon.mark()
    # The hello, then silence: no pong, no read.
    s, _ = raw_link(daemon.agents_addr, json.loads(HELLO))
    daemon.wait_line(r"msg=linked .*instance=w", start=mark)
    daemon.wait_line(r"msg=dropping .*reason=\"?heartbeat timeout", start=mark)
    s.close()


def test_graceful_stop_closes_1001(tmp_path):
    d = Discoveryd(tmp_path)

    async def scenario():
        ws = await websockets.connect(d.ws_url, subprotocols=SUB)
        await ws.send(HELLO)
        await ws.recv()
        d.kill(15)
        await ws.wait_closed()
        return ws.close_code

    try:
        assert ws_run(scenario()) == 1001
    finally:
        assert d.stop() == 0


def test_idle_link_kept_alive_by_pongs(tmp_path):
    """A link that sends nothing but pongs outlives many timeouts. Waits on
    pings counted by a raw client, not on the clock."""
    # Under valgrind or a sanitizer the daemon runs many times slower:
    # give it room. A loaded machine (other suites beside, on two cores)
    # can starve this client for half a second: a second of slack
    # between a pong and the timeout.
    slow = bool(os.environ.get("DISCOVERY_TEST_WRAPPER") or
                os.environ.get("DISCOVERY_SANITIZE"))
    d = Discoveryd(tmp_path, heartbeat="  interval: %s\n  timeout: %s\n" %
                   (("500ms", "2s") if slow else ("250ms", "1250ms")))
    try:
        s, buf = raw_link(d.agents_addr, json.loads(HELLO))
        pings = 0
        while pings < (16 if slow else 28):  # over 3.5 timeouts, 7 s
            frame = read_frame(s, buf)
            assert frame, "dropped after %d pings:\n%s" % (pings, d.text())
            opcode, payload, buf = frame
            if opcode == 0x9:        # ping: answer with the same payload
                pings += 1
                s.sendall(masked_frame(0xa, payload))
        st, agents = d.call("GET", "/api/discovery/agents")
        assert [a["instance"] for a in agents["agents"]] == ["w"]
        assert agents["agents"][0]["last_pong"] is not None
        assert d.count(r"msg=dropping") == 0
        s.close()
    finally:
        assert d.stop() == 0


def test_very_deep_json(tmp_path):
    """A 100,000-deep JSON document, within max_message: refused by the
    depth scan (1007 on a link, 400 on the API) before cJSON recurses."""
    d = Discoveryd(tmp_path, extra="limits:\n  max_message: 1MiB\n")
    deep = "[" * 100000 + "]" * 100000
    try:
        async def scenario():
            return (await closed_with(d, deep))[0]
        assert ws_run(scenario()) == 1007
        st, body = d.call("POST", "/api/discovery/invalidate",
                          raw=('{"keys":' + deep + "}").encode())
        assert st == 400 and "nested" in body["message"]
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0
