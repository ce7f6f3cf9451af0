"""Webhook endpoints defined at run time (docs/webhooks.md, "Run-time
endpoints"): PUT /api/discovery/webhooks/NAME creates or replaces one,
kept in state_dir across restarts; DELETE removes it for good. The
receivers are the real ones of test_webhooks (webhook_recv.py), which
verify every signature with the keys they are given."""

import os
import signal

from harness import Discoveryd
from test_webhooks import hooks, post_events, wait_hook
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret


def secret(tmp_path, name, *secrets):
    secrets = secrets or (new_secret(),)
    return write_secret(os.path.join(str(tmp_path), name), *secrets), \
        list(secrets)


def put(d, name, body, query=""):
    return d.call("PUT", "/api/discovery/webhooks/%s%s" % (name, query),
                  body)


def restart(d, tmp_path, extra=""):
    http = int(d.http_addr.rsplit(":", 1)[1])
    agents = int(d.agents_addr.rsplit(":", 1)[1])
    return Discoveryd(tmp_path, extra=extra, http_port=http,
                      agents_port=agents)


def test_put_creates_an_endpoint_that_starts_at_the_current_seq(tmp_path):
    path, keys = secret(tmp_path, "whsec")
    rx = Receiver(keys)
    d = Discoveryd(tmp_path)
    try:
        before = post_events(d, 3)
        st, body = put(d, "a", {"url": rx.url, "secret_file": path,
                                "max_in_flight": 4,
                                "filter": {"services": ["web"]}})
        assert st == 201, body
        assert body == {"webhook": "a",
                        "result": "created, from the current seq"}
        seqs = post_events(d, 5)
        other = post_events(d, 2, "api")
        rx.wait(lambda r: len(r.acked) >= 5, what="5 events")
        # The filter's events move the cursor too (lazily).
        h = wait_hook(d, "a", lambda h: h["cursor"] == other[-1], "cursor")
        assert rx.bad == []
        # Nothing from before, no api (4 in flight: in any order).
        assert sorted(rx.acked_seqs()) == seqs
        assert min(seqs) > max(before)
        assert h["max_in_flight"] == 4 and h["disabled"] is False
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_a_put_rotates_the_secret_for_the_next_attempt(tmp_path):
    old_path, old = secret(tmp_path, "old")
    rx = Receiver(old)
    d = Discoveryd(tmp_path)
    try:
        assert put(d, "a", {"url": rx.url, "secret_file": old_path})[0] \
            == 201
        first = post_events(d, 3)
        rx.wait(lambda r: len(r.acked) >= 3, what="3 events")
        wait_hook(d, "a", lambda h: h["cursor"] == first[-1], "cursor")
        # The receiver knows only the new key from here on.
        new_path, new = secret(tmp_path, "new")
        rx.secrets = new
        st, body = put(d, "a", {"url": rx.url, "secret_file": new_path})
        assert st == 200, body
        assert body["result"] == "replaced, from its cursor"
        second = post_events(d, 3)
        rx.wait(lambda r: len(r.acked) >= 6, what="3 more events")
        assert rx.bad == []
        assert rx.acked_seqs() == first + second
        # One signature: the old key is gone with its file.
        assert len(rx.attempts[-1]["headers"]["webhook-signature"]
                   .split(" ")) == 1
        wait_hook(d, "a", lambda h: h["cursor"] == second[-1], "cursor")
        # The same file holding both (a rotation in progress): a
        # signature per secret, each verifiable on its own.
        write_secret(new_path, new[0], old[0])
        assert put(d, "a", {"url": rx.url, "secret_file": new_path})[0] \
            == 200
        rx.secrets = old
        third = post_events(d, 1)
        rx.wait(lambda r: len(r.acked) >= 7, what="the 7th event")
        assert rx.bad == [] and rx.acked_seqs()[-1] == third[0]
        assert len(rx.attempts[-1]["headers"]["webhook-signature"]
                   .split(" ")) == 2
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_a_replace_goes_on_from_the_cursor_to_the_new_url(tmp_path):
    path, keys = secret(tmp_path, "whsec")
    down = Receiver(keys, answer=lambda rec, n: 503)
    up = Receiver(keys)
    d = Discoveryd(tmp_path)
    try:
        slow = {"initial": "50ms", "max": "100ms"}
        assert put(d, "a", {"url": down.url, "secret_file": path,
                            "retry": slow})[0] == 201
        seqs = post_events(d, 4)
        down.wait(lambda r: len(r.attempts) >= 2, what="failed attempts")
        st, body = put(d, "a", {"url": up.url, "secret_file": path})
        assert st == 200, body
        up.wait(lambda r: len(r.acked) >= 4, what="the 4 held events")
        assert up.acked_seqs() == seqs
        wait_hook(d, "a", lambda h: h["cursor"] == seqs[-1], "cursor")
        # ?start=now skips what is held back.
        assert put(d, "a", {"url": down.url, "secret_file": path,
                            "retry": slow})[0] == 200
        held = post_events(d, 2)
        down.wait(lambda r: any(a["body"].get("seq") == held[0]
                                for a in r.attempts), what="held event")
        st, body = put(d, "a", {"url": up.url, "secret_file": path},
                       "?start=now")
        assert st == 200 and "current seq" in body["result"], body
        later = post_events(d, 1)
        up.wait(lambda r: len(r.acked) >= 5, what="the next event")
        assert up.acked_seqs() == seqs + later
    finally:
        assert d.stop() == 0, d.text()
        down.close()
        up.close()


