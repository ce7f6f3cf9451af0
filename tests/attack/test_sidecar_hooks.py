"""The sidecar's hooks against a flood and a loud hook.

A slow hook and a burst of invalidations overflow hooks.queue: what the
queue dropped must end in the on_reset hook running (once, however many
overflows), /ready must say 503 until that reset has succeeded, a reset
that fails or times out is retried, and events that come after the
overflow run after the reset. A hook that prints its whole 4 KiB cap gets
every byte of it into the log, over several lines when one cannot hold
it, and one that prints more says truncated=true.
"""

import json
import os
import re
import time
import urllib.error
import urllib.request

from harness import WAIT, Sidecar, write

FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", '"': b'"', "\\": b"\\"}


def fields(line):
    """A log line's key=value pairs, values as written (quotes kept)."""
    return dict(FIELD.findall(line))


def unquote(value):
    """The bytes a quoted log value stands for (log.c's escapes undone)."""
    if not value.startswith('"'):
        return value.encode()
    s, out, i = value[1:-1], bytearray(), 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif s[i] == "\\":
            out += ESCAPES[s[i + 1]]
            i += 2
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


def script(tmp, name, body):
    path = write(os.path.join(str(tmp), name), "#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def ready(sidecar):
    """GET /ready: (status, body)."""
    try:
        with urllib.request.urlopen(sidecar.health + "/ready",
                                    timeout=WAIT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_ready(sidecar, check, what):
    """Poll /ready until check(status, body) holds (a condition, bounded)."""
    deadline = time.monotonic() + WAIT
    while True:
        status, body = ready(sidecar)
        if check(status, body):
            return status, body
        assert time.monotonic() < deadline, \
            "%s: /ready still %d %r" % (what, status, body)
        time.sleep(0.02)


def healthz(sidecar):
    with urllib.request.urlopen(sidecar.health + "/healthz",
                                timeout=WAIT) as r:
        return r.status


def order(tmp):
    """The runs, in the order they started: ["inv 3", "reset overflow"]."""
    with open(os.path.join(str(tmp), "order")) as f:
        return f.read().split("\n")[:-1]


def wait_order(tmp, entry):
    """Wait until the hook runs wrote entry into the order file."""
    deadline = time.monotonic() + WAIT
    while entry not in order(tmp):
        assert time.monotonic() < deadline, "no %r in %r" % (entry,
                                                             order(tmp))
        time.sleep(0.02)


def invalidate(daemon, key="k"):
    status, body = daemon.call("POST", "/api/discovery/invalidate",
                               {"keys": [key]})
    assert status == 202, body
    return body["seq"]


def held_hook(tmp):
    """An on_invalidate that notes its seq in tmp/order, then holds until
    tmp/release exists."""
    d = str(tmp)
    write(os.path.join(d, "order"), "")
    return script(tmp, "inv.sh",
                  'echo "inv $DISCOVERY_SEQ" >> %s/order\n'
                  'while [ ! -e %s/release ]; do sleep 0.02; done\n'
                  % (d, d))


def hooked_sidecar(tmp, daemon, reset_modes=(), timeout="30s", queue=2):
    """A sidecar with held_hook as on_invalidate, and an on_reset that
    saves its stdin and environment, then does what the next line of
    tmp/reset-modes says: ok, fail (exit 3), block (until
    tmp/reset-release exists) or hang (until killed)."""
    d = str(tmp)
    inv = held_hook(tmp)
    write(os.path.join(d, "reset-modes"), "".join(m + "\n"
                                                  for m in reset_modes))
    reset = script(tmp, "reset.sh",
                   'cd %s\n'
                   'echo "reset $DISCOVERY_REASON" >> order\n'
                   'n=$(wc -l < order)\n'
                   'cat > reset-$n.json\n'
                   'echo "$DISCOVERY_KIND $DISCOVERY_SEQ $DISCOVERY_SERVICE"'
                   ' > reset-$n.env\n'
                   'mode=$(head -n 1 reset-modes)\n'
                   'sed -i 1d reset-modes\n'
                   'case "$mode" in\n'
                   '  fail) exit 3 ;;\n'
                   '  block) while [ ! -e reset-release ]; do sleep 0.02;'
                   ' done ;;\n'
                   '  hang) exec sleep 600 ;;\n'
                   'esac\n' % d)
    return Sidecar(tmp, daemon.ws_url, "web", "web-1",
                   extra="hooks:\n  on_invalidate: %s\n  on_reset: %s\n"
                         "  queue: %d\n  timeout: %s\n"
                         % (inv, reset, queue, timeout))


def reset_input(tmp, entry_index):
    """What the on_reset run at order line entry_index (1-based) got."""
    with open(os.path.join(str(tmp), "reset-%d.json" % entry_index)) as f:
        return json.load(f)


def test_overflow_ends_in_one_reset_and_ready_waits_for_it(daemon, tmp_path):
    a = hooked_sidecar(tmp_path, daemon, reset_modes=["ok", "ok"])
    try:
        a.wait_line(r"msg=linked")
        # The first link is a reset; once it ran, /ready is 200.
        a.wait_line(r"msg=hook hook=on_reset seq=\d+ status=exit:0")
        wait_ready(a, lambda s, b: s == 200, "after the first reset")
        assert order(tmp_path) == ["reset link"]

        mark = a.mark()
        first = invalidate(daemon)
        wait_order(tmp_path, "inv %d" % first)   # running, held
        # Nine more while it is held: with queue 2, three overflows (at the
        # 3rd, 6th and 9th), each dropping what waits; one reset pending.
        seqs = [invalidate(daemon, "k%d" % i) for i in range(9)]
        status, body = wait_ready(
            a, lambda s, b: b.get("hooks", {}).get("dropped") == 9,
            "the burst dropped")
        assert status == 503, body
        assert body["ready"] is False and body["reset_pending"] is True
        assert body["services"] == {} and body["linked"] is True
        assert body["hooks"]["waiting"] == 0
        # Overflows coalesce: one warning, not one per dropped run.
        a.wait_line(r"msg=hook_overflow hook=on_invalidate seq=%d "
                    r"queue=2 reset=pending" % seqs[2], start=mark)
        assert a.count(r"level=warn .*msg=hook_overflow ", mark) == 1

        # An event after the overflow waits behind the reset.
        late = invalidate(daemon, "late")
        wait_ready(a, lambda s, b: b["hooks"]["waiting"] == 1, "late queued")
        assert ready(a)[0] == 503
        write(os.path.join(str(tmp_path), "release"), "")

        a.wait_line(r"msg=hook hook=on_reset seq=%d status=exit:0 .*"
                    r"reason=overflow dropped=9" % seqs[-1], start=mark)
        a.wait_line(r"msg=hook hook=on_invalidate seq=%d status=exit:0"
                    % late, start=mark)
        assert order(tmp_path) == ["reset link", "inv %d" % first,
                                   "reset overflow", "inv %d" % late]
        got = reset_input(tmp_path, 3)
        assert got["kind"] == "reset" and got["reason"] == "overflow"
        assert got["dropped"] == 9 and got["seq"] == seqs[-1]
        assert got["services"] == {} and got["node"] == "test-node"
        with open(os.path.join(str(tmp_path), "reset-3.env")) as f:
            assert f.read().split() == ["reset", str(seqs[-1]), "web"]
        status, body = wait_ready(a, lambda s, b: s == 200, "after the reset")
        assert body["reset_pending"] is False
        assert body["hooks"] == {"waiting": 0, "dropped": 9}
        assert healthz(a) == 200
    finally:
        write(os.path.join(str(tmp_path), "release"), "")
        assert a.stop() == 0


def test_failed_reset_is_retried_and_ready_waits(daemon, tmp_path):
    a = hooked_sidecar(tmp_path, daemon,
                       reset_modes=["ok", "fail", "block"])
    try:
        a.wait_line(r"msg=hook hook=on_reset seq=\d+ status=exit:0")
        wait_ready(a, lambda s, b: s == 200, "after the first reset")
        mark = a.mark()
        first = invalidate(daemon)
        wait_order(tmp_path, "inv %d" % first)
        for i in range(3):
            invalidate(daemon, "k%d" % i)
        wait_ready(a, lambda s, b: b.get("hooks", {}).get("dropped") == 3,
                   "the burst dropped")
        write(os.path.join(str(tmp_path), "release"), "")
        # The reset fails: logged with the delay before the next attempt,
        # and /ready stays 503.
        a.wait_line(r"level=warn .*msg=hook hook=on_reset seq=\d+ "
                    r"status=exit:3 .*reason=overflow dropped=3 "
                    r"retry_ms=\d+", start=mark)
        assert ready(a)[0] == 503
        # The second attempt is held: still 503 while it runs.
        deadline = time.monotonic() + WAIT
        while order(tmp_path).count("reset overflow") < 2:
            assert time.monotonic() < deadline, order(tmp_path)
            time.sleep(0.02)
        status, body = ready(a)
        assert status == 503 and body["reset_pending"] is True
        write(os.path.join(str(tmp_path), "reset-release"), "")
        a.wait_line(r"msg=hook hook=on_reset seq=\d+ status=exit:0 .*"
                    r"reason=overflow dropped=3", start=mark)
        wait_ready(a, lambda s, b: s == 200, "after the retried reset")
        assert healthz(a) == 200
    finally:
        write(os.path.join(str(tmp_path), "release"), "")
        write(os.path.join(str(tmp_path), "reset-release"), "")
        assert a.stop() == 0


def test_reset_that_times_out_is_retried(daemon, tmp_path):
    """The first link's reset hangs past hooks.timeout: killed, retried,
    and /ready is never 200 before a reset succeeded."""
    write(os.path.join(str(tmp_path), "release"), "")
    a = hooked_sidecar(tmp_path, daemon, reset_modes=["hang", "ok"],
                       timeout="1s")
    try:
        a.wait_line(r"msg=hook hook=on_reset seq=\d+ status=timeout .*"
                    r"reason=link dropped=0 retry_ms=\d+")
        # Every answer until the retry succeeds is 503, pending.
        wait_ready(a, lambda s, b: s == 200 or b["reset_pending"] is not True,
                   "the retried reset")
        assert ready(a)[0] == 200
        # 200 only once the retried reset succeeded.
        a.wait_line(r"msg=hook hook=on_reset seq=\d+ status=exit:0 .*"
                    r"reason=link")
        assert order(tmp_path) == ["reset link", "reset link"]
        assert healthz(a) == 200
    finally:
        assert a.stop() == 0


def test_overflow_without_reset_hook_is_logged_once(daemon, tmp_path):
    """No on_reset: nothing can tell the app, so start-up warns, the
    overflow drops only what did not fit and says reset=none, once."""
    d = str(tmp_path)
    a = Sidecar(tmp_path, daemon.ws_url, "web", "web-1",
                extra="hooks:\n  on_invalidate: %s\n  queue: 2\n"
                      % held_hook(tmp_path))
    try:
        a.wait_line(r"level=warn .*msg=no_reset_hook ")
        a.wait_line(r"msg=linked")
        mark = a.mark()
        seqs = [invalidate(daemon)]
        wait_order(tmp_path, "inv %d" % seqs[0])   # running, held
        seqs += [invalidate(daemon, "k%d" % i) for i in range(7)]
        status, body = wait_ready(
            a, lambda s, b: b.get("hooks", {}).get("dropped") == 5,
            "the burst dropped")
        assert status == 200 and body["reset_pending"] is False
        a.wait_line(r"level=warn .*msg=hook_overflow hook=on_invalidate "
                    r"seq=%d queue=2 reset=none" % seqs[3], start=mark)
        assert a.count(r"msg=hook_overflow ", mark) == 1
        write(os.path.join(d, "release"), "")
        for seq in seqs[:3]:
            a.wait_line(r"msg=hook hook=on_invalidate seq=%d status=exit:0"
                        % seq, start=mark)
        assert healthz(a) == 200
    finally:
        write(os.path.join(d, "release"), "")
        assert a.stop() == 0


def hook_output(sidecar, hook, seq, start=0):
    """The output a run logged (every part joined), and its hook line."""
    line = sidecar.wait_line(r"msg=hook hook=%s seq=%d status=" % (hook, seq),
                             start=start).string
    f = fields(line)
    if "output" in f:
        return unquote(f["output"]), f
    parts = int(f["parts"])
    got = []
    for i in range(1, parts + 1):
        m = sidecar.wait_line(r"msg=hook_output run=%s part=%d/%d output="
                              % (f["run"], i, parts), start=start)
        got.append(unquote(fields(m.string)["output"]))
    return b"".join(got), f


def test_hook_output_reaches_the_log_whole(daemon, tmp_path):
    d = str(tmp_path)
    # Every byte value (NUL, controls, quotes, stray UTF-8 bytes), then
    # valid multi-byte UTF-8 that a part must not split.
    blob = bytes(range(256)) * 8 + ("é€😀" * 227 + "€\n\n").encode()
    assert len(blob) == 4096
    with open(os.path.join(d, "blob"), "wb") as f:
        f.write(blob)
    with open(os.path.join(d, "more"), "wb") as f:
        f.write(b"x" * 5000)
    hook = script(tmp_path, "loud.sh",
                  'if [ "$DISCOVERY_COMMAND" = More ]; then cat %s/more;'
                  ' else cat %s/blob; fi\n' % (d, d))
    a = Sidecar(tmp_path, daemon.ws_url, "web", "web-1",
                extra="hooks:\n  on_command: %s\n" % hook)
    try:
        a.wait_line(r"msg=linked")
        mark = a.mark()
        _, body = daemon.call("POST", "/api/discovery/broadcast",
                              {"command": "Blob"})
        got, f = hook_output(a, "on_command", body["seq"], mark)
        assert got == blob
        assert f["output_bytes"] == "4096" and "truncated" not in f
        _, body = daemon.call("POST", "/api/discovery/broadcast",
                              {"command": "More"})
        got, f = hook_output(a, "on_command", body["seq"], mark)
        assert got == b"x" * 4096
        assert f["truncated"] == "true" and f["output_bytes"] == "4096"
        # Every line stays whole: below PIPE_BUF, and under log.c's cap.
        for line in a.lines[mark:]:
            assert len(line.encode()) < 2048, line[:100]
        assert healthz(a) == 200
    finally:
        assert a.stop() == 0
