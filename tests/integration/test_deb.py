"""make deb builds Debian packages that install, work and go away cleanly.

One `make deb` (DEB_BUILD_OPTIONS=nocheck: `make test` runs the unit suite
on its own) into build/deb, then:

- the build, in a network namespace of its own where one can be made
  (unshare -n: offline): the six packages and the -dbgsym of the five
  compiled ones land in build/deb, none in the tree's parent; `make
  deb-lint` (lintian) passes, and every override says why; each package
  holds exactly its files, its configs as conffiles, no maintainer script
  but debhelper's; the programs and libagent are hardened (Debian's
  flags) and carry no RUNPATH; libagent's exports are the symbols file's,
  and the programs that link it depend on libagent1;
  python3-discovery-agent (Architecture: all) holds the binding's modules
  and dist-info in /usr/lib/python3/dist-packages and nothing else, and
  depends on python3 and libagent1;
- installed with `dpkg -i` on this machine (as root): discoveryd -t passes
  on the installed /etc/discovery/discoveryd.yaml (the sidecar and the gate
  on theirs), the units start the installed programs, discoveryd is
  enabled and the others are not, and nothing starts where systemd does
  not run; tests/install/example.c builds against libagent-dev with
  `pkg-config --cflags --libs libagent` (shared and static) and runs, with
  the installed discovery-agent, against the installed discoveryd;
  /usr/bin/python3 in an empty environment, outside the tree, imports
  the installed discovery_agent, which loads the installed libagent.so.1
  and links the installed discoveryd (readiness both ways);
- a reinstall and `dpkg -r` keep the conffiles (an edit too);
  `dpkg --purge` removes them,
  /etc/discovery and the units' enablement, and leaves no file dpkg -L
  listed (nor the binding's byte-code, compiled on install).

The packages are purged at the end whatever happens (the fixture's
finalizer). The test runs only where it may: as root, with none of the
packages installed, no /etc/discovery and no libagent in /usr/local (a
`make install` there would shadow the packages' library and header), nor
a discovery_agent that python3 would import before the package's (pip's
in /usr/local or root's user site).

Also: `make deb` (and deb-lint) with a tool missing from PATH, or a build
dependency missing from dpkg's database (a copy with debhelper, say, taken
out), fails before building anything, naming the Debian package to install.
"""

import glob
import os
import re
import socket
import subprocess
import time

import pytest

from harness import ROOT, WAIT, Discoveryd, Proc, Sidecar, write

DEB_DIR = os.path.join(ROOT, "build", "deb")
EXAMPLE = os.path.join(ROOT, "tests", "install", "example.c")
PACKAGES = ["discoveryd", "discovery-agent", "discovery-gate", "libagent1",
            "libagent-dev", "python3-discovery-agent"]
ARCH = subprocess.run(["dpkg", "--print-architecture"],
                      stdout=subprocess.PIPE, text=True).stdout.strip()
# Architecture: all (pure Python), no -dbgsym; the others are ARCH's.
ARCH_ALL = ["python3-discovery-agent"]
NO_DBGSYM = ["libagent-dev"] + ARCH_ALL
MULTIARCH = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True).stdout.strip()
LIB = "usr/lib/%s/" % MULTIARCH
UNITS = "lib/systemd/system/"
PY = "usr/lib/python3/dist-packages/"
PY_MODULES = ["__init__.py", "_capi.py", "_gate.py", "_types.py",
              "agent.py", "asgi.py", "errors.py", "wsgi.py"]


def doc(pkg, *extra):
    return ["usr/share/doc/%s/%s" % (pkg, f)
            for f in ("changelog.gz", "copyright") + extra]


