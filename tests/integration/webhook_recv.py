"""A webhook receiver for the tests, on Python's http.server, written from
the Standard Webhooks specification and not from discoveryd's code: it
checks every request's signature against the secrets it was given, and
records what it saw. How it answers is a function the test sets
(`answer`), so one receiver can fail the first N attempts, fail at random,
stall, redirect, send a huge body or hang up half-way.

A request whose signature does not verify is recorded in `bad` and answered
401; tests assert `bad` stays empty.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import random
import ssl
import threading
import time


def new_secret(n=32):
    """A fresh Standard Webhooks secret: whsec_ then base64 of n bytes."""
    return "whsec_" + base64.b64encode(os.urandom(n)).decode()


def write_secret(path, *secrets, mode=0o600):
    with open(path, "w") as f:
        f.write("\n".join(secrets) + "\n")
    os.chmod(path, mode)
    return path


def verify(secrets, headers, body, tolerance=300):
    """The receiver's check (docs/webhooks.md): True when one of the
    signatures in webhook-signature is the HMAC of id.timestamp.body under
    one of the secrets, and the timestamp is recent."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return False
    if abs(time.time() - int(ts)) > tolerance:
        return False
    signed = msg_id.encode() + b"." + ts.encode() + b"." + body
    for secret in secrets:
        key = base64.b64decode(secret[len("whsec_"):]
                               if secret.startswith("whsec_") else secret)
        want = base64.b64encode(
            hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for sig in sigs.split(" "):
            version, _, value = sig.partition(",")
            if version == "v1" and hmac.compare_digest(value, want):
                return True
    return False


class Receiver:
    """An HTTP(S) receiver on a free port. attempts: every request as
    (webhook-id, body dict, status answered, time); acked: the ids answered
    2xx, in order; bad: requests whose signature failed."""

    def __init__(self, secrets, answer=None, tls=None):
        self.secrets = list(secrets)
        self.answer = answer or (lambda rec, n: 200)
        self.attempts, self.acked, self.bad = [], [], []
        self.raw_bodies = []
        self.cv = threading.Condition()
        self.n = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                outer._handle(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[1], tls[0])
            self.server.socket = ctx.wrap_socket(self.server.socket,
                                                 server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.url = "%s://127.0.0.1:%d/hook" % (scheme, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def _handle(self, h):
        n = int(h.headers.get("Content-Length", "0"))
        body = h.rfile.read(n)
        headers = {k.lower(): v for k, v in h.headers.items()}
        if not verify(self.secrets, headers, body):
            with self.cv:
                self.bad.append((headers, body))
                self.cv.notify_all()
            self._reply(h, 401)
            return
        rec = {"id": headers["webhook-id"], "body": json.loads(body),
               "headers": headers, "path": h.path, "t": time.monotonic()}
        with self.cv:
            self.n += 1
            n_attempt = self.n
            self.raw_bodies.append(body)
        status = self.answer(rec, n_attempt)
        if callable(status):  # the test answers by hand
            status(h)
            status = None
        with self.cv:
            rec["status"] = status
            self.attempts.append(rec)
            if status is not None and 200 <= status < 300:
                self.acked.append(rec["id"])
            self.cv.notify_all()
        if status is not None:
            self._reply(h, status)

    @staticmethod
    def _reply(h, status, headers=None, body=b"ok"):
        if status in (204, 304):
            body = b""  # no body, or it runs into the next answer
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def wait(self, cond, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not cond(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "receiver: no %s; acked %r, %d attempts, bad %d" %
                        (what, self.acked[-10:], len(self.attempts),
                         len(self.bad)))
                self.cv.wait(min(left, 0.5))

    def acked_seqs(self):
        with self.cv:
            return [int(i.rsplit("-", 1)[1]) for i in self.acked
                    if not i.endswith("-reset") and "-test-" not in i]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def fail_first(n, status=503):
    """Fail the first n attempts, then accept."""
    return lambda rec, k: status if k <= n else 200


def fail_at_random(rate, seed=1):
    rng = random.Random(seed)
    lock = threading.Lock()

    def answer(rec, k):
        with lock:
            return 500 if rng.random() < rate else 200
    return answer


def webhooks_yaml(**endpoints):
    """A webhooks: section; each endpoint is a dict of its keys."""
    out = "webhooks:\n"
    for name, keys in endpoints.items():
        out += "  %s:\n" % name
        for k, v in keys.items():
            if isinstance(v, dict):
                out += "    %s:\n" % k
                for k2, v2 in v.items():
                    out += "      %s: %s\n" % (k2, v2)
            else:
                out += "    %s: %s\n" % (k, v)
    return out
