"""An adversarial review of the webhooks (issue 15). Each case was a bug
found by reading the code, shown on the real binaries, and failed until
it was fixed."""

import os
import subprocess
import time

from harness import BIN, Discoveryd, write
from test_webhook_receivers import Silent
from test_webhooks import hooks, post_events, wait_hook
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret

CTL = os.path.join(BIN, "discoveryctl")


def secret_file(tmp_path):
    path = os.path.join(str(tmp_path), "whsec")
    write_secret(path, new_secret())
    with open(path) as f:
        return path, [s for s in f.read().split() if s]


def test_cursor_of_name_dot_tmp_survives_the_rewrite_of_name(tmp_path):
    """Endpoint "x" rewrites its cursor journal every 512 saves through
    state_dir/webhook-x.tmp, which is endpoint "x.tmp"'s cursor file
    (journal_open_named: tmp_path = path + ".tmp"; names may hold dots).
    The rewrite truncates it and renames it over webhook-x: "x.tmp"'s
    cursor is gone, so after a restart it begins at the current seq and
    the events it never had are skipped."""
    path, secrets = secret_file(tmp_path)
    accept = {"on": False}
    rx_x = Receiver(secrets)
    rx_t = Receiver(secrets,
                    answer=lambda rec, k: 200 if accept["on"] else 503)
    hooks_conf = {
        "x": {"url": rx_x.url, "secret_file": path},
        "x.tmp": {"url": rx_t.url, "secret_file": path,
                  "retry": {"initial": "50ms", "max": "100ms"}},
    }
    extra = "history: 2000\n" + webhooks_yaml(**hooks_conf)
    d = Discoveryd(tmp_path, extra=extra)
    state = os.path.join(str(tmp_path), "state")
    try:
        wait_hook(d, "x.tmp", lambda h: h["epoch"] != "", "a cursor")
        seqs = post_events(d, 530)
        rx_x.wait(lambda r: len(r.acked) >= 530, timeout=120,
                  what="530 acks on x")
        wait_hook(d, "x", lambda h: h["cursor"] == seqs[-1], "x's cursor")
        # x.tmp acknowledged nothing: its cursor file must still say so
        # (with the bug it is gone: ['journal', 'webhook-x']).
        files = sorted(os.listdir(state))
    finally:
        assert d.stop() == 0, d.text()
    accept["on"] = True
    d = Discoveryd(tmp_path, extra=extra)
    try:
        # Every event x.tmp was never acknowledged comes after the restart.
        rx_t.wait(lambda r: set(seqs) <= set(r.acked_seqs()), timeout=60,
                  what="x.tmp's 530 events after the restart (state_dir "
                  "before it: %r)" % files)
    finally:
        assert d.stop() == 0, d.text()
        rx_x.close()
        rx_t.close()


def issue(secret, role):
    r = subprocess.run([CTL, "token", "issue", "--role", role, "--ttl", "1h",
                        "--secret-file", secret, "--sub", "t " + role],
                       capture_output=True, text=True, check=True)
    return {"Authorization": "Bearer " + r.stdout.strip()}


def test_reader_does_not_see_credentials_in_the_url(tmp_path):
    """A webhook URL often carries its credential: userinfo, a token in
    the query, or the path itself (Slack, Discord). check_url accepts
    userinfo, and webhook_view.c:26 shows conf.url whole to every reader
    (GET /api/discovery/webhooks, the dashboard): a reader token learns
    the password the receiver checks."""
    path, secrets = secret_file(tmp_path)
    auth = os.path.join(str(tmp_path), "auth.secret")
    write(auth, os.urandom(32).hex() + "\n")
    os.chmod(auth, 0o600)
    rx = Receiver(secrets)
    url = rx.url.replace("http://", "http://hookuser:s3cr3tPassw0rd@")
    d = Discoveryd(tmp_path, extra="auth:\n  secret_file: %s\n" % auth +
                   webhooks_yaml(a={"url": url, "secret_file": path}))
    try:
        st, body = d.call("GET", "/api/discovery/webhooks",
                          headers=issue(auth, "reader"))
        assert st == 200, body
        h = {w["name"]: w for w in body["webhooks"]}["a"]
        assert "s3cr3tPassw0rd" not in repr(h), h
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_delete_in_cluster_mode_is_refused(tmp_path, redis):
    """DELETE on the delivering node used to mark the endpoint removed
    there and delete its lease and cursor in Redis; the other node, which
    still had it in standby, then took the free lease, found no cursor
    and delivered everything again from the start. In cluster mode DELETE
    is refused (409, docs/webhooks.md) and delivery goes on, each event
    once."""
    from cluster_harness import node
    path, secrets = secret_file(tmp_path)
    rx = Receiver(secrets)
    extra = webhooks_yaml(a={"url": rx.url, "secret_file": path})
    url = "redis://127.0.0.1:%d" % redis.port
    nodes = [node(tmp_path, "n%d" % i, url, extra=extra) for i in (1, 2)]
    try:
        seqs = post_events(nodes[0], 5)
        rx.wait(lambda r: set(seqs) <= set(r.acked_seqs()), what="5 events")
        deadline = time.monotonic() + 30
        while True:
            holder = [n for n in nodes if hooks(n)["a"]["delivering"]]
            if len(holder) == 1:
                break
            assert time.monotonic() < deadline, "no single holder"
            time.sleep(0.05)
        st, body = holder[0].call("DELETE", "/api/discovery/webhooks/a")
        assert st == 409, body
        more = post_events(nodes[0], 2)
        rx.wait(lambda r: set(more) <= set(r.acked_seqs()), what="2 more")
        acked = rx.acked_seqs()
        assert sorted(acked) == sorted(set(acked)), acked
    finally:
        for n in nodes:
            if n.p.poll() is None:
                assert n.stop() == 0, n.text()
        rx.close()


