"""make SANITIZE=address,undefined test: the Python binding's tests
again, in a python with the sanitizers' runtimes preloaded, on the
sanitized libagent (a memory error in it, or undefined behaviour, aborts
the run). The plain suite skips them in a sanitized run (pybinding.py)."""

import os
import subprocess

import pytest

from harness import ROOT
from pybinding import PRELOADED, SANITIZE, sanitizer_preload


@pytest.mark.skipif(not SANITIZE or PRELOADED,
                    reason="for a sanitized build (make SANITIZE=...)")
def test_binding_on_the_sanitized_libagent():
    preload = sanitizer_preload()
    if preload is None:
        pytest.skip("no preloadable runtime for DISCOVERY_SANITIZE=" +
                    SANITIZE)
    here = os.path.dirname(__file__)
    env = dict(os.environ, LD_PRELOAD=preload,
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    r = subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q",
                        "-p", "no:cacheprovider",
                        os.path.join(here, "test_python_binding.py"),
                        os.path.join(here, "test_python_binding_errors.py")],
                       cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-20000:] + r.stderr[-5000:]
    assert " passed" in r.stdout and "skipped" not in r.stdout.split(
        "\n")[-2], r.stdout[-2000:]
