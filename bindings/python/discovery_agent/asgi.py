"""AcceptanceMiddleware for ASGI (asyncio servers and frameworks): the
WSGI one's answers (see wsgi.py, _gate.py, docs/python.md) for `http`
requests; a `websocket` request while locked is refused before its
handshake (websocket.close: the server answers 403), as the gate never
lets an upgrade through a locked gate; `lifespan` and any other scope go
to the app.

    from discovery_agent import Agent
    from discovery_agent.asgi import AcceptanceMiddleware

    app = AcceptanceMiddleware(app, agent, pass_paths=["/healthz"])
"""

from ._gate import Gate


class AcceptanceMiddleware:
    """Wrap an ASGI app; the options are the WSGI middleware's."""

    def __init__(self, app, agent, requires=None, locked_status=423,
                 retry_after=5, pass_paths=(), latch=False):
        if not callable(app):
            raise TypeError("app must be an ASGI callable")
        self.app = app
        self.gate = Gate(agent, requires, locked_status, retry_after,
                         pass_paths, latch)

    def waiting_for(self):
        return self.gate.waiting_for()

    async def __call__(self, scope, receive, send):
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        # An upgrade never passes a locked gate, whatever its path.
        waiting = self.gate.check(scope.get("path", ""),
                                  may_pass=kind == "http")
        if waiting is None:
            return await self.app(scope, receive, send)
        if kind == "websocket":
            await receive()              # websocket.connect
            await send({"type": "websocket.close", "code": 1013})
            return None
        accept = ""
        for name, value in scope.get("headers", ()):
            if name.lower() == b"accept":
                accept = value.decode("latin-1")
                break
        status, headers, body = self.gate.locked(accept, waiting)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode("latin-1"),
                                 v.encode("latin-1")) for k, v in headers]})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else body})
        return None
