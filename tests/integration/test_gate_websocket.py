"""An app's own WebSockets work behind the gate: the upgrade is passed
through and the bytes are relayed both ways, frames of any size."""

import asyncio

import pytest
import websockets

from gate_harness import Gate, Upstream
from harness import ws_run


@pytest.fixture
def gate(daemon, tmp_path):
    u = Upstream()
    g = Gate(tmp_path, daemon, u.url, requires=())
    yield g
    assert g.stop() == 0, g.text()
    u.stop()


def test_websocket_echo(gate):
    async def scenario():
        async with websockets.connect("ws://%s/ws" % gate.addr,
                                      max_size=None) as ws:
            for msg in ("hello", "x" * 200, "y" * 70000):
                await ws.send(msg)
                assert await ws.recv() == msg
            big = bytes(range(256)) * 4096  # 1 MiB binary frame
            await ws.send(big)
            assert await ws.recv() == big
            await ws.ping()
        return True
    assert ws_run(scenario())
    gate.wait_line(r"msg=|")  # the gate is still alive and logging
    assert gate.request("GET", "/echo")[0] == 200


def test_many_websockets_at_once(gate):
    async def one(i):
        async with websockets.connect("ws://%s/ws" % gate.addr) as ws:
            for k in range(20):
                await ws.send("%d-%d" % (i, k))
                assert await ws.recv() == "%d-%d" % (i, k)

    async def scenario():
        await asyncio.gather(*(one(i) for i in range(30)))
        return True
    assert ws_run(scenario())


def test_upgrade_refused_by_upstream(gate):
    """A 4xx answer to an upgrade is an ordinary response."""
    status, _, _ = gate.request("GET", "/not-ws", headers={
        "Upgrade": "websocket", "Connection": "Upgrade"})
    assert status == 200
