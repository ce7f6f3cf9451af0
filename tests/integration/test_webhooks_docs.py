"""The receiver's verifier in docs/webhooks.md works as written: it accepts
the Standard Webhooks specification's vector and a real delivery, and
refuses a changed body, another secret and a stale timestamp."""

import os
import re

from harness import ROOT, Discoveryd
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret


def doc_verifier():
    with open(os.path.join(ROOT, "docs", "webhooks.md")) as f:
        text = f.read()
    section = text[text.index("## Verifying a request"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "docs/webhooks.md", "exec"), scope)
    return scope["verify"]


def test_specification_vector():
    verify = doc_verifier()
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
               "webhook-timestamp": "1614265330",
               "webhook-signature":
                   "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert verify([secret], headers, body, now=1614265330)
    assert not verify([secret], headers, body + b" ", now=1614265330)
    assert not verify([new_secret()], headers, body, now=1614265330)
    assert not verify([secret], headers, body, now=1614265330 + 3600)


def test_a_real_delivery(tmp_path):
    verify = doc_verifier()
    old, new = new_secret(), new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), new, old)
    rx = Receiver([old])
    d = Discoveryd(tmp_path, extra=webhooks_yaml(
        a={"url": rx.url, "secret_file": path}))
    try:
        st, _ = d.call("POST", "/api/discovery/invalidate", {"keys": ["k"]})
        assert st == 202
        rx.wait(lambda r: r.acked, what="the event")
        rec = rx.attempts[0]
        body = rx.raw_bodies[0]
        assert verify([old], rec["headers"], body)
        assert verify([new], rec["headers"], body)
        assert not verify([new_secret()], rec["headers"], body)
        assert not verify([old], rec["headers"], body.replace(b"k", b"j"))
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
