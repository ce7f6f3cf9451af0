"""The process: systemd readiness, SIGHUP reload, and running out of file
descriptors without a busy loop."""

import os
import socket
import subprocess

from harness import BIN, UPGRADE, Discoveryd, Proc, WAIT, write


def test_sd_notify_ready_after_listeners(tmp_path):
    path = os.path.join(str(tmp_path), "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(WAIT)
    os.environ["NOTIFY_SOCKET"] = path
    os.environ["WATCHDOG_USEC"] = "400000"     # WatchdogSec=400ms
    try:
        d = Discoveryd(tmp_path)
    finally:
        del os.environ["NOTIFY_SOCKET"]
        del os.environ["WATCHDOG_USEC"]
    try:
        # Watchdog pings may come first (the hub's tick runs while the
        # rest starts, slowly under valgrind); READY=1 names the listener.
        msg = sock.recv(4096).decode()
        while msg == "WATCHDOG=1":
            msg = sock.recv(4096).decode()
        assert "READY=1" in msg and d.agents_addr in msg
        seen = set()
        while not {"WATCHDOG=1", "STATUS"} <= seen:
            m = sock.recv(4096).decode()
            seen.add("WATCHDOG=1" if m == "WATCHDOG=1" else m[:6])
        d.kill(15)
        while "STOPPING=1" not in sock.recv(4096).decode():
            pass
    finally:
        assert d.stop() == 0
        sock.close()


def test_sighup_reload(tmp_path):
    d = Discoveryd(tmp_path, extra="services:\n  web: { min_ready: 1 }\n")
    try:
        assert d.call("GET", "/api/discovery/services/web")[1]["min_ready"] == 1
        with open(d.config) as f:
            text = f.read()
        write(d.config, text.replace("min_ready: 1", "min_ready: 3")
              .replace("127.0.0.1:0", "127.0.0.1:1", 1))
        mark = d.mark()
        d.kill(1)
        d.wait_line(r"msg=reloaded", start=mark)
        assert d.count(r"key=listen.http .*needs a restart", mark) == 1
        assert d.call("GET", "/api/discovery/services/web")[1]["min_ready"] == 3
        # A broken file is refused and the daemon keeps its old settings.
        write(d.config, "limits: [\n")
        mark = d.mark()
        d.kill(1)
        d.wait_line(r"msg=\"reload failed\"", start=mark)
        assert d.call("GET", "/healthz")[0] == 200
    finally:
        assert d.stop() == 0


def test_out_of_descriptors(tmp_path):
    """Under a file limit of 256, excess agent links are refused (503 at
    the accept), the HTTP API keeps answering, and the log does not
    flood."""
    cfg = write(os.path.join(str(tmp_path), "d.yaml"),
                "listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }\n"
                "state_dir: %s\nlimits: { max_http: 32 }\n"
                "heartbeat: { hello_timeout: 60s, interval: 10s, timeout: 70s }\n"
                % tmp_path)
    d = Proc(["prlimit", "--nofile=256", os.path.join(BIN, "discoveryd"),
              "-c", cfg], "discoveryd-fdlimit")
    try:
        agents = d.wait_line(r"listener=agents addr=(\S+):(\d+)")
        http = d.wait_line(r"listener=http addr=(\S+)")
        d.wait_line(r"msg=ready")
        socks = []
        for _ in range(400):
            try:
                s = socket.create_connection((agents.group(1),
                                              int(agents.group(2))), 2)
                s.sendall(UPGRADE)
                socks.append(s)
            except OSError:
                break
        # The listener holds what its budget allows (256 - max_http - 64
        # connections); the rest are refused at once, with 503.
        assert len(os.listdir("/proc/%d/fd" % d.p.pid)) <= 256
        assert len(socks) == 400
        refused = 0
        for s in socks[200:]:
            s.settimeout(WAIT)
            try:
                refused += s.recv(64).startswith(b"HTTP/1.1 503")
            except OSError:
                pass
        assert refused == 200
        r = subprocess.run(["curl", "-s", "-m", "5", "http://%s/healthz"
                            % http.group(1)], capture_output=True, text=True)
        assert r.stdout == '{"status":"ok"}'
        r = subprocess.run(["curl", "-s", "-m", "5", "http://%s/metrics"
                            % http.group(1)], capture_output=True, text=True)
        assert 'discovery_accepts_refused_total{reason="listener_full"}' \
            in r.stdout
        assert len(d.lines) < 50, "log flood"
        for s in socks:
            s.close()
    finally:
        assert d.stop() == 0
