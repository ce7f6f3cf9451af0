"""AcceptanceMiddleware: a WSGI app answers 423 Locked until the services
it depends on are ready (the NetCoreStack "application components are
loading" middleware, and discovery-gate's locked answer, in process).

    from discovery_agent import Agent
    from discovery_agent.wsgi import AcceptanceMiddleware

    agent = Agent.load("/etc/discovery/agent.yaml")
    application = AcceptanceMiddleware(app, agent)

While locked, every request but a `pass_paths` one gets the gate's answer
(docs/gate.md): `locked_status` (423), `Retry-After`, `Cache-Control:
no-store`, `Vary: Accept`, and for a client whose Accept names text/html
a loading page (it refreshes itself every retry_after seconds), else
{"error":"locked","message":"application components are loading",
"waiting_for":[...],"retry_after":5}. Once open it calls the app. The
check is libagent's lock-free flags: a few microseconds per request.
"""

import html
import json

from .errors import AgentClosedError

_REASONS = {423: "Locked", 503: "Service Unavailable"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{retry_after}">
<title>Loading&hellip;</title></head>
<body><main>
<h1>Application components are loading</h1>
<p>Waiting for: <code>{waiting}</code></p>
<p>This page reloads by itself until they are ready.</p>
</main></body></html>
"""


def _pass_path(path, prefixes):
    """The gate's `pass` rule: "/healthz" passes /healthz and /healthz/x
    but not /healthzz; an entry ending in "/" passes what is below it. A
    path with a dot segment never passes."""
    segments = path.split("/")
    if "." in segments or ".." in segments or "\\" in path:
        return False
    for p in prefixes:
        if p.endswith("/"):
            if path.startswith(p):
                return True
        elif path == p or path.startswith(p + "/"):
            return True
    return False


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
        if locked_status not in _REASONS:
            raise ValueError("locked_status must be 423 or 503, got %r" %
                             (locked_status,))
        if isinstance(retry_after, bool) or not isinstance(
                retry_after, int) or retry_after < 0:
            raise ValueError("retry_after must be a whole number of seconds "
                             ">= 0, got %r" % (retry_after,))
        if isinstance(pass_paths, str):
            raise TypeError("pass_paths must be a list of paths, not a str")
        pass_paths = tuple(pass_paths)
        for p in pass_paths:
            if not isinstance(p, str) or not p.startswith("/"):
                raise ValueError("pass_paths entries are paths starting "
                                 "with '/', got %r" % (p,))
        if requires is None:
            requires = agent.dependencies
        elif isinstance(requires, str):
            raise TypeError("requires must be a list of names, not a str")
        requires = tuple(sorted(requires))
        unknown = [r for r in requires if r not in agent.dependencies]
        if unknown:
            raise ValueError("requires %s: not among the agent's "
                             "depends_on (%s)" % (", ".join(unknown),
                                                  ", ".join(
                                                      agent.dependencies)))
        self.app = app
        self.agent = agent
        self.requires = requires
        self.locked_status = locked_status
        self.retry_after = retry_after
        self.pass_paths = pass_paths
        self.latch = latch
        self.latched = False

    def waiting_for(self):
        """The required services not ready now, sorted. A closed agent
        knows nothing: all of them (a locked answer, not a 500)."""
        try:
            return [r for r in self.requires if not self.agent.is_ready(r)]
        except AgentClosedError:
            return list(self.requires)

    def __call__(self, environ, start_response):
        waiting = [] if self.latched else self.waiting_for()
        if not waiting:
            if self.latch:
                self.latched = True
            return self.app(environ, start_response)
        if _pass_path(environ.get("PATH_INFO", "") or "/", self.pass_paths):
            return self.app(environ, start_response)
        return self.locked(environ, start_response, waiting)

    def locked(self, environ, start_response, waiting):
        """The locked answer, as discovery-gate gives it."""
        if "text/html" in environ.get("HTTP_ACCEPT", ""):
            body = _PAGE.format(retry_after=self.retry_after,
                                waiting=html.escape(", ".join(waiting)))
            ctype = "text/html; charset=utf-8"
        else:
            body = json.dumps({"error": "locked",
                               "message": "application components are "
                                          "loading",
                               "waiting_for": waiting,
                               "retry_after": self.retry_after},
                              separators=(",", ":"))
            ctype = "application/json"
        data = body.encode("utf-8")
        status = "%d %s" % (self.locked_status,
                            _REASONS[self.locked_status])
        start_response(status, [("Content-Type", ctype),
                                ("Cache-Control", "no-store"),
                                ("Retry-After", str(self.retry_after)),
                                ("Vary", "Accept"),
                                ("Content-Length", str(len(data)))])
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [data]
