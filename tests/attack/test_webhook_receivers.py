"""Hostile webhook receivers: one that never answers, answers slowly,
redirects, answers with a huge body, hangs up mid-answer, or presents a
certificate that does not verify. Each costs its own endpoint retries and
nothing else: another endpoint, the agents and the API go on."""

import os
import socket
import threading
import time

from certs import make_ca, make_server
from harness import Discoveryd
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret


def post_events(d, n):
    seqs = []
    for i in range(n):
        st, body = d.call("POST", "/api/discovery/invalidate",
                          {"keys": ["k%d" % i], "service": "web"})
        assert st == 202, body
        seqs.append(body["seq"])
    return seqs


def hook(d, name):
    st, body = d.call("GET", "/api/discovery/webhooks")
    assert st == 200, body
    return {h["name"]: h for h in body["webhooks"]}[name]


def wait_hook(d, name, cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        h = hook(d, name)
        if cond(h):
            return h
        if time.monotonic() > deadline:
            raise AssertionError("webhook %s: no %s: %r" % (name, what, h))
        time.sleep(0.05)


class Silent:
    """Accepts connections, reads what comes, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d/hook" % self.sock.getsockname()[1]
        self.conns = []
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.conns:
            c.close()


def start_daemon(tmp_path, **endpoints):
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    for keys in endpoints.values():
        keys["secret_file"] = path
    return secret, Discoveryd(tmp_path, extra=webhooks_yaml(**endpoints))


def test_never_answers_times_out_and_holds_back_only_itself(tmp_path):
    silent = Silent()
    good = Receiver([])
    secret, d = start_daemon(tmp_path,
                      stuck={"url": silent.url, "timeout": "300ms",
                             "retry": {"initial": "50ms", "max": "100ms"}},
                      good={"url": good.url})
    good.secrets.append(secret)
    try:
        seqs = post_events(d, 10)
        good.wait(lambda r: len(r.acked) >= 10, what="10 events")
        assert good.acked_seqs() == seqs
        h = wait_hook(d, "stuck", lambda h: h["attempts"]["timeout"] >= 2,
                      "timeouts")
        assert h["cursor"] == 0 and h["lag_events"] == 10
        assert "imeout" in h["last_error"]
        st, _ = d.call("GET", "/api/discovery/services")
        assert st == 200
    finally:
        assert d.stop() == 0, d.text()
        silent.close()
        good.close()


def test_slow_answer_within_the_timeout_is_delivered(tmp_path):
    rx = Receiver([], answer=lambda rec, k: time.sleep(1.0) or 200)
    secret, d = start_daemon(tmp_path, slow={"url": rx.url, "timeout": "10s"})
    rx.secrets.append(secret)
    try:
        post_events(d, 2)
        rx.wait(lambda r: len(r.acked) >= 2, what="2 events")
        h = wait_hook(d, "slow", lambda h: h["cursor"] == 2, "cursor")
        assert h["retries"] == 0
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_redirect_is_not_followed(tmp_path):
    target = Receiver([])
    state = {"redirect": True}

    def answer(rec, k):
        if state["redirect"]:
            return lambda h: Receiver._reply(h, 307,
                                             {"Location": target.url})
        return 200
    rx = Receiver([], answer=answer)
    secret, d = start_daemon(tmp_path, a={"url": rx.url,
                                   "retry": {"initial": "50ms",
                                             "max": "100ms"}})
    rx.secrets.append(secret)
    target.secrets.append(secret)
    try:
        post_events(d, 1)
        h = wait_hook(d, "a", lambda h: h["attempts"]["3xx"] >= 2, "3xx")
        assert "not followed" in h["last_error"] and h["cursor"] == 0
        assert target.attempts == [] and target.bad == []
        state["redirect"] = False
        rx.wait(lambda r: len(r.acked) >= 1, what="the event")
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
        target.close()


def test_huge_answer_is_read_up_to_a_cap(tmp_path):
    size = 64 << 20

    def huge(h):
        h.send_response(200)
        h.send_header("Content-Length", str(size))
        h.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(size // len(chunk)):
                h.wfile.write(chunk)
        except OSError:
            pass  # discoveryd hung up past its cap, as it should
    rx = Receiver([], answer=lambda rec, k: huge)
    secret, d = start_daemon(tmp_path, a={"url": rx.url})
    rx.secrets.append(secret)
    try:
        post_events(d, 3)
        h = wait_hook(d, "a", lambda h: h["cursor"] == 3, "cursor")
        assert h["attempts"]["2xx"] == 3 and h["retries"] == 0
        assert len(rx.attempts) == 3
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_hang_up_mid_answer_is_a_failure_and_retried(tmp_path):
    def cut(h):
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npart")
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)
    rx = Receiver([], answer=lambda rec, k: cut if k == 1 else 200)
    secret, d = start_daemon(tmp_path, a={"url": rx.url,
                                   "retry": {"initial": "50ms",
                                             "max": "100ms"}})
    rx.secrets.append(secret)
    try:
        post_events(d, 1)
        rx.wait(lambda r: len(r.acked) >= 1, what="the event")
        assert rx.attempts[0]["id"] == rx.attempts[1]["id"]
        h = wait_hook(d, "a", lambda h: h["cursor"] == 1, "cursor")
        assert h["attempts"]["error"] == 1
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_certificate_that_does_not_verify(tmp_path):
    d_ = str(tmp_path)
    ca = make_ca(d_, "ca")
    server = make_server(d_, "server", ca)
    wrong_ca = make_ca(d_, "other")
    rx = Receiver([], tls=server)
    secret, d = start_daemon(tmp_path,
                      system={"url": rx.url,
                              "retry": {"initial": "50ms", "max": "100ms"}},
                      wrong={"url": rx.url, "ca_file": wrong_ca[1],
                             "retry": {"initial": "50ms", "max": "100ms"}},
                      right={"url": rx.url, "ca_file": ca[1]})
    rx.secrets.append(secret)
    try:
        post_events(d, 2)
        wait_hook(d, "right", lambda h: h["cursor"] == 2, "cursor")
        for name in ("system", "wrong"):
            h = wait_hook(d, name, lambda h: h["attempts"]["error"] >= 2,
                          "TLS failures")
            assert h["cursor"] == 0 and h["delivered"] == 0
            assert "certificate" in h["last_error"].lower() or \
                "ssl" in h["last_error"].lower(), h
        assert len(rx.acked) == 2
    finally:
        assert d.stop() == 0, d.text()
        rx.close()


def test_absurd_retry_after_disables_instead_of_waiting(tmp_path):
    def answer(rec, k):
        return lambda h: Receiver._reply(
            h, 503, {"Retry-After": "9000000000000000000"})
    rx = Receiver([], answer=answer)
    secret, d = start_daemon(tmp_path, a={"url": rx.url})
    rx.secrets.append(secret)
    try:
        post_events(d, 1)
        h = wait_hook(d, "a", lambda h: h["disabled"], "disabled")
        assert "max_age" in h["disabled_reason"] and h["cursor"] == 0
        st, _ = d.call("GET", "/api/discovery/webhooks")
        assert st == 200
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
