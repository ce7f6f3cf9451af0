"""The benchmark's report: raw runs in, results.json, REPORT.md and plots out.

    /usr/bin/python3 tests/bench/report.py RAW OUT [--quick]

RAW is what tests/bench/run.sh left: SYSTEM-N.json (loadgen's JSON line),
SYSTEM-N.status and .log for each fan-out run, sustained-SYSTEM-1000.*
(the same, with loadgen's "sustained" object), durable-SYSTEM.json
(tests/bench/durable.sh's line), gate.json (one line per wrk run),
blocking.json (blockgen's JSON line), commands.txt, started, seconds,
loadavg.start and loadavg.end. OUT
gets results.json (an array of {"metric","system","value","unit"}),
REPORT.md (the metric x system table with ratios, the issue's targets met
or missed, the machine, the versions, the commands) and, drawn by gnuplot
with tests/bench/fanout.gp, fanout-last.png and fanout-p50.png.
"""
import json
import os
import re
import subprocess
import sys

SYSTEMS = ["discoveryd", "floor", "socket.io", "fastapi", "lws-minimal",
           "redis", "nats", "mosquitto", "etcd", "discovery-gate", "nginx",
           "haproxy"]
FANOUT_SYSTEMS = SYSTEMS[:8]
SUSTAIN_SYSTEMS = ["discoveryd", "discoveryd-cluster3", "floor", "redis",
                   "nats", "mosquitto"]
