"""make install puts a usable discovery into a DESTDIR, and uninstall takes
it out again.

One install (PREFIX=/usr/local) into a temporary DESTDIR, then, against that
tree only:

- every file is where the layout says, with its mode, and is the very file
  `make all` built (install rebuilds nothing, and never with other flags);
- libagent.pc works through pkg-config (shared and --static);
- tests/install/example.c, written only against the names man libagent fixes,
  builds with `cc $(pkg-config --cflags --libs libagent)` and statically
  against libagent.a, and both programs run against a real discoveryd: they
  link, and exit 0 once the test declares the cache ready;
- `systemd-analyze verify` passes on the installed units;
- `man -l` renders every installed page without a warning.

Then install/uninstall round trips in their own DESTDIRs: local edits of the
configs survive a second install and an uninstall, which removes everything
else; PREFIX=/usr puts the configs in /etc and the paths in the units follow.
"""

import filecmp
import os
import re
import shutil
import stat
import subprocess

import pytest

from harness import BIN, ROOT, WAIT, Proc, write

SANITIZE = os.environ.get("DISCOVERY_SANITIZE", "")
EXAMPLE = os.path.join(ROOT, "tests", "install", "example.c")

PROGRAMS = {"sbin/discoveryd": "discoveryd",
            "bin/discoveryctl": "discoveryctl",
            "bin/discovery-agent": "discovery-agent",
            "bin/discovery-gate": "discovery-gate"}
LIBS = ["lib/libagent.so.1", "lib/libagent.a"]
MAN_PAGES = ["share/man/man1/discoveryctl.1",
             "share/man/man3/libagent.3",
             "share/man/man5/discoveryd.yaml.5",
             "share/man/man5/discovery-agent.yaml.5",
             "share/man/man5/discovery-gate.yaml.5",
             "share/man/man8/discoveryd.8",
             "share/man/man8/discovery-agent.8",
             "share/man/man8/discovery-gate.8"]
UNITS = ["discoveryd.service", "discovery-agent.service",
         "discovery-gate@.service"]
CONFIGS = ["discoveryd.yaml", "agent.yaml", "gate.yaml", "nginx-gate.conf"]
# Relative to PREFIX (the configs to SYSCONFDIR: PREFIX/etc here).
FILES = dict(
    [(p, 0o755) for p in PROGRAMS] +
    [("lib/libagent.so.1", 0o755), ("lib/libagent.a", 0o644),
     ("lib/pkgconfig/libagent.pc", 0o644),
     ("include/discovery/agent.h", 0o644),
     ("share/bash-completion/completions/discoveryctl", 0o644)] +
    [(p, 0o644) for p in MAN_PAGES] +
    [("lib/systemd/system/" + u, 0o644) for u in UNITS] +
    [("etc/discovery/" + c, 0o644) for c in CONFIGS])


def make_env():
    """The caller's environment for a child make: under `make test` that
    holds the command line's variables (MAKEFLAGS), so install sees the
    flags the tree was built with; the parent's jobserver is not ours."""
    env = dict(os.environ)
    options, sep, variables = env.get("MAKEFLAGS", "").partition(" -- ")
    env["MAKEFLAGS"] = " ".join(
        f for f in options.split(" ")
        if not f.startswith(("--jobserver", "-j"))) + sep + variables
    return env


