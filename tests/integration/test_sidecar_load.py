"""load_command: what it prints, a number from 0 to 1, is this instance's
load in the daemon's endpoints; garbage, a number out of range and a
command that fails are logged and leave the load as it was; a command
that hangs is killed at load_timeout."""

from harness import Sidecar, write
from sidecar_util import by_instance, daemon_endpoints, wait_until


def load(daemon):
    return by_instance(daemon_endpoints(daemon, "api")).get(
        "api-1", {}).get("load")


def test_load_command_reports_and_ignores_bad_output(tmp_path, daemon):
    value = str(tmp_path / "load")
    write(value, "0.25\n")
    s = Sidecar(tmp_path, daemon.ws_url, "api", "api-1",
                extra="address: 127.0.0.1:8080\n"
                      "load_command: cat %s\nload_interval: 100ms\n" % value)
    try:
        wait_until(lambda: load(daemon) == 0.25, what="load 0.25")
        s.wait_line(r"msg=load_check load=0.25")
        for text, reason in (("garbage\n", "not a number"),
                             ("0.5 0.6\n", "not a number"),
                             ("1.5\n", "out of range"),
                             ("-0.1\n", "out of range"),
                             ("nan\n", "not a number"),
                             ("\n", "no output")):
            mark = s.mark()
            write(value, text)
            s.wait_line(r'msg=load_ignored reason="%s' % reason, start=mark)
            # Waited for, not read once: on a loaded machine the link may
            # be relinking, and the instance absent for a moment. A load
            # the bad output had changed would not come back by itself.
            wait_until(lambda: load(daemon) == 0.25, what="0.25 after %r" %
                       text)
            # Between two bad ones, a good one (each reason logs once).
            write(value, "0.25")
            s.wait_line(r"msg=load_check load=0.25", start=mark)
        mark = s.mark()
        write(value, " 0.75 \n")
        wait_until(lambda: load(daemon) == 0.75, what="load 0.75")
        write(value, "")
        import os
        os.unlink(value)  # cat fails
        s.wait_line(r'msg=load_ignored reason="the command failed" '
                    r"status=exit:1", start=mark)
        wait_until(lambda: load(daemon) == 0.75, what="0.75 kept")
    finally:
        assert s.stop() == 0


def test_a_hanging_load_command_is_killed(tmp_path, daemon):
    s = Sidecar(tmp_path, daemon.ws_url, "api", "api-1",
                extra="address: 127.0.0.1:8080\nload_command: sleep 600\n"
                      "load_interval: 100ms\nload_timeout: 200ms\n")
    try:
        s.wait_line(r'msg=load_ignored reason="the command failed" '
                    r"status=timeout")
        assert load(daemon) is None
    finally:
        assert s.stop() == 0
