"""What the WSGI and ASGI AcceptanceMiddleware share: which requests
wait, and the locked answer, as discovery-gate gives it (docs/gate.md):
`locked_status` (423), `Retry-After`, `Cache-Control: no-store`, `Vary:
Accept`, and for a client whose Accept names text/html a loading page
(it refreshes itself every retry_after seconds), else
{"error":"locked","message":"application components are loading",
"waiting_for":[...],"retry_after":5}."""

import html
import json

from .errors import AgentClosedError

REASONS = {423: "Locked", 503: "Service Unavailable"}

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


def pass_path(path, prefixes):
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


class Gate:
    """The policy: the options of both middlewares, checked once."""

    def __init__(self, agent, requires, locked_status, retry_after,
                 pass_paths, latch):
        if locked_status not in REASONS:
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

    def check(self, path, may_pass=True):
        """None to let the request through, or the services it waits
        for. may_pass=False: not even a pass path (an upgrade)."""
        if self.latched:
            return None
        waiting = self.waiting_for()
        if not waiting:
            if self.latch:
                self.latched = True
            return None
        if may_pass and pass_path(path or "/", self.pass_paths):
            return None
        return waiting

    def locked(self, accept, waiting):
        """(status, [(header, value)], body bytes) of the locked answer."""
        if "text/html" in accept:
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
        return self.locked_status, [("Content-Type", ctype),
                                    ("Cache-Control", "no-store"),
                                    ("Retry-After", str(self.retry_after)),
                                    ("Vary", "Accept"),
                                    ("Content-Length", str(len(data)))], data
