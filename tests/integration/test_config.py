"""Config checking: -t says OK or names file:line:col."""

import os
import subprocess

from harness import BIN, ROOT, write

DAEMON = os.path.join(BIN, "discoveryd")


def check(tmp_path, text):
    path = write(os.path.join(str(tmp_path), "d.yaml"), text)
    r = subprocess.run([DAEMON, "-t", "-c", path], capture_output=True,
                       text=True)
    return r.returncode, r.stdout + r.stderr, path


def test_reference_config_is_ok():
    r = subprocess.run([DAEMON, "-t", "-c",
                        os.path.join(ROOT, "conf",
                                     "discoveryd.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "configuration OK" in r.stdout


def test_unknown_key(tmp_path):
    rc, out, path = check(tmp_path, "history: 100\nlisten:\n  htttp: 1:2\n")
    assert rc != 0 and out.startswith(path + ":3:3:")
    assert "htttp" in out


def test_wrong_type(tmp_path):
    rc, out, path = check(tmp_path, "heartbeat:\n  interval: often\n")
    assert rc != 0 and out.startswith(path + ":2:13:")


def test_out_of_bounds(tmp_path):
    rc, out, path = check(tmp_path, "limits:\n  max_agents: 0\n")
    assert rc != 0 and out.startswith(path + ":2:15:")


def test_bad_yaml(tmp_path):
    rc, out, path = check(tmp_path, "listen: [\n")
    assert rc != 0 and out.startswith(path + ":")


def test_cross_key_checks(tmp_path):
    rc, out, _ = check(tmp_path, "heartbeat:\n  interval: 5s\n  timeout: 1s\n")
    assert rc != 0 and "heartbeat.timeout" in out


def test_cluster_section_checked(tmp_path):
    rc, out, _ = check(tmp_path, "cluster:\n  redis: redis://127.0.0.1:6379/2\n"
                       "  node: n1\n  node_ttl: 6s\n")
    assert rc == 0, out
    for ok in ("0", "0ms", "1s"):
        rc, out, _ = check(tmp_path, "cluster:\n  redis: redis://x\n"
                           "  coalesce: %s\n" % ok)
        assert rc == 0, (ok, out)
    for bad, why in (("cluster:\n  node: n1\n", "redis"),
                     ("cluster:\n  redis: http://x\n", "cluster.redis"),
                     ("cluster:\n  redis: redis://x:0\n", "cluster.redis"),
                     ("cluster:\n  redis: redis://x/db\n", "cluster.redis"),
                     ("cluster:\n  redis: redis://x\n  node_ttl: 1ms\n",
                      "node_ttl"),
                     ("cluster:\n  redis: redis://x\n  timeout: 0s\n",
                      "timeout"),
                     ("cluster:\n  redis: redis://x\n  colour: red\n",
                      "colour"),
                     ("cluster:\n  redis: redis://x\n  coalesce: 1001ms\n",
                      "coalesce"),
                     ("cluster:\n  redis: redis://x\n  coalesce: -1ms\n",
                      "coalesce"),
                     ("cluster:\n  redis: redis://x\n  coalesce: soon\n",
                      "coalesce"),
                     ("cluster:\n  redis: redis://x\n  node_ttl: 3s\n",
                      "at most half")):
        rc, out, _ = check(tmp_path, bad)
        assert rc != 0 and why in out, (bad, out)


def test_cluster_sentinels_checked(tmp_path):
    ok = ("cluster:\n  sentinels: [10.0.0.1:26379, '[::1]:26380', s3:26379]\n"
          "  master_name: disc\n  password: secret\n  db: 2\n"
          "  sentinel_password: s\n  min_replicas: 1\n")
    rc, out, _ = check(tmp_path, ok)
    assert rc == 0, out
    S = "cluster:\n  sentinels: [10.0.0.1:26379]\n"
    for bad, why in (
            ("cluster:\n  redis: redis://x\n  sentinels: [a:1]\n"
             "  master_name: m\n", "not both"),
            (S, "master_name"),
            (S + "  master_name: 'a b'\n", "master_name"),
            ("cluster:\n  sentinels: [a]\n  master_name: m\n", "'a'"),
            ("cluster:\n  sentinels: ['a:0']\n  master_name: m\n", "'a:0'"),
            ("cluster:\n  sentinels: []\n  master_name: m\n", "neither"),
            (S + "  master_name: m\n  user: u\n", "cluster.password"),
            (S + "  master_name: m\n  min_replicas: 17\n", "min_replicas"),
            (S + "  master_name: m\n  min_replicas: -1\n", "min_replicas"),
            ("cluster:\n  redis: redis://x\n  password: p\n", "in its URL"),
            ("cluster:\n  redis: redis://x\n  master_name: m\n",
             "in its URL")):
        rc, out, _ = check(tmp_path, bad)
        assert rc != 0 and why in out, (bad, out)


def test_missing_file(tmp_path):
    rc, out, _ = check(tmp_path, "")
    assert rc == 0
    r = subprocess.run([DAEMON, "-t", "-c", "/nonexistent.yaml"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "/nonexistent.yaml" in r.stderr


def test_bad_flag():
    r = subprocess.run([DAEMON, "-x"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([DAEMON, "-V"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("discoveryd ")


def test_open_listener_needs_auth_or_auth_none(tmp_path):
    rc, out, path = check(tmp_path, "listen:\n  agents: 0.0.0.0:0\n")
    assert rc != 0 and "listen.agents" in out and "auth: none" in out
    rc, out, _ = check(tmp_path, "listen:\n  http: :0\n")
    assert rc != 0 and "listen.http" in out
    rc, out, _ = check(tmp_path, "listen:\n  http: 0.0.0.0:0\nauth: none\n")
    assert rc == 0, out
    rc, out, path = check(tmp_path, "auth: sometimes\n")
    assert rc != 0 and out.startswith(path + ":1:7:")