def run_make(target, destdir, prefix="/usr/local", extra=()):
    argv = ["make", "--no-print-directory", "-C", ROOT, target,
            "DESTDIR=" + destdir, "PREFIX=" + prefix] + list(extra)
    if SANITIZE:
        argv.append("SANITIZE=" + SANITIZE)
    p = subprocess.run(argv, env=make_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    assert p.returncode == 0, "%s failed:\n%s" % (" ".join(argv), p.stdout)
    return p.stdout


def flags_stamp():
    """The build tree's flags stamp: what it was built with, and when."""
    path = os.path.join(os.path.dirname(BIN), ".flags")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read(), os.stat(path).st_mtime_ns


def tree(root):
    """Every file and symlink under root, relative to it."""
    found = set()
    for d, _, files in os.walk(root):
        for name in files:
            found.add(os.path.relpath(os.path.join(d, name), root))
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """make install DESTDIR=<tmp> PREFIX=/usr/local; the DESTDIR."""
    dest = str(tmp_path_factory.mktemp("destdir"))
    before = flags_stamp()
    out = run_make("install", dest)
    assert flags_stamp() == before, \
        "make install rebuilt the tree with other flags:\n" + out
    return dest


def prefix_of(dest):
    return os.path.join(dest, "usr", "local")


def tool(name):
    path = shutil.which(name)
    assert path, "%s is needed for this test (Debian: %s)" % (
        name, {"systemd-analyze": "systemd", "man": "man-db",
               "pkg-config": "pkg-config", "cc": "build-essential"}[name])
    return path


# ---- the layout ------------------------------------------------------------

def test_every_file_is_installed_with_its_mode(installed):
    prefix = prefix_of(installed)
    for rel, mode in FILES.items():
        path = os.path.join(prefix, rel)
        assert os.path.isfile(path), "missing: " + rel
        assert stat.S_IMODE(os.lstat(path).st_mode) == mode, \
            "%s: mode %o, want %o" % (rel, os.lstat(path).st_mode, mode)
    link = os.path.join(prefix, "lib", "libagent.so")
    assert os.readlink(link) == "libagent.so.1"
    # Nothing but the layout, and nothing outside PREFIX.
    assert tree(installed) == {"usr/local/" + f for f in FILES} | \
        {"usr/local/lib/libagent.so"}


def test_installed_files_are_the_ones_built(installed):
    prefix = prefix_of(installed)
    build = os.path.dirname(BIN)
    for rel, name in PROGRAMS.items():
        assert filecmp.cmp(os.path.join(prefix, rel),
                           os.path.join(BIN, name), shallow=False), rel
    for rel in LIBS:
        assert filecmp.cmp(os.path.join(prefix, rel),
                           os.path.join(build, rel), shallow=False), rel
    assert filecmp.cmp(os.path.join(prefix, "include/discovery/agent.h"),
                       os.path.join(ROOT, "agent/include/discovery/agent.h"),
                       shallow=False)


def test_libagent_soname_and_exports(installed):
    so = os.path.join(prefix_of(installed), "lib", "libagent.so.1")
    dyn = subprocess.run(["readelf", "-d", so], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    assert re.search(r"\(SONAME\)\s+Library soname: \[libagent\.so\.1\]", dyn)
    syms = subprocess.run(["nm", "-D", "--defined-only", so],
                          stdout=subprocess.PIPE, text=True,
                          check=True).stdout.split("\n")
    exported = [l.split()[-1] for l in syms if l.strip()]
    assert exported and all(s.startswith("agent_") or s == "LIBAGENT_1"
                            for s in exported), exported


def test_installed_programs_use_the_installed_library(installed):
    prefix = prefix_of(installed)
    for rel in ("bin/discovery-agent", "bin/discovery-gate"):
        out = subprocess.run(["ldd", os.path.join(prefix, rel)],
                             stdout=subprocess.PIPE, text=True,
                             check=True).stdout
        m = re.search(r"libagent\.so\.1 => (\S+)", out)
        assert m and os.path.realpath(m.group(1)) == os.path.realpath(
            os.path.join(prefix, "lib", "libagent.so.1")), out
    for rel, name in PROGRAMS.items():
        p = subprocess.run([os.path.join(prefix, rel), "-V"],
                           stdout=subprocess.PIPE, text=True, timeout=WAIT)
        assert p.returncode == 0 and p.stdout.startswith(name + " "), rel


def test_installed_configs_check_out(installed):
    prefix = prefix_of(installed)
    etc = os.path.join(prefix, "etc", "discovery")
    with open(os.path.join(etc, "discoveryd.yaml")) as f:
        assert re.search(r"^state_dir: /var/lib/discoveryd$", f.read(), re.M)
    for prog, conf in (("sbin/discoveryd", "discoveryd.yaml"),
                       ("bin/discovery-agent", "agent.yaml"),
                       ("bin/discovery-gate", "gate.yaml")):
        p = subprocess.run([os.path.join(prefix, prog), "-t", "-c",
                            os.path.join(etc, conf)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=WAIT)
        assert p.returncode == 0 and "configuration OK" in p.stdout, \
            "%s -t %s: %s" % (prog, conf, p.stdout)


def test_units_start_the_installed_programs(installed):
    units = os.path.join(prefix_of(installed), "lib", "systemd", "system")
    want = {"discoveryd.service":
            "/usr/local/sbin/discoveryd -c "
            "/usr/local/etc/discovery/discoveryd.yaml",
            "discovery-agent.service":
            "/usr/local/bin/discovery-agent -c "
            "/usr/local/etc/discovery/agent.yaml",
            "discovery-gate@.service":
            "/usr/local/bin/discovery-gate -c "
            "/usr/local/etc/discovery/gate-%i.yaml"}
    for unit, cmd in want.items():
        with open(os.path.join(units, unit)) as f:
            text = f.read()
        assert re.search(r"^ExecStart=%s$" % re.escape(cmd), text, re.M), \
            unit
        assert "Type=notify" in text


# ---- pkg-config and a program built against the installed tree -------------

def pkg_config_env(dest):
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = os.path.join(prefix_of(dest), "lib",
                                          "pkgconfig")
    env["PKG_CONFIG_SYSROOT_DIR"] = dest
    return env


def pkg_config(dest, *args):
    p = subprocess.run([tool("pkg-config")] + list(args) + ["libagent"],
                       env=pkg_config_env(dest), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, "pkg-config %s: %s" % (" ".join(args),
                                                     p.stdout)
    return p.stdout.split()


def test_pkg_config(installed):
    prefix = prefix_of(installed)
    flags = pkg_config(installed, "--cflags", "--libs")
    assert "-I" + os.path.join(prefix, "include") in flags
    assert "-L" + os.path.join(prefix, "lib") in flags
    assert "-lagent" in flags
    static = pkg_config(installed, "--static", "--libs")
    for lib in ("-lagent", "-lwebsockets", "-lcjson", "-lyaml", "-lcrypto"):
        assert lib in static, static
    with open(os.path.join(ROOT, "Makefile")) as f:
        version = re.search(r"^VERSION\s*:=\s*(\S+)", f.read(), re.M)
    assert pkg_config(installed, "--modversion") == [version.group(1)]


def compile_example(dest, out, static):
    """cc example.c against the installed tree; shared or static libagent."""
    cflags = pkg_config(dest, "--cflags")
    if static:
        # -l:libagent.a: the archive, although libagent.so sits beside it.
        libs = ["-l:libagent.a" if f == "-lagent" else f
                for f in pkg_config(dest, "--static", "--libs")]
    else:
        libs = pkg_config(dest, "--libs") + [
            "-Wl,-rpath," + os.path.join(prefix_of(dest), "lib")]
    argv = [tool("cc"), "-std=c11", "-Wall", "-Wextra", "-Werror",
            "-pedantic", "-o", out, EXAMPLE] + cflags + libs
    if SANITIZE:  # the installed libagent is the sanitized build's
        argv.insert(1, "-fsanitize=" + SANITIZE)
    p = subprocess.run(argv, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, "%s\n%s" % (" ".join(argv), p.stdout)
    needed = subprocess.run(["readelf", "-d", out], stdout=subprocess.PIPE,
                            text=True, check=True).stdout
    assert ("[libagent.so.1]" in needed) != static, needed
    return out


def test_example_builds_and_runs(installed, daemon, tmp_path):
    programs = {
        "ex-shared": compile_example(installed, str(tmp_path / "ex-shared"),
                                     static=False),
        "ex-static": compile_example(installed, str(tmp_path / "ex-static"),
                                     static=True),
    }
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    procs = {}
    try:
        for instance, exe in programs.items():
            conf = write(str(tmp_path / (instance + ".yaml")),
                         "discovery: [%s]\nservice: example\n"
                         "instance: %s\ndepends_on: [cache]\n"
                         "backoff: { initial: 50ms, max: 500ms }\n" %
                         (daemon.ws_url, instance))
            procs[instance] = Proc([exe, conf, "cache", str(int(WAIT))],
                                   instance, env=env)
        # Both are linked and wait: the cache is not ready yet.
        for instance, p in procs.items():
            p.wait_line(r"^waiting cache=0$")
            daemon.wait_line(r"msg=linked .*service=example instance=%s " %
                             instance)
            assert p.p.poll() is None, p.text()
        status, agents = daemon.call("GET", "/api/discovery/agents")
        assert status == 200
        assert {a["instance"] for a in agents["agents"]
                if a["service"] == "example"} == set(procs)

        status, body = daemon.call("POST", "/api/discovery/cacheready")
        assert status == 200 and body["ready"] is True, body
        for instance, p in procs.items():
            p.wait_line(r"^ready cache=1$")
            assert p.p.wait(WAIT) == 0, p.text()
    finally:
        for p in procs.values():
            p.stop()


# ---- systemd and man ------------------------------------------------------

def test_systemd_analyze_verify(installed, tmp_path):
    """The installed units, with their paths moved into DESTDIR (systemd
    252's --root= wants a whole system under it: sysinit.target, /bin/kill);
    `man` finds the installed pages for Documentation=man:...(8)."""
    prefix = prefix_of(installed)
    units = os.path.join(prefix, "lib", "systemd", "system")
    paths = []
    for unit in UNITS:
        with open(os.path.join(units, unit)) as f:
            text = f.read()
        assert "/usr/local/" in text
        paths.append(write(str(tmp_path / unit),
                           text.replace("/usr/local/", prefix + "/")))
    env = dict(os.environ)
    env["MANPATH"] = os.path.join(prefix, "share", "man")
    p = subprocess.run([tool("systemd-analyze"), "verify"] + paths, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout
    names = ("discoveryd", "discovery-agent", "discovery-gate")
    assert not [l for l in p.stdout.splitlines()
                if any(n in l for n in names)], p.stdout


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders(installed, page):
    path = os.path.join(prefix_of(installed), page)
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat",
               LANG="C.UTF-8")
    p = subprocess.run([tool("man"), "--warnings", "-l", path], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr, p.stderr
    assert "NAME" in p.stdout and "SEE ALSO" in p.stdout


# ---- round trips ---------------------------------------------------------

def test_uninstall_removes_all_but_the_configs(tmp_path):
    dest = str(tmp_path / "destdir")
    run_make("install", dest)
    edited = os.path.join(prefix_of(dest), "etc", "discovery",
                          "discoveryd.yaml")
    with open(edited, "a") as f:
        f.write("# a local edit\n")
    out = run_make("install", dest)
    assert "keeping" in out
    with open(edited) as f:
        assert f.read().endswith("# a local edit\n")

    run_make("uninstall", dest)
    assert tree(dest) == {"usr/local/etc/discovery/" + c for c in CONFIGS}
    with open(edited) as f:
        assert f.read().endswith("# a local edit\n")


def test_prefix_usr_puts_configs_in_etc(tmp_path):
    dest = str(tmp_path / "destdir")
    run_make("install", dest, prefix="/usr")
    for c in CONFIGS:
        assert os.path.isfile(os.path.join(dest, "etc", "discovery", c))
    unit = os.path.join(dest, "usr/lib/systemd/system/discoveryd.service")
    with open(unit) as f:
        assert re.search(r"^ExecStart=/usr/sbin/discoveryd -c "
                         r"/etc/discovery/discoveryd.yaml$", f.read(), re.M)
    with open(os.path.join(dest, "usr/lib/pkgconfig/libagent.pc")) as f:
        pc = f.read()
    assert "prefix=/usr\n" in pc and "libdir=/usr/lib\n" in pc
    run_make("uninstall", dest, prefix="/usr")
    assert tree(dest) == {"etc/discovery/" + c for c in CONFIGS}
    assert not os.path.exists(os.path.join(dest, "usr/include/discovery"))
