"""The Python binding given bad input (docs/python.md, "Errors"): a
missing library, bad YAML, calls after close (also racing it), wrong
argument types, each limit past it; and what it leaves behind: nothing
at interpreter exit, nothing after 50 agents."""

import gc
import os
import subprocess
import threading
import time

import pytest

from harness import WAIT, write
from pybinding import (BINDING, FAST, LIB, PRELOADED, SKIP_SANITIZED, da,
                       run_py, until)

pytestmark = SKIP_SANITIZED


def test_missing_library_is_a_clear_error(tmp_path):
    code = ("import discovery_agent as d\n"
            "try:\n"
            "    d.Agent(urls='ws://127.0.0.1:9/', service='web')\n"
            "except d.LibraryNotFoundError as e:\n"
            "    print('ERR', e)\n")
    nowhere = str(tmp_path / "nowhere" / "libagent.so.1")
    out = run_py(code, DISCOVERY_AGENT_LIB=nowhere)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR libagent not found: " + nowhere +
                                 " ($DISCOVERY_AGENT_LIB): ")
    assert "No such file" in out.stdout
    assert "set DISCOVERY_AGENT_LIB" in out.stdout
    # A library that is not libagent (libc: no agent_* symbols).
    out = run_py(code, DISCOVERY_AGENT_LIB="libc.so.6")
    assert "not libagent" in out.stdout and "agent_strerror" in out.stdout
    # A file that is no library at all.
    junk = write(str(tmp_path / "junk.so"), "not an ELF file\n")
    out = run_py(code, DISCOVERY_AGENT_LIB=junk)
    assert out.stdout.startswith("ERR libagent not found: " + junk)
    # Empty: said so, not the current directory.
    out = run_py(code, DISCOVERY_AGENT_LIB="")
    assert "$DISCOVERY_AGENT_LIB is empty" in out.stdout
    # Without the variable, the soname through the loader: found with
    # LD_LIBRARY_PATH (as an installed libagent1 would be).
    env = dict(os.environ, PYTHONPATH=BINDING,
               LD_LIBRARY_PATH=os.path.dirname(LIB))
    env.pop("DISCOVERY_AGENT_LIB")
    out = subprocess.run(["/usr/bin/python3", "-c",
                          "import discovery_agent as d; "
                          "print(d.lib_path(), d.version())"], env=env,
                         capture_output=True, text=True, timeout=WAIT)
    assert out.stdout.split() == ["libagent.so.1", "0.1.0"], out.stderr


@pytest.mark.parametrize("text,where,what", [
    ("discovery: [ws://127.0.0.1:9]\nservice: web\nbogus: 1\n", ":3:1:",
     "bogus"),
    ("discovery: [ws://127.0.0.1:9]\nservice: [web]\n", ":2:10:",
     "service"),
    ("discovery: [ws://127.0.0.1:9]\nservice: web\ndepends_on: [a, {b\n",
     ":", ""),
    ("discovery: [ws://127.0.0.1:9]\n", ":", "service"),
    ("\tnot: yaml\n", ":", ""),
])
def test_bad_yaml_is_a_config_error(tmp_path, text, where, what):
    path = write(str(tmp_path / "bad.yaml"), text)
    with pytest.raises(da.ConfigError) as e:
        da.Agent.load(path)
    assert e.value.message.startswith(path + where), e.value.message
    assert what in e.value.message
    assert e.value.code == -1
    assert e.value.strerror == da.strerror(-1)
    assert isinstance(e.value, ValueError)
    assert e.value.strerror in str(e.value)


def test_missing_yaml_file_a_directory_and_garbage(tmp_path):
    path = str(tmp_path / "absent.yaml")
    with pytest.raises(da.ConfigError) as e:
        da.Agent.load(path)
    assert e.value.message.startswith(path + ":"), e.value.message
    with pytest.raises(da.ConfigError, match="Is a directory"):
        da.Agent.load(tmp_path)          # an os.PathLike
    big = str(tmp_path / "big.yaml")
    with open(big, "wb") as f:
        f.write(os.urandom(2 << 20))
    with pytest.raises(da.ConfigError, match="larger than 1048576 bytes"):
        da.Agent.load(big)
    deep = write(str(tmp_path / "deep.yaml"), "a: " + "[" * 10000 + "\n")
    with pytest.raises(da.ConfigError, match="nested deeper than"):
        da.Agent.load(deep)
    with pytest.raises(ValueError, match="NUL"):
        da.Agent.load(path + "\0x")


