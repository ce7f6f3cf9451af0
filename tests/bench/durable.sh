#!/bin/sh
# durable.sh: durable writes per second against one system, with 1, 8
# and 64 concurrent clients (wrk, keep-alive, one write in flight per
# client), the state on the build tree's disk (not /tmp, which may be a
# tmpfs). One JSON line on stdout: {"system","fs","seconds","runs":[{
# "clients","rps","p50_ms","p99_ms","non2xx","errors"}...]}.
#
#   tests/bench/durable.sh SYSTEM [SECONDS]      (5 s per client count)
#
#   SYSTEM  discoveryd  POST /api/discovery/invalidate, no agents linked:
#                       each write is appended to the journal and
#                       fdatasync'd before it is answered (docs/durability.md)
#           etcd        etcd-server, one member, POST /v3/kv/put on its
#                       HTTP/JSON gateway: each put is committed to its WAL
#                       (fsync) before it is answered
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/bench
if [ $# -lt 1 ]; then
	sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
fi
system=$1 dur=${2:-5}

mkdir -p "$OUT"
TMP=$(mktemp -d "$OUT/durable.XXXXXX")
pid=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "durable: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for WHAT CMD...: until CMD succeeds, at most 30 s.
wait_for() {
	what=$1
	shift
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -ge 300 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "durable: $system: no $what:" >&2
			tail -n 20 "$TMP/server.log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

case $system in
discoveryd)
	mkdir -p "$TMP/state"
	cat >"$TMP/discoveryd.yaml" <<-EOF
	listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }
	state_dir: $TMP/state
	limits: { max_http_per_ip: 1000 }
	EOF
	"$ROOT/build/bin/discoveryd" -c "$TMP/discoveryd.yaml" \
		>"$TMP/server.log" 2>&1 &
	pid=$!
	wait_for "ready line" grep -q 'msg=ready' "$TMP/server.log"
	http=$(sed -n 's/.*msg=listening listener=http addr=\([^ ]*\).*/\1/p' \
		"$TMP/server.log")
	url=http://$http/api/discovery/invalidate
	body='{"keys":["bench"],"service":"web"}'
	;;
etcd)
	client=$(free_port) peer=$(free_port)
	etcd --name bench --data-dir "$TMP/etcd" \
		--listen-client-urls "http://127.0.0.1:$client" \
		--advertise-client-urls "http://127.0.0.1:$client" \
		--listen-peer-urls "http://127.0.0.1:$peer" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "bench=http://127.0.0.1:$peer" \
		--log-level warn >"$TMP/server.log" 2>&1 &
	pid=$!
	wait_for "health" sh -c "curl -sf http://127.0.0.1:$client/health |
		grep -q '\"health\":\"true\"'"
	url=http://127.0.0.1:$client/v3/kv/put
	body='{"key":"YmVuY2g=","value":"MQ=="}' # bench = 1, base64
	;;
*)
	echo "durable: unknown system $system" >&2
	exit 2
	;;
esac

fs=$(stat -f -c %T "$TMP")
runs=
for c in 1 8 64; do
	t=$((c < 2 ? 1 : 2))
	echo "durable: $system, $c clients: wrk -t$t -c$c -d${dur}s $url" >&2
	DURABLE_BODY=$body wrk -t"$t" -c"$c" -d"${dur}s" --latency \
		-s "$ROOT/tests/bench/durable.lua" "$url" >"$TMP/wrk.out"
	cat "$TMP/wrk.out" >&2
	run=$(awk -v c="$c" '
		function ms(v) {
			if (v ~ /us$/) return v * 0.001
			if (v ~ /ms$/) return v + 0
			if (v ~ /s$/) return v * 1000
			if (v ~ /m$/) return v * 60000
			return v
		}
		/Requests\/sec/ { rps = $2 }
		$1 == "50%" { p50 = ms($2) }
		$1 == "99%" { p99 = ms($2) }
		/Non-2xx/ { non2xx = $NF }
		/Socket errors/ { gsub(",", ""); errors = $4 + $6 + $8 + $10 }
		END { printf "{\"clients\":%d,\"rps\":%s,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"non2xx\":%d,\"errors\":%d}",
			c, rps == "" ? "null" : rps, p50, p99, non2xx, errors }' \
		"$TMP/wrk.out")
	runs=${runs:+$runs,}$run
done
printf '{"system":"%s","fs":"%s","seconds":%s,"runs":[%s]}\n' \
	"$system" "$fs" "$dur" "$runs"
