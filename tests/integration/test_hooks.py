"""Sidecar hooks: a targeted invalidation reaches only the targeted
service's hooks; a broadcast to one instance reaches only that instance; a
hook that hangs is killed and never blocks the link."""

import json
import os

from harness import Sidecar, write


def hook_script(tmp_path, name):
    """A hook that saves the event it gets on stdin into name-N.json."""
    out = os.path.join(str(tmp_path), name)
    script = write(os.path.join(str(tmp_path), name + ".sh"),
                   "#!/bin/sh\ncat > %s-$DISCOVERY_SEQ.json\n" % out)
    os.chmod(script, 0o755)
    return script, out


def saved(out, seq):
    with open("%s-%d.json" % (out, seq)) as f:
        return json.load(f)


def test_targeted_invalidation_and_instance_broadcast(daemon, tmp_path):
    agents = {}
    outs = {}
    for service, instance in (("web", "web-1"), ("web", "web-2"),
                              ("api", "api-1")):
        script, out = hook_script(tmp_path, instance)
        outs[instance] = out
        agents[instance] = Sidecar(
            tmp_path, daemon.ws_url, service, instance,
            extra="hooks:\n  on_invalidate: %s\n  on_command: %s\n"
                  % (script, script))
    try:
        for a in agents.values():
            a.wait_line(r"msg=linked")
        marks = {k: a.mark() for k, a in agents.items()}
        status, body = daemon.call("POST", "/api/discovery/invalidate",
                                   {"keys": ["SimpleCacheItem"],
                                    "service": "web"})
        assert status == 202 and body["delivered"] == 2
        seq = body["seq"]
        for inst in ("web-1", "web-2"):
            agents[inst].wait_line(
                r"msg=hook hook=on_invalidate seq=%d status=exit:0" % seq,
                start=marks[inst])
            ev = saved(outs[inst], seq)
            assert ev["kind"] == "invalidate"
            assert ev["value"] == {"keys": ["SimpleCacheItem"]}

        status, body = daemon.call("POST", "/api/discovery/broadcast",
                                   {"command": "Flush", "value": 7,
                                    "target": {"service": "web",
                                               "instance": "web-2"}})
        assert status == 202 and body["delivered"] == 1
        seq2 = body["seq"]
        agents["web-2"].wait_line(
            r"msg=hook hook=on_command seq=%d status=exit:0" % seq2,
            start=marks["web-2"])
        assert saved(outs["web-2"], seq2)["command"] == "Flush"
        # Nobody else ran a hook for either event.
        for inst, a in agents.items():
            a.stop()
        assert agents["api-1"].count(r"msg=hook ", marks["api-1"]) == 0
        assert agents["web-1"].count(r"msg=hook .*seq=%d" % seq2,
                                     marks["web-1"]) == 0
    finally:
        for a in agents.values():
            a.stop()


def test_hanging_hook_is_killed(daemon, tmp_path):
    hang = write(os.path.join(str(tmp_path), "hang.sh"),
                 "#!/bin/sh\nsleep 600\n")
    os.chmod(hang, 0o755)
    a = Sidecar(tmp_path, daemon.ws_url, "web", "web-1",
                depends_on=["cache"],
                extra="hooks:\n  on_invalidate: %s\n  timeout: 300ms\n" % hang)
    try:
        a.wait_line(r"msg=linked")
        mark = a.mark()
        _, body = daemon.call("POST", "/api/discovery/invalidate",
                              {"keys": ["k"]})
        # The link is not blocked while the hook hangs.
        daemon.call("POST", "/api/discovery/cacheready")
        a.wait_line(r"msg=readiness service=cache ready=true", start=mark)
        a.wait_line(r"msg=hook hook=on_invalidate seq=%d status=\S*(timeout|killed)"
                    % body["seq"], start=mark)
    finally:
        assert a.stop() == 0