DURABLE_SYSTEMS = ["discoveryd", "etcd"]
GATE_SYSTEMS = ["discovery-gate", "nginx", "haproxy"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# (metric, unit, where it comes from, what it means)
METRICS = [
    ("fanout_1k_p50_ms", "ms", (1000, "p50_ms"), "median link, 1k links"),
    ("fanout_1k_p99_ms", "ms", (1000, "p99_ms"), "99th percentile link, 1k"),
    ("fanout_1k_last_ms", "ms", (1000, "last_ms"), "last link, 1k"),
    ("fanout_10k_p50_ms", "ms", (10000, "p50_ms"), "median link, 10k links"),
    ("fanout_10k_p99_ms", "ms", (10000, "p99_ms"), "99th percentile link, 10k"),
    ("fanout_10k_last_ms", "ms", (10000, "last_ms"), "last link, 10k"),
    ("idle_bytes_per_agent_10k", "B", (10000, "bytes_per_link"),
     "server RSS growth / links, after 2 s idle"),
    ("connect_storm_10k_s", "s", (10000, "connect_storm_s"),
     "first connect to last welcome, 10k"),
    ("connect_10k_s", "s", (10000, "connect_storm_s"),
     "the same: linking 10k subscribers (issue 17's name)"),
    ("fanout_10k_worst_ms", "ms", (10000, "worst_last_ms"),
     "last link of the worst round, 10k"),
    ("sustained_1k_closed_deliveries_per_s", "/s",
     ("sustained", "closed_deliveries_per_s"),
     "1k links, 16 publishes in flight"),
    ("sustained_1k_open_deliveries_per_s", "/s",
     ("sustained", "open_deliveries_per_s"),
     "1k links, 64 publishers as fast as answered"),
    ("sustained_1k_p99_ms", "ms", ("sustained", "closed_p99_ms"),
     "per-delivery latency p99, closed loop"),
    ("cpu_us_per_delivery", "µs", ("sustained", "closed_cpu_us_per_delivery"),
     "server utime+stime ÷ deliveries, closed loop"),
    ("durable_writes_per_s_1c", "/s", ("durable", 1), "1 client"),
    ("durable_writes_per_s_8c", "/s", ("durable", 8), "8 clients"),
    ("durable_writes_per_s_64c", "/s", ("durable", 64), "64 clients"),
    ("durable_write_p99_ms_64c", "ms", ("durable", "p99_64"),
     "wrk's p99, 64 clients"),
    ("proxy_rps", "req/s", ("proxy", "rps"),
     "wrk -t2 -c64, small body, median of the rounds"),
    ("proxy_p99_ms", "ms", ("proxy", "p99_ms"),
     "wrk's p99, median of the rounds"),
    ("locked_rps", "req/s", ("locked", "rps"),
     "423 answers, median of the rounds"),
]


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def load_fanout(raw):
    """{(system, n): run} for every run that printed its JSON."""
    runs = {}
    for name in sorted(os.listdir(raw)):
        m = re.fullmatch(r"(.+)-(\d+)\.json", name)
        if not m:
            continue
        text = read(os.path.join(raw, name), "")
        try:
            run = json.loads(text.splitlines()[-1]) if text else None
        except ValueError:
            run = None
        key = (m.group(1), int(m.group(2)))
        status = read(os.path.join(raw, "%s-%s.status" % key), "?")
        runs[key] = {"run": run, "status": status,
                     "log": read(os.path.join(raw, "%s-%s.log" % key), "")}
    return runs


def load_gate(raw):
    """{(system, case): wrk line}."""
    gate = {}
    for line in (read(os.path.join(raw, "gate.json"), "") or "").splitlines():
        try:
            g = json.loads(line)
        except ValueError:
            continue
        gate[(g["system"], g["case"])] = g
    return gate


def gate_note(gate):
    """What the gate rows are: how many rounds, what wrk ran."""
    if not gate:
        return "No gate rows: tests/gate/bench.sh did not run."
    rounds = sorted({g.get("rounds", 1) for g in gate.values()})
    g = gate.get(("discovery-gate", "proxy")) or next(iter(gate.values()))
    return ("The gate rows (proxy_rps, proxy_p99_ms, locked_rps) are each "
            "the median of %s rounds of one wrk run per system, the order "
            "rotated each round (tests/gate/bench.sh): wrk with 2 threads "
            "and 64 connections; the gate with `threads: 2`, HAProxy with "
            "`nbthread 2`, nginx with 2 workers. The gate's: `%s`. Compare "
            "the ratios, not the figures across runs." % (
                "/".join(str(r) for r in rounds), g.get("command", "?")))


def load_blocking(raw):
    """blockgen's line (tests/bench/blocking.sh), or None."""
    text = read(os.path.join(raw, "blocking.json"), "")
    try:
        return json.loads(text.splitlines()[-1]) if text else None
    except ValueError:
        return None


def blocking_results(b):
    whole = b and b["answered"] == b["callers"] * b["rounds"]
    return [{"metric": "blocking_wakeup_1k_ms", "system": "discoveryd",
             "value": b["last_ms_median"] if whole else None, "unit": "ms"},
            {"metric": "blocking_wakeup_1k_p50_ms", "system": "discoveryd",
             "value": b["p50_ms_median"] if whole else None, "unit": "ms"}]


def blocking_section(b):
    if not b:
        return "No run (build/bench/raw/blocking.log says why)."
    return ("tests/bench/blocking.sh: %d callers blocked on one service "
            "(`?index=I&wait=10m`), then one instance reports a new load; "
            "from that write to each caller holding its whole answer. "
            "Median over %d rounds: last caller %.1f ms, median caller "
            "%.1f ms (rounds' last: %s). %d of %d answers carried the new "
            "index. discoveryd ran %d threads with every caller blocked." % (
                b["callers"], b["rounds"], b["last_ms_median"],
                b["p50_ms_median"],
                ", ".join("%.1f" % v for v in b["last_ms"]),
                b["answered"], b["callers"] * b["rounds"],
                b["server_threads"]))


def complete(run):
    """Did every link link, and get every event?"""
    return run and run["welcomed"] == run["links"] and run["missed"] == 0


def load_durable(raw):
    """{system: durable.sh's line}."""
    out = {}
    for system in DURABLE_SYSTEMS:
        text = read(os.path.join(raw, "durable-%s.json" % system), "") or ""
        try:
            out[system] = json.loads(text.splitlines()[-1]) if text else None
        except ValueError:
            out[system] = None
    return out


def durable_value(d, field):
    """A durable figure; None when any write of that run failed."""
    clients, key = (64, "p99_ms") if field == "p99_64" else (field, "rps")
    for r in (d or {}).get("runs", []):
        if r["clients"] == clients:
            return r[key] if not r["non2xx"] and not r["errors"] else None
    return None


def metric_systems(where):
    if isinstance(where, int):
        return FANOUT_SYSTEMS
    return {"sustained": SUSTAIN_SYSTEMS, "durable": DURABLE_SYSTEMS,
            "locked": ["discovery-gate"]}.get(where, GATE_SYSTEMS)


def results(runs, gate, durable):
    out = []
    for metric, unit, (where, field), _ in METRICS:
        for system in metric_systems(where):
            if isinstance(where, int) or where == "sustained":
                key = (system, where) if where != "sustained" else \
                    ("sustained-" + system, 1000)
                r = (runs.get(key) or {}).get("run")
                if where == "sustained":
                    value = (r.get("sustained") or {}).get(field) if r \
                        else None
                else:
                    value = r.get(field) if r else None
                # A storm, memory or sustained figure over part of the
                # links says nothing about all of them.
                if (field in ("connect_storm_s", "bytes_per_link") or
                        where == "sustained") and \
                        r and r["welcomed"] != r["links"]:
                    value = None
            elif where == "durable":
                value = durable_value(durable.get(system), field)
            else:
                g = gate.get((system, where))
                value = g[field] if g else None
            out.append({"metric": metric, "system": system,
                        "value": value, "unit": unit})
    return out


def value(res, metric, system):
    for r in res:
        if r["metric"] == metric and r["system"] == system:
            return r["value"]
    return None


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "B":
        return "{:,.0f} B".format(v)
    if unit in ("req/s", "/s"):
        return "{:,.0f}".format(v)
    return "{:.3g}".format(v) if v < 100 else "{:.0f}".format(v)


def table(res):
    ref = {}
    lines = ["| metric | unit | " + " | ".join(SYSTEMS) + " |",
             "|---|---|" + "---|" * len(SYSTEMS)]
    for metric, unit, (where, _), _ in METRICS:
        base_sys = "discovery-gate" if where in ("proxy", "locked") \
            else "discoveryd"
        base = value(res, metric, base_sys)
        ref[metric] = base_sys
        cells = []
        for system in SYSTEMS:
            v = value(res, metric, system)
            if v is None:
                cells.append("" if not any(
                    r["metric"] == metric and r["system"] == system
                    for r in res) else "—")
                continue
            cell = fmt(v, unit)
            if system != base_sys and base:
                cell += " (×%.2f)" % (v / base)
            cells.append(cell)
        lines.append("| %s | %s | %s |" % (metric, unit, " | ".join(cells)))
    return "\n".join(lines)


def ratio(a, b):
    return a / b if a is not None and b else None


def targets(res):
    d_last = value(res, "fanout_10k_last_ms", "discoveryd")
    rows = [
        ("10k last ≤ 1.5× floor", ratio(d_last, value(
            res, "fanout_10k_last_ms", "floor")), lambda r: r <= 1.5,
         "discoveryd ÷ floor = ×%.2f"),
        ("10k last ≥ 5× faster than socket.io", ratio(value(
            res, "fanout_10k_last_ms", "socket.io"), d_last),
         lambda r: r >= 5, "socket.io ÷ discoveryd = ×%.2f"),
        ("idle ≤ 2 KiB per agent", value(
            res, "idle_bytes_per_agent_10k", "discoveryd"),
         lambda v: v <= 2048, "%.0f B"),
        ("connect storm ≤ 3 s", value(
            res, "connect_storm_10k_s", "discoveryd"),
         lambda v: v <= 3, "%.2f s"),
        ("gate ≥ 0.8× nginx rps", ratio(value(
            res, "proxy_rps", "discovery-gate"), value(
            res, "proxy_rps", "nginx")), lambda r: r >= 0.8,
         "gate ÷ nginx = ×%.2f"),
        ("gate p99 ≤ 1.25× nginx", ratio(value(
            res, "proxy_p99_ms", "discovery-gate"), value(
            res, "proxy_p99_ms", "nginx")), lambda r: r <= 1.25,
         "gate ÷ nginx = ×%.2f"),
    ]
    def v(metric, system="discoveryd"):
        return value(res, metric, system)

    peer_p99 = [x for x in (v("proxy_p99_ms", "nginx"),
                            v("proxy_p99_ms", "haproxy")) if x]

    rows += [
        ("17.1 closed-loop deliveries ≥ Redis", ratio(v(
            "sustained_1k_closed_deliveries_per_s"), v(
            "sustained_1k_closed_deliveries_per_s", "redis")),
         lambda r: r >= 1, "discoveryd ÷ redis = ×%.2f"),
        ("17.1 open-loop deliveries ≥ Redis", ratio(v(
            "sustained_1k_open_deliveries_per_s"), v(
            "sustained_1k_open_deliveries_per_s", "redis")),
         lambda r: r >= 1, "discoveryd ÷ redis = ×%.2f"),
        ("17.1 closed-loop p99 ≤ Redis", ratio(v("sustained_1k_p99_ms"), v(
            "sustained_1k_p99_ms", "redis")), lambda r: r <= 1,
         "discoveryd ÷ redis = ×%.2f"),
        ("17.1 10k last ≤ 1.1× floor", ratio(d_last, v(
            "fanout_10k_last_ms", "floor")), lambda r: r <= 1.1,
         "discoveryd ÷ floor = ×%.2f"),
        ("17 cluster: 3 nodes' closed loop ≥ one node's", ratio(v(
            "sustained_1k_closed_deliveries_per_s", "discoveryd-cluster3"),
            v("sustained_1k_closed_deliveries_per_s")), lambda r: r >= 1,
         "3 nodes ÷ 1 = ×%.2f"),
        ("17 cluster: 3 nodes' open loop ≥ one node's", ratio(v(
            "sustained_1k_open_deliveries_per_s", "discoveryd-cluster3"),
            v("sustained_1k_open_deliveries_per_s")), lambda r: r >= 1,
         "3 nodes ÷ 1 = ×%.2f"),
        ("17.2 CPU per delivery ≤ Redis", ratio(v("cpu_us_per_delivery"), v(
            "cpu_us_per_delivery", "redis")), lambda r: r <= 1,
         "discoveryd ÷ redis = ×%.2f"),
        ("17.3 durable writes, 64 clients ≥ 20,000/s", v(
            "durable_writes_per_s_64c"), lambda x: x >= 20000, "%.0f /s"),
        ("17.3 durable p99, 64 clients ≤ 10 ms", v(
            "durable_write_p99_ms_64c"), lambda x: x <= 10, "%.1f ms"),
        ("17.4 linking 10k ≤ 2× Redis", ratio(v("connect_10k_s"), v(
            "connect_10k_s", "redis")), lambda r: r <= 2,
         "discoveryd ÷ redis = ×%.2f"),
        ("17.5 idle memory ≤ 1.1× lws-minimal", ratio(v(
            "idle_bytes_per_agent_10k"), v(
            "idle_bytes_per_agent_10k", "lws-minimal")), lambda r: r <= 1.1,
         "discoveryd ÷ lws-minimal = ×%.2f"),
        ("17.6 worst of the bursts ≤ 1.5× median", ratio(v(
            "fanout_10k_worst_ms"), d_last), lambda r: r <= 1.5,
         "worst ÷ median = ×%.2f"),
        ("17.7 gate ≥ 1.0× nginx rps", ratio(v(
            "proxy_rps", "discovery-gate"), v("proxy_rps", "nginx")),
         lambda r: r >= 1, "gate ÷ nginx = ×%.2f"),
        ("17.7 gate ≥ 0.9× HAProxy rps", ratio(v(
            "proxy_rps", "discovery-gate"), v("proxy_rps", "haproxy")),
         lambda r: r >= 0.9, "gate ÷ haproxy = ×%.2f"),
        ("17.7 gate p99 ≤ nginx's and HAProxy's", ratio(v(
            "proxy_p99_ms", "discovery-gate"), min(peer_p99) if peer_p99
            else None), lambda r: r <= 1,
         "gate ÷ the lower of the two = ×%.2f"),
    ]
    bound = ratio(value(res, "fanout_10k_last_ms", "socket.io"),
                  value(res, "fanout_10k_last_ms", "floor"))
    lines = ["| target | measured | |", "|---|---|---|"]
    for name, v, ok, form in rows:
        if v is None:
            lines.append("| %s | — | not measured |" % name)
        else:
            lines.append("| %s | %s | **%s** |" % (
                name, form % v, "met" if ok(v) else "missed"))
    if bound:
        lines += ["", "For scale: the floor reaches the last of 10k links "
                  "×%.2f faster than socket.io, so no server on this machine "
                  "can be more than about that much faster than socket.io "
                  "here." % bound]
    return "\n".join(lines)


def sizes_table(runs):
    sizes = sorted({n for (_, n) in runs})
    lines = ["| links | system | p50 ms | p99 ms | last ms | trigger answer ms "
             "| storm s | linked | missed | bytes/link |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        for system in FANOUT_SYSTEMS:
            entry = runs.get((system, n))
            if not entry:
                continue
            r = entry["run"]
            if not r:
                lines.append("| %d | %s | no result (exit %s) |||||||| |" % (
                    n, system, entry["status"]))
                continue
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %d/%d | %d | %s |" % (
                n, system, fmt(r["p50_ms"], "ms"), fmt(r["p99_ms"], "ms"),
                fmt(r["last_ms"], "ms"), fmt(r.get("http_ms"), "ms"),
                fmt(r["connect_storm_s"], "s"), r["welcomed"], r["links"],
                r["missed"], fmt(r.get("bytes_per_link"), "B")))
    return "\n".join(lines)


