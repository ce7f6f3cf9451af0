"""Readiness does not flap when an agent replaces its own zombie link.

A second link of the same instance replaces the first at once; it stands
in for it until it reports (or heartbeat.timeout at most), so dependents
see no readiness event, and the journal records none, for a handover.
Two clients that share an instance id (a copied config) replace each other
over and over: readiness stays put while they do.
"""

import json

from harness import WAIT, Sidecar, masked_frame, raw_link
from pyagent import PyAgent

CACHE = {"type": "hello", "service": "cache", "instance": "cache-1"}
READY = json.dumps({"type": "status", "ready": True}).encode()


def readiness_events(d, service="cache"):
    st, body = d.call("GET", "/api/discovery/events")
    return [e["value"]["ready"] for e in body["events"] if e["kind"] == "readiness" and
            e["value"]["service"] == service]


def barrier(d, web):
    """An invalidation delivered to web: everything before it is in."""
    st, inv = d.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
    web.wait_for(lambda a: any(s == inv["seq"] for s, _ in a.events))


def test_replacement_inherits_readiness(daemon):
    web = PyAgent(daemon.ws_url, "web", "web-1", ["cache"])
    try:
        web.wait_for(lambda a: a.welcomes)
        old, _ = raw_link(daemon.agents_addr, CACHE)
        old.sendall(masked_frame(0x1, READY))
        web.wait_for(lambda a: any(k == "readiness" for _, k in a.events))
        # The agent comes back on a new connection while the old one lingers.
        mark = daemon.mark()
        new, _ = raw_link(daemon.agents_addr, CACHE)
        daemon.wait_line(r"msg=closing .*instance=cache-1 .*replaced", mark)
        new.sendall(masked_frame(0x1, READY))
        barrier(daemon, web)
        assert readiness_events(daemon) == [True]
        st, svc = daemon.call("GET", "/api/discovery/services/cache")
        assert (svc["ready"], svc["instances"], svc["ready_instances"]) == \
            (True, 1, 1)
        old.close()
        new.close()
    finally:
        web.stop()
    assert daemon.call("GET", "/healthz")[0] == 200


def test_replacement_that_never_reports(daemon):
    """The stand-in lasts heartbeat.timeout at most: a new process that
    never says it is ready does not stay ready on its predecessor's word."""
    old, _ = raw_link(daemon.agents_addr, CACHE)
    old.sendall(masked_frame(0x1, READY))
    daemon.wait_line(r"msg=readiness service=cache ready=true")
    new, _ = raw_link(daemon.agents_addr, CACHE)
    daemon.wait_line(r"msg=readiness service=cache ready=false")
    assert readiness_events(daemon) == [True, False]
    old.close()
    new.close()


def test_two_clients_sharing_an_instance_id(tmp_path, daemon):
    a = Sidecar(tmp_path, daemon.ws_url, "cache", "cache-1",
                extra="ready: true\n", name="twin-a")
    b = Sidecar(tmp_path, daemon.ws_url, "cache", "cache-1",
                extra="ready: true\n", name="twin-b")
    try:
        # Each replaces the other when it reconnects: wait for ten rounds.
        replaced = r"msg=closing .*instance=cache-1 .*replaced"
        with daemon.cv:
            assert daemon.cv.wait_for(
                lambda: daemon.count(replaced) >= 10, WAIT), daemon.text()
        assert readiness_events(daemon) == [True], \
            "readiness flapped while two clients shared an instance id"
    finally:
        a.stop()
        b.stop()