def test_a_definition_is_durable_before_the_answer(tmp_path):
    path, keys = secret(tmp_path, "whsec")
    rx = Receiver(keys)
    d = Discoveryd(tmp_path)
    try:
        st, _ = put(d, "a", {"url": rx.url, "secret_file": path,
                             "timeout": "2s"})
        assert st == 201
        # Killed at once after the 200: the definition is in state_dir.
        d.kill(signal.SIGKILL)
        d.p.wait()
        d = restart(d, tmp_path)
        h = hooks(d)["a"]
        assert h["disabled"] is False
        seqs = post_events(d, 3)
        rx.wait(lambda r: len(r.acked) >= 3, what="3 events")
        assert rx.bad == [] and rx.acked_seqs() == seqs
        wait_hook(d, "a", lambda h: h["cursor"] == seqs[-1], "cursor")
        # A clean restart keeps the cursor too: nothing sent again.
        assert d.stop() == 0, d.text()
        d = restart(d, tmp_path)
        assert hooks(d)["a"]["cursor"] == seqs[-1]
        more = post_events(d, 1)
        rx.wait(lambda r: len(r.acked) >= 4, what="the 4th event")
        assert rx.acked_seqs() == seqs + more
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_delete_removes_it_for_good(tmp_path):
    path, keys = secret(tmp_path, "whsec")
    gone, kept = Receiver(keys), Receiver(keys)
    d = Discoveryd(tmp_path)
    try:
        assert put(d, "gone", {"url": gone.url, "secret_file": path})[0] \
            == 201
        post_events(d, 1)
        gone.wait(lambda r: len(r.acked) >= 1, what="the first event")
        st, body = d.call("DELETE", "/api/discovery/webhooks/gone")
        assert st == 200, body
        assert "gone" not in hooks(d)
        state = os.path.join(str(tmp_path), "state")
        assert not os.path.exists(os.path.join(state, "webhook-gone"))
        assert put(d, "kept", {"url": kept.url, "secret_file": path})[0] \
            == 201
        seqs = post_events(d, 3)
        kept.wait(lambda r: len(r.acked) >= 3, what="3 events")
        assert kept.acked_seqs() == seqs
        assert len(gone.attempts) == 1  # nothing after the DELETE
        assert d.stop() == 0, d.text()
        d = restart(d, tmp_path)
        assert set(hooks(d)) == {"kept"}
        # The name is free again: a new endpoint, from the current seq.
        assert put(d, "gone", {"url": gone.url, "secret_file": path})[0] \
            == 201
        last = post_events(d, 1)
        gone.wait(lambda r: len(r.acked) >= 2, what="the new endpoint")
        assert gone.acked_seqs()[-1] == last[0]
    finally:
        assert d.stop() == 0, d.text()
        gone.close()
        kept.close()