def sustained_section(runs):
    rows = ["| system | closed /s | closed p50 ms | closed p99 ms | "
            "closed µs CPU | open /s | open µs CPU | publishes closed / open "
            "| given up | errors | linked |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for system in SUSTAIN_SYSTEMS:
        entry = runs.get(("sustained-" + system, 1000))
        r = entry and entry["run"]
        st = r and r.get("sustained")
        if not st:
            rows.append("| %s | no result (exit %s) ||||||||||" % (
                system, entry["status"] if entry else "—"))
            continue
        rows.append("| %s | %s | %s | %s | %s | %s | %s | %d / %d | %d | "
                    "%d | %d/%d |" % (
                        system, fmt(st["closed_deliveries_per_s"], "/s"),
                        fmt(st["closed_p50_ms"], "ms"),
                        fmt(st["closed_p99_ms"], "ms"),
                        fmt(st["closed_cpu_us_per_delivery"], "µs"),
                        fmt(st["open_deliveries_per_s"], "/s"),
                        fmt(st["open_cpu_us_per_delivery"], "µs"),
                        st["closed_publishes"], st["open_publishes"],
                        st["closed_timeouts"],
                        st["closed_errors"] + st["open_errors"],
                        r["welcomed"], r["links"]))
    return "\n".join(rows)


def durable_section(durable):
    rows = ["| system | filesystem | clients | writes/s | p50 ms | p99 ms | "
            "non-2xx | socket errors |", "|---|---|---|---|---|---|---|---|"]
    for system in DURABLE_SYSTEMS:
        d = durable.get(system)
        if not d:
            rows.append("| %s | no result (build/bench/raw/durable-%s.log) "
                        "|||||||" % (system, system))
            continue
        for r in d["runs"]:
            rows.append("| %s | %s | %d | %s | %s | %s | %d | %d |" % (
                system, d["fs"], r["clients"], fmt(r["rps"], "/s"),
                fmt(r["p50_ms"], "ms"), fmt(r["p99_ms"], "ms"),
                r["non2xx"], r["errors"]))
    return "\n".join(rows)


def problems(runs):
    """What went wrong in which run, from its status, JSON and log."""
    out = []
    for (system, n), entry in sorted(runs.items()):
        r, log = entry["run"], entry["log"]
        notes = []
        if entry["status"] == "124":
            notes.append("killed by the run's time limit")
        elif entry["status"] not in ("0", "3"):
            notes.append("exit %s" % entry["status"])
        if r and r["failed"]:
            notes.append("%d of %d links never linked" % (r["failed"], r["links"]))
        if r and r["missed"]:
            notes.append("%d events missed over %d rounds" % (
                r["missed"], r["rounds"]))
        if r and r["closed"]:
            notes.append("%d links closed by the server" % r["closed"])
        st = (r or {}).get("sustained") or {}
        if st.get("closed_timeouts"):
            notes.append("%d closed-loop publishes given up" %
                         st["closed_timeouts"])
        if st.get("closed_errors") or st.get("open_errors"):
            notes.append("%d publishes failed" % (
                st["closed_errors"] + st["open_errors"]))
        if r and r.get("rounds") == 0 and "sustained" not in r:
            notes.append("no sustained result")
        if notes:
            first = [line for line in log.splitlines()
                     if "loadgen[" in line or "fanout:" in line][:3]
            out.append("- %s, %d links: %s.%s" % (
                system, n, "; ".join(notes),
                "".join("\n  `%s`" % line.strip()[:200] for line in first)))
    return "\n".join(out) if out else "None: every link linked and got " \
        "every event."


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=20).stdout.strip() or \
            subprocess.run(cmd, shell=True, capture_output=True, text=True,
                           timeout=20).stderr.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def npm_version(pkg):
    path = os.path.join(ROOT, "build/bench/socketio/node_modules", pkg,
                        "package.json")
    try:
        with open(path) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def py_version(mod):
    return sh("/usr/bin/python3 -c 'import %s; print(%s.__version__)'" % (
        mod, mod))


