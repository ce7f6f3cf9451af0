"""The webhooks: section under discoveryd -t: each bad entry is refused
with a line naming the endpoint and the key."""

import os
import subprocess

import pytest

from harness import BIN, write
from webhook_recv import new_secret, webhooks_yaml, write_secret

DAEMON = os.path.join(BIN, "discoveryd")


def check(tmp_path, text):
    path = write(os.path.join(str(tmp_path), "d.yaml"), text)
    r = subprocess.run([DAEMON, "-t", "-c", path], capture_output=True,
                       text=True)
    return r.returncode, r.stdout + r.stderr


def secret(tmp_path, text=None, mode=0o600):
    return write_secret(os.path.join(str(tmp_path), "whsec"),
                        text or new_secret(), mode=mode)


def entry(tmp_path, **keys):
    keys.setdefault("url", "http://127.0.0.1:9/hook")
    if "secret_file" not in keys:
        keys["secret_file"] = secret(tmp_path)
    return webhooks_yaml(hook=keys)


def test_a_good_entry_is_ok(tmp_path):
    rc, out = check(tmp_path, entry(
        tmp_path, url="https://example.com/h", timeout="5s",
        max_in_flight=16, filter={"kinds": "[readiness, command]",
                                  "services": "[web]"},
        retry={"initial": "1s", "max": "1m", "max_age": "1h"}))
    assert rc == 0 and "configuration OK" in out, out


@pytest.mark.parametrize("url,why", [
    ("'http://exa mple.com/'", "not a URL"),
    ("'::nonsense'", "not a URL"),
    ("ftp://example.com/x", "unsupported scheme 'ftp'"),
    ("file:///etc/passwd", "unsupported scheme 'file'"),
    ("gopher://example.com/", "unsupported scheme"),
])
def test_bad_urls(tmp_path, url, why):
    rc, out = check(tmp_path, entry(tmp_path, url=url))
    assert rc != 0 and "webhooks.hook.url:" in out and why in out, out


def test_short_secret(tmp_path):
    path = secret(tmp_path, "whsec_MDEyMzQ1Njc4OWFiY2RlZg==")  # 16 bytes
    rc, out = check(tmp_path, entry(tmp_path, secret_file=path))
    assert rc != 0 and "webhooks.hook.secret_file:" in out, out
    assert "too short" in out


def test_not_base64_secret(tmp_path):
    path = secret(tmp_path, "whsec_this is not base64!")
    rc, out = check(tmp_path, entry(tmp_path, secret_file=path))
    assert rc != 0 and "webhooks.hook.secret_file:" in out, out


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secret_readable_by_others(tmp_path, mode):
    path = secret(tmp_path, mode=mode)
    rc, out = check(tmp_path, entry(tmp_path, secret_file=path))
    assert rc != 0 and "webhooks.hook.secret_file:" in out, out
    assert "group or others" in out


def test_missing_secret_file(tmp_path):
    rc, out = check(tmp_path, entry(tmp_path, secret_file="/nonexistent"))
    assert rc != 0 and "webhooks.hook.secret_file: cannot read" in out, out


def test_empty_secret_file(tmp_path):
    path = secret(tmp_path, "# nothing yet")
    rc, out = check(tmp_path, entry(tmp_path, secret_file=path))
    assert rc != 0 and "holds no secret" in out, out


def test_bad_filter(tmp_path):
    rc, out = check(tmp_path, entry(tmp_path, filter={"kinds": "[welcome]"}))
    assert rc != 0 and "webhooks.hook.filter.kinds" in out, out
    rc, out = check(tmp_path, entry(tmp_path,
                                    filter={"services": "[Bad Name]"}))
    assert rc != 0 and "webhooks.hook.filter.services" in out, out


def test_bounds_and_required_keys(tmp_path):
    rc, out = check(tmp_path, entry(tmp_path, max_in_flight=0))
    assert rc != 0 and "max_in_flight" in out, out
    rc, out = check(tmp_path, webhooks_yaml(hook={"url": "http://a/"}))
    assert rc != 0 and "secret_file" in out, out
    rc, out = check(tmp_path, entry(tmp_path,
                                    retry={"initial": "1m", "max": "1s"}))
    assert rc != 0 and "retry.max" in out, out
    rc, out = check(tmp_path, entry(tmp_path, ca_file="/nonexistent"))
    assert rc != 0 and "webhooks.hook.ca_file" in out, out


def test_with_cluster(tmp_path):
    rc, out = check(tmp_path, "cluster:\n  redis: redis://127.0.0.1:6379\n" +
                    entry(tmp_path))
    assert rc == 0 and "configuration OK" in out, out
