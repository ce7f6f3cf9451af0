#!/bin/sh
# fanout.sh: the fan-out benchmark. For each size it starts a fresh
# build/bin/discoveryd on kernel-chosen ports, with a generated config in a
# temporary directory, waits for its "msg=ready" log line (no sleeps: the
# log comes through a FIFO and is read line by line), runs
# build/bench/loadgen against it with the daemon's pid (for VmRSS), prints
# loadgen's JSON line on stdout, stops the daemon with SIGTERM, and sums up
# the daemon's warnings and errors on stderr.
#
#   tests/bench/fanout.sh              1,000 links
#   tests/bench/fanout.sh 10k          1,000 links, then 10,000 (-P 2, two
#                                      source addresses)
#   tests/bench/fanout.sh 10k -r 20    arguments after the size go to loadgen
#
# KEEP=1 keeps the temporary directory (config and daemon logs).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DAEMON=$ROOT/build/bin/discoveryd
LOADGEN=$ROOT/build/bench/loadgen
SRC=$ROOT/tests/bench/loadgen.c

big=
if [ "${1:-}" = 10k ]; then
	big=1
	shift
fi

if [ ! -x "$DAEMON" ]; then
	make -C "$ROOT" --no-print-directory build/bin/discoveryd >&2
fi
if [ ! -x "$LOADGEN" ] || [ -n "$(find "$SRC" -newer "$LOADGEN")" ]; then
	mkdir -p "$(dirname "$LOADGEN")"
	gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Wstrict-prototypes \
	    -Wvla -Wwrite-strings -Wshadow -o "$LOADGEN" "$SRC"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fanout.XXXXXX")
pid=
catpid=

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "fanout: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_daemon NAME: run discoveryd with its log in $TMP/NAME.log; sets pid,
# catpid, agents and http.
start_daemon() {
	dir=$TMP/$1
	mkdir -p "$dir"
	cat >"$dir/discoveryd.yaml" <<-EOF
	listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }
	state_dir: $dir/state
	limits: { max_agents: 100000, max_agents_per_ip: 0, accept_rate: 0 }
	EOF
	mkfifo "$dir/log.fifo"
	"$DAEMON" -c "$dir/discoveryd.yaml" 2>"$dir/log.fifo" &
	pid=$!
	exec 3<"$dir/log.fifo"
	agents='' http='' ready=''
	while IFS= read -r line <&3; do
		printf '%s\n' "$line" >>"$dir/discoveryd.log"
		case $line in
		*msg=listening*listener=agents*) agents=${line##*addr=} ;;
		*msg=listening*listener=http*) http=${line##*addr=} ;;
		*msg=ready*) ready=1; break ;;
		esac
	done
	if [ -z "$ready" ] || [ -z "$agents" ] || [ -z "$http" ]; then
		echo "fanout: discoveryd did not get ready:" >&2
		cat "$dir/discoveryd.log" >&2
		exit 1
	fi
	agents=${agents%% *}
	http=${http%% *}
	cat <&3 >>"$dir/discoveryd.log" &
	catpid=$!
	exec 3<&-
}

# stop_daemon NAME: SIGTERM, wait, and sum up what the daemon complained of.
stop_daemon() {
	log=$TMP/$1/discoveryd.log
	kill -TERM "$pid"
	wait "$pid" || echo "fanout: discoveryd exited with $?" >&2
	pid=
	wait "$catpid" || true
	n=$(grep -c -E 'level=(warn|error)' "$log" || true)
	if [ "$n" -gt 0 ]; then
		echo "fanout: $1: discoveryd logged $n warnings/errors, by message:" >&2
		grep -E 'level=(warn|error)' "$log" |
		    sed -E 's/^.*level=([a-z]+) prog=[^ ]* (msg=("[^"]*"|[^ ]*)).*$/\1 \2/' |
		    sort | uniq -c | sort -rn | head -n 10 >&2
	fi
}

# run NAME LOADGEN-ARGS...: one size against a fresh daemon.
run() {
	name=$1
	shift
	start_daemon "$name"
	status=0
	"$LOADGEN" -a "$agents" -H "$http" -p "$pid" "$@" || status=$?
	stop_daemon "$name"
	if [ "$status" -ne 0 ]; then
		echo "fanout: $name: loadgen exited with $status" >&2
		rc=1
	fi
}

rc=0
run 1k -n 1000 "$@"
if [ -n "$big" ]; then
	run 10k -n 10000 -P 2 -b 127.0.0.1,127.0.0.2 "$@"
fi
exit $rc