def machine(raw):
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    cpu = sh("sed -n 's/^model name\\s*: //p' /proc/cpuinfo | head -n 1")
    return [
        ("nproc", sh("nproc")), ("CPU", cpu), ("memory", mem),
        ("kernel", sh("uname -r")),
        ("open files per process", sh("sh -c 'ulimit -Hn'")),
        ("load average at start / end", "%s / %s" % (
            " ".join((read(os.path.join(raw, "loadavg.start"), "?")).split()[:3]),
            " ".join((read(os.path.join(raw, "loadavg.end"), "?")).split()[:3]))),
    ]


def deb(pkg):
    return sh("dpkg-query -W -f='${Version}' %s" % pkg) + " (Debian)"


def versions():
    gcc = sh("gcc --version | head -n 1")
    return [
        ("discoveryd", sh("git -C %s describe --always --dirty" % ROOT)),
        ("gcc", gcc),
        ("libwebsockets", deb("libwebsockets-dev")),
        ("libmicrohttpd", deb("libmicrohttpd-dev")),
        ("node", sh("node --version")),
        ("socket.io / engine.io / ws", "%s / %s / %s" % (
            npm_version("socket.io"), npm_version("engine.io"),
            npm_version("ws"))),
        ("python3", sh("/usr/bin/python3 --version")),
        ("fastapi / starlette", "%s / %s" % (py_version("fastapi"),
                                             py_version("starlette"))),
        ("uvicorn / uvloop / websockets", "%s / %s / %s" % (
            py_version("uvicorn"), py_version("uvloop"),
            py_version("websockets"))),
        ("nginx", sh("nginx -v 2>&1")),
        ("haproxy", deb("haproxy")),
        ("redis-server", deb("redis-server")),
        ("nats-server", deb("nats-server")),
        ("mosquitto", deb("mosquitto")),
        ("etcd", deb("etcd-server")),
        ("wrk", sh("wrk -v 2>&1 | head -n 1")),
        ("gnuplot", sh("gnuplot --version")),
    ]


