import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cluster_harness import redis  # noqa: E402,F401 (a fixture)
from harness import Discoveryd  # noqa: E402


@pytest.fixture
def daemon(tmp_path):
    """A discoveryd on free ports; it must stop cleanly (exit 0)."""
    d = Discoveryd(tmp_path)
    yield d
    assert d.stop() == 0, d.text()
