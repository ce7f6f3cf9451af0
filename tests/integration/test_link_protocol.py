"""The agent link, driven by a third-party client (python3-websockets):
hello/welcome, status, events and who receives them, resume."""

import asyncio
import json

import websockets

from harness import ws_run

SUB = ["discovery.v1"]


async def link(daemon, service, instance, depends_on=(), resume=None):
    ws = await websockets.connect(daemon.ws_url, subprotocols=SUB)
    hello = {"type": "hello", "service": service, "instance": instance,
             "address": "127.0.0.1:1", "depends_on": list(depends_on)}
    if resume:
        hello["resume"] = resume
    await ws.send(json.dumps(hello))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    return ws, welcome


async def recv(ws):
    return json.loads(await ws.recv())


async def nothing_more(ws, within=0.3):
    try:
        msg = await asyncio.wait_for(ws.recv(), within)
    except asyncio.TimeoutError:
        return True
    raise AssertionError("unexpected message %s" % msg)


def test_welcome_snapshot_and_readiness(daemon):
    daemon.call("POST", "/api/discovery/services/api/ready")

    async def scenario():
        web, welcome = await link(daemon, "web", "web-1", ["cache", "api"])
        assert welcome["services"] == {"cache": False, "api": True}
        assert welcome["node"] == "test-node" and welcome["recovered"] is False
        cache, _ = await link(daemon, "cache", "cache-1")
        await cache.send(json.dumps({"type": "status", "ready": True}))
        ev = await recv(web)
        assert ev["type"] == "event" and ev["kind"] == "readiness"
        assert ev["value"] == {"service": "cache", "ready": True}
        assert ev["epoch"] == welcome["epoch"] and ev["seq"] > welcome["seq"]
        # The cache instance itself does not depend on cache: nothing.
        await nothing_more(cache)
        # Its link going away makes cache not ready again.
        await cache.close()
        ev = await recv(web)
        assert ev["value"] == {"service": "cache", "ready": False}
        await web.close()

    ws_run(scenario())


def test_addressing(daemon):
    async def scenario():
        w1, _ = await link(daemon, "web", "web-1")
        w2, _ = await link(daemon, "web", "web-2")
        api, _ = await link(daemon, "api", "api-1")
        st, body = daemon.call("POST", "/api/discovery/invalidate",
                               {"keys": ["k"], "service": "web"})
        assert (st, body["delivered"]) == (202, 2)
        for ws in (w1, w2):
            ev = await recv(ws)
            assert ev["kind"] == "invalidate"
            assert ev["header"] == {"CacheInvalidate": True}
            assert ev["value"] == {"keys": ["k"]}
        await nothing_more(api)
        st, body = daemon.call("POST", "/api/discovery/broadcast",
                               {"command": "Reload", "value": {"a": 1},
                                "target": {"service": "web",
                                           "instance": "web-2"}})
        assert (st, body["delivered"]) == (202, 1)
        ev = await recv(w2)
        assert (ev["kind"], ev["command"], ev["value"]) == \
            ("command", "Reload", {"a": 1})
        await nothing_more(w1)
        st, body = daemon.call("GET", "/api/discovery/cacheready")
        assert body["delivered"] == 3
        for ws in (w1, w2, api):
            ev = await recv(ws)
            assert ev["header"] == {"CacheReady": 1}
        st, agents = daemon.call("GET", "/api/discovery/agents")
        assert sorted(a["instance"] for a in agents["agents"]) == \
            ["api-1", "web-1", "web-2"]
        for ws in (w1, w2, api):
            await ws.close()

    ws_run(scenario())