def plots(runs, out):
    """One data file per system (links, p50, p99, last), then gnuplot."""
    drawn = []
    for system in FANOUT_SYSTEMS:
        rows = sorted((n, e["run"]) for (s, n), e in runs.items()
                      if s == system and e["run"] and e["run"]["last_ms"])
        with open(os.path.join(out, "fanout-%s.dat" % system), "w") as f:
            f.write("# links p50_ms p99_ms last_ms (%s)\n" % system)
            for n, r in rows:
                f.write("%d %.3f %.3f %.3f\n" % (n, r["p50_ms"], r["p99_ms"],
                                                  r["last_ms"]))
        if rows:
            drawn.append(system)
    gp = os.path.join(ROOT, "tests/bench/fanout.gp")
    rc = subprocess.run(["gnuplot", "-e", "dir='%s'; systems='%s'" % (
        out, " ".join(drawn)), gp]).returncode
    return rc == 0


HOW = """\
## How it was measured

One C load generator (tests/bench/loadgen/) drives every fan-out system:
N WebSocket links spread over 2 worker processes and the source
addresses 127.0.0.1–127.0.0.4, on plain epoll, on the same two cores as the
server (so the numbers include the generator's own reading cost; the floor
shows what that leaves). For each size and system a fresh server is
started. The storm is timed from the first connect() to the last link
being welcomed, at most 500 links in their handshake at once: for
discoveryd the `welcome` after `hello`; for socket.io the `40{"sid"}`
answer to the namespace connect; for the floor and FastAPI the 101. Then
the links idle 2 s (answering pings) and the server's VmRSS is read:
idle bytes per agent = (RSS then − RSS before the first link) ÷ links,
user space only (kernel socket buffers are not in it).

Then 1 warm-up round and R measured rounds. A round: every worker clears
its links' timestamps; the parent opens the HTTP connection, takes t0
(CLOCK_MONOTONIC, shared by all processes) just before writing the trigger
request, and each worker stamps a link when the event's last byte has been
read from it; the event is matched to the trigger by the `seq` in the
trigger's answer. A round's p50/p99/last are over the links (nearest
rank); the figures above are medians over the rounds. The triggers:

- discoveryd: `POST /api/discovery/broadcast` with
  `{"command":"Reload","header":{"source":"bench"},"value":{"why":"bench"}}`;
  its event goes out as a discovery.v1 `event` (~190 bytes).
- floor (tests/bench/floor.c): `POST /broadcast` on its second port; it
  frames one event of the same shape once and write()s it to every socket.
- socket.io (tests/bench/peers/socketio/server.js, one Node process,
  websocket transport only): `POST /broadcast` → `io.emit('event', {...})`
  with the same fields. The load generator speaks Engine.IO v4 itself
  (`GET /socket.io/?EIO=4&transport=websocket`, `0{..}` open, `40`
  connect, `40{"sid"}`, pings `2` answered `3`) and stamps the
  `42["event",{...}]` frame like any other.
- fastapi (tests/bench/peers/fastapi/server.py): the seed's
  ConnectionManager on uvicorn (uvloop, websockets), `POST /broadcast` →
  `await manager.broadcast(...)` of the same text.

- lws-minimal (tests/bench/lws_minimal.c): libwebsockets with
  discoveryd's context options and buffer sizes, nothing else; any HTTP
  request on its port broadcasts the same event.
- redis, nats, mosquitto: Debian's servers on a free port with a generated
  configuration and no persistence, spoken to over raw TCP by the same
  load generator (tests/bench/loadgen/tcp.c): Redis pub/sub (SUBSCRIBE,
  linked at the subscribe reply; trigger PUBLISH), NATS (CONNECT, SUB,
  PING, linked at the PONG; trigger PUB then PING), MQTT 3.1.1 (CONNECT,
  SUBSCRIBE at QoS 0, linked at the SUBACK; trigger a QoS 0 PUBLISH then
  PINGREQ). The payload is the floor's event, the seq the publisher's.

The gate rows come from tests/gate/bench.sh: nginx (two workers), HAProxy
(two threads) and discovery-gate (two threads) in front of the same
upstream (an nginx `return 200`), wrk -t2 -c64 (two threads, 64
connections); locked is the gate answering 423 itself. Each figure is the
median of the rounds (3 by default), the systems' order rotated each round.
"""