def test_calls_after_close_raise(daemon):
    agent = da.Agent(urls=daemon.ws_url, service="web", instance="py-close",
                     depends_on=["cache"], watch=["api"], **FAST)
    until(lambda: agent.linked, "the link")
    agent.close()
    agent.close()                        # twice is once
    assert agent.closed and "closed" in repr(agent)
    calls = [lambda: agent.is_ready("cache"), agent.all_ready,
             lambda: agent.set_ready(True), lambda: agent.set_draining(True),
             lambda: agent.set_load(0.5), lambda: agent.pick("api"),
             lambda: agent.endpoints("api"), agent.info, agent.start,
             lambda: agent.linked, lambda: agent.wait_ready(1),
             lambda: agent.set_log_level("debug"), agent.waiting_for]
    for call in calls:
        with pytest.raises(da.AgentClosedError) as e:
            call()
        assert e.value.code == -3
        assert "the agent is closed" in str(e.value)
    with agent:                          # exits closed, no error
        pass


def test_close_while_other_threads_call(daemon):
    """Threads hammer the readers while close() runs: each call returns
    or raises AgentClosedError; nothing crashes (a use after free would
    take the interpreter with it)."""
    for _ in range(20):
        agent = da.Agent(urls=daemon.ws_url, service="web",
                         instance="py-race", depends_on=["cache"],
                         watch=["api"], **FAST)
        until(lambda: agent.linked, "the link")
        outcomes = {"ok": 0, "closed": 0}
        lock = threading.Lock()

        def hammer():
            while True:
                try:
                    agent.is_ready("cache")
                    agent.endpoints("api")
                    agent.info()
                    try:
                        agent.pick("api")
                    except da.NoEndpointError:
                        pass
                    with lock:
                        outcomes["ok"] += 1
                except da.AgentClosedError:
                    with lock:
                        outcomes["closed"] += 1
                    return
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        agent.close()
        for t in threads:
            t.join(WAIT)
        assert outcomes["closed"] == 4 and outcomes["ok"] > 0


def test_start_twice_is_a_state_error(daemon):
    with da.Agent(urls=daemon.ws_url, service="web", start=False,
                  **FAST) as agent:
        assert not agent.info().started
        agent.start()
        with pytest.raises(da.AgentError) as e:
            agent.start()
        assert e.value.code == -3
        assert str(e.value).startswith("agent_start: ")


def test_wrong_argument_types(daemon):
    url = daemon.ws_url
    bad = [
        (dict(urls=5, service="web"), TypeError, "urls must be a list"),
        (dict(urls=[url, 5], service="web"), TypeError, r"urls\[1\]"),
        (dict(urls=url, service=None), TypeError, "service must be a str"),
        (dict(urls=url, service=b"web"), TypeError, "not bytes"),
        (dict(urls=url, service="web", depends_on="cache"), TypeError,
         "depends_on must be a list of str, not str"),
        (dict(urls=url, service="web", weight="5"), TypeError,
         "weight must be an int"),
        (dict(urls=url, service="web", weight=True), TypeError,
         "weight must be an int"),
        (dict(urls=url, service="web", weight=-1), ValueError,
         "weight must be 0 to"),
        (dict(urls=url, service="web", meta=[1]), TypeError, "meta must"),
        (dict(urls=url, service="we\0b"), ValueError, "NUL"),
        (dict(urls=url, service="web", on_disconnect="drop"), ValueError,
         "'keep' or 'lock'"),
        (dict(urls=url, service="web", log_level="loud"), ValueError,
         "log_level"),
        (dict(urls=url, service="web", on_readiness=5), TypeError,
         "on_readiness must be callable"),
        (dict(urls=url, service="web", loop=5), TypeError,
         "loop must be an asyncio event loop"),
        (dict(urls=url, service="web", watch_depends_on="yes"), TypeError,
         "watch_depends_on must be a bool"),
    ]
    for kwargs, exc, match in bad:
        with pytest.raises(exc, match=match):
            da.Agent(**kwargs, start=False)

    async def coro(service, ready):
        pass
    with pytest.raises(TypeError, match="needs loop="):
        da.Agent(urls=url, service="web", on_readiness=coro, start=False)
    with pytest.raises(TypeError, match="path"):
        da.Agent.load(42)

    # Values of the right type that libagent refuses: its message.
    refused = [
        (dict(urls=url, service="Web!"), "service"),
        (dict(urls="http://x/", service="web"), "ws://"),
        (dict(urls=url, service="web", weight=5000), "weight"),
        (dict(urls=url, service="web", address="nohost"), "address"),
        (dict(urls=[], service="web"), "need at least one URL"),
        (dict(urls=url, service="web", meta="[1]"), "meta"),
    ]
    for kwargs, match in refused:
        with pytest.raises(da.ConfigError) as e:
            da.Agent(**kwargs, start=False)
        assert match in e.value.message, (kwargs, e.value.message)

    with da.Agent(urls=url, service="web", depends_on=["cache"],
                  start=False) as agent:
        with pytest.raises(TypeError, match="service must be a str"):
            agent.is_ready(5)
        with pytest.raises(TypeError, match="ready must be a bool"):
            agent.set_ready("yes")
        with pytest.raises(TypeError, match="ready must be a bool"):
            agent.set_ready(1)
        with pytest.raises(TypeError, match="load must be a number"):
            agent.set_load("0.5")
        for load in (1.5, -0.1, float("nan")):
            with pytest.raises(da.AgentError) as e:
                agent.set_load(load)
            assert e.value.code == -1
            assert str(e.value) == "agent_set_load: %s (code -1)" % \
                da.strerror(-1)
        with pytest.raises(TypeError, match="service must be a str"):
            agent.pick(None)
        with pytest.raises(TypeError, match="timeout"):
            agent.wait_ready("soon")
        with pytest.raises(TypeError):
            da.strerror("x")
        assert da.strerror(-9) and da.strerror(12345) == "unknown error"