def test_resume(daemon):
    async def scenario():
        web, welcome = await link(daemon, "web", "web-1", ["cache"])
        epoch, seq = welcome["epoch"], welcome["seq"]
        await web.close()
        daemon.call("POST", "/api/discovery/invalidate", {"keys": ["a"]})
        daemon.call("POST", "/api/discovery/services/other/ready")
        daemon.call("POST", "/api/discovery/services/cache/ready")
        web, welcome = await link(daemon, "web", "web-1", ["cache"],
                                  {"epoch": epoch, "seq": seq})
        assert welcome["recovered"] is True and welcome["replay"] == 2
        first, second = await recv(web), await recv(web)
        assert first["kind"] == "invalidate" and second["kind"] == "readiness"
        assert first["seq"] < second["seq"] <= welcome["seq"]
        await nothing_more(web)
        await web.close()
        # Another epoch: a reset, not a replay.
        web, welcome = await link(daemon, "web", "web-1", ["cache"],
                                  {"epoch": "nope", "seq": 1})
        assert welcome["recovered"] is False
        await web.close()

    ws_run(scenario())


def test_newer_link_replaces_zombie(daemon):
    async def scenario():
        old, _ = await link(daemon, "web", "web-1")
        new, _ = await link(daemon, "web", "web-1")
        await old.wait_closed()
        assert old.close_code == 1008
        st, agents = daemon.call("GET", "/api/discovery/agents")
        assert st == 200 and isinstance(agents, dict), (st, agents)
        assert len(agents["agents"]) == 1
        await new.close()

    ws_run(scenario())


def test_depending_on_own_service(daemon):
    """An instance may depend on its own service; its leaving frees the
    service exactly once."""
    async def scenario():
        a, welcome = await link(daemon, "web", "web-1", ["web"])
        assert welcome["services"] == {"web": False}
        await a.send(json.dumps({"type": "status", "ready": True}))
        ev = await recv(a)
        assert ev["value"] == {"service": "web", "ready": True}
        await a.close()

    ws_run(scenario())
    assert daemon.call("GET", "/api/discovery/services/web")[0] == 404
    assert daemon.call("GET", "/api/discovery/services")[1] == {"services": []}


def hello_of_size(instance, size):
    """A hello of exactly size bytes of UTF-8 whose meta is mostly
    multi-byte characters, so the pieces lws hands over split some."""
    hello = {"type": "hello", "service": "web", "instance": instance,
             "address": "127.0.0.1:1", "meta": {"blob": ""}}
    room = size - len(json.dumps(hello, ensure_ascii=False).encode())
    blob = "é€😀x" * (room // 10)      # 2 + 3 + 4 + 1 bytes
    blob += "x" * (room - len(blob.encode()))
    hello["meta"]["blob"] = blob
    text = json.dumps(hello, ensure_ascii=False)
    assert len(text.encode()) == size
    return hello, text


def test_large_hello_arrives_whole(daemon):
    """Hellos up to max_message (64 KiB), hundreds of times what lws reads
    at a time, arrive whole: in one frame and in fragments. The meta comes
    back unchanged, and the status after it is read on its own."""
    async def one(watcher, instance, size, fragments):
        hello, text = hello_of_size(instance, size)
        ws = await websockets.connect(daemon.ws_url, subprotocols=SUB)
        if fragments > 1:
            step = len(text) // fragments + 1
            await ws.send([text[i:i + step]
                           for i in range(0, len(text), step)])
        else:
            await ws.send(text)
        assert (await recv(ws))["type"] == "welcome"
        st, agents = daemon.call("GET", "/api/discovery/agents")
        mine = [a for a in agents["agents"] if a["instance"] == instance]
        assert st == 200 and len(mine) == 1
        assert mine[0]["meta"] == hello["meta"]
        assert mine[0]["address"] == "127.0.0.1:1"
        await ws.send(json.dumps({"type": "status", "ready": True}))
        ev = await recv(watcher)
        assert ev["value"] == {"service": "web", "ready": True}
        await ws.close()
        ev = await recv(watcher)
        assert ev["value"] == {"service": "web", "ready": False}

    async def scenario():
        watcher, _ = await link(daemon, "api", "api-1", ["web"])
        await one(watcher, "one-frame", 60 * 1024, 1)
        await one(watcher, "fragments", 60 * 1024, 3)
        await one(watcher, "max-one-frame", 64 * 1024, 1)
        await one(watcher, "max-fragments", 64 * 1024, 8)
        await watcher.close()

    ws_run(scenario())
