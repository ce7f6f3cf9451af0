# discovery: one non-recursive Makefile for the whole tree.
#
#   make                 build programs into build/bin, libraries into build/lib
#   make run             install missing Debian packages, build, run discoveryd
#   make test            install missing Debian packages, build, run every suite
#   make SANITIZE=address,undefined test
#   make attack          the adversarial suite (tests/attack)
#
# Sources are found by folder, so adding a module is adding a file:
#   libcommon/*.c        -> build/lib/libcommon.a (no daemon state)
#   discoveryd/*.c       -> build/bin/discoveryd
#   discoveryd/ctl/*.c   -> build/bin/discoveryctl
#   agent/lib/*.c        -> build/lib/libagent.so.1, build/lib/libagent.a
#   agent/sidecar/*.c    -> build/bin/discovery-agent
#   agent/gate/*.c       -> build/bin/discovery-gate
#   tests/unit/test_*.c  -> build/tests/test_*
#   (tests/unit/support/*.c: shared by the test_agent_* tests;
#   test_gate_X.c tests agent/gate/X.c)

comma     := ,
VERSION   := 0.1.0
SOVERSION := 1

CC       ?= cc
# Sanitized builds get a tree of their own, so they never clobber (or get
# mixed with) the plain one.
BUILD    ?= $(if $(SANITIZE),build/san-$(subst $(comma),-,$(SANITIZE)),build)
PREFIX   ?= /usr/local
SANITIZE ?=

PKGS      := libwebsockets libmicrohttpd libcjson yaml-0.1 libcurl openssl libsystemd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Link only what each binary uses (pkg-config per program, not one big list).
LIBS_COMMON := $(shell pkg-config --libs libcjson yaml-0.1 libcrypto 2>/dev/null)
LIBS_LWS    := $(shell pkg-config --libs libwebsockets 2>/dev/null)
LIBS_MHD    := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
LIBS_CURL   := $(shell pkg-config --libs libcurl 2>/dev/null)
LIBS_CMOCKA := $(shell pkg-config --libs cmocka 2>/dev/null)
LIBS_SYSTEMD := $(shell pkg-config --libs libsystemd 2>/dev/null)
LIBS_ZLIB    := $(shell pkg-config --libs zlib 2>/dev/null)
LIBS_HIREDIS := $(shell pkg-config --libs hiredis 2>/dev/null)
LIBS_LDNS    := $(shell pkg-config --libs ldns 2>/dev/null)
# http-parser (nodejs/http-parser 2.9) ships no pkg-config file.
LIBS_HTTP_PARSER := -lhttp_parser

WARN := -Wall -Wextra -Werror -Wstrict-prototypes -Wvla -Wwrite-strings \
        -Wshadow -Wpointer-arith -Wformat=2 -Wmissing-prototypes
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(CFLAGS) \
              -Ilibcommon -Iagent/include $(PKG_CFLAGS) \
              -DDISCOVERY_VERSION='"$(VERSION)"' -MMD -MP
ALL_LDFLAGS := $(LDFLAGS) -pthread
ifneq ($(SANITIZE),)
ALL_CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
ALL_LDFLAGS += -fsanitize=$(SANITIZE)
endif