def start_test_call(d, name):
    """POST .../NAME/test on a thread of its own (it blocks)."""
    import threading
    out = {}

    def run():
        try:
            out["r"] = d.call("POST", "/api/discovery/webhooks/%s/test" % name)
        except Exception as e:  # the daemon went away
            out["r"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_a_test_of_a_silent_endpoint_is_answered_within_its_cap(tmp_path):
    """POST .../test holds its HTTP thread until the receiver answers: at
    most 10 s (WEBHOOK_TEST_TIMEOUT_MS), whatever the endpoint's timeout
    (here 60 s), then 502; the API answers again afterwards."""
    path, secrets = secret_file(tmp_path)
    silent = Silent()
    d = Discoveryd(tmp_path, extra="limits:\n  http_threads: 1\n" +
                   webhooks_yaml(a={"url": silent.url, "secret_file": path,
                                    "timeout": "60s"}))
    try:
        t, out = start_test_call(d, "a")
        t.join(40)
        assert not t.is_alive(), "no answer to the test in 40 s"
        assert out["r"][0] == 502, out
        assert d.call("GET", "/api/discovery/webhooks")[0] == 200
    finally:
        silent.close()
        assert d.stop() == 0, d.text()


def test_sigterm_with_a_test_in_flight_exits_promptly(tmp_path):
    """api_stop (MHD_stop_daemon) runs before webhook_stop (main.c stop())
    and waits for the handler blocked in webhook_call; that one waits for
    the receiver or the endpoint's timeout (up to 5 minutes): SIGTERM hangs
    that long, past systemd's TimeoutStopSec, and ends in a SIGKILL."""
    path, secrets = secret_file(tmp_path)
    silent = Silent()
    d = Discoveryd(tmp_path, extra=webhooks_yaml(
        a={"url": silent.url, "secret_file": path, "timeout": "120s"}))
    try:
        t, out = start_test_call(d, "a")
        # The test notice is on the wire: the receiver has its connection.
        deadline = time.monotonic() + 30
        while not silent.conns:
            assert time.monotonic() < deadline, "no test connection"
            time.sleep(0.05)
    finally:
        rc = d.stop(timeout=20)  # far less than the endpoint's timeout
        silent.close()
    assert rc == 0, "discoveryd did not stop in 20 s (exit %r)" % rc


def test_restart_with_a_full_history_delivers_its_newest_event(tmp_path):
    """At start hub_set_sink pushes a mark, then every retained event, into
    the inbox before the thread runs. The mark counts in inbox_n, and
    webhook_offer (webhook.c:52) drops an event once inbox_n >= history: with
    the history full (every daemon that has run a while), the newest event
    is dropped. An endpoint whose cursor is before it never gets it; the
    next event shows a gap (webhook.c:130), the ring is cleared and the
    endpoint gets a reset notice instead of an event the history holds."""
    path, secrets = secret_file(tmp_path)
    fail = {"from": 1 << 62}
    rx = Receiver(secrets, answer=lambda rec, k:
                  503 if rec["body"].get("seq", 0) >= fail["from"] else 200)
    extra = "history: 16\n" + webhooks_yaml(
        a={"url": rx.url, "secret_file": path,
           "retry": {"initial": "100ms", "max": "200ms"}})
    d = Discoveryd(tmp_path, extra=extra)
    try:
        wait_hook(d, "a", lambda h: h["epoch"] != "", "a cursor")
        seqs = []
        for i in range(19):  # one at a time: the endpoint keeps up
            seqs += post_events(d, 1)
            rx.wait(lambda r: len(r.acked) >= i + 1, what="event %d" % i)
        last = seqs[-1] + 1
        fail["from"] = last
        assert post_events(d, 1) == [last]
        rx.wait(lambda r: any(a["body"].get("seq") == last
                              for a in r.attempts), what="a 503 for the last")
    finally:
        assert d.stop() == 0, d.text()
    fail["from"] = 1 << 62
    d = Discoveryd(tmp_path, extra=extra)
    try:
        try:
            rx.wait(lambda r: last in r.acked_seqs(), timeout=20,
                    what="seq %d after the restart" % last)
        except AssertionError as e:
            post_events(d, 1)
            time.sleep(3)
            raise AssertionError("%s; after one more event the receiver got "
                                 "%r" % (e, [a["id"] for a in
                                            rx.attempts[-3:]]))
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_a_secret_file_behind_a_symlink_is_accepted(tmp_path):
    """read_secrets opens secret_file with O_NOFOLLOW
    (dconf_webhook.c:126): a secret that is a symlink, as every Kubernetes
    secret volume mounts it (key -> ..data/key) and as auth.secret_file
    and tls files are accepted, is refused with ELOOP ("Too many levels of
    symbolic links"). The mode check (fstat, 0600) is what protects it."""
    path, secrets = secret_file(tmp_path)
    link = os.path.join(str(tmp_path), "whsec.link")
    os.symlink(path, link)
    conf = write(os.path.join(str(tmp_path), "d.yaml"),
                 "listen:\n  http: 127.0.0.1:0\n  agents: 127.0.0.1:0\n"
                 "state_dir: %s\n" % os.path.join(str(tmp_path), "state") +
                 webhooks_yaml(a={"url": "http://127.0.0.1:9/hook",
                                  "secret_file": link}))
    r = subprocess.run([os.path.join(BIN, "discoveryd"), "-t", "-c", conf],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
