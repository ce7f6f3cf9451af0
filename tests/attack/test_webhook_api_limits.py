"""PUT /api/discovery/webhooks/NAME against bad input and its limits
(docs/webhooks.md, "Run-time endpoints"): each refusal names the field,
says what discoveryd -t says of the same entry in the config, and leaves
the daemon serving; a PUT that replaces an endpoint while its attempts are
on the wire neither crashes nor loses an event (run under the ASan build
too: DISCOVERY_BIN=build/san-address-undefined/bin)."""

import os
import subprocess
import threading
import time

from harness import BIN, Discoveryd, write
from test_auth import bearer, issue, secret as auth_secret
from test_webhooks import hooks, post_events, wait_hook
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret

MAX = 64  # DCONF_WEBHOOKS_MAX


def put(d, name, body, **kw):
    return d.call("PUT", "/api/discovery/webhooks/" + name, body, **kw)


def whsec(tmp_path, name="whsec", text=None, mode=0o600):
    return write_secret(os.path.join(str(tmp_path), name),
                        text or new_secret(), mode=mode)


def config_says(tmp_path, **keys):
    """What discoveryd -t says of the same entry as a webhooks: one."""
    path = write(os.path.join(str(tmp_path), "t.yaml"),
                 webhooks_yaml(hook=keys))
    r = subprocess.run([os.path.join(BIN, "discoveryd"), "-t", "-c", path],
                       capture_output=True, text=True)
    assert r.returncode != 0
    out = (r.stdout + r.stderr).strip().splitlines()[-1]
    return out[out.index("webhooks.hook."):]


def test_bad_bodies_are_refused_naming_the_field(daemon, tmp_path):
    good = {"url": "http://127.0.0.1:9/h", "secret_file": whsec(tmp_path)}
    cases = [
        (dict(good, bogus=1), 400, "unknown key 'bogus'"),
        (dict(good, timeout="1ms"), 400, "'timeout' must be between"),
        (dict(good, max_in_flight=65), 400, "'max_in_flight'"),
        (dict(good, retry={"initial": "1ms"}), 400, "'initial'"),
        (dict(good, filter={"kinds": {"x": 1}}), 400, "'kinds'"),
        (dict(good, url=["x"]), 400, "'url' must be a string"),
        ({"url": good["url"]}, 400, "secret_file"),
        (dict(good, url="ftp://x/"), 422, "webhooks.a.url: unsupported"),
        (dict(good, url="not a url"), 422, "webhooks.a.url: "),
        (dict(good, filter={"kinds": ["nope"]}), 422, "filter.kinds"),
        (dict(good, ca_file="/nonexistent"), 422, "webhooks.a.ca_file"),
        (dict(good, retry={"initial": "2s", "max": "1s"}), 422,
         "retry.max must be at least retry.initial"),
    ]
    for body, status, says in cases:
        st, answer = put(daemon, "a", body)
        assert (st, says in str(answer.get("message"))) == \
            (status, True), \
            (body, st, answer)
    for raw, says in ((b"{nope", "not JSON"), (b"[1]", "a JSON object"),
                      (b"", "a JSON body is required"),
                      (b'{"url":"a\x00"}', "not JSON")):
        st, answer = put(daemon, "a", None, raw=raw)
        assert st == 400 and says in answer["message"], (raw, answer)
    for name in ("Bad", "a%2Fb", "x" * 200, "-a"):
        st, answer = put(daemon, name, good)
        assert st in (400, 404), (name, st, answer)
        assert "a" not in hooks(daemon)
    st, answer = daemon.call("PUT", "/api/discovery/webhooks/a?start=x",
                             good)
    assert st == 400 and "start" in answer["message"]
    assert hooks(daemon) == {}
    assert put(daemon, "a", good)[0] == 201


def test_secrets_are_refused_as_the_config_refuses_them(daemon, tmp_path):
    url = "http://127.0.0.1:9/h"
    short = whsec(tmp_path, "short", "whsec_" + "QUJD" * 4)
    open_to_all = whsec(tmp_path, "open", mode=0o644)
    empty = whsec(tmp_path, "empty", "# nothing")
    for path in (short, open_to_all, empty, "/nonexistent/whsec"):
        st, answer = put(daemon, "hook", {"url": url, "secret_file": path})
        assert st == 422, answer
        assert answer["message"] == config_says(
            tmp_path, url=url, secret_file=path), answer
    assert hooks(daemon) == {}


def test_a_body_over_max_message_is_413(tmp_path):
    d = Discoveryd(tmp_path, extra="limits:\n  max_message: 1KiB\n")
    try:
        body = {"url": "http://127.0.0.1:9/" + "x" * 2000,
                "secret_file": whsec(tmp_path)}
        st, answer = put(d, "a", body)
        assert st == 413, answer
        assert hooks(d) == {}
        body["url"] = "http://127.0.0.1:9/h"
        assert put(d, "a", body)[0] == 201
    finally:
        assert d.stop() == 0, d.text()