# Every file (not directory) of each package, relative to /.
FILES = {
    "discoveryd": [
        "usr/sbin/discoveryd", "usr/bin/discoveryctl",
        "etc/discovery/discoveryd.yaml", UNITS + "discoveryd.service",
        "usr/share/bash-completion/completions/discoveryctl",
        "usr/share/man/man1/discoveryctl.1.gz",
        "usr/share/man/man5/discoveryd.yaml.5.gz",
        "usr/share/man/man8/discoveryd.8.gz"] + doc("discoveryd",
                                                    "README.md.gz"),
    "discovery-agent": [
        "usr/bin/discovery-agent", "etc/discovery/agent.yaml",
        UNITS + "discovery-agent.service",
        "usr/share/man/man5/discovery-agent.yaml.5.gz",
        "usr/share/man/man8/discovery-agent.8.gz"] + doc(
            "discovery-agent", "sidecar.md.gz", "examples/nginx-upstream.sh"),
    "discovery-gate": [
        "usr/bin/discovery-gate", "etc/discovery/gate.yaml",
        "etc/discovery/nginx-gate.conf", UNITS + "discovery-gate@.service",
        "usr/share/man/man5/discovery-gate.yaml.5.gz",
        "usr/share/man/man8/discovery-gate.8.gz"] + doc("discovery-gate",
                                                        "gate.md.gz"),
    "libagent1": [LIB + "libagent.so.1"] + doc("libagent1"),
    "libagent-dev": [
        "usr/include/discovery/agent.h", LIB + "libagent.a",
        LIB + "libagent.so", LIB + "pkgconfig/libagent.pc",
        "usr/share/man/man3/libagent.3.gz"] + doc("libagent-dev"),
    # The wheel's modules and dist-info (as pip would install it), no
    # byte-code (py3compile makes it on install), no tests, no egg-info.
    "python3-discovery-agent": [PY + "discovery_agent/" + m
                                for m in PY_MODULES] +
    [PY + "discovery_agent-0.1.0.dist-info/" + f
     for f in ("METADATA", "RECORD", "WHEEL", "top_level.txt")] + doc(
        "python3-discovery-agent", "python.md.gz", "examples/app.py"),
}
ELVES = ["usr/sbin/discoveryd", "usr/bin/discoveryctl",
         "usr/bin/discovery-agent", "usr/bin/discovery-gate",
         LIB + "libagent.so.1"]
# Where the machine keeps what a package's install may leave behind:
# compared before the install and after the purge.
STATE_PATHS = ["/etc/discovery", "/etc/systemd/system",
               "/var/lib/systemd/deb-systemd-helper-enabled",
               "/var/lib/systemd/deb-systemd-helper-masked",
               "/var/lib/discoveryd", "/var/lib/private/discoveryd",
               "/usr/include/discovery",
               "/" + PY + "discovery_agent",
               "/" + PY + "discovery_agent-0.1.0.dist-info"]
# A `make install` into /usr/local that would win over the packages, and
# a discovery_agent that /usr/bin/python3 would import before theirs
# (pip's, into /usr/local or root's user site).
SHADOWS = ["/usr/local/lib/libagent.so.1", "/usr/local/lib/libagent.so",
           "/usr/local/include/discovery/agent.h",
           "/usr/local/lib/pkgconfig/libagent.pc"]
PY_SHADOWS = ["/usr/local/lib/python3*/dist-packages/discovery_agent",
              os.path.expanduser("~/.local/lib/python3*/site-packages/"
                                 "discovery_agent")]
SYSTEMD_RUNS = os.path.isdir("/run/systemd/system")


def run(argv, timeout=600, env=None, check=True):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, env=env)
    if check:
        assert p.returncode == 0, "%s: exit %d\n%s" % (
            " ".join(argv), p.returncode, p.stdout[-20000:])
    return p


def make_env(**extra):
    """No MAKEFLAGS of `make test`'s: a package is the plain build."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(extra)
    return env


def status(pkg):
    """dpkg's status of pkg: '' when dpkg knows nothing of it."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True)
    return p.stdout.strip() if p.returncode == 0 else ""


def known(pkg):
    """Installed, or removed with its conffiles left (not purged)."""
    s = status(pkg)
    return bool(s) and not s.endswith(" not-installed")


