"""Idempotency-Key on a single node: a retry with the same key and body
gets the first answer byte for byte and makes no second event, another body
gets 422, a bad key 400; keys are per token subject, survive SIGKILL and
compaction, expire after idempotency.retention and past
idempotency.max_keys the oldest go first."""

import http.client
import json
import os
import signal
import subprocess
import time

from harness import BIN, Discoveryd, write
from pyagent import PyAgent

CTL = os.path.join(BIN, "discoveryctl")


def raw_call(d, method, path, body=None, key=None, headers=None):
    """(status, headers dict lower-cased, body bytes)."""
    host, port = d.http_addr.rsplit(":", 1)
    h = dict(headers or {})
    if key is not None:
        h["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def seq(d):
    return d.call("GET", "/api/discovery/info")[1]["seq"]


def metric(d, name):
    st, text = d.call("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


INV = "/api/discovery/invalidate"


def test_replay_same_answer_no_second_event(tmp_path):
    d = Discoveryd(tmp_path)
    agent = PyAgent(d.ws_url, "web", "web-1")
    try:
        agent.wait_for(lambda a: a.welcomes)
        st, h1, b1 = raw_call(d, "POST", INV, {"keys": ["a"],
                                               "service": "web"}, key="k-1")
        assert st == 202 and "idempotent-replayed" not in h1
        first = json.loads(b1)["seq"]
        agent.wait_for(lambda a: any(s == first for s, _ in a.events))
        for _ in range(3):
            st, h2, b2 = raw_call(d, "POST", INV, {"keys": ["a"],
                                                   "service": "web"},
                                  key="k-1")
            assert st == 202 and b2 == b1
            assert h2["idempotent-replayed"] == "true"
        assert seq(d) == first
        # Another write after the replays is the next seq, and the agent
        # saw the keyed one exactly once before it.
        st, _, b3 = raw_call(d, "POST", INV, {"keys": ["b"],
                                              "service": "web"})
        nxt = json.loads(b3)["seq"]
        assert nxt == first + 1
        agent.wait_for(lambda a: any(s == nxt for s, _ in a.events))
        assert [s for s, _ in agent.events].count(first) == 1
        assert metric(d, "discovery_idempotent_replays_total") == 3
        # Every write route takes a key.
        for method, path, body in (
                ("POST", "/api/discovery/services/web/ready", None),
                ("POST", "/api/discovery/services/web/notready", None),
                ("DELETE", "/api/discovery/services/web/declaration", None),
                ("POST", "/api/discovery/cacheready", None),
                ("GET", "/api/discovery/cacheready", None),
                ("POST", "/api/discovery/broadcast", {"command": "C"}),
                ("POST", "/api/discovery/nodes/test-node/drain", None)):
            key = "r-" + method + path
            a = raw_call(d, method, path, body, key=key)
            before = seq(d)
            b = raw_call(d, method, path, body, key=key)
            assert a[0] in (200, 202) and (b[0], b[2]) == (a[0], a[2]), path
            assert b[1]["idempotent-replayed"] == "true"
            assert seq(d) == before, path
    finally:
        agent.stop()
        assert d.stop() == 0


def test_other_body_or_route_422_and_bad_keys_400(tmp_path):
    d = Discoveryd(tmp_path)
    try:
        st, _, b1 = raw_call(d, "POST", INV, {"keys": ["a"]}, key="same")
        assert st == 202
        before = seq(d)
        st, _, b = raw_call(d, "POST", INV, {"keys": ["b"]}, key="same")
        assert st == 422 and json.loads(b)["error"] == "key_reused"
        st, _, b = raw_call(d, "POST", "/api/discovery/broadcast",
                            {"command": "C"}, key="same")
        assert st == 422
        assert seq(d) == before
        # The draft's quoted form is the same key.
        st, h, b = raw_call(d, "POST", INV, {"keys": ["a"]}, key='"same"')
        assert st == 202 and b == b1 and h["idempotent-replayed"] == "true"
        for bad in ("", "a b", "x" * 256, "caf\u00e9".encode().decode(
                "latin-1"), "tab\there", '"'):
            st, _, b = raw_call(d, "POST", INV, {"keys": ["c"]}, key=bad)
            assert st == 400, repr(bad)
            assert "Idempotency-Key" in json.loads(b)["message"]
        assert seq(d) == before
        st, _, _ = raw_call(d, "POST", INV, {"keys": ["c"]}, key="x" * 255)
        assert st == 202
        # A key on a read means nothing, even a bad one.
        st, _, _ = raw_call(d, "GET", "/api/discovery/services", key="a b")
        assert st == 200
    finally:
        assert d.stop() == 0


def test_failed_call_is_not_kept(tmp_path):
    d = Discoveryd(tmp_path)
    try:
        path = "/api/discovery/services/db/declaration"
        st, _, _ = raw_call(d, "DELETE", path, key="del-1")
        assert st == 404
        assert raw_call(d, "POST", "/api/discovery/services/db/ready")[0] == 200
        st, h, _ = raw_call(d, "DELETE", path, key="del-1")
        assert st == 200 and "idempotent-replayed" not in h
    finally:
        assert d.stop() == 0


def test_sigkill_after_answer_then_retry_replays(tmp_path):
    d = Discoveryd(tmp_path)
    st, _, b1 = raw_call(d, "POST", "/api/discovery/services/web/ready",
                         key="crash-1")
    assert st == 200
    st, _, b2 = raw_call(d, "POST", INV, {"keys": ["k"]}, key="crash-2")
    assert st == 202
    before = seq(d)
    d.kill(signal.SIGKILL)
    d.p.wait()
    d = Discoveryd(tmp_path)
    try:
        d.wait_line(r"msg=\"idempotency keys\" restored=2")
        st, h, b = raw_call(d, "POST", "/api/discovery/services/web/ready",
                            key="crash-1")
        assert (st, b) == (200, b1) and h["idempotent-replayed"] == "true"
        st, h, b = raw_call(d, "POST", INV, {"keys": ["k"]}, key="crash-2")
        assert (st, b) == (202, b2) and h["idempotent-replayed"] == "true"
        st, _, _ = raw_call(d, "POST", INV, {"keys": ["other"]},
                            key="crash-2")
        assert st == 422
        assert seq(d) == before
    finally:
        assert d.stop() == 0


def test_keys_survive_compaction(tmp_path):
    # history 16: the journal is compacted past 2 * 16 + 1024 records.
    d = Discoveryd(tmp_path, extra="history: 16\n")
    st, _, first = raw_call(d, "POST", INV, {"keys": ["k"]}, key="old")
    assert st == 202
    mark = d.mark()
    n = 0
    while not d.count(r"msg=compacted", mark):
        assert raw_call(d, "POST", INV, {"keys": ["k"]})[0] == 202
        n += 1
        assert n < 3000
    d.wait_line(r"msg=compacted .*keys=1", mark)
    d.kill(signal.SIGKILL)
    d.p.wait()
    d = Discoveryd(tmp_path, extra="history: 16\n")
    try:
        st, h, b = raw_call(d, "POST", INV, {"keys": ["k"]}, key="old")
        assert (st, b) == (202, first) and h["idempotent-replayed"] == "true"
    finally:
        assert d.stop() == 0


def test_retention_expires_keys(tmp_path):
    d = Discoveryd(tmp_path, extra="idempotency:\n  retention: 1s\n")
    try:
        st, _, b1 = raw_call(d, "POST", INV, {"keys": ["k"]}, key="short")
        assert st == 202
        time.sleep(1.2)      # past the retention: what is tested is time
        st, h, b2 = raw_call(d, "POST", INV, {"keys": ["k"]}, key="short")
        assert st == 202 and "idempotent-replayed" not in h
        assert json.loads(b2)["seq"] == json.loads(b1)["seq"] + 1
    finally:
        assert d.stop() == 0
    # Expired keys do not come back after a restart either.
    d = Discoveryd(tmp_path, extra="idempotency:\n  retention: 1s\n")
    try:
        time.sleep(1.2)
        st, h, _ = raw_call(d, "POST", INV, {"keys": ["k"]}, key="short")
        assert st == 202 and "idempotent-replayed" not in h
    finally:
        assert d.stop() == 0


def test_max_keys_oldest_go_first(tmp_path):
    d = Discoveryd(tmp_path, extra="idempotency:\n  max_keys: 3\n")
    try:
        for k in ("m1", "m2", "m3", "m4"):
            assert raw_call(d, "POST", INV, {"keys": [k]}, key=k)[0] == 202
        assert metric(d, "discovery_idempotency_keys") == 3
        assert metric(d, "discovery_idempotency_evicted_total") == 1
        st, h, _ = raw_call(d, "POST", INV, {"keys": ["m4"]}, key="m4")
        assert h.get("idempotent-replayed") == "true"
        st, h, _ = raw_call(d, "POST", INV, {"keys": ["m1"]}, key="m1")
        assert st == 202 and "idempotent-replayed" not in h
    finally:
        assert d.stop() == 0


def test_config_bounds(tmp_path):
    for bad in ("idempotency:\n  retention: 500ms\n",
                "idempotency:\n  retention: 8d\n",
                "idempotency:\n  max_keys: 0\n"):
        cfg = write(os.path.join(str(tmp_path), "c.yaml"),
                    "listen:\n  http: 127.0.0.1:0\n  agents: 127.0.0.1:0\n"
                    "state_dir: %s\n%s" % (tmp_path, bad))
        r = subprocess.run([os.path.join(BIN, "discoveryd"), "-t", "-c", cfg],
                           capture_output=True, text=True)
        key = bad.split()[1].rstrip(":")
        assert r.returncode != 0 and "'%s' must be" % key in r.stderr, bad


def test_keys_are_per_token_subject(tmp_path):
    s = os.path.join(str(tmp_path), "secret")
    write(s, os.urandom(32).hex() + "\n")
    os.chmod(s, 0o600)

    def token(sub):
        return subprocess.run(
            [CTL, "token", "issue", "--role", "admin", "--ttl", "1h",
             "--secret-file", s, "--sub", sub],
            capture_output=True, text=True, check=True).stdout.strip()

    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % s)
    try:
        alice = {"Authorization": "Bearer " + token("alice")}
        bob = {"Authorization": "Bearer " + token("bob")}
        st, _, a = raw_call(d, "POST", INV, {"keys": ["k"]}, key="shared",
                            headers=alice)
        assert st == 202
        st, h, b = raw_call(d, "POST", INV, {"keys": ["k"]}, key="shared",
                            headers=bob)
        assert st == 202 and "idempotent-replayed" not in h and b != a
        st, h, b = raw_call(d, "POST", INV, {"keys": ["k"]}, key="shared",
                            headers=alice)
        assert b == a and h["idempotent-replayed"] == "true"
    finally:
        assert d.stop() == 0


def ctl(d, *args):
    r = subprocess.run([CTL, "-s", d.base, "--json"] + list(args),
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_discoveryctl_sends_a_key_on_every_write(tmp_path):
    d = Discoveryd(tmp_path)
    try:
        # A fresh key each time: two runs are two changes.
        rc, one, _ = ctl(d, "invalidate", "k")
        assert rc == 0
        rc, two, _ = ctl(d, "invalidate", "k")
        assert rc == 0
        assert json.loads(two)["seq"] == json.loads(one)["seq"] + 1
        assert metric(d, "discovery_idempotency_keys") == 2
        # Reads carry none.
        assert ctl(d, "services")[0] == 0
        assert metric(d, "discovery_idempotency_keys") == 2
        # An explicit key: the second run replays the first.
        rc, a, _ = ctl(d, "--idempotency-key", "deploy-42", "invalidate", "k")
        rc2, b, _ = ctl(d, "invalidate", "k", "--idempotency-key=deploy-42")
        assert rc == rc2 == 0 and a == b
        assert seq(d) == json.loads(a)["seq"]
        rc, _, err = ctl(d, "--idempotency-key", "deploy-42", "invalidate",
                         "other")
        assert rc == 1 and "Idempotency-Key" in err
        for bad in ("", "a b", "x" * 256):
            rc, _, err = ctl(d, "--idempotency-key", bad, "invalidate", "k")
            assert rc == 2 and "--idempotency-key" in err
    finally:
        assert d.stop() == 0
