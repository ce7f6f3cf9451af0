"""Webhooks (docs/webhooks.md): discoveryd posts each event to HTTP
receivers, signed (Standard Webhooks), in order per endpoint, retried, with
a durable cursor. Receivers are real HTTP servers (webhook_recv.py) that
verify every signature on their own."""

import json
import os
import time

from harness import Discoveryd
from webhook_recv import (Receiver, fail_at_random, fail_first, new_secret,
                          webhooks_yaml, write_secret)


def start(tmp_path, extra="", **endpoints):
    return Discoveryd(tmp_path, extra=extra + webhooks_yaml(**endpoints))


def post_events(d, n, service="web"):
    seqs = []
    for i in range(n):
        st, body = d.call("POST", "/api/discovery/invalidate",
                          {"keys": ["k%d" % i], "service": service})
        assert st == 202, body
        seqs.append(body["seq"])
    return seqs


def hooks(d):
    st, body = d.call("GET", "/api/discovery/webhooks")
    assert st == 200, body
    return {h["name"]: h for h in body["webhooks"]}


def wait_hook(d, name, cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        h = hooks(d).get(name)
        if h is not None and cond(h):
            return h
        if time.monotonic() > deadline:
            raise AssertionError("webhook %s: no %s: %r" % (name, what, h))
        time.sleep(0.05)


def secret_file(tmp_path, *secrets):
    return write_secret(os.path.join(str(tmp_path), "whsec"),
                        *(secrets or (new_secret(),)))


def read_secrets(path):
    with open(path) as f:
        return [s for s in f.read().split() if s]


def test_delivers_signed_events_in_order(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path})
    try:
        seqs = post_events(d, 20)
        rx.wait(lambda r: len(r.acked) >= 20, what="20 events")
        assert rx.bad == []
        assert rx.acked_seqs() == seqs
        epoch = rx.attempts[0]["body"]["epoch"]
        for rec, seq in zip(rx.attempts, seqs):
            # The event exactly as agents get it, and a stable id.
            assert rec["id"] == "%s-%d" % (epoch, seq)
            assert rec["body"]["type"] == "event"
            assert rec["body"]["seq"] == seq
            assert rec["body"]["kind"] == "invalidate"
            assert rec["headers"]["content-type"] == "application/json"
        h = wait_hook(d, "a", lambda h: h["cursor"] == seqs[-1], "cursor")
        assert h["disabled"] is False and h["last_status"] == 200
        assert h["lag_events"] == 0 and h["delivered"] == 20
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_rotation_sends_a_signature_per_secret(tmp_path):
    old, new = new_secret(), new_secret(24)
    path = secret_file(tmp_path, new, old)
    only_old, only_new = Receiver([old]), Receiver([new])
    d = start(tmp_path, old={"url": only_old.url, "secret_file": path},
              new={"url": only_new.url, "secret_file": path})
    try:
        post_events(d, 3)
        for rx in (only_old, only_new):
            rx.wait(lambda r: len(r.acked) >= 3, what="3 events")
            assert rx.bad == []
            assert len(rx.attempts[0]["headers"]["webhook-signature"]
                       .split(" ")) == 2
    finally:
        assert d.stop() == 0, d.text()
        only_old.close()
        only_new.close()


def test_filters_by_kind_and_service(tmp_path):
    path = secret_file(tmp_path)
    web, everything, commands = (Receiver(read_secrets(path))
                                 for _ in range(3))
    d = start(tmp_path,
              web={"url": web.url, "secret_file": path,
                   "filter": {"services": "[web]"}},
              all={"url": everything.url, "secret_file": path},
              commands={"url": commands.url, "secret_file": path,
                        "filter": {"kinds": "[command]"}})
    try:
        post_events(d, 2, "web")
        post_events(d, 2, "api")
        st, body = d.call("POST", "/api/discovery/broadcast",
                          {"command": "Reload", "value": {"a": 1}})
        assert st == 202, body
        everything.wait(lambda r: len(r.acked) >= 5, what="5 events")
        web.wait(lambda r: len(r.acked) >= 3, what="3 events")
        commands.wait(lambda r: len(r.acked) >= 1, what="the command")
        assert [a["body"]["value"]["keys"][0] for a in web.attempts[:2]] \
            == ["k0", "k1"]
        # A broadcast to every agent passes the services filter.
        assert web.attempts[2]["body"]["kind"] == "command"
        assert [a["body"]["kind"] for a in commands.attempts] == ["command"]
        wait_hook(d, "commands", lambda h: h["cursor"] == 5, "cursor 5")
    finally:
        assert d.stop() == 0, d.text()
        for rx in (web, everything, commands):
            rx.close()