def dpkg(*args):
    """dpkg ARGS; waits for the lock while another dpkg or apt holds it."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + 300
    while True:
        p = run(["dpkg"] + list(args), env=env, check=False)
        if p.returncode == 0 or "lock" not in p.stdout or \
                time.monotonic() > deadline:
            break
        time.sleep(2)
    assert p.returncode == 0, "dpkg %s: exit %d\n%s" % (
        " ".join(args), p.returncode, p.stdout)
    return p.stdout


def snapshot():
    """Every path under STATE_PATHS (with its symlink target)."""
    found = set()
    for top in STATE_PATHS:
        if not os.path.lexists(top):
            continue
        found.add((top, os.readlink(top) if os.path.islink(top) else None))
        for d, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(d, name)
                found.add((path, os.readlink(path)
                           if os.path.islink(path) else None))
    return found


def why_not():
    """Why this machine must not get the packages, or None."""
    if os.geteuid() != 0:
        return "dpkg -i needs root (make test runs as root)"
    if os.environ.get("DISCOVERY_SANITIZE") or \
            os.environ.get("DISCOVERY_TEST_WRAPPER"):
        return "the packages are the plain build: not a sanitizer's run"
    mine = [p for p in PACKAGES if known(p)]
    if mine:
        return "already on this machine (a purge would take them): " + \
            " ".join(mine)
    if os.path.lexists("/etc/discovery"):
        return "/etc/discovery exists: a purge would remove its configs"
    shadows = [p for p in SHADOWS if os.path.lexists(p)]
    if shadows:
        return "a make install in /usr/local shadows the packages (make " \
            "uninstall PREFIX=/usr/local): " + " ".join(shadows)
    shadows = [p for pattern in PY_SHADOWS for p in glob.glob(pattern)]
    if shadows:
        return "python3 would import another discovery_agent than the " \
            "package's (pip uninstall it): " + " ".join(shadows)
    return None


def offline_prefix():
    """unshare -n: a network namespace with no interface up (no route
    anywhere, not even loopback); [] where one cannot be made (a
    container without the right)."""
    p = subprocess.run(["unshare", "-n", "true"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return ["unshare", "-n"] if p.returncode == 0 else []


OFFLINE = offline_prefix()


@pytest.fixture(scope="module")
def debs():
    """make deb, offline where it can be; {package: path of its .deb}."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    t0 = time.monotonic()
    p = run(OFFLINE + ["make", "--no-print-directory", "-C", ROOT, "deb"],
            env=make_env(DEB_BUILD_OPTIONS="nocheck"))
    print("make deb: %.1f s%s" % (time.monotonic() - t0,
                                  ", offline" if OFFLINE else ""))
    version = re.search(r"^VERSION\s*:=\s*(\S+)",
                        open(os.path.join(ROOT, "Makefile")).read(), re.M)
    found = {}
    for pkg in PACKAGES:
        path = os.path.join(DEB_DIR, "%s_%s_%s.deb" % (
            pkg, version.group(1), "all" if pkg in ARCH_ALL else ARCH))
        assert os.path.isfile(path), "no %s in:\n%s" % (path, p.stdout[-4000:])
        found[pkg] = path
    return found


@pytest.fixture(scope="module")
def installed(debs):
    """dpkg -i the six packages; purged again at the end, whatever
    happened. Yields the machine's state before and each package's dpkg -L."""
    before = snapshot()
    port_free = port_is_free(5916)
    try:
        dpkg("-i", *debs.values())
        listed = {pkg: dpkg("-L", pkg).split("\n") for pkg in PACKAGES}
        yield {"before": before, "listed": listed, "port_free": port_free}
    finally:
        left = [p for p in PACKAGES if known(p)]
        if left:
            dpkg("--purge", *left)


def port_is_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def extract(deb, tmp):
    """The package's files (dpkg-deb -x) and control files (-e)."""
    root, ctl = os.path.join(tmp, "root"), os.path.join(tmp, "DEBIAN")
    os.makedirs(tmp, exist_ok=True)
    run(["dpkg-deb", "-x", deb, root])
    run(["dpkg-deb", "-e", deb, ctl])
    return root, ctl


def files_of(root):
    found = set()
    for d, _, files in os.walk(root):
        for name in files:
            found.add(os.path.relpath(os.path.join(d, name), root))
    return found


# ---- the build -------------------------------------------------------------

def test_results_land_in_build_deb(debs):
    names = sorted(os.path.basename(p) for p in
                   glob.glob(os.path.join(DEB_DIR, "*.deb")))
    want = sorted(os.path.basename(debs[p]) for p in PACKAGES) + sorted(
        os.path.basename(debs[p]).replace(p + "_", p + "-dbgsym_")
        for p in PACKAGES if p not in NO_DBGSYM)
    assert names == sorted(want)
    assert glob.glob(os.path.join(DEB_DIR, "discovery_*.changes"))
    assert not os.path.exists(os.path.join(DEB_DIR, "src"))
    parent = os.path.dirname(os.path.abspath(ROOT))
    stray = [f for f in os.listdir(parent)
             if re.match(r"(discovery|libagent|python3-discovery)\S*_.*\."
                         r"(deb|changes|buildinfo)$", f)]
    assert not stray, "dpkg-buildpackage wrote into %s: %s" % (parent, stray)


def test_version_is_the_makefile_s(debs):
    with open(os.path.join(ROOT, "Makefile")) as f:
        version = re.search(r"^VERSION\s*:=\s*(\S+)", f.read(), re.M)
    for pkg, deb in debs.items():
        assert run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip() == \
            version.group(1), pkg


