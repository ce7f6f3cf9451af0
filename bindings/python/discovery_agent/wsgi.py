"""AcceptanceMiddleware for WSGI: an app answers 423 Locked until the
services it depends on are ready (the NetCoreStack "application
components are loading" middleware, and discovery-gate's locked answer,
in process; the answer is described in _gate.py and docs/python.md).

    from discovery_agent import Agent
    from discovery_agent.wsgi import AcceptanceMiddleware

    agent = Agent.load("/etc/discovery/agent.yaml")
    application = AcceptanceMiddleware(app, agent)

The check is libagent's lock-free flags: a few microseconds per request.
"""

from ._gate import REASONS, Gate


class AcceptanceMiddleware:
    """Wrap a WSGI app: locked answers until the agent's dependencies (or
    `requires`, a subset of them) are all ready.

    agent          a discovery_agent.Agent (its flags are read, never set)
    requires       dependency names to wait for; None: all of them
    locked_status  423 (default) or 503
    retry_after    seconds, the Retry-After header and the page's refresh
    pass_paths     path prefixes answered by the app even while locked
    latch          True: once open, stay open whatever happens later
    """

    def __init__(self, app, agent, requires=None, locked_status=423,
                 retry_after=5, pass_paths=(), latch=False):
        if not callable(app):
            raise TypeError("app must be a WSGI callable")
        self.app = app
        self.gate = Gate(agent, requires, locked_status, retry_after,
                         pass_paths, latch)

    def waiting_for(self):
        """The required services not ready now, sorted."""
        return self.gate.waiting_for()

    def __call__(self, environ, start_response):
        waiting = self.gate.check(environ.get("PATH_INFO", ""))
        if waiting is None:
            return self.app(environ, start_response)
        status, headers, body = self.gate.locked(
            environ.get("HTTP_ACCEPT", ""), waiting)
        start_response("%d %s" % (status, REASONS[status]), headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [body]