def test_retries_with_the_same_id_until_accepted(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path), answer=fail_first(3))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path,
                           "retry": {"initial": "50ms", "max": "200ms"}})
    try:
        seqs = post_events(d, 3)
        rx.wait(lambda r: len(r.acked) >= 3, what="3 events")
        ids = [a["id"] for a in rx.attempts]
        # The first event held the others back while it failed.
        assert len(set(ids[:4])) == 1, ids
        assert rx.acked_seqs() == seqs
        h = wait_hook(d, "a", lambda h: h["cursor"] == seqs[-1], "cursor")
        assert h["retries"] == 3 and h["attempts"]["5xx"] == 3
        assert h["failures"] == 0
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_random_failures_keep_order(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path), answer=fail_at_random(0.3))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path,
                           "retry": {"initial": "20ms", "max": "100ms"}})
    try:
        seqs = post_events(d, 40)
        rx.wait(lambda r: len(r.acked) >= 40, timeout=60, what="40 events")
        assert rx.acked_seqs() == seqs
        assert rx.bad == []
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_max_in_flight_sends_in_parallel_and_acks_in_order(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path), answer=fail_at_random(0.2, seed=7))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path,
                           "max_in_flight": 16,
                           "retry": {"initial": "20ms", "max": "100ms"}})
    try:
        seqs = post_events(d, 100)
        rx.wait(lambda r: set(seqs) <= set(r.acked_seqs()), timeout=60,
                what="every event")
        wait_hook(d, "a", lambda h: h["cursor"] == seqs[-1], "cursor")
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_retry_after_is_honoured(tmp_path):
    path = secret_file(tmp_path)

    def answer(rec, k):
        if k == 1:
            return lambda h: Receiver._reply(h, 429, {"Retry-After": "2"})
        return 200
    rx = Receiver(read_secrets(path), answer=answer)
    d = start(tmp_path, a={"url": rx.url, "secret_file": path,
                           "retry": {"initial": "10ms", "max": "20ms"}})
    try:
        post_events(d, 1)
        rx.wait(lambda r: len(r.acked) >= 1, what="the event")
        assert rx.attempts[1]["t"] - rx.attempts[0]["t"] >= 1.5
        assert hooks(d)["a"]["attempts"]["429"] == 1
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_410_disables_and_enable_resumes(tmp_path):
    path = secret_file(tmp_path)
    gone = {"on": True}
    rx = Receiver(read_secrets(path),
                  answer=lambda rec, k: 410 if gone["on"] else 200)
    d = start(tmp_path, a={"url": rx.url, "secret_file": path})
    try:
        seqs = post_events(d, 3)
        h = wait_hook(d, "a", lambda h: h["disabled"] and
                      h["lag_events"] == 3, "disabled, 3 behind")
        assert "410" in h["disabled_reason"]
        assert h["cursor"] == 0
        d.wait_line(r"msg=\"webhook disabled\" webhook=a")
        st, body = d.call("GET", "/metrics")
        assert 'discovery_webhook_disabled{webhook="a"} 1' in body.decode()
        time.sleep(0.3)  # nothing more is tried while disabled
        assert len(rx.attempts) == 1
        gone["on"] = False
        st, body = d.call("POST", "/api/discovery/webhooks/a/enable")
        assert st == 200, body
        rx.wait(lambda r: len(r.acked) >= 3, what="3 events")
        assert rx.acked_seqs() == seqs
        h = wait_hook(d, "a", lambda h: h["cursor"] == seqs[-1], "cursor")
        assert h["disabled"] is False
        st, body = d.call("POST", "/api/discovery/webhooks/nope/enable")
        assert st == 404
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_max_age_disables_the_endpoint(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path), answer=lambda rec, k: 500)
    d = start(tmp_path, a={"url": rx.url, "secret_file": path,
                           "retry": {"initial": "20ms", "max": "50ms",
                                     "max_age": "300ms"}})
    try:
        post_events(d, 2)
        h = wait_hook(d, "a", lambda h: h["disabled"], "disabled")
        assert "max_age" in h["disabled_reason"]
        assert h["cursor"] == 0
        assert {a["id"] for a in rx.attempts} == {rx.attempts[0]["id"]}
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_replay_from_a_seq(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path})
    try:
        seqs = post_events(d, 10)
        rx.wait(lambda r: len(r.acked) >= 10, what="10 events")
        st, body = d.call("POST", "/api/discovery/webhooks/a/replay?from=5")
        assert st == 200, body
        rx.wait(lambda r: len(r.acked) >= 16, what="the replay")
        assert rx.acked_seqs() == seqs + seqs[4:]
        for bad in ("", "?from=0", "?from=x"):
            st, body = d.call("POST",
                              "/api/discovery/webhooks/a/replay" + bad)
            assert st == 400, body
        st, body = d.call("POST", "/api/discovery/webhooks/a/replay?from=99")
        assert st == 422 and body["error"] == "not_retained", body
        st, body = d.call("GET", "/api/discovery/webhooks/a/replay")
        assert st == 405
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_delete_stops_delivery(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path})
    try:
        post_events(d, 1)
        rx.wait(lambda r: len(r.acked) >= 1, what="the event")
        st, body = d.call("DELETE", "/api/discovery/webhooks/a")
        assert st == 200, body
        assert hooks(d) == {}
        assert not os.path.exists(os.path.join(str(tmp_path), "state",
                                               "webhook-a"))
        post_events(d, 2)
        time.sleep(0.3)
        assert len(rx.attempts) == 1
        st, body = d.call("DELETE", "/api/discovery/webhooks/a")
        assert st == 404
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_reset_after_falling_behind_the_history(tmp_path):
    path = secret_file(tmp_path)
    gone = {"on": True}
    rx = Receiver(read_secrets(path),
                  answer=lambda rec, k: 410 if gone["on"] else 200)
    d = start(tmp_path, extra="history: 16\n",
              a={"url": rx.url, "secret_file": path})
    try:
        post_events(d, 1)
        wait_hook(d, "a", lambda h: h["disabled"], "disabled")
        seqs = post_events(d, 40)
        gone["on"] = False
        st, body = d.call("POST", "/api/discovery/webhooks/a/enable")
        assert st == 200, body
        rx.wait(lambda r: r.acked, what="the reset notice")
        reset = rx.attempts[1]
        assert reset["id"].endswith("-reset")
        assert reset["body"]["type"] == "reset"
        assert reset["body"]["seq"] == seqs[-1]
        assert reset["body"]["from"]["seq"] == 0
        more = post_events(d, 2)
        rx.wait(lambda r: len(r.acked) >= 3, what="the next events")
        assert rx.acked_seqs() == more
        h = wait_hook(d, "a", lambda h: h["cursor"] == more[-1], "cursor")
        assert h["resets"] == 1
        st, body = d.call("GET", "/metrics")
        assert 'discovery_webhook_resets_total{webhook="a"} 1' in \
            body.decode()
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_cursor_survives_a_restart(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path})
    first = post_events(d, 5)
    rx.wait(lambda r: len(r.acked) >= 5, what="5 events")
    wait_hook(d, "a", lambda h: h["cursor"] == first[-1], "cursor")
    assert d.stop() == 0, d.text()
    rx.answer = lambda rec, k: 503  # down while discoveryd restarts
    d = Discoveryd(tmp_path, extra=webhooks_yaml(
        a={"url": rx.url, "secret_file": path,
           "retry": {"initial": "50ms", "max": "100ms"}}))
    try:
        second = post_events(d, 3)
        rx.wait(lambda r: len(r.attempts) >= 7, what="an attempt")
        rx.answer = lambda rec, k: 200
        rx.wait(lambda r: len(r.acked) >= 8, what="8 events")
        # Nothing delivered twice, nothing skipped.
        assert rx.acked_seqs() == first + second
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_listing_and_metrics_without_webhooks(daemon):
    st, body = daemon.call("GET", "/api/discovery/webhooks")
    assert st == 200 and body == {"webhooks": []}
    st, body = daemon.call("POST", "/api/discovery/webhooks/a/enable")
    assert st == 404
    st, body = daemon.call("GET", "/metrics")
    # The API may define endpoints at any time (test_webhooks_api): the
    # families are there, with no endpoint's sample.
    assert b"\ndiscovery_webhook_disabled_endpoints 0\n" in body
    assert b'webhook="' not in body