CLUSTER = "discoveryd-cluster3"


def dns_results(raw):
    """dns_qps and dns_p99_ms from tests/bench/dns.sh's line (raw/dns.json),
    None when it did not run or went wrong."""
    text = read(os.path.join(raw, "dns.json"), "") or ""
    try:
        run = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        run = {}
    if run.get("linked_during") != run.get("links"):
        run = {}  # not measured while every agent was linked
    return [{"metric": "dns_qps", "system": "discoveryd",
             "value": run.get("dns_qps"), "unit": "q/s"},
            {"metric": "dns_p99_ms", "system": "discoveryd",
             "value": run.get("dns_p99_ms"), "unit": "ms"}]


def endpoints_results(runs, raw):
    """endpoints_update_10k_last_ms (fanout.sh discoveryd-endpoints: 10k
    watchers, one instance changes state) and endpoints_update_bytes_1k
    (endpoints_bytes.py), None when they did not run or went wrong."""
    r = (runs.get(("endpoints", 10000)) or {}).get("run")
    text = read(os.path.join(raw, "endpoints_bytes.json"), "") or ""
    try:
        b = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        b = {}
    return [{"metric": "endpoints_update_10k_last_ms", "system": "discoveryd",
             "value": r["last_ms"] if r and complete(r) else None,
             "unit": "ms"},
            {"metric": "endpoints_update_10k_p50_ms", "system": "discoveryd",
             "value": r["p50_ms"] if r and complete(r) else None,
             "unit": "ms"},
            {"metric": "endpoints_update_bytes_1k", "system": "discoveryd",
             "value": b.get("delta_bytes"), "unit": "B"},
            {"metric": "endpoints_full_set_bytes_1k", "system": "discoveryd",
             "value": b.get("full_set_bytes"), "unit": "B"}]