def test_interpreter_exit_with_agents_open(daemon):
    """Agents left open (linked, and retrying a dead URL), callbacks
    still arriving: the interpreter exits 0 at once, the atexit handler
    having closed them (the daemon sees the link close)."""
    code = (
        "import sys, time, discovery_agent as d\n"
        "seen = []\n"
        "a = d.Agent(urls=%r, service='web', instance='py-exit',\n"
        "            depends_on=['cache'], on_link=seen.append,\n"
        "            on_log=lambda l, s: seen.append(s))\n"
        "b = d.Agent(urls='ws://127.0.0.1:9/', service='web',\n"
        "            instance='py-dead', backoff_initial_ms=10,\n"
        "            backoff_max_ms=20, on_link=seen.append)\n"
        "while not a.linked: time.sleep(0.01)\n"
        "time.sleep(0.3)\n"
        "print('links', sum(1 for s in seen if getattr(s, 'state', 0) == 2))\n"
        "print('dead', any(getattr(s, 'url', '') == 'ws://127.0.0.1:9/'\n"
        "                  and not s.was_linked for s in seen\n"
        "                  if getattr(s, 'state', 0) == 3))\n"
        "sys.stdout.flush()\n" % daemon.ws_url)
    mark = daemon.mark()
    t0 = time.monotonic()
    out = run_py(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["links", "1", "dead", "True"], out.stdout
    assert time.monotonic() - t0 < 10
    daemon.wait_line(r"msg=\"peer closing\" .*instance=py-exit code=1000",
                     start=mark)


@pytest.mark.parametrize("kwargs,message", [
    (dict(depends_on=["s%d" % i for i in range(65)]), "depends_on: too many"),
    (dict(urls=["ws://h%d/" % i for i in range(17)]), "too many URLs"),
    (dict(tags=["t%d" % i for i in range(33)]), "tags: more than 32"),
    (dict(watch=["w%d" % i for i in range(65)]), "watch: more than 64"),
    (dict(urls="ws://" + "a" * 600 + "/"), "URL longer than 511 bytes"),
    (dict(token="x" * 5000), "token: empty or too long"),
    (dict(instance="a b"), "not a valid instance id"),
    (dict(max_message=10), "max_message must be 1KiB .. 64MiB"),
    (dict(heartbeat_interval_ms=2000, heartbeat_timeout_ms=1000),
     "interval < timeout"),
    (dict(backoff_multiplier=11.0), "multiplier must be 1.0 .. 10.0"),
])
def test_each_limit_past_it_is_libagents_message(kwargs, message):
    kwargs.setdefault("urls", "ws://127.0.0.1:9/")
    with pytest.raises(da.ConfigError) as e:
        da.Agent(service="web", start=False, **kwargs)
    assert message in e.value.message
    # One under the limit is fine.
    for key in ("depends_on", "tags", "watch"):
        if key in kwargs:
            kwargs[key] = kwargs[key][:-1]
            da.Agent(service="web", start=False, **kwargs).close()


def test_agents_made_and_closed_leave_nothing(daemon):
    """50 agents linked and closed, with callbacks: the process has the
    same file descriptors and threads as before, and its memory settles
    (a leak of an agent per cycle would show in each of the three)."""
    def rss_kib():
        with open("/proc/self/status") as f:
            return int([l for l in f if l.startswith("VmRSS:")][0].split()[1])

    def cycle(n):
        for i in range(n):
            with da.Agent(urls=daemon.ws_url, service="web",
                          instance="py-leak", depends_on=["cache"],
                          watch=["api"], on_link=lambda info: None,
                          **FAST) as agent:
                until(lambda: agent.linked, "the link")
    cycle(10)                            # warm up (lws, allocator)
    # What earlier tests in this worker left for the collector (their
    # sockets) must not close under the count.
    gc.collect()
    fds = sorted(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    rss = rss_kib()
    cycle(50)
    gc.collect()
    assert sorted(os.listdir("/proc/self/fd")) == fds
    assert threading.active_count() == threads
    if not PRELOADED:                    # ASan's quarantine keeps memory
        assert rss_kib() - rss < 4096, (rss, rss_kib())


