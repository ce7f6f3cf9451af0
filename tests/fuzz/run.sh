#!/bin/sh
# Build the libFuzzer harnesses (tests/fuzz/fuzz_*.c) and run each for a
# while: `make fuzz`, or by hand from any directory:
#
#   tests/fuzz/run.sh                 every harness, FUZZ_SECONDS each
#   tests/fuzz/run.sh proto conf      only these
#   FUZZ_SECONDS=600 tests/fuzz/run.sh api
#
# Everything goes under build/fuzz/: the instrumented libcommon objects,
# the harness binaries, a working corpus per harness (corpus-NAME, seeded
# from tests/fuzz/corpus/NAME, which is never written to, and kept between
# runs so coverage accumulates), each run's log (NAME.log), and any input
# that crashed, leaked or hung (NAME-crash-*, NAME-leak-*, NAME-timeout-*,
# NAME-oom-*; kept across runs, so delete them once they are fixed).
# Reproduce one with: build/fuzz/fuzz_NAME build/fuzz/NAME-crash-...
#
# Exit status: 0 when every harness ran clean, 1 when one found something,
# 2 when one did not build (the others still run).
#
# Environment: FUZZ_SECONDS (30), FUZZ_CC (clang), FUZZ_CFLAGS (added),
# FUZZ_ARGS (added to every libFuzzer command line, e.g. -jobs=4).
set -u

cd "$(dirname "$0")/../.." || exit 2

SECONDS_EACH=${FUZZ_SECONDS:-30}
CC=${FUZZ_CC:-clang}
OUT=build/fuzz
SANITIZE=address,undefined

if ! command -v "$CC" >/dev/null 2>&1; then
	echo "fuzz: $CC not found; install the Debian packages clang and" \
	     "libclang-rt-14-dev (or set FUZZ_CC)" >&2
	exit 2
fi

CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
	-fno-sanitize-recover=all -Wall -Wextra -Wstrict-prototypes -Wvla
	-Wwrite-strings -Wshadow -Wmissing-prototypes
	-Ilibcommon -Idiscoveryd
	$(pkg-config --cflags libcjson yaml-0.1 2>/dev/null || echo -I/usr/include/cjson)
	${FUZZ_CFLAGS:-}"
LIBS="$(pkg-config --libs libcjson yaml-0.1 2>/dev/null || echo -lcjson -lyaml)
	$(pkg-config --libs openssl 2>/dev/null)"

mkdir -p "$OUT/obj" || exit 2

# ---- build ---------------------------------------------------------------