# A change of flags (say, SANITIZE) rebuilds everything: objects depend on
# a stamp whose content is the flags.
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW   := $(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)
$(shell mkdir -p $(BUILD); \
  [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = "$(FLAGS_NOW)" ] || echo "$(FLAGS_NOW)" > $(FLAGS_STAMP))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_SRC  := $(wildcard libcommon/*.c)
DAEMON_SRC  := $(filter-out discoveryd/main.c,$(wildcard discoveryd/*.c))
CTL_SRC     := $(wildcard discoveryd/ctl/*.c)
AGENT_SRC   := $(wildcard agent/lib/*.c)
SIDECAR_SRC := $(wildcard agent/sidecar/*.c)
GATE_SRC    := $(wildcard agent/gate/*.c)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
# Scripted peers (a fake daemon's socket side) for the test_agent_* tests.
TEST_SUPPORT_SRC := $(wildcard tests/unit/support/*.c)

COMMON_LIB  := $(BUILD)/lib/libcommon.a
DAEMON_LIB  := $(BUILD)/lib/libdiscoveryd.a
AGENT_SO    := $(BUILD)/lib/libagent.so.$(SOVERSION)
AGENT_A     := $(BUILD)/lib/libagent.a
AGENT_MAP   := agent/lib/libagent.map

PROGRAMS    := $(BUILD)/bin/discoveryd $(BUILD)/bin/discoveryctl \
               $(BUILD)/bin/discovery-agent \
               $(if $(GATE_SRC),$(BUILD)/bin/discovery-gate)
UNIT_TESTS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

ALL_OBJ := $(call obj,$(COMMON_SRC) $(DAEMON_SRC) discoveryd/main.c \
             $(CTL_SRC) $(AGENT_SRC) $(SIDECAR_SRC) $(GATE_SRC) $(UNIT_SRC) \
             $(TEST_SUPPORT_SRC))

.PHONY: all run test unit integration integration-valgrind attack deps clean \
        bench fuzz install uninstall format format-check deb deb-lint
.SECONDARY:
all: $(PROGRAMS) $(AGENT_SO) $(AGENT_A)

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(COMMON_LIB): $(call obj,$(COMMON_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The dashboard is one static page, linked into discoveryd as bytes
# (_binary_dashboard_html_start/_end): no build step, no files to install.
DASHBOARD_OBJ := $(BUILD)/obj/dashboard_html.o
$(DASHBOARD_OBJ): discoveryd/web/dashboard.html
	@mkdir -p $(dir $@)
	cd discoveryd/web && $(LD) -r -b binary -z noexecstack \
	  -o $(abspath $@) dashboard.html

# The cluster's Redis script, the same way (_binary_cluster_lua_start/_end).
CLUSTER_LUA_OBJ := $(BUILD)/obj/cluster_lua.o
$(CLUSTER_LUA_OBJ): discoveryd/cluster.lua
	@mkdir -p $(dir $@)
	cd discoveryd && $(LD) -r -b binary -z noexecstack \
	  -o $(abspath $@) cluster.lua

$(DAEMON_LIB): $(call obj,$(DAEMON_SRC)) $(DASHBOARD_OBJ) $(CLUSTER_LUA_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# libagent carries its own copy of the libcommon code it needs; the version
# script keeps everything but agent_* out of the dynamic symbol table.
$(AGENT_SO): $(call obj,$(AGENT_SRC)) $(COMMON_LIB) $(AGENT_MAP)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libagent.so.$(SOVERSION) \
	  -Wl,--version-script=$(AGENT_MAP) -Wl,--no-undefined \
	  -o $@ $(call obj,$(AGENT_SRC)) $(COMMON_LIB) \
	  $(ALL_LDFLAGS) $(LIBS_LWS) $(LIBS_COMMON)
	ln -sf libagent.so.$(SOVERSION) $(BUILD)/lib/libagent.so

# The static library is one relocatable object whose only global symbols
# are agent_*, so a program linking it never collides with our internals.
$(AGENT_A): $(call obj,$(AGENT_SRC)) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(LD) -r -o $(BUILD)/obj/libagent-all.o $(call obj,$(AGENT_SRC)) \
	  --whole-archive $(COMMON_LIB) --no-whole-archive
	objcopy -w --keep-global-symbol='agent_*' $(BUILD)/obj/libagent-all.o
	rm -f $@ && ar rcs $@ $(BUILD)/obj/libagent-all.o

$(BUILD)/bin/discoveryd: $(call obj,discoveryd/main.c) $(DAEMON_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(LIBS_LWS) $(LIBS_MHD) $(LIBS_SYSTEMD) \
	  $(LIBS_HIREDIS) $(LIBS_LDNS) $(LIBS_ZLIB) $(LIBS_CURL) $(LIBS_COMMON)

$(BUILD)/bin/discoveryctl: $(call obj,$(CTL_SRC)) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(LIBS_CURL) $(LIBS_COMMON)

# The sidecar uses libagent's public API only (linked against the shared
# library) and libcommon for its own config keys and logging. AGENT_RPATH
# finds build/lib (and PREFIX/lib once installed); the Debian packages
# (debian/rules) set it empty: there libagent1 is on the system's path.
AGENT_RPATH ?= -Wl,-rpath,'$$ORIGIN/../lib'
$(BUILD)/bin/discovery-agent: $(call obj,$(SIDECAR_SRC)) $(AGENT_SO) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(call obj,$(SIDECAR_SRC)) -L$(BUILD)/lib -lagent \
	  $(AGENT_RPATH) $(COMMON_LIB) \
	  $(ALL_LDFLAGS) $(LIBS_MHD) $(LIBS_SYSTEMD) $(LIBS_COMMON)

# The gate, like the sidecar, uses libagent's public API only.
$(BUILD)/bin/discovery-gate: $(call obj,$(GATE_SRC)) $(AGENT_SO) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $(call obj,$(GATE_SRC)) -L$(BUILD)/lib -lagent \
	  $(AGENT_RPATH) $(COMMON_LIB) \
	  $(ALL_LDFLAGS) $(LIBS_HTTP_PARSER) $(LIBS_COMMON)

# Unit tests link libcommon. The daemon's module tests (test_registry,
# test_d_*) also link the daemon's modules (everything but main); libagent's
# internal tests (test_agent_*) link libagent's objects; a gate module's
# test (test_gate_X) links that module (agent/gate/X.c) and buf.c.
DAEMON_LIB_OBJ = $(if $(filter test_registry test_d_%,$*),$(DAEMON_LIB))
AGENT_OBJ      = $(if $(filter test_agent_%,$*),$(call obj,$(AGENT_SRC) \
                   $(TEST_SUPPORT_SRC)))
GATE_OBJ       = $(if $(filter test_gate_%,$*),$(call obj,\
                   agent/gate/$(*:test_gate_%=%).c agent/gate/buf.c))
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(COMMON_LIB) $(DAEMON_LIB) \
		  $(call obj,$(AGENT_SRC) $(TEST_SUPPORT_SRC) $(GATE_SRC))
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(DAEMON_LIB_OBJ) $(AGENT_OBJ) $(GATE_OBJ) $(COMMON_LIB) \
	  $(ALL_LDFLAGS) $(LIBS_CMOCKA) $(LIBS_LWS) $(LIBS_MHD) $(LIBS_HIREDIS) \
	  $(LIBS_LDNS) $(LIBS_ZLIB) $(LIBS_CURL) $(LIBS_COMMON)

# Test tools are written against the public agent.h, like any program.
TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tests/tools/%,$(wildcard tests/tools/*.c))
$(BUILD)/tests/tools/%: tests/tools/%.c $(AGENT_SO)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -L$(BUILD)/lib -lagent \
	  -Wl,-rpath,'$$ORIGIN/../../lib' $(ALL_LDFLAGS)

# ---- running -----------------------------------------------------------

# Debian packages the build, the tests and `make run` need.
DEB_PKGS := build-essential pkg-config libwebsockets-dev libmicrohttpd-dev \
            libcjson-dev libyaml-dev libssl-dev libcurl4-openssl-dev \
            libcmocka-dev libsystemd-dev zlib1g-dev python3 python3-pytest \
            python3-websockets python3-prometheus-client curl openssl \
            nginx-light chromium wrk man-db systemd libhiredis-dev \
            redis-server redis-sentinel libhttp-parser-dev libldns-dev \
            bind9-dnsutils haproxy jq dpkg-dev debhelper lintian \
            prometheus python3-yaml python3-pytest-xdist python3-setuptools \
            python3-wheel python3-venv python3-pip dh-python \
            pybuild-plugin-pyproject python3-all

deps:
	@sh tests/install-deps.sh $(DEB_PKGS)

run: deps
	@$(MAKE) --no-print-directory all
	exec $(BUILD)/bin/discoveryd -c conf/discoveryd.yaml

unit: $(UNIT_TESTS)
	@sh tests/run-unit.sh $(UNIT_TESTS)

# The Python suites run on PYTEST_JOBS workers (pytest-xdist): every test
# has its own ports, directories and processes. test_deb.py, which installs
# the packages on the machine (libagent in the system's library path),
# runs alone after the rest. Under a sanitizer (SANITIZE=...) the daemon
# runs several times slower, two at a time, and a test that waits on a
# timing (a heartbeat, a Redis call's deadline) can lose once: as under
# valgrind below, the tests that failed run again, once, alone, and must
# pass then. A sanitizer's report fails every run.
PYTEST_JOBS ?= 2
PYTEST      := /usr/bin/python3 -m pytest -q -n $(PYTEST_JOBS)
TEST_ENV     = DISCOVERY_BIN=$(abspath $(BUILD)/bin) DISCOVERY_SANITIZE=$(SANITIZE)
PYTEST_LF    = $(if $(SANITIZE),|| $(TEST_ENV) /usr/bin/python3 -m pytest -q --lf $(1))
integration: all $(TOOLS)
	$(TEST_ENV) $(PYTEST) --ignore=tests/integration/test_deb.py \
	  tests/integration $(call PYTEST_LF,--ignore=tests/integration/test_deb.py \
	  tests/integration)
	$(TEST_ENV) /usr/bin/python3 -m pytest -q tests/integration/test_deb.py

# The integration suite with discoveryd under valgrind memcheck: no errors,
# no definite leaks (each test checks the daemon's exit status).
# Under valgrind the daemon runs many times slower, and a test that waits on
# a timing (a heartbeat, a race between two sockets) can lose once: the
# tests that failed run again, once, and must pass then. A memcheck error
# makes the daemon exit 99, which fails every run.
VALGRIND_ENV := DISCOVERY_TEST_WAIT=60 DISCOVERY_TEST_WRAPPER="valgrind -q \
	  --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
integration-valgrind: all $(TOOLS)
	$(VALGRIND_ENV) $(PYTEST) tests/integration || \
	  $(VALGRIND_ENV) /usr/bin/python3 -m pytest -q --lf tests/integration

# The adversarial suite (tests/attack): attackers and harsh operators
# against the real binaries; SANITIZE=... runs it on the sanitized build.
attack: deps
	@$(MAKE) --no-print-directory all $(TOOLS)
	$(TEST_ENV) $(PYTEST) tests/attack $(call PYTEST_LF,tests/attack)

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_TESTS) $(TOOLS)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

# ---- benchmarks --------------------------------------------------------

# make bench [QUICK=1]: fan-out from discoveryd, the floor, socket.io,
# FastAPI, a minimal libwebsockets server, Redis, NATS and mosquitto to
# 100..10k links, memory and the connect storm, sustained delivery to 1k,
# durable writes against etcd, and the gate against nginx and HAProxy, in
# one run
# (tests/bench/run.sh, docs/bench.md). Writes build/bench/results.json,
# REPORT.md and the PNG plots. The load generator and the floor are
# measuring instruments: plain C, no library but libcrypto's SHA-1 for the
# floor's handshake; lws_minimal links libwebsockets as discoveryd does.
# Always the plain build/.
BENCH          := build/bench
BENCH_DEB_PKGS := gnuplot-nox nginx wrk python3-fastapi python3-uvicorn \
                  python3-uvloop python3-websockets libssl-dev dnsperf \
                  bind9-dnsutils redis-server nats-server mosquitto \
                  etcd-server curl haproxy
BENCH_NODE      = $(if $(shell command -v node),,nodejs) \
                  $(if $(shell command -v npm),,npm)
LOADGEN_SRC    := $(wildcard tests/bench/loadgen/*.c)
SOCKETIO_PEER  := tests/bench/peers/socketio

$(BENCH)/loadgen: $(LOADGEN_SRC) tests/bench/loadgen/loadgen.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -o $@ $(LOADGEN_SRC)

$(BENCH)/blockgen: tests/bench/blockgen.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -o $@ $<

$(BENCH)/floor: tests/bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -o $@ $< \
	  $(shell pkg-config --cflags --libs libcrypto)

$(BENCH)/lws_minimal: tests/bench/lws_minimal.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -o $@ $< \
	  $(shell pkg-config --cflags --libs libwebsockets)

# socket.io from npm, as package-lock.json pins it.
$(BENCH)/socketio/.installed: $(SOCKETIO_PEER)/package.json \
                              $(SOCKETIO_PEER)/package-lock.json
	@mkdir -p $(dir $@)
	cp $^ $(dir $@)
	cd $(dir $@) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: bench-tools
bench-tools: $(BENCH)/loadgen $(BENCH)/floor $(BENCH)/blockgen \
             $(BENCH)/lws_minimal $(BENCH)/socketio/.installed

bench:
	@sh tests/install-deps.sh $(BENCH_DEB_PKGS) $(BENCH_NODE)
	@$(MAKE) --no-print-directory all bench-tools
	QUICK=$(QUICK) sh tests/bench/run.sh

# The C sources in the style of .clang-format (docs/design.md, "Code
# conventions"): `make format` rewrites them, `make format-check` (which
# .ci/run runs) fails on any file that differs. Key tables sit between
# clang-format off/on comments: their rows are laid out by hand.
FORMAT_DEB_PKGS := clang-format
FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	@sh tests/install-deps.sh $(FORMAT_DEB_PKGS)
	clang-format -i $(FORMAT_SRC)

format-check:
	@sh tests/install-deps.sh $(FORMAT_DEB_PKGS)
	@clang-format --dry-run --Werror $(FORMAT_SRC) && \
	  echo "format-check: $(words $(FORMAT_SRC)) files as .clang-format says"

# libFuzzer harnesses (tests/fuzz/fuzz_*.c, built with clang), each run for
# FUZZ_SECONDS; FUZZ="proto conf" runs only those. Crashing inputs stay in
# build/fuzz/, and the run fails.
FUZZ_SECONDS ?= 30
FUZZ ?=
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
fuzz:
	@sh tests/install-deps.sh $(FUZZ_DEB_PKGS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ)

# ---- installing --------------------------------------------------------

#   make install   PREFIX=/usr/local DESTDIR=/tmp/stage
#   make uninstall PREFIX=/usr/local DESTDIR=/tmp/stage
#
# installs what `make all` built (it builds nothing with other flags), with
# PREFIX=/usr/local:
#   sbin/discoveryd, bin/discoveryctl, bin/discovery-agent, bin/discovery-gate
#   lib/libagent.so.1, lib/libagent.so -> libagent.so.1, lib/libagent.a
#   lib/pkgconfig/libagent.pc          from agent/lib/libagent.pc.in
#   include/discovery/agent.h
#   share/man/man{1,3,5,8}/            from man/
#   share/bash-completion/completions/discoveryctl
#   etc/discovery/                     the reference configs (PREFIX=/usr:
#                                      /etc/discovery); never overwritten
#   lib/systemd/system/                the units, ExecStart rewritten to
#                                      these paths
# Every directory can be set on its own (LIBDIR=/usr/lib/x86_64-linux-gnu,
# SYSCONFDIR=/etc, SYSTEMDUNITDIR=...). DESTDIR is prepended to every path
# written and to none written into a file. ldconfig runs only for a real
# install (no DESTDIR) by root. uninstall removes what install put there but
# the configs, which may hold local edits (as a Debian package's conffiles).

BINDIR         ?= $(PREFIX)/bin
SBINDIR        ?= $(PREFIX)/sbin
LIBDIR         ?= $(PREFIX)/lib
INCLUDEDIR     ?= $(PREFIX)/include
PKGCONFIGDIR   ?= $(LIBDIR)/pkgconfig
MANDIR         ?= $(PREFIX)/share/man
SYSCONFDIR     ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR    ?= $(PREFIX)/share/bash-completion/completions
# The installed discoveryd.yaml keeps its journal where the unit's
# StateDirectory=discoveryd puts it (the source tree's is relative).
STATEDIR       ?= /var/lib/discoveryd

INSTALL_SBIN  := discoveryd
INSTALL_BIN   := $(filter-out $(INSTALL_SBIN),$(notdir $(PROGRAMS)))
INSTALL_CONF  := discoveryd.yaml agent.yaml gate.yaml nginx-gate.conf
INSTALL_UNITS := $(notdir $(wildcard systemd/*.service))
MAN_PAGES     := man/discoveryctl.1 man/libagent.3 man/discoveryd.yaml.5 \
                 man/discovery-agent.yaml.5 man/discovery-gate.yaml.5 \
                 man/discoveryd.8 man/discovery-agent.8 man/discovery-gate.8
# What uninstall removes (without DESTDIR): everything but the configs.
INSTALLED      = $(SBINDIR)/discoveryd $(addprefix $(BINDIR)/,discoveryctl \
                 discovery-agent discovery-gate) \
                 $(addprefix $(LIBDIR)/,libagent.so.$(SOVERSION) libagent.so \
                 libagent.a) $(PKGCONFIGDIR)/libagent.pc \
                 $(INCLUDEDIR)/discovery/agent.h $(BASHCOMPDIR)/discoveryctl \
                 $(foreach m,$(MAN_PAGES),$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m))) \
                 $(addprefix $(SYSTEMDUNITDIR)/,$(INSTALL_UNITS))

# Files that name install paths go through sed on their way: the units'
# ExecStart, libagent.pc's prefix, discoveryd.yaml's state_dir.
SED_UNIT  = -e 's|/usr/local/sbin/|$(SBINDIR)/|g' \
            -e 's|/usr/local/bin/|$(BINDIR)/|g' \
            -e 's|/etc/discovery/|$(SYSCONFDIR)/discovery/|g'
SED_PC    = -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
            -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g'
SED_CONF  = -e 's|^state_dir: var/discoveryd$$|state_dir: $(STATEDIR)|'
# $(call sed_install,SED,SOURCE,DEST): install -m 644 SOURCE, edited by SED,
# as DEST, through a temporary file of its own (installs may run at once,
# and nothing is left in the tree for root to own).
sed_install = t=$$(mktemp) && sed $(1) $(2) > "$$t" && \
              install -m 644 "$$t" $(3); rc=$$?; rm -f "$$t"; [ $$rc = 0 ]

install: all
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(SBINDIR)" \
	  "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(PKGCONFIGDIR)" \
	  "$(DESTDIR)$(INCLUDEDIR)/discovery" "$(DESTDIR)$(MANDIR)/man1" \
	  "$(DESTDIR)$(MANDIR)/man3" "$(DESTDIR)$(MANDIR)/man5" \
	  "$(DESTDIR)$(MANDIR)/man8" "$(DESTDIR)$(SYSCONFDIR)/discovery" \
	  "$(DESTDIR)$(SYSTEMDUNITDIR)" "$(DESTDIR)$(BASHCOMPDIR)"
	install -m 755 $(addprefix $(BUILD)/bin/,$(INSTALL_SBIN)) "$(DESTDIR)$(SBINDIR)"
	install -m 755 $(addprefix $(BUILD)/bin/,$(INSTALL_BIN)) "$(DESTDIR)$(BINDIR)"
	install -m 755 $(AGENT_SO) "$(DESTDIR)$(LIBDIR)"
	ln -sf libagent.so.$(SOVERSION) "$(DESTDIR)$(LIBDIR)/libagent.so"
	install -m 644 $(AGENT_A) "$(DESTDIR)$(LIBDIR)"
	$(call sed_install,$(SED_PC),agent/lib/libagent.pc.in,"$(DESTDIR)$(PKGCONFIGDIR)/libagent.pc")
	install -m 644 agent/include/discovery/agent.h "$(DESTDIR)$(INCLUDEDIR)/discovery"
	install -m 644 discoveryd/ctl/discoveryctl.bash "$(DESTDIR)$(BASHCOMPDIR)/discoveryctl"
	for m in $(MAN_PAGES); do \
	  install -m 644 $$m "$(DESTDIR)$(MANDIR)/man$${m##*.}" || exit 1; \
	done
	for u in $(INSTALL_UNITS); do \
	  $(call sed_install,$(SED_UNIT),systemd/$$u,"$(DESTDIR)$(SYSTEMDUNITDIR)/$$u") || exit 1; \
	done
	for f in $(INSTALL_CONF); do \
	  d="$(DESTDIR)$(SYSCONFDIR)/discovery/$$f"; \
	  if [ -e "$$d" ]; then echo "keeping $$d (not overwritten)"; \
	  else $(call sed_install,$(SED_CONF),conf/$$f,"$$d") || exit 1; fi; \
	done
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	  echo ldconfig; ldconfig; fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rmdir "$(DESTDIR)$(INCLUDEDIR)/discovery" 2>/dev/null || true
	@echo "kept the configs in $(DESTDIR)$(SYSCONFDIR)/discovery"
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	  echo ldconfig; ldconfig; fi

# ---- Debian packages ---------------------------------------------------

#   make deb        build/deb/*.deb (docs/deployment.md, "Debian packages")
#   make deb-lint   lintian on them: fails on any error or warning
#
# dpkg-buildpackage -b from debian/ (debhelper 13; debian/rules builds and
# installs with this Makefile, Debian's flags and paths): discoveryd,
# discovery-agent, discovery-gate, libagent1, libagent-dev, and their
# -dbgsym, and python3-discovery-agent (Architecture: all, pybuild's build
# of bindings/python, offline). It builds in a copy of the tree
# (build/deb/src, removed after), so that its results land in build/deb/
# rather than in the tree's parent, and it gets no variable of this make
# (MAKEFLAGS): a package is always the plain build with Debian's flags.
# DEB_BUILD_OPTIONS passes through (nocheck: no unit suite, no import
# check of the binding in the build).
DEB_DIR  := build/deb
DEB_JOBS ?= 2
# TOOL:PACKAGE for tests/check-tools.sh: a missing one is named with its
# Debian package before anything runs.
DEB_TOOLS  := dpkg-buildpackage:dpkg-dev dpkg-checkbuilddeps:dpkg-dev \
              dh:debhelper
LINT_TOOLS := lintian:lintian
# Another dpkg database for the build-dependency check (the tests' copy).
DEB_ADMINDIR ?=
deb:
	@sh tests/check-tools.sh "make deb" $(DEB_TOOLS)
	@sh tests/check-builddeps.sh "make deb" $(DEB_ADMINDIR)
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	tar -c --exclude=./build --exclude=./.git --exclude-vcs-ignores . | \
	  tar -x -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	  dpkg-buildpackage -b -us -uc -j$(DEB_JOBS)
	rm -rf $(DEB_DIR)/src
	@ls $(DEB_DIR)/*.deb

deb-lint:
	@sh tests/check-tools.sh "make deb-lint" $(LINT_TOOLS)
	@ls $(DEB_DIR)/*.changes >/dev/null 2>&1 || \
	  { echo "make deb-lint: no $(DEB_DIR)/*.changes: make deb first" >&2; \
	  exit 1; }
	lintian --fail-on error,warning --info $(DEB_DIR)/*.changes

clean:
	rm -rf build

-include $(ALL_OBJ:.o=.d)