def test_at_most_64_endpoints(daemon, tmp_path):
    body = {"url": "http://127.0.0.1:9/h", "secret_file": whsec(tmp_path),
            "retry": {"initial": "1h", "max": "1h"}}
    for i in range(MAX):
        st, answer = put(daemon, "h%d" % i, body)
        assert st == 201, (i, answer)
    st, answer = put(daemon, "one-more", body)
    assert st == 409 and "64" in answer["message"], answer
    # A replace is not one more.
    assert put(daemon, "h0", body)[0] == 200
    assert daemon.call("DELETE", "/api/discovery/webhooks/h7")[0] == 200
    assert put(daemon, "one-more", body)[0] == 201
    assert len(hooks(daemon)) == MAX


def test_a_reader_cannot_put(tmp_path):
    s = auth_secret(tmp_path, "auth")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % s)
    try:
        body = {"url": "http://127.0.0.1:9/h",
                "secret_file": whsec(tmp_path)}
        assert put(d, "a", body)[0] == 401
        st, _ = put(d, "a", body, headers=bearer(issue(s, "reader")))
        assert st == 403
        st, _ = put(d, "a", body, headers=bearer(issue(s, "admin")))
        assert st == 201
    finally:
        assert d.stop() == 0, d.text()


def test_a_put_racing_deliveries(daemon, tmp_path):
    """Replace, delete and create again while attempts are on the wire
    and readers list: no crash, no leak, and every event still arrives
    (at-least-once, the same ids)."""
    keys = [new_secret()]
    path = whsec(tmp_path, text=keys[0])

    def slow(rec, n):
        time.sleep(0.05)
        return 200 if n % 3 else 503

    receivers = [Receiver(keys, answer=slow) for _ in range(2)]
    final = Receiver(keys)
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                st, _ = daemon.call("GET", "/api/discovery/webhooks")
                assert st == 200
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
                return

    def body(i):
        return {"url": receivers[i % 2].url, "secret_file": path,
                "max_in_flight": 1 + (i * 5) % 16,
                "retry": {"initial": "10ms", "max": "20ms"}}

    threads = [threading.Thread(target=reader) for _ in range(2)]
    try:
        assert put(daemon, "a", body(0))[0] == 201
        for t in threads:
            t.start()
        seqs = []
        for i in range(1, 40):
            seqs += post_events(daemon, 2)
            st, answer = put(daemon, "a", body(i))
            assert st == 200, answer
            # Another endpoint deleted and made again: its slot taken
            # again while the list is read.
            if i % 4 == 0:
                daemon.call("DELETE", "/api/discovery/webhooks/b")
            else:
                put(daemon, "b", body(i + 1))
        assert put(daemon, "a", {"url": final.url, "secret_file": path,
                                 "max_in_flight": 16})[0] == 200
        wait_hook(daemon, "a", lambda h: h["cursor"] == seqs[-1],
                  "the cursor at the last event", timeout=60)
        got = set()
        for rx in receivers + [final]:
            assert rx.bad == []
            got |= set(rx.acked_seqs())
        assert set(seqs) <= got
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        for rx in receivers + [final]:
            rx.close()
    assert errors == []


def test_a_stored_definition_gone_bad_is_shown_not_delivered(tmp_path):
    """A stored definition whose secret file went bad while discoveryd was
    down: it starts anyway (the API could not fix it otherwise), and shows
    the endpoint disabled with why; nothing is sent (no signature could
    be made) until SIGHUP or a PUT reads it whole again."""
    import signal
    keys = [new_secret()]
    path = whsec(tmp_path, text=keys[0])
    rx = Receiver(keys)
    d = Discoveryd(tmp_path)
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    try:
        assert put(d, "a", {"url": rx.url, "secret_file": path})[0] == 201
        assert d.stop() == 0, d.text()
        os.chmod(path, 0o644)
        d = Discoveryd(tmp_path, http_port=http, agents_port=agents)
        d.wait_line(r"msg=\"webhook definition does not pass\" webhook=a")
        h = hooks(d)["a"]
        assert h["disabled"] is True and h["source"] == "api"
        assert "secret_file" in h["disabled_reason"], h
        for action in ("enable", "test"):
            st, body = d.call("POST", "/api/discovery/webhooks/a/" + action)
            assert st == 409 and "does not pass" in body["message"], body
        held = post_events(d, 2)
        os.chmod(path, 0o600)
        mark = d.mark()
        d.kill(signal.SIGHUP)
        d.wait_line(r"msg=\"webhook definition passes again\"", mark)
        rx.wait(lambda r: len(r.acked) >= 2, what="the held events")
        assert rx.bad == [] and rx.acked_seqs() == held
        assert hooks(d)["a"]["disabled"] is False
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
