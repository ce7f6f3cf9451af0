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
# DISCOVERY_TEST_AGENT_LIB: another libagent to test the binding on (a
# sanitized one, with its runtime in LD_PRELOAD: docs/python.md).
LIB = os.environ.get("DISCOVERY_TEST_AGENT_LIB") or os.path.join(
    os.path.dirname(BIN), "lib", "libagent.so.1")

# A sanitized libagent (make SANITIZE=...) cannot be dlopened by an
# uninstrumented python unless the sanitizers' runtimes come first: the
# tests skip in such a process, and test_python_binding_errors runs them
# again in a python with the runtimes in LD_PRELOAD.
SANITIZE = os.environ.get("DISCOVERY_SANITIZE", "")
RUNTIMES = {"address": "libasan.so", "undefined": "libubsan.so"}


def sanitizer_preload():
    """LD_PRELOAD for DISCOVERY_SANITIZE's runtimes (gcc's), or None when
    one is not known (thread, ...) or not found."""
    libs = []
    for s in filter(None, SANITIZE.split(",")):
        if s not in RUNTIMES:
            return None
        path = subprocess.run(["gcc", "-print-file-name=" + RUNTIMES[s]],
                              capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(path):
            return None
        libs.append(path)
    return " ".join(libs)


PRELOADED = bool(SANITIZE) and all(
    RUNTIMES.get(s, "?") in os.environ.get("LD_PRELOAD", "")
    for s in SANITIZE.split(","))
SKIP_SANITIZED = pytest.mark.skipif(
    bool(SANITIZE) and not PRELOADED,
    reason="a sanitized libagent needs its runtime preloaded into python "
           "(test_binding_on_the_sanitized_libagent does it)")

os.environ["DISCOVERY_AGENT_LIB"] = LIB
sys.path.insert(0, BINDING)

import discovery_agent as da  # noqa: E402

__all__ = ["BINDING", "FAST", "LIB", "PRELOADED", "SANITIZE",
           "SKIP_SANITIZED", "Recorder", "da", "readiness", "run_py",
           "sanitizer_preload", "until"]

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