def webhooks_results(raw):
    """webhook_events_per_s and webhook_lag_p99_ms at max_in_flight 1 and
    16 (webhooks.py), None when it did not run or went wrong."""
    text = read(os.path.join(raw, "webhooks.json"), "") or ""
    try:
        w = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        w = {}
    out = []
    for mif in (1, 16):
        out.append({"metric": "webhook_events_per_s_mif%d" % mif,
                    "system": "discoveryd",
                    "value": w.get("webhook_events_per_s_mif%d" % mif),
                    "unit": "events/s"})
        out.append({"metric": "webhook_lag_p99_ms_mif%d" % mif,
                    "system": "discoveryd",
                    "value": w.get("webhook_lag_p99_ms_mif%d" % mif),
                    "unit": "ms"})
    return out


def webhooks_section(res):
    lines = ["## Webhooks", ""]
    rows = [(mif, value(res, "webhook_events_per_s_mif%d" % mif,
                        "discoveryd"),
             value(res, "webhook_lag_p99_ms_mif%d" % mif, "discoveryd"))
            for mif in (1, 16)]
    if all(r[1] is None for r in rows):
        return lines + ["Not measured (build/bench/raw/webhooks.log).", ""]
    lines += ["One endpoint on a local receiver that answers 204 at once, "
              "invalidations posted as fast as the API takes them "
              "(tests/bench/webhooks.py):", "",
              "| max_in_flight | webhook_events_per_s | webhook_lag_p99_ms |",
              "|---|---|---|"]
    for mif, rate, lag in rows:
        lines.append("| %d | %s | %s |" % (mif, fmt(rate, "events/s"),
                                          fmt(lag, "ms")))
    return lines + [""]


def endpoints_section(res):
    last = value(res, "endpoints_update_10k_last_ms", "discoveryd")
    fan = value(res, "fanout_10k_last_ms", "discoveryd")
    delta = value(res, "endpoints_update_bytes_1k", "discoveryd")
    full = value(res, "endpoints_full_set_bytes_1k", "discoveryd")
    lines = ["## Endpoint updates", ""]
    if last is None:
        lines.append("10k watchers: not measured (build/bench/raw/"
                     "endpoints-10000.log).")
    else:
        lines.append(
            "10,000 agents watch service api; its one instance turns not "
            "ready and ready in turn (an agent_probe, its stdin a FIFO), "
            "rounds 100 ms apart so that each change is flushed at once: "
            "the last watcher holds the new set after %s ms (p50 %s ms), "
            "%s the last link of a broadcast in the same run (%s ms; "
            "target: within ×1.2)." % (
                fmt(last, "ms"), fmt(value(
                    res, "endpoints_update_10k_p50_ms", "discoveryd"), "ms"),
                "×%.2f" % (last / fan) if fan else "—", fmt(fan, "ms")))
    lines.append("")
    lines.append(
        "One instance changing state in a service of 1,000 costs each "
        "watcher %s (the whole set is %s; tests/bench/endpoints_bytes.py)." %
        (fmt(delta, "B"), fmt(full, "B")) if delta else
        "Bytes per change: not measured (build/bench/raw/"
        "endpoints_bytes.log).")
    return lines + [""]


def dns_section(res):
    qps = value(res, "dns_qps", "discoveryd")
    p99 = value(res, "dns_p99_ms", "discoveryd")
    if qps is None:
        return ["## DNS", "", "Not measured (build/bench/raw/dns.log).", ""]
    return ["## DNS", "",
            "tests/bench/dns.sh: dnsperf (4 clients, 100 queries in flight) "
            "against listen.dns while 10,000 agents are linked; the mix is "
            "A and SRV of a 20-instance service, NODATA and NXDOMAIN.", "",
            "| metric | value | target |", "|---|---|---|",
            "| dns_qps | {:,.0f} q/s | ≥ 50,000: **{}** |".format(
                qps, "met" if qps >= 50000 else "missed"),
            "| dns_p99_ms | %.3g ms | (at saturation) |" % p99, ""]


def cluster_results(runs):
    """Three nodes over Redis (tests/bench/cluster.sh), as extra rows:
    system discoveryd-cluster3, metrics fanout_10k_* and fanout_30k_*."""
    out = []
    for n, tag in ((10000, "10k"), (30000, "30k")):
        r = (runs.get(("cluster3", n)) or {}).get("run")
        for field, metric, unit in (
                ("p50_ms", "fanout_%s_p50_ms", "ms"),
                ("p99_ms", "fanout_%s_p99_ms", "ms"),
                ("last_ms", "fanout_%s_last_ms", "ms"),
                ("connect_storm_s", "connect_storm_%s_s", "s"),
                ("bytes_per_link", "idle_bytes_per_agent_%s", "B")):
            v = r.get(field) if r and complete(r) else None
            out.append({"metric": metric % tag, "system": CLUSTER,
                        "value": v, "unit": unit})
    return out


