"""A webhook's delivering node frozen (SIGSTOP) with failing attempts in
flight, past its lease: another node takes the endpoint over; when the
frozen one runs again (its clocks jumped, its retries long due, answers
waiting in its sockets) it stands by before it starts anything, and never
moves the cursor back (tests/attack/test_webhook_cutoff.py's checks)."""

import os
import signal
import subprocess

from cluster_harness import Cut
from test_webhook_cutoff import cut_off_holder


class Freeze(Cut):
    """Not a cut: the relay finds the node behind its connections, and
    sever/mend stop and continue that process."""

    where = None        # the test's directory: n1's config is in it

    def pid(self):
        conf = os.path.join(self.where, "n1", "discoveryd.yaml")
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if conf.encode() in argv:
                return int(pid)
        raise AssertionError("n1 not found")

    def sever(self):
        self.frozen = self.pid()
        subprocess.run(["kill", "-STOP", str(self.frozen)], check=True)

    def close(self):
        Cut.sever(self)
        self.lsock.close()

    def mend(self):
        subprocess.run(["kill", "-CONT", str(self.frozen)], check=True)


def test_a_frozen_holder_stands_by_when_it_runs_again(tmp_path, redis):
    Freeze.where = str(tmp_path)
    cut_off_holder(tmp_path, redis, Freeze, lambda r: r.sever())
    assert signal.SIGCONT