def test_metrics(tmp_path):
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path), answer=fail_first(1))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path,
                           "retry": {"initial": "20ms", "max": "50ms"}})
    try:
        post_events(d, 2)
        rx.wait(lambda r: len(r.acked) >= 2, what="2 events")
        wait_hook(d, "a", lambda h: h["cursor"] == 2, "cursor")
        st, body = d.call("GET", "/metrics")
        text = body.decode()
        for line in ('discovery_webhook_attempts_total{webhook="a",'
                     'status="2xx"} 2',
                     'discovery_webhook_attempts_total{webhook="a",'
                     'status="5xx"} 1',
                     'discovery_webhook_delivered_total{webhook="a"} 2',
                     'discovery_webhook_retries_total{webhook="a"} 1',
                     'discovery_webhook_lag_events{webhook="a"} 0',
                     'discovery_webhook_lag_seconds{webhook="a"} 0',
                     'discovery_webhook_disabled{webhook="a"} 0',
                     'discovery_webhook_disabled_endpoints 0'):
            assert line in text, line
        assert json.loads(json.dumps(hooks(d)))  # plain JSON
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_test_notice_answers_with_the_receivers_status(tmp_path):
    path = secret_file(tmp_path)
    state = {"status": 204}
    rx = Receiver(read_secrets(path), answer=lambda rec, k: state["status"])
    d = start(tmp_path, a={"url": rx.url, "secret_file": path})
    try:
        st, body = d.call("POST", "/api/discovery/webhooks/a/test")
        assert st == 200 and body["result"] == "HTTP 204", body
        rec = rx.attempts[0]
        assert rec["body"]["type"] == "test" and rec["body"]["webhook"] == "a"
        assert "-test-" in rec["id"]
        state["status"] = 500
        st, body = d.call("POST", "/api/discovery/webhooks/a/test")
        assert st == 502 and "HTTP 500" in body["message"], body
        h = hooks(d)["a"]
        # A test moves neither the cursor nor the counters.
        assert h["cursor"] == 0 and h["attempts"]["2xx"] == 0
        assert h["disabled"] is False
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_reload_says_webhooks_need_a_restart(tmp_path):
    import signal
    path = secret_file(tmp_path)
    rx = Receiver(read_secrets(path))
    d = start(tmp_path, a={"url": rx.url, "secret_file": path})
    try:
        mark = d.mark()
        d.kill(signal.SIGHUP)
        d.wait_line(r"msg=reloaded", mark)
        assert d.count(r"key=webhooks", mark) == 0
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace("/hook", "/other"))
        mark = d.mark()
        d.kill(signal.SIGHUP)
        d.wait_line(r"msg=reloaded", mark)
        assert d.count(r"key=webhooks note=\"needs a restart\"", mark) == 1
        # Delivery goes on as configured at the start.
        post_events(d, 1)
        rx.wait(lambda r: r.acked, what="the event")
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_disabled_stays_disabled_across_a_restart(tmp_path):
    path = secret_file(tmp_path)
    gone = {"on": True}
    rx = Receiver(read_secrets(path),
                  answer=lambda rec, k: 410 if gone["on"] else 200)
    conf = {"url": rx.url, "secret_file": path}
    d = start(tmp_path, a=conf)
    seqs = post_events(d, 2)
    wait_hook(d, "a", lambda h: h["disabled"], "disabled")
    assert d.stop() == 0, d.text()
    gone["on"] = False
    d = start(tmp_path, a=conf)
    try:
        h = hooks(d)["a"]
        assert h["disabled"] and "410" in h["disabled_reason"], h
        time.sleep(0.3)
        assert len(rx.attempts) == 1
        st, body = d.call("POST", "/api/discovery/webhooks/a/enable")
        assert st == 200, body
        rx.wait(lambda r: len(r.acked) >= 2, what="2 events")
        assert rx.acked_seqs() == seqs
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
    # Enabled is recorded too.
    d = start(tmp_path, a=conf)
    try:
        assert hooks(d)["a"]["disabled"] is False
    finally:
        assert d.stop() == 0, d.text()
