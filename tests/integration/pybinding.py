"""What the Python binding's tests share (test_python_binding*.py): the
binding on the path, pointed at the library under test, and a few waits."""

import os
import subprocess
import sys
import threading
import time

import pytest

from harness import BIN, ROOT, WAIT

BINDING = os.path.join(ROOT, "bindings", "python")
LIB = os.path.join(os.path.dirname(BIN), "lib", "libagent.so.1")

# An ASan-built libagent cannot be dlopened by an uninstrumented python
# (the sanitizer runtime must come first): the binding is tested on the
# plain build.
SKIP_SANITIZED = pytest.mark.skipif(
    bool(os.environ.get("DISCOVERY_SANITIZE")),
    reason="a sanitized libagent cannot be loaded into python")

os.environ["DISCOVERY_AGENT_LIB"] = LIB
sys.path.insert(0, BINDING)

import discovery_agent as da  # noqa: E402

__all__ = ["BINDING", "FAST", "LIB", "SKIP_SANITIZED", "Recorder", "da",
           "readiness", "run_py", "until"]

FAST = dict(backoff_initial_ms=50, backoff_max_ms=500,
            heartbeat_interval_ms=500, heartbeat_timeout_ms=1500)


def until(predicate, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Recorder:
    """Callbacks that record (name, args, thread) and can be waited on."""

    def __init__(self):
        self.calls = []
        self.cv = threading.Condition()

    def cb(self, name):
        def record(*args):
            with self.cv:
                self.calls.append((name, args, threading.get_ident()))
                self.cv.notify_all()
        return record

    def wait(self, predicate, what):
        with self.cv:
            assert self.cv.wait_for(lambda: predicate(self.calls), WAIT), \
                "timed out waiting for %s; calls %s" % (what, self.calls)


def readiness(calls):
    return [args for name, args, _ in calls if name == "readiness"]


def run_py(code, **env):
    """code in a fresh interpreter (the library is loaded once per
    process), with the binding on the path and env set."""
    e = dict(os.environ, PYTHONPATH=BINDING, **env)
    return subprocess.run(["/usr/bin/python3", "-c", code], env=e,
                          capture_output=True, text=True, timeout=WAIT)