def test_lintian_is_clean(debs):
    p = run(["make", "--no-print-directory", "-C", ROOT, "deb-lint"],
            env=make_env(), timeout=600, check=False)
    assert p.returncode == 0, p.stdout
    tags = [l for l in p.stdout.splitlines() if re.match(r"^[EW]: ", l)]
    assert not tags, "\n".join(tags)
    # An override says why, in a comment right above it.
    for path in glob.glob(os.path.join(ROOT, "debian", "*lintian-overrides")):
        prev = "#"
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    assert prev.startswith("#"), \
                        "%s:%d: override without a comment" % (path, n)
                prev = line


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_holds_its_files(debs, pkg, tmp_path):
    root, ctl = extract(debs[pkg], str(tmp_path))
    assert files_of(root) == set(FILES[pkg])
    etc = sorted("/" + f for f in FILES[pkg] if f.startswith("etc/"))
    conffiles = os.path.join(ctl, "conffiles")
    got = open(conffiles).read().split() if os.path.exists(conffiles) else []
    assert sorted(got) == etc
    # Maintainer scripts: debhelper's sections and nothing else.
    for script in ("preinst", "postinst", "prerm", "postrm", "config"):
        path = os.path.join(ctl, script)
        if not os.path.exists(path):
            continue
        inside = False
        for line in open(path).read().splitlines()[2:]:
            if line.startswith("# Automatically added by dh_"):
                inside = True
            elif line == "# End automatically added section":
                inside = False
            else:
                assert inside or not line.strip(), \
                    "%s %s: not debhelper's: %r" % (pkg, script, line)


def test_programs_are_hardened(debs, tmp_path):
    roots = {}
    for pkg in ("discoveryd", "discovery-agent", "discovery-gate",
                "libagent1"):
        roots[pkg] = extract(debs[pkg], str(tmp_path / pkg))[0]
    for rel in ELVES:
        path = [os.path.join(r, rel) for r in roots.values()
                if os.path.exists(os.path.join(r, rel))][0]
        dyn = run(["readelf", "-dW", path]).stdout
        assert "BIND_NOW" in dyn or re.search(r"FLAGS_1.*\bNOW\b", dyn), rel
        assert "RUNPATH" not in dyn and "RPATH" not in dyn, rel
        assert "GNU_RELRO" in run(["readelf", "-lW", path]).stdout, rel
        imports = run(["nm", "-D", "--undefined-only", path]).stdout
        assert "__stack_chk_fail" in imports, rel
        assert re.search(r"__\w+_chk\b", imports.replace(
            "__stack_chk_fail", "")), rel + ": no _FORTIFY_SOURCE"
        if not rel.endswith(".so.1"):
            assert "DYN (Position-Independent Executable" in \
                run(["readelf", "-h", path]).stdout, rel


def test_libagent_exports_are_the_symbols_file_s(debs, tmp_path):
    root, ctl = extract(debs["libagent1"], str(tmp_path))
    out = run(["nm", "-D", "--defined-only",
               os.path.join(root, LIB, "libagent.so.1")]).stdout
    exported = {l.split()[-1].replace("@@", "@") for l in out.splitlines()
                if l.strip()}
    exported = {s if "@" in s else s + "@" + s for s in exported}
    with open(os.path.join(ROOT, "debian", "libagent1.symbols")) as f:
        listed = {l.split()[0] for l in f if l.startswith(" ")}
    assert exported == listed
    assert all(s.startswith("agent_") or s == "LIBAGENT_1@LIBAGENT_1"
               for s in exported)
    with open(os.path.join(ctl, "symbols")) as f:
        shipped = f.read()
    assert shipped.startswith("libagent.so.1 libagent1 #MINVER#\n")
    for pkg in ("discovery-agent", "discovery-gate"):
        depends = run(["dpkg-deb", "-f", debs[pkg], "Depends"]).stdout
        assert re.search(r"\blibagent1 \(>= [0-9.]+\)", depends), depends
    depends = run(["dpkg-deb", "-f", debs["libagent-dev"], "Depends"]).stdout
    assert re.search(r"\blibagent1 \(= [0-9.]+\)", depends), depends


