"""A small agent in Python, written only against docs/protocol.md, run on a
thread of its own: it links, resumes by epoch/seq after every drop, and
records every event it is given, so tests can check exactly-once delivery
from a client that is not libagent."""

import asyncio
import json
import random
import threading

import websockets


class PyAgent:
    def __init__(self, url, service, instance, depends_on=()):
        # url: one, or a list tried in turn after each drop (failover).
        self.urls = list(url) if isinstance(url, (list, tuple)) else [url]
        self.url, self.service, self.instance = self.urls[0], service, instance
        self.depends_on = list(depends_on)
        self.epoch, self.seq = None, 0
        self.events = []          # (seq, kind) in arrival order
        self.welcomes = []        # every welcome received
        self.cv = threading.Condition()
        self.stopping = False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.loop.run_until_complete(self._main())

    async def _main(self):
        delay = 0.05
        while not self.stopping:
            try:
                await self._session()
                delay = 0.05
            except (OSError, websockets.WebSocketException,
                    asyncio.TimeoutError):
                pass
            if not self.stopping:
                self.url = self.urls[(self.urls.index(self.url) + 1)
                                     % len(self.urls)]
                await asyncio.sleep(random.uniform(0, delay))  # full jitter
                delay = min(delay * 2, 0.5)

    async def _session(self):
        async with websockets.connect(self.url, subprotocols=["discovery.v1"],
                                      open_timeout=5) as ws:
            self.ws = ws
            hello = {"type": "hello", "service": self.service,
                     "instance": self.instance, "depends_on": self.depends_on}
            if self.epoch:
                hello["resume"] = {"epoch": self.epoch, "seq": self.seq}
            await ws.send(json.dumps(hello))
            welcome = json.loads(await ws.recv())
            pending = welcome.get("replay", 0) if welcome["recovered"] else 0
            with self.cv:
                self.welcomes.append(welcome)
                self.epoch = welcome["epoch"]
                if not welcome["recovered"]:
                    self.seq = welcome["seq"]
                self.cv.notify_all()
            async for frame in ws:
                ev = json.loads(frame)
                with self.cv:
                    if ev["seq"] > self.seq:
                        self.seq = ev["seq"]
                    self.events.append((ev["seq"], ev["kind"]))
                    if pending:
                        pending -= 1
                        if not pending:
                            self.seq = max(self.seq, welcome["seq"])
                    self.cv.notify_all()

    def wait_for(self, predicate, timeout=15):
        with self.cv:
            if not self.cv.wait_for(lambda: predicate(self), timeout):
                raise AssertionError("pyagent %s: timed out; events %s"
                                     % (self.instance, self.events[-5:]))

    def status(self, ready):
        """Say this instance's own readiness (docs/protocol.md, "status"),
        once linked."""
        self.wait_for(lambda a: a.welcomes)

        async def send():
            await self.ws.send(json.dumps({"type": "status",
                                           "ready": ready}))
        asyncio.run_coroutine_threadsafe(send(), self.loop).result(10)

    def stop(self):
        self.stopping = True
        if not self.thread.is_alive():
            return                 # stopped already

        async def close():
            ws = getattr(self, "ws", None)
            if ws:
                await ws.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop)
        self.thread.join(10)
