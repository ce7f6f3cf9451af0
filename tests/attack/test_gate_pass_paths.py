"""While the gate is locked, a pass path lets through what lies under it,
and nothing that an app could read as another path: dot segments, plain
or escaped, an escaped slash or backslash, a second round of escaping,
path parameters. Those get the locked answer; the app sees nothing."""

import pytest

from gate_util import RecordingUpstream, locked_gate, raw_exchange, status_of


@pytest.fixture(scope="module")
def app():
    u = RecordingUpstream()
    yield u
    u.stop()


@pytest.fixture(scope="module")
def gate(tmp_path_factory, app):
    from harness import Discoveryd
    tmp = tmp_path_factory.mktemp("pass")
    d = Discoveryd(tmp)
    g = locked_gate(tmp, d, app)
    yield g
    assert g.stop() == 0, g.text()
    assert d.stop() == 0, d.text()


def get(gate, target):
    got = raw_exchange(gate, b"GET %s HTTP/1.1\r\nHost: a\r\n"
                       b"Connection: close\r\n\r\n" % target.encode())
    codes = status_of(got)
    assert len(codes) == 1, got
    return codes[0]


SNEAKY = [
    "/healthz/../secret", "/healthz/./../secret", "/healthz/..",
    "/healthz/%2e%2e/secret", "/healthz/%2E%2E/secret", "/healthz/.%2e/secret",
    "/healthz/..%2fsecret", "/healthz/..%2Fsecret", "/healthz%2f..%2fsecret",
    "/healthz/%2e%2e%2fsecret", "/healthz/..%5csecret", "/healthz\\..\\secret",
    "/healthz/%252e%252e/secret", "/healthz/%25%32%65%25%32%65/secret",
    "/healthz;/../secret", "/healthz/..;/secret", "/healthz;x=1",
    "/healthz/%00/../secret", "/healthz/%0a", "/healthz/%",
    "/healthz/%zz", "/static/../secret", "/static/%2e%2e/secret",
    "/static/x/../../secret", "/./healthz", "//healthz/../secret",
    "/healthzz", "/health", "/HEALTHZ",
]


@pytest.mark.parametrize("target", SNEAKY)
def test_sneaky_targets_get_the_locked_answer(gate, app, target):
    assert get(gate, target) in (423, 400)
    assert not any("secret" in t for t in app.targets())
    assert target not in app.targets()


PLAIN = ["/healthz", "/healthz/", "/healthz/live", "/healthz?verbose=1",
         "/healthz/a%20b", "/healthz/%7Ea", "/static/app.css",
         "/static/img/logo.png?v=3", "/static/"]


@pytest.mark.parametrize("target", PLAIN)
def test_plain_targets_under_a_pass_path_reach_the_app(gate, app, target):
    assert get(gate, target) == 200
    assert app.targets()[-1] == target  # byte for byte


def test_pass_entries_must_be_plain_paths(tmp_path):
    import subprocess
    from harness import BIN, write
    for bad in ("/a/../b", "/a%2e", "healthz", "/a;b", "/a?x", "/a\\\\b"):
        cfg = write(str(tmp_path / "g.yaml"),
                    "upstream: http://127.0.0.1:9\ndiscovery: "
                    "[ws://127.0.0.1:9]\nservice: web\npass: [\"%s\"]\n" % bad)
        r = subprocess.run([BIN + "/discovery-gate", "-t", "-c", cfg],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "pass:" in r.stderr, (bad, r.stderr)