def test_python_package_is_the_wheel_s(debs, tmp_path):
    deb = debs["python3-discovery-agent"]
    fields = {f: run(["dpkg-deb", "-f", deb, f]).stdout.strip()
              for f in ("Architecture", "Section", "Depends")}
    assert fields["Architecture"] == "all" and fields["Section"] == "python"
    # python3 from dh_python3; libagent1 at least this version (it binds
    # this version's agent_* functions), by soname at run time.
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert "libagent1 (>= 0.1.0)" in depends, depends
    assert any(re.match(r"python3(:any)?( \(>= 3\.\d+\~?\))?$", d)
               for d in depends), depends
    root, _ = extract(deb, str(tmp_path))
    info = os.path.join(root, PY, "discovery_agent-0.1.0.dist-info")
    with open(os.path.join(info, "METADATA")) as f:
        meta = f.read()
    assert re.search(r"^Name: discovery-agent$", meta, re.M), meta
    assert re.search(r"^Version: 0\.1\.0$", meta, re.M), meta
    # The dist-info's RECORD names what the package holds in
    # dist-packages, each with its hash (RECORD itself has none).
    with open(os.path.join(info, "RECORD")) as f:
        record = [l.split(",") for l in f.read().splitlines()]
    shipped = {f[len(PY):] for f in FILES["python3-discovery-agent"]
               if f.startswith(PY)}
    assert {r[0] for r in record} == shipped
    for name, digest, size in record:
        if name.endswith("/RECORD"):
            continue
        assert digest.startswith("sha256=") and \
            int(size) == os.path.getsize(os.path.join(root, PY, name)), name


# ---- make deb without its tools ---------------------------------------------

def path_without(tmp, missing):
    """A PATH directory with every program of the current PATH but the
    ones named (and, for dh, every dh_*)."""
    farm = os.path.join(tmp, "bin")
    os.mkdir(farm)
    for d in os.environ["PATH"].split(":"):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name == missing or (missing == "dh" and
                                   name.startswith("dh_")):
                continue
            dest = os.path.join(farm, name)
            if not os.path.lexists(dest) and \
                    os.access(os.path.join(d, name), os.X_OK):
                os.symlink(os.path.join(d, name), dest)
    return farm


@pytest.mark.parametrize("target,tool,pkg", [
    ("deb", "dh", "debhelper"),
    ("deb", "dpkg-buildpackage", "dpkg-dev"),
    ("deb-lint", "lintian", "lintian"),
])
def test_missing_tool_names_its_package(target, tool, pkg, tmp_path):
    farm = path_without(str(tmp_path), tool)
    stamp = os.path.join(DEB_DIR, ".untouched-%d" % os.getpid())
    os.makedirs(DEB_DIR, exist_ok=True)
    write(stamp, "")
    try:
        p = run(["make", "--no-print-directory", "-C", ROOT, target],
                env=make_env(PATH=farm), check=False, timeout=120)
        assert p.returncode != 0, p.stdout
        assert "make %s: %s not found: it comes with Debian's %s package" \
            % (target, tool, pkg) in p.stdout, p.stdout
        assert re.search(r"apt-get install .*\b%s\b" % re.escape(pkg),
                         p.stdout), p.stdout
        # It stopped before anything: build/deb was not cleared.
        assert os.path.exists(stamp), p.stdout
        assert "dpkg-buildpackage -b" not in p.stdout
    finally:
        if os.path.exists(stamp):
            os.unlink(stamp)


def dpkg_db_without(tmp, packages):
    """A copy of dpkg's database (its status file) with packages taken out:
    to dpkg-checkbuilddeps, a machine without them."""
    admindir = os.path.join(tmp, "dpkg")
    os.mkdir(admindir)
    with open("/var/lib/dpkg/status") as f:
        stanzas = f.read().split("\n\n")
    kept = [st for st in stanzas
            if not any(st.startswith("Package: %s\n" % p) for p in packages)]
    assert len(kept) == len(stanzas) - len(packages)
    write(os.path.join(admindir, "status"), "\n\n".join(kept))
    return admindir


@pytest.mark.parametrize("gone,named", [
    (["debhelper"], "debhelper"),
    (["libwebsockets-dev", "libcmocka-dev"], "libwebsockets-dev libcmocka-dev"),
    (["pybuild-plugin-pyproject"], "pybuild-plugin-pyproject"),
])
def test_missing_build_dependency_names_its_package(gone, named, tmp_path):
    admindir = dpkg_db_without(str(tmp_path), gone)
    stamp = os.path.join(DEB_DIR, ".untouched-%d" % os.getpid())
    os.makedirs(DEB_DIR, exist_ok=True)
    write(stamp, "")
    try:
        p = run(["make", "--no-print-directory", "-C", ROOT, "deb",
                 "DEB_ADMINDIR=" + admindir], env=make_env(), check=False,
                timeout=120)
        assert p.returncode != 0, p.stdout
        assert "dpkg-checkbuilddeps: error: Unmet build dependencies: " in \
            p.stdout, p.stdout
        assert "make deb: install them as root:  apt-get install %s " % \
            named in p.stdout, p.stdout
        assert os.path.exists(stamp), p.stdout
    finally:
        if os.path.exists(stamp):
            os.unlink(stamp)


