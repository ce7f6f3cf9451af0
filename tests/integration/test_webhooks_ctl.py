"""discoveryctl webhooks: list, test, replay, enable, delete, against a
real daemon and receiver."""

import json
import os
import subprocess

from harness import BIN, Discoveryd
from webhook_recv import Receiver, new_secret, webhooks_yaml, write_secret

CTL = os.path.join(BIN, "discoveryctl")


def ctl(d, *args):
    r = subprocess.run([CTL, "-s", d.base] + list(args),
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NO_COLOR="1"))
    return r.returncode, r.stdout, r.stderr


def test_webhooks_commands(tmp_path):
    secret = new_secret()
    path = write_secret(os.path.join(str(tmp_path), "whsec"), secret)
    rx = Receiver([secret])
    d = Discoveryd(tmp_path, extra=webhooks_yaml(
        a={"url": rx.url, "secret_file": path}))
    try:
        for i in range(3):
            st, _ = d.call("POST", "/api/discovery/invalidate",
                           {"keys": ["k%d" % i]})
            assert st == 202
        rx.wait(lambda r: len(r.acked) >= 3, what="3 events")
        rc, out, err = ctl(d, "webhooks")
        assert rc == 0, err
        assert out.split("\n")[0].split()[:4] == ["NAME", "URL", "CURSOR",
                                                  "LAG"]
        assert out.split("\n")[1].split()[0] == "a"
        rc, out, _ = ctl(d, "--json", "webhooks", "list")
        assert rc == 0 and json.loads(out)["webhooks"][0]["name"] == "a"
        rc, out, err = ctl(d, "webhooks", "test", "a")
        assert rc == 0 and "HTTP 200" in out, (out, err)
        rc, out, err = ctl(d, "webhooks", "replay", "a", "2")
        assert rc == 0, err
        rx.wait(lambda r: len(r.acked) >= 6, what="the replay")
        assert rx.acked_seqs() == [1, 2, 3, 2, 3]
        rc, out, err = ctl(d, "webhooks", "replay", "a", "99")
        assert rc == 1 and "not retained" in err, err
        assert ctl(d, "webhooks", "enable", "a")[0] == 0
        assert ctl(d, "webhooks", "test", "nope")[0] == 4
        for bad in (["webhooks", "frob"], ["webhooks", "replay", "a"],
                    ["webhooks", "replay", "a", "x"],
                    ["webhooks", "test", "Bad Name"]):
            assert ctl(d, *bad)[0] == 2, bad
        assert ctl(d, "webhooks", "delete", "a")[0] == 0
        rc, out, _ = ctl(d, "--json", "webhooks")
        assert rc == 0 and json.loads(out) == {"webhooks": []}
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
