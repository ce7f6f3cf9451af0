#!/bin/sh
# blocking.sh: blocking_wakeup_1k_ms (docs/bench.md). A fresh discoveryd
# with room for N blocked callers from one address, one instance of
# service api (tests/tools/agent_probe, its status lines from a FIFO), and
# build/bench/blockgen: N blocking queries on api, all blocked, then one
# change (a new load), until the last caller holds its answer. Prints
# blockgen's JSON line.
#
#   tests/bench/blocking.sh [N [ROUNDS]]     default 1000 callers, 5 rounds
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/bench
PROBE=$ROOT/build/tests/tools/agent_probe
n=${1:-1000} rounds=${2:-5}

make -C "$ROOT" --no-print-directory -s all build/bench/blockgen \
	build/tests/tools/agent_probe >&2
ulimit -n "$((n * 2 + 512))" 2>/dev/null || true

TMP=$(mktemp -d "${TMPDIR:-/tmp}/blocking.XXXXXX")
pid='' probe=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	exec 4>&- 2>/dev/null || true
	for p in $probe $pid; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# until FILE PATTERN: wait (at most 30 s) for a line in FILE.
until_line() {
	i=0
	until grep -q -E "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -gt 600 ]; then
			echo "blocking: no '$2' in $1:" >&2
			tail -n 20 "$1" >&2
			exit 1
		fi
		sleep 0.05
	done
}

mkdir -p "$TMP/state"
cat >"$TMP/discoveryd.yaml" <<-EOF2
listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }
state_dir: $TMP/state
limits:
  max_http: $((n * 2 + 64))
  max_http_per_ip: $((n + 64))
  max_streams: $((n + 32))
  max_streams_per_ip: $((n + 32))
EOF2
"$ROOT/build/bin/discoveryd" -c "$TMP/discoveryd.yaml" >"$TMP/server.log" 2>&1 &
pid=$!
until_line "$TMP/server.log" 'msg=ready'
http=$(sed -n 's/.*msg=listening listener=http addr=\([^ ]*\).*/\1/p' "$TMP/server.log")
agents=$(sed -n 's/.*msg=listening listener=agents addr=\([^ ]*\).*/\1/p' "$TMP/server.log")

mkfifo "$TMP/probe.fifo"
AGENT_PROBE_ADDRESS=10.0.0.1:80 "$PROBE" "ws://$agents/" api probe-1 \
	<"$TMP/probe.fifo" >"$TMP/probe.log" 2>&1 &
probe=$!
exec 4>"$TMP/probe.fifo"
until_line "$TMP/probe.log" 'link state=linked'
echo "ready 1" >&4
until curl -sf "http://$http/api/discovery/services/api/endpoints" |
	grep -q '"state":"ready"'; do
	sleep 0.05
done

status=0
"$OUT/blockgen" -H "$http" -s api -n "$n" -f "$TMP/probe.fifo" \
	-r "$rounds" -p "$pid" || status=$?
warnings=$(grep -E 'level=(warn|error)' "$TMP/server.log" |
	grep -v 'no auth' | head -n 5 || true)
if [ -n "$warnings" ]; then
	echo "blocking: discoveryd logged:" >&2
	echo "$warnings" >&2
fi
exit "$status"
