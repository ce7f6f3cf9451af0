"""Helpers for the sidecar's endpoint tests: an instance driven through
tests/tools/agent_probe (libagent's public API), HTTP reads of the
sidecar's health listener and of the daemon, and polling for a state."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

from harness import BIN, WAIT, Proc

PROBE = os.path.join(BIN, "..", "tests", "tools", "agent_probe")


class Instance(Proc):
    """One instance of a service with an address; say() reports status."""

    def __init__(self, daemon, service, instance, address, weight=None):
        env = dict(os.environ, AGENT_PROBE_ADDRESS=address)
        if weight:
            env["AGENT_PROBE_WEIGHT"] = str(weight)
        super().__init__([PROBE, daemon.ws_url, service, instance],
                         "probe-" + instance, env=env,
                         stdin=subprocess.PIPE)
        self.wait_line(r"link state=linked")

    def say(self, line):
        mark = self.mark()
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        self.wait_line(r"set rc=0", start=mark)


def http_get(url):
    """(status, headers, parsed JSON or None)."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as r:
            status, headers, text = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, headers, text = e.code, dict(e.headers), e.read()
    try:
        return status, headers, json.loads(text) if text else None
    except ValueError:
        return status, headers, text


def daemon_endpoints(daemon, service, query="?state=any"):
    st, body = daemon.call("GET", "/api/discovery/services/%s/endpoints%s"
                           % (service, query))
    assert st == 200, body
    return body


def by_instance(doc):
    return {e["instance"]: e for e in doc["endpoints"]}


def wait_until(fn, timeout=WAIT, what="condition"):
    """Poll fn until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)