# ---- installed -------------------------------------------------------------

def test_installed_files_are_listed(installed):
    for pkg in PACKAGES:
        assert status(pkg) == "install ok installed", pkg
        listed = set(installed["listed"][pkg])
        for rel in FILES[pkg]:
            assert "/" + rel in listed, "%s: dpkg -L lacks /%s" % (pkg, rel)
            assert os.path.lexists("/" + rel), rel


def test_installed_configs_check_out(installed):
    with open("/etc/discovery/discoveryd.yaml") as f:
        assert re.search(r"^state_dir: /var/lib/discoveryd$", f.read(), re.M)
    for prog, conf in (("/usr/sbin/discoveryd", "discoveryd.yaml"),
                       ("/usr/bin/discovery-agent", "agent.yaml"),
                       ("/usr/bin/discovery-gate", "gate.yaml")):
        p = run([prog, "-t", "-c", "/etc/discovery/" + conf], timeout=WAIT,
                check=False)
        assert p.returncode == 0 and "configuration OK" in p.stdout, \
            "%s -t: %s" % (prog, p.stdout)
    # The programs find the packaged libagent, not one of a build tree.
    for prog in ("/usr/bin/discovery-agent", "/usr/bin/discovery-gate"):
        m = re.search(r"libagent\.so\.1 => (\S+)", run(["ldd", prog]).stdout)
        assert m and os.path.realpath(m.group(1)) == os.path.realpath(
            "/" + LIB + "libagent.so.1"), prog


def test_units_start_the_installed_programs(installed):
    want = {"discoveryd.service": "/usr/sbin/discoveryd -c "
            "/etc/discovery/discoveryd.yaml",
            "discovery-agent.service": "/usr/bin/discovery-agent -c "
            "/etc/discovery/agent.yaml",
            "discovery-gate@.service": "/usr/bin/discovery-gate -c "
            "/etc/discovery/gate-%i.yaml"}
    for unit, cmd in want.items():
        with open("/" + UNITS + unit) as f:
            text = f.read()
        assert re.search(r"^ExecStart=%s$" % re.escape(cmd), text, re.M), unit
        assert re.search(r"^DynamicUser=yes$", text, re.M), unit
        assert re.search(r"^ConfigurationDirectory=discovery$", text, re.M)
    with open("/" + UNITS + "discoveryd.service") as f:
        assert re.search(r"^StateDirectory=discoveryd$", f.read(), re.M)
    p = run(["systemd-analyze", "verify"] +
            ["/" + UNITS + u for u in ("discoveryd.service",
                                       "discovery-agent.service",
                                       "discovery-gate@.service")],
            check=False, timeout=60)
    assert p.returncode == 0, p.stdout
    assert not [l for l in p.stdout.splitlines() if "discovery" in l], \
        p.stdout


def test_only_discoveryd_is_enabled(installed):
    wants = "/etc/systemd/system/multi-user.target.wants/"
    assert os.readlink(wants + "discoveryd.service") == \
        "/" + UNITS + "discoveryd.service"
    assert not os.path.lexists(wants + "discovery-agent.service")
    if not SYSTEMD_RUNS:
        # deb-systemd-invoke runs only under a running systemd: nothing
        # was started here.
        out = run(["ps", "-eo", "args"]).stdout
        assert not re.search(r"^/usr/sbin/discoveryd ", out, re.M), out
        return
    state = run(["systemctl", "is-active", "discoveryd.service"],
                check=False).stdout.strip()
    if installed["port_free"]:
        assert state == "active", run(["systemctl", "status",
                                       "discoveryd.service"],
                                      check=False).stdout
    assert run(["systemctl", "is-active", "discovery-agent.service"],
               check=False).stdout.strip() == "inactive"


def test_man_pages_and_completion(installed):
    env = dict(os.environ, MANPATH="/usr/share/man")
    for page, sec in (("libagent", "3"), ("discoveryd", "8"),
                      ("discoveryctl", "1"), ("discovery-agent.yaml", "5")):
        p = run(["man", "-w", sec, page], env=env)
        assert p.stdout.strip().startswith("/usr/share/man/man%s/%s." %
                                           (sec, page)), p.stdout
    p = run(["bash", "-c", ". /usr/share/bash-completion/completions/"
             "discoveryctl && complete -p discoveryctl"])
    assert "discoveryctl" in p.stdout


def pkg_config(*args):
    """pkg-config on the system's paths only."""
    p = run(["pkg-config"] + list(args) + ["libagent"])
    return p.stdout.split()


