"""The contract is whole: every config key each program reads is in its
man page, and every close code the daemon or libagent sends is in
docs/protocol.md.

The keys are read from the programs' own key tables (struct conf_key
rows, and the sections they nest), so a key added without its man page
entry fails here."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

TABLE = re.compile(r"(?:static )?const struct conf_key (\w+)\[\] = \{(.*?)\n\};",
                   re.S)
ROW = re.compile(r"\{\s*\.name = \"([a-z_]+)\"(.*?)\}", re.S)
SUB = re.compile(r"\.sub = (\w+)")


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def tables(*sources):
    out = {}
    for src in sources:
        for name, body in TABLE.findall(read(src)):
            out[name] = [(k, (SUB.search(rest) or [None, None])[1])
                         for k, rest in ROW.findall(body)]
    return out


def paths(t, root, prefix=""):
    for key, sub in t[root]:
        if sub:
            yield from paths(t, sub, prefix + key + ".")
        else:
            yield prefix + key


def man_text(page):
    """The page's text with troff's fonts and the spaces .BI puts between
    a key's parts taken out: "services. name .min_ready" reads
    "services.name.min_ready"."""
    text = read("man", page)
    text = re.sub(r"\\f[BIRP]", "", text)
    text = re.sub(r"^\.[A-Z]+ ", "", text, flags=re.M)
    text = text.replace("\\-", "-").replace('"', "")
    return re.sub(r"\s*\.\s*", ".", text)


PROGRAMS = [
    ("discoveryd", ["discoveryd/dconf.c", "discoveryd/dconf_webhook.c"],
     "dconf_keys", "discoveryd.yaml.5"),
    ("discovery-gate", ["agent/gate/gconf.c"], "gate_keys",
     "discovery-gate.yaml.5"),
    ("discovery-agent", ["agent/sidecar/sconf.c"], "sidecar_keys",
     "discovery-agent.yaml.5"),
    # libagent's keys (agent_load's file; the sidecar's and the gate's
    # files hold them too, and their pages point there)
    ("libagent", ["agent/lib/load.c"], "file_keys",
     "discovery-agent.yaml.5"),
]


@pytest.mark.parametrize("prog,sources,root,page", PROGRAMS,
                         ids=[p[0] for p in PROGRAMS])
def test_every_config_key_is_in_the_man_page(prog, sources, root, page):
    t = tables(*sources)
    keys = list(paths(t, root))
    assert len(keys) > 3, keys            # the tables were read at all
    text = man_text(page)
    missing = []
    for k in keys:
        # A map's entries (services.NAME.min_ready) are written with the
        # entry's name in italics: services.name.min_ready.
        spelled = (k, k.replace("services.", "services.name."),
                   k.replace("webhooks.", "webhooks.name."))
        if not any(re.search(r"(?<![\w.])%s(?![\w])" % re.escape(s), text)
                   for s in spelled):
            missing.append(k)
    assert not missing, "%s: not in man/%s: %s" % (prog, page, missing)


def close_codes(*sources):
    codes = set()
    for src in sources:
        text = read(src)
        codes.update(int(c) for c in re.findall(
            r"(?:close_code\s*=\s*|case\s+|close\w*\([^;]*?,\s*)(1\d\d\d)\b",
            text))
        codes.update(int(c) for c in re.findall(
            r"#define\s+\w*CLOSE\w*\s+(1\d\d\d)\b", text))
    return codes


def test_every_close_code_is_in_the_protocol():
    srcs = [os.path.join(d, f) for d in ("discoveryd", "libcommon",
                                         "agent/lib")
            for f in sorted(os.listdir(os.path.join(ROOT, d)))
            if f.endswith((".c", ".h"))]
    codes = close_codes(*srcs)
    assert {1008, 1012}.issubset(codes), codes   # the scan found them
    doc = read("docs", "protocol.md")
    missing = sorted(c for c in codes if not re.search(r"\b%d\b" % c, doc))
    assert not missing, "close codes not in docs/protocol.md: %s" % missing