def cluster_table(runs):
    rows = ["| links | system | p50 ms | p99 ms | last ms | storm s | "
            "bytes per agent |", "|---|---|---|---|---|---|---|"]
    for n in (10000, 30000):
        for system, label in (("discoveryd", "discoveryd, one node"),
                              ("cluster3", "discoveryd, 3 nodes + Redis")):
            r = (runs.get((system, n)) or {}).get("run")
            if not r:
                continue
            rows.append("| {:,} | {} | {} | {} | {} | {} | {} |".format(
                n, label, fmt(r["p50_ms"], "ms"), fmt(r["p99_ms"], "ms"),
                fmt(r["last_ms"], "ms"), fmt(r["connect_storm_s"], "s"),
                fmt(r["bytes_per_link"], "B")
                + ("" if complete(r) else " (incomplete)")))
    return "\n".join(rows)


def report(raw, out, quick):
    runs = load_fanout(raw)
    gate = load_gate(raw)
    blocking = load_blocking(raw)
    durable = load_durable(raw)
    res = results(runs, gate, durable) + cluster_results(runs) + \
        blocking_results(blocking) + dns_results(raw) + \
        endpoints_results(runs, raw) + webhooks_results(raw)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    plotted = plots(runs, out)
    seconds = read(os.path.join(raw, "seconds"), "?")
    commands = read(os.path.join(raw, "commands.txt"), "")
    md = ["# make bench%s" % (" QUICK=1" if quick else ""), "",
          "Run %s, %s s of benchmarks. The machine is shared with other work "
          "(builds, other benchmarks), so single figures are noisy: compare "
          "the ratios, and repeat before trusting a difference under "
          "about 20 %%." % (read(os.path.join(raw, "started"), "?"), seconds),
          "", "## Results", "",
          "Ratios are this system's value ÷ discoveryd's (fan-out rows) or "
          "discovery-gate's (proxy rows). Fan-out figures: median over the "
          "rounds of each round's p50 / p99 / last link.", "",
          table(res), "", gate_note(gate), "",
          "## The issue's targets (discoveryd, the gate)", "",
          targets(res), "", "## Fan-out by size", "", sizes_table(runs), "",
          "`trigger answer` is when the trigger's HTTP answer arrived.", ""]
    if plotted:
        md += ["![last link](fanout-last.png)", "",
               "![median link](fanout-p50.png)", ""]
    md += ["## Cluster: three nodes over Redis", "",
           "tests/bench/cluster.sh: a redis-server and three discoveryd "
           "nodes (docs/cluster.md), the links spread evenly over the nodes, "
           "the trigger (`POST /api/discovery/broadcast`) sent to the first "
           "node; latency from the trigger to each link holding the event, "
           "whichever node it is on. Bytes per agent sum the three nodes' "
           "RSS. 30,000 links is more than one process can hold here (a "
           "20,000-file limit), so one node has no 30k row. All of it shares "
           "the same 2 cores with the load generator and Redis.", "",
           cluster_table(runs), ""]
    md += ["## Sustained delivery, 1,000 links", "",
           "`fanout.sh SYSTEM 1000 -r 0 -Z SECONDS` (loadgen's sustain.c): "
           "after the storm, a closed loop (16 publishes in flight; the next "
           "once one has reached every link and been answered) and then an "
           "open loop (64 publishers, each sending its next as soon as its "
           "last was answered), each counted at the subscribers over a "
           "fixed window after a 0.5 s warm-up. Latency: each delivery "
           "against the moment before its publish was written. CPU: the "
           "server's utime+stime over the window ÷ the deliveries in it. "
           "`given up`: closed-loop publishes that had not reached every "
           "link after 2 s.", "", sustained_section(runs), ""]
    md += ["## Durable writes", "",
           "tests/bench/durable.sh: wrk, keep-alive, one write in flight per "
           "client; discoveryd `POST /api/discovery/invalidate` with no "
           "agents, etcd `POST /v3/kv/put` (one member); state under "
           "build/bench.", "", durable_section(durable), ""]
    md += ["## Blocking queries", "", blocking_section(blocking), ""]
    md += endpoints_section(res)
    md += webhooks_section(res)
    md += dns_section(res)
    md += ["## Runs that went wrong", "", problems(runs), "", HOW,
           "## Machine", ""]
    md += ["- %s: %s" % kv for kv in machine(raw)]
    md += ["", "## Versions", ""]
    md += ["- %s: %s" % kv for kv in versions()]
    md += ["", "## Commands", "", "From the top of the tree, after "
           "`make all bench-tools`:", "", "```"]
    md += [commands, "/usr/bin/python3 tests/bench/report.py build/bench/raw "
           "build/bench%s" % (" --quick" if quick else ""), "```", ""]
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(md))
    print("bench: wrote %s/results.json, REPORT.md%s" % (
        out, " and the plots" if plotted else " (no plots)"), file=sys.stderr)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    report(args[0], args[1], "--quick" in sys.argv)


if __name__ == "__main__":
    main()