def build_example(out, static):
    cflags = pkg_config("--cflags")
    if static:
        libs = ["-l:libagent.a" if f == "-lagent" else f
                for f in pkg_config("--static", "--libs")]
    else:
        libs = pkg_config("--libs")
    # -H: the headers used, one a line on stderr.
    p = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic",
             "-H", "-o", out, EXAMPLE] + cflags + libs)
    assert re.search(r"^\. /usr/include/discovery/agent\.h$", p.stdout, re.M),\
        p.stdout
    needed = run(["readelf", "-d", out]).stdout
    assert ("[libagent.so.1]" in needed) != static, needed
    if not static:
        m = re.search(r"libagent\.so\.1 => (\S+)", run(["ldd", out]).stdout)
        assert m and os.path.realpath(m.group(1)) == os.path.realpath(
            "/" + LIB + "libagent.so.1")
    return out


def test_example_builds_against_libagent_dev(installed, tmp_path):
    assert pkg_config("--variable=libdir") == ["/usr/lib/" + MULTIARCH]
    assert pkg_config("--variable=includedir") == ["/usr/include"]
    programs = {"ex-shared": build_example(str(tmp_path / "ex-shared"),
                                           static=False),
                "ex-static": build_example(str(tmp_path / "ex-static"),
                                           static=True)}
    # The installed daemon and sidecar, the two programs just built.
    d = Discoveryd(tmp_path, binary="/usr/sbin/discoveryd")
    procs = {}
    try:
        side = Sidecar(tmp_path, d.ws_url, "web", "web-1",
                       depends_on=["cache"], binary="/usr/bin/discovery-agent")
        procs["sidecar"] = side
        for instance, exe in programs.items():
            conf = write(str(tmp_path / (instance + ".yaml")),
                         "discovery: [%s]\nservice: example\n"
                         "instance: %s\ndepends_on: [cache]\n"
                         "backoff: { initial: 50ms, max: 500ms }\n" %
                         (d.ws_url, instance))
            procs[instance] = Proc([exe, conf, "cache", str(int(WAIT))],
                                   instance)
        for instance in programs:
            procs[instance].wait_line(r"^waiting cache=0$")
            d.wait_line(r"msg=linked .*service=example instance=%s " %
                        instance)
        d.wait_line(r"msg=linked .*service=web instance=web-1 ")
        assert side.ready_status() == 503
        status_, body = d.call("POST", "/api/discovery/cacheready")
        assert status_ == 200 and body["ready"] is True, body
        for instance in programs:
            procs[instance].wait_line(r"^ready cache=1$")
            assert procs[instance].p.wait(WAIT) == 0, procs[instance].text()
        deadline = time.monotonic() + WAIT
        while side.ready_status() != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert side.ready_status() == 200, side.text()
    finally:
        for p in procs.values():
            p.stop()
        assert d.stop() == 0, d.text()


# The binding as an application would use it: /usr/bin/python3, nothing of
# the tree's. argv: discoveryd's WebSocket URL, the wait, the tree.
PY_CHECK = r"""
import importlib.metadata, os, sys, time
import discovery_agent as da

url, wait, tree = sys.argv[1], float(sys.argv[2]), sys.argv[3]
print("file", da.__file__, flush=True)
print("env", " ".join(sorted(k for k in os.environ if "DISCOVERY" in k or
                             k.startswith("PYTHON"))) or "-", flush=True)
print("path", " ".join(p for p in sys.path
                       if os.path.abspath(p or ".").startswith(tree)) or "-")
print("dist", importlib.metadata.version("discovery-agent"),
      importlib.metadata.distribution("discovery-agent").locate_file(""))
agent = da.Agent(urls=[url], service="pyapp", instance="py-1",
                 address="127.0.0.1:8080", depends_on=["cache"],
                 backoff_initial_ms=50, backoff_max_ms=500)
print("lib", da.lib_path(), flush=True)
with open("/proc/self/maps") as f:
    maps = {l.split()[-1] for l in f if "libagent" in l}
print("maps", " ".join(sorted(maps)), flush=True)
deadline = time.monotonic() + wait
while not agent.linked and time.monotonic() < deadline:
    time.sleep(0.02)
print("linked", agent.linked, flush=True)
print("waiting cache=%s" % agent.is_ready("cache"), flush=True)
agent.set_ready(True)
print("ready", agent.wait_ready(timeout=wait), agent.is_ready("cache"),
      flush=True)
agent.close()
"""


