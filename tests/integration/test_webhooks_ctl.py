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


def test_webhooks_put_and_delete(tmp_path):
    old, new = new_secret(), new_secret()
    old_path = write_secret(os.path.join(str(tmp_path), "old"), old)
    new_path = write_secret(os.path.join(str(tmp_path), "new"), new)
    rx = Receiver([old])
    d = Discoveryd(tmp_path)
    try:
        rc, out, err = ctl(d, "webhooks", "put", "a", "--url", rx.url,
                           "--secret-file", old_path, "--kinds",
                           "invalidate,command", "--services", "web",
                           "--max-in-flight", "2")
        assert rc == 0 and "created" in out, (out, err)
        st, _ = d.call("POST", "/api/discovery/invalidate",
                       {"keys": ["k"], "service": "web"})
        rx.wait(lambda r: len(r.acked) >= 1, what="the first event")
        # From a YAML file, as the entry reads in discoveryd.yaml; the
        # flags set their keys over the file's.
        entry = os.path.join(str(tmp_path), "a.yaml")
        with open(entry, "w") as f:
            f.write("url: http://127.0.0.1:9/nowhere\nsecret_file: %s\n"
                    "timeout: 2s\nfilter:\n  services: [web]\n" % new_path)
        rx.secrets = [new]
        rc, out, err = ctl(d, "webhooks", "put", "a", "--file", entry,
                           "--url", rx.url)
        assert rc == 0 and "replaced" in out, (out, err)
        st, _ = d.call("POST", "/api/discovery/invalidate",
                       {"keys": ["k2"], "service": "web"})
        rx.wait(lambda r: len(r.acked) >= 2, what="the second event")
        assert rx.bad == []
        # JSON on stdin; a refusal is the daemon's message, exit 1.
        r = subprocess.run([CTL, "-s", d.base, "webhooks", "put", "b",
                            "--file", "-"], input=json.dumps(
                                {"url": rx.url, "secret_file": new_path,
                                 "bogus": 1}),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "unknown key 'bogus'" in r.stderr, \
            r.stderr
        for bad in (["webhooks", "put", "b"],
                    ["webhooks", "put", "b", "--url", rx.url],
                    ["webhooks", "put", "b", "--file", "/nonexistent"],
                    ["webhooks", "list", "--url", rx.url],
                    ["webhooks", "put", "b", "--kinds", "a,,b", "--url",
                     rx.url, "--secret-file", new_path]):
            rc, _, err = ctl(d, *bad)
            assert rc == 2, (bad, err)
        rc, out, err = ctl(d, "webhooks")
        head, row = out.split("\n")[:2]
        assert row.split()[head.split().index("SOURCE")] == "api", out
        rc, out, err = ctl(d, "webhooks", "delete", "a")
        assert rc == 0, err
        assert ctl(d, "webhooks", "delete", "a")[0] == 4
        assert json.loads(ctl(d, "--json", "webhooks")[1]) == \
            {"webhooks": []}
    finally:
        assert d.stop() == 0, d.text()
        rx.close()
