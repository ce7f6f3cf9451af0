"""The Python agent in docs/examples (the protocol reference's example)
works against a real daemon: it links, waits for cache, and exits once
cacheready makes it ready."""

import os

from harness import ROOT, Proc


def test_documented_python_agent(daemon):
    agent = Proc(["/usr/bin/python3", os.path.join(ROOT, "docs", "examples",
                                                   "agent.py"),
                  daemon.ws_url, "web", "py-doc", "cache", "--exit-when-ready"],
                 "agent.py")
    try:
        agent.wait_line(r"^linked test-node \{'cache': False\}")
        daemon.call("POST", "/api/discovery/cacheready")
        agent.wait_line(r"readiness DataSend \{'service': 'cache', 'ready': True\}")
        assert agent.p.wait(15) == 0
    finally:
        agent.stop()