def test_python_binding_uses_the_installed_libagent(installed, tmp_path):
    # Byte-compiled on install (dh_python3's postinst, py3compile), for
    # the purge to remove (py3clean).
    cache = "/" + PY + "discovery_agent/__pycache__"
    assert any(f.startswith("__init__.cpython-") and f.endswith(".pyc")
               for f in os.listdir(cache)), cache
    d = Discoveryd(tmp_path, binary="/usr/sbin/discoveryd")
    home = str(tmp_path / "home")
    os.mkdir(home)
    # An empty environment (no DISCOVERY_AGENT_LIB, no PYTHONPATH, no
    # LD_LIBRARY_PATH), in a directory outside the tree.
    py = Proc(["env", "-i", "-C", home, "PATH=/usr/bin:/bin",
               "HOME=" + home, "/usr/bin/python3", "-c", PY_CHECK,
               d.ws_url, str(WAIT), ROOT], "python3")
    try:
        assert py.wait_line(r"^file (\S+)$").group(1) == \
            "/" + PY + "discovery_agent/__init__.py"
        assert py.wait_line(r"^env (.*)$").group(1) == "-"
        assert py.wait_line(r"^path (.*)$").group(1) == "-"
        m = py.wait_line(r"^dist (\S+) (\S+)$")
        assert m.groups() == ("0.1.0", "/" + PY.rstrip("/")), m.groups()
        # Loaded by soname through the dynamic loader: libagent1's file.
        assert py.wait_line(r"^lib (\S+)$").group(1) == "libagent.so.1"
        maps = py.wait_line(r"^maps (.*)$").group(1).split()
        assert [os.path.realpath(m) for m in maps] == [os.path.realpath(
            "/" + LIB + "libagent.so.1")], maps
        assert py.wait_line(r"^linked (\S+)$").group(1) == "True", py.text()
        d.wait_line(r"msg=linked .*service=pyapp instance=py-1 ")
        assert py.wait_line(r"^waiting cache=(\S+)$").group(1) == "False"
        # Its readiness reaches discoveryd: the endpoint is ready there.
        deadline = time.monotonic() + WAIT
        while True:
            status_, body = d.call("GET",
                                   "/api/discovery/services/pyapp/endpoints")
            ready = [e["address"] for e in body["endpoints"]] \
                if status_ == 200 else []
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ready == ["127.0.0.1:8080"], (status_, body)
        # And discoveryd's readiness reaches it.
        status_, body = d.call("POST", "/api/discovery/cacheready")
        assert status_ == 200 and body["ready"] is True, body
        assert py.wait_line(r"^ready (\S+) (\S+)$").groups() == \
            ("True", "True"), py.text()
        assert py.p.wait(WAIT) == 0, py.text()
    finally:
        py.stop()
        assert d.stop() == 0, d.text()


# ---- removed and purged ------------------------------------------------------

def test_reinstall_keeps_an_edited_conffile(installed, debs):
    conf = "/etc/discovery/discoveryd.yaml"
    with open(conf, "a") as f:
        f.write("# a local edit\n")
    dpkg("-i", debs["discoveryd"])
    with open(conf) as f:
        assert f.read().endswith("\n# a local edit\n")
    p = run(["/usr/sbin/discoveryd", "-t", "-c", conf], timeout=WAIT)
    assert "configuration OK" in p.stdout


def test_remove_then_purge_leaves_nothing(installed):
    if SYSTEMD_RUNS:
        # The journal lives where systemd put it (StateDirectory, under
        # DynamicUser): the operator's way to drop it before a purge
        # (docs/deployment.md).
        run(["systemctl", "stop", "discoveryd.service"])
        run(["systemctl", "clean", "--what=state", "discoveryd.service"])
    with open("/etc/discovery/discoveryd.yaml") as f:
        conf = f.read()
    dpkg("--remove", *PACKAGES)
    for pkg in PACKAGES:
        confs = [f for f in FILES[pkg] if f.startswith("etc/")]
        if confs:
            assert status(pkg) == "deinstall ok config-files", pkg
        else:
            assert not known(pkg), status(pkg)
        for rel in FILES[pkg]:
            assert os.path.lexists("/" + rel) == rel.startswith("etc/"), rel
    with open("/etc/discovery/discoveryd.yaml") as f:
        assert f.read() == conf
    dpkg("--purge", *PACKAGES)
    for pkg in PACKAGES:
        assert not known(pkg), status(pkg)
    assert not os.path.lexists("/etc/discovery")
    for pkg, listed in installed["listed"].items():
        for path in listed:
            if not path or os.path.isdir(path):
                continue
            assert not os.path.lexists(path), "%s left %s" % (pkg, path)
        assert not os.path.lexists("/usr/share/doc/" + pkg)
    assert snapshot() == installed["before"]