def test_the_configs_entries_are_fixed(tmp_path):
    path, keys = secret(tmp_path, "whsec")
    rx = Receiver(keys)
    extra = webhooks_yaml(conf={"url": rx.url, "secret_file": path})
    d = Discoveryd(tmp_path, extra=extra)
    try:
        st, body = put(d, "conf", {"url": rx.url, "secret_file": path})
        assert st == 409, body
        assert "discoveryd.yaml" in body["message"]
        # Deleted, it is still the config's (it comes back at the start).
        assert d.call("DELETE", "/api/discovery/webhooks/conf")[0] == 200
        assert put(d, "conf", {"url": rx.url, "secret_file": path})[0] \
            == 409
        assert put(d, "api", {"url": rx.url, "secret_file": path})[0] \
            == 201
        assert d.stop() == 0, d.text()
        # The config takes the name over: its entry wins, and the
        # definition is dropped (logged).
        d = Discoveryd(tmp_path, extra=extra + webhooks_yaml(
            api={"url": rx.url, "secret_file": path}).replace(
                "webhooks:\n", ""))
        assert set(hooks(d)) == {"conf", "api"}
        d.wait_line(r"msg=\"webhook definition dropped\" webhook=api")
        assert put(d, "api", {"url": rx.url, "secret_file": path})[0] \
            == 409
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_sighup_reads_every_secret_file_again(tmp_path):
    """A rotation in place: the files are rewritten, SIGHUP, and the next
    attempt of each endpoint, the config's and the API's, is signed with
    the new secrets; nothing else of them changes."""
    conf_path, conf_keys = secret(tmp_path, "conf")
    api_path, api_keys = secret(tmp_path, "api")
    rx_conf, rx_api = Receiver(conf_keys), Receiver(api_keys)
    d = Discoveryd(tmp_path, extra=webhooks_yaml(
        conf={"url": rx_conf.url, "secret_file": conf_path}))
    try:
        assert put(d, "api", {"url": rx_api.url,
                              "secret_file": api_path})[0] == 201
        first = post_events(d, 1)
        for rx in (rx_conf, rx_api):
            rx.wait(lambda r: len(r.acked) >= 1, what="the first event")
        for name in ("conf", "api"):
            wait_hook(d, name, lambda h: h["cursor"] == first[0], "cursor")
        new_conf, new_api = new_secret(), new_secret()
        write_secret(conf_path, new_conf)
        write_secret(api_path, new_api)
        rx_conf.secrets, rx_api.secrets = [new_conf], [new_api]
        mark = d.mark()
        d.kill(signal.SIGHUP)
        d.wait_line(r"msg=reloaded", mark)
        assert d.count(r"key=webhooks", mark) == 0  # no restart needed
        assert d.count(r"msg=\"webhook secrets reloaded\"", mark) == 2
        second = post_events(d, 2)
        for rx in (rx_conf, rx_api):
            rx.wait(lambda r: len(r.acked) >= 3, what="2 more events")
            assert rx.bad == [] and rx.acked_seqs() == first + second
        # A file that no longer reads: its old secrets stay, said once.
        os.chmod(api_path, 0o644)
        mark = d.mark()
        d.kill(signal.SIGHUP)
        d.wait_line(r"msg=reloaded", mark)
        assert d.count(r"msg=\"webhook secrets kept\" webhook=api", mark) \
            == 1
        third = post_events(d, 1)
        rx_api.wait(lambda r: len(r.acked) >= 4, what="the 4th event")
        assert rx_api.bad == [] and rx_api.acked_seqs()[-1] == third[0]
    finally:
        assert d.stop() == 0, d.text()
        rx_conf.close()
        rx_api.close()
