#!/bin/sh
# cluster.sh: fan-out through a cluster (docs/cluster.md). It starts a fresh
# redis-server (no persistence) and NODES discoveryd nodes in cluster mode on
# kernel-chosen ports, waits for each to say "cluster synced", then runs
# build/bench/loadgen with its links spread evenly over the nodes (-a once
# per node, -p once per node: RSS is the nodes' sum) and the trigger sent
# to the first node. The latency runs from the trigger to each link
# holding the event, whichever node it is linked to. Prints loadgen's JSON
# line; stops everything.
#
#   tests/bench/cluster.sh N [LOADGEN-ARGS...]      NODES=3 by default
#
# N links over LOADGEN_PROCS workers (default: one per 10,000 links, at
# least 2) and source addresses 127.0.0.1-127.0.0.4. KEEP=1 keeps the logs;
# COALESCE sets cluster.coalesce, DISCOVERYD another binary (A/B runs).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/bench
NODES=${NODES:-3}
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
BODY='{"command":"Reload","header":{"source":"bench"},"value":{"why":"bench"}}'

if [ $# -lt 1 ]; then
	sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
fi
n=$1
shift
procs=${LOADGEN_PROCS:-$(( (n + 9999) / 10000 ))}
[ "$procs" -ge 2 ] || procs=2

make -C "$ROOT" --no-print-directory -s bench-tools >&2

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cluster.XXXXXX")
pids=''

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $pids; do
		wait "$p" 2>/dev/null || true
	done
	if [ -n "${KEEP:-}" ]; then
		echo "cluster: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN: until FILE holds a line matching PATTERN (the
# process writes its log there; 30 s at most).
wait_for() {
	tries=0
	until grep -q -E "$2" "$1" 2>/dev/null; do
		tries=$((tries + 1))
		if [ "$tries" -gt 3000 ]; then
			echo "cluster: no '$2' in $1:" >&2
			cat "$1" >&2
			exit 1
		fi
		sleep 0.01
	done
}

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket();
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
	--dir "$TMP" >"$TMP/redis.log" 2>&1 &
pids="$pids $!"
wait_for "$TMP/redis.log" 'Ready to accept connections'

targets='' rss='' http=''
for i in $(seq 1 "$NODES"); do
	mkdir -p "$TMP/node$i"
	cat >"$TMP/node$i.yaml" <<-EOF
	listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }
	state_dir: $TMP/node$i
	cluster: { redis: "redis://127.0.0.1:$port", node: node-$i${COALESCE:+, coalesce: $COALESCE} }
	limits: { max_agents: 100000, max_agents_per_ip: 0, accept_rate: 0 }
	EOF
	"${DISCOVERYD:-$ROOT/build/bin/discoveryd}" -c "$TMP/node$i.yaml" >"$TMP/node$i.log" 2>&1 &
	pids="$pids $!"
	rss="$rss -p $!"
	wait_for "$TMP/node$i.log" 'msg="cluster synced"'
	agents=$(sed -n 's/.*listener=agents addr=\([^ ]*\).*/\1/p' "$TMP/node$i.log")
	targets="$targets -a $agents"
	[ -n "$http" ] ||
		http=$(sed -n 's/.*listener=http addr=\([^ ]*\).*/\1/p' "$TMP/node$i.log")
done

status=0
# shellcheck disable=SC2086 # $targets and $rss are lists of options
"$OUT/loadgen" $targets -H "$http" $rss -n "$n" -P "$procs" -b "$SOURCES" \
	-m discovery -t 'POST /api/discovery/broadcast' -d "$BODY" "$@" ||
	status=$?
count=$(cat "$TMP"/node*.log | grep -v 'msg="no auth"' |
	grep -c -E 'level=(warn|error)' || true)
if [ "$count" -gt 0 ]; then
	echo "cluster: $count warning/error lines, the first:" >&2
	cat "$TMP"/node*.log | grep -v 'msg="no auth"' |
		grep -E 'level=(warn|error)' | head -n 5 >&2
fi
exit "$status"
