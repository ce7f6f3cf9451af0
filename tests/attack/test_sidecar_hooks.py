"""The sidecar's hooks against a loud hook: one that prints its whole
4 KiB cap gets every byte of it into the log, over several lines when one
cannot hold it, and one that prints more says truncated=true.
"""

import os
import re
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


def healthz(sidecar):
    with urllib.request.urlopen(sidecar.health + "/healthz",
                                timeout=WAIT) as r:
        return r.status


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