# libcommon, instrumented for coverage and the sanitizers, as an archive so
# each harness pulls in only the modules it uses.
build_common() {
	objs=""
	for src in libcommon/*.c; do
		obj="$OUT/obj/$(basename "$src" .c).o"
		# shellcheck disable=SC2086
		$CC $CFLAGS -fsanitize=fuzzer-no-link,$SANITIZE -c -o "$obj" \
			"$src" || return 1
		objs="$objs $obj"
	done
	rm -f "$OUT/libcommon-fuzz.a"
	# shellcheck disable=SC2086
	ar rcs "$OUT/libcommon-fuzz.a" $objs
}

# What a harness needs besides libcommon. fuzz_api #includes api.c, links
# the daemon's auth.c as it is, and keeps libmicrohttpd's daemon calls (it
# replaces the per-connection ones).
extra_srcs() {
	case $1 in
	api) echo discoveryd/auth.c discoveryd/sse.c \
		discoveryd/api_origin.c discoveryd/api_conn.c discoveryd/idem.c \
		discoveryd/api_block.c discoveryd/epboard.c \
		discoveryd/endpoints.c discoveryd/api_webhook.c \
		discoveryd/api_sd.c discoveryd/dconf_webhook.c \
		discoveryd/webhook_sign.c discoveryd/event.c \
		"$OUT/dashboard_html.o" ;;
	conf) echo discoveryd/dconf_webhook.c discoveryd/webhook_sign.c \
		discoveryd/event.c ;;
	gate) echo agent/gate/request.c agent/gate/path.c agent/gate/forward.c \
		agent/gate/ring.c agent/gate/buf.c agent/gate/fields.c \
		agent/gate/chunk.c \
		agent/gate/loop.c agent/gate/admit.c agent/gate/relay.c ;;
	esac
}

extra_cflags() {
	case $1 in
	gate) echo -Iagent/gate -Iagent/include ;;
	esac
}

# The dashboard page, linked in as bytes the way the Makefile does it.
build_dashboard() {
	(cd discoveryd/web && ld -r -b binary -z noexecstack \
		-o "$(cd ../.. && pwd)/$OUT/dashboard_html.o" dashboard.html)
}

extra_libs() {
	case $1 in
	api) pkg-config --libs libmicrohttpd libcurl 2>/dev/null ||
		echo -lmicrohttpd -lcurl ;;
	conf) pkg-config --libs libcurl 2>/dev/null || echo -lcurl ;;
	gate) echo -lhttp_parser ;;
	esac
}

build_harness() {
	[ "$1" = api ] && build_dashboard
	# shellcheck disable=SC2046,SC2086
	$CC $CFLAGS $(extra_cflags "$1") -fsanitize=fuzzer,$SANITIZE -o "$OUT/fuzz_$1" \
		"tests/fuzz/fuzz_$1.c" $(extra_srcs "$1") \
		"$OUT/libcommon-fuzz.a" $(extra_libs "$1") $LIBS -pthread
}

# ---- run -----------------------------------------------------------------

stat_of() {
	sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

run_harness() {
	name=$1
	corpus="$OUT/corpus-$name"
	log="$OUT/$name.log"
	dict=""

	mkdir -p "$corpus"
	[ -d "tests/fuzz/corpus/$name" ] && cp -R "tests/fuzz/corpus/$name/." "$corpus/"
	[ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
	# Inputs from earlier runs stay; this run's are those newer than this.
	touch "$OUT/.start-$name"
	# shellcheck disable=SC2086
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
	"$OUT/fuzz_$name" -max_total_time="$SECONDS_EACH" -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$OUT/$name-" $dict \
		${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1
	rc=$?
	execs=$(stat_of number_of_executed_units "$log")
	speed=$(stat_of average_exec_per_sec "$log")
	# -fork=N prints no final stats: take the last status line's count.
	[ -n "$execs" ] || execs=$(grep -aoE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
	found=$(find "$OUT" -maxdepth 1 -newer "$OUT/.start-$name" \
		-name "$name-*" | sort)
	if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
		printf '%-8s ok       %12s execs (%s/s), %s corpus files\n' \
			"$name" "${execs:-?}" "${speed:-?}" \
			"$(find "$corpus" -type f | wc -l)"
		return 0
	fi
	n_found=$(echo "$found" | grep -c .)
	printf '%-8s FAILED   %12s execs, exit %s; %s input(s): %s; log: %s\n' \
		"$name" "${execs:-?}" "$rc" "$n_found" \
		"$(echo "$found" | head -n 1)$([ "$n_found" -gt 1 ] && echo ' ...')" \
		"$log"
	# The sanitizer's or the harness's complaint, then our frames only.
	{ grep -aE '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+: )|runtime error' "$log"
	  grep -aE '^ *#[0-9]+ .*\.[ch](:[0-9]+)*$' "$log" | grep -aF "$PWD/"
	} | head -n 25 | cut -c 1-300 | sed "s|$PWD/||; s/^/    /"
	return 1
}

if [ $# -gt 0 ]; then
	names="$*"
else
	names=""
	for src in tests/fuzz/fuzz_*.c; do
		name=${src#tests/fuzz/fuzz_}
		names="$names ${name%.c}"
	done
fi

build_common || { echo "fuzz: building libcommon failed" >&2; exit 2; }
# A harness that does not build (say, a daemon file mid-change) is
# reported and skipped; the others still run.
built="" broken=""
for name in $names; do
	if [ -f "tests/fuzz/fuzz_$name.c" ] && build_harness "$name"; then
		built="$built $name"
	else
		echo "fuzz: building fuzz_$name failed" >&2
		broken="$broken $name"
	fi
done

status=0
echo "fuzz: ${SECONDS_EACH}s per harness"
for name in $built; do
	run_harness "$name" || status=1
done
for name in $broken; do
	printf '%-8s NOT BUILT\n' "$name"
done
[ -n "$broken" ] && [ "$status" -eq 0 ] && status=2
exit $status
