"""The adversarial suite (make attack): each case plays an attacker, or a
harsh operator, against the real binaries, and checks that the limit or
the refusal held and that the program is still serving afterwards.

The cases reuse the integration suite's harness (tests/integration): a
discoveryd, a gate, an upstream, all on port 0. One file per surface:
test_gate_*.py for the gate's lock, test_api_*.py for the HTTP API,
test_link_*.py for the agent listener, test_failover_*.py for writes
across crashes and failovers. docs/security.md says what each limit
protects against.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..",
                                "integration"))

from cluster_harness import redis  # noqa: E402,F401 (a fixture)
from harness import Discoveryd  # noqa: E402


@pytest.fixture
def daemon(tmp_path):
    """A discoveryd on free ports; it must stop cleanly (exit 0)."""
    d = Discoveryd(tmp_path)
    yield d
    assert d.stop() == 0, d.text()
