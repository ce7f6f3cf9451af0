#!/bin/sh
# dns.sh: DNS queries a second and their p99 (dns_qps, dns_p99_ms;
# docs/dns.md), measured with dnsperf against listen.dns of one discoveryd
# while N agents are linked to it (loadgen, as for the fan-out) and 20
# ready instances of "api" give the answers their records.
#
#   tests/bench/dns.sh [N] [SECONDS]     default 10000 links, 10 s
#
# The query mix: A of api (20 records), SRV of _api._tcp (20 records and
# their addresses: over 512 bytes, so dnsperf's EDNS0 is on), a tag that
# nobody has (NODATA) and an unknown service (NXDOMAIN). dns.rate_per_source
# is off: dnsperf is one source. The first dnsperf run (no per-query
# output) gives the rate; a second, of SECONDS/2 with -v, gives every
# query's latency, from which the p99 is taken. Both keep 100 queries in
# flight, so the p99 is the latency at saturation. Prints one JSON line.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/bench
n=${1:-10000} seconds=${2:-10}
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
BODY='{"command":"Reload","header":{"source":"bench"},"value":{"why":"bench"}}'

make -C "$ROOT" --no-print-directory -s all build/bench/loadgen >&2
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dnsbench.XXXXXX")
pid='' lgpid='' agpid=''

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	for p in $lgpid $agpid $pid; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	[ -n "${KEEP:-}" ] && echo "dns: kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/state"
cat >"$TMP/discoveryd.yaml" <<-EOC
listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0, dns: 127.0.0.1:0 }
state_dir: $TMP/state
limits: { max_agents: 100000, max_agents_per_ip: 0, accept_rate: 0 }
dns: { rate_per_source: 0 }
EOC
"$ROOT/build/bin/discoveryd" -c "$TMP/discoveryd.yaml" >"$TMP/server.log" 2>&1 &
pid=$!
# Wait for its listen lines (it logs them before msg=ready).
i=0
until grep -q 'msg=ready' "$TMP/server.log"; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat "$TMP/server.log" >&2; exit 1; }
	kill -0 "$pid" || { cat "$TMP/server.log" >&2; exit 1; }
	sleep 0.1
done
addr() { sed -n "s/.*listener=$1 addr=\([^ ]*\).*/\1/p" "$TMP/server.log"; }
agents=$(addr agents) http=$(addr http) dns=$(addr dns)
port=${dns##*:}

/usr/bin/python3 "$ROOT/tests/bench/dns_agents.py" "ws://$agents/" api 20 \
	>"$TMP/agents.out" 2>&1 &
agpid=$!
# The links: a storm, then idle for longer than dnsperf runs (no rounds).
"$OUT/loadgen" -a "$agents" -H "$http" -p "$pid" -n "$n" -P 2 -b "$SOURCES" \
	-m discovery -t 'POST /api/discovery/broadcast' -d "$BODY" -r 0 -W 0 \
	-S 60 -w $((seconds * 2 + 60)) >"$TMP/loadgen.json" 2>"$TMP/loadgen.log" &
lgpid=$!

linked() {
	curl -sf "http://$http/api/discovery/services/web" |
		sed -n 's/.*"instances": *\([0-9]*\).*/\1/p'
}
i=0
until [ "$(linked)" = "$n" ] && grep -q "linked 20" "$TMP/agents.out" &&
	[ "$(dig +short -p "$port" @127.0.0.1 api.service.discovery | wc -l)" = 20 ]; do
	i=$((i + 1))
	[ $i -lt 1200 ] || { echo "dns: links not up" >&2; cat "$TMP/loadgen.log" \
		"$TMP/agents.out" >&2; exit 1; }
	kill -0 "$lgpid" || { cat "$TMP/loadgen.log" >&2; exit 1; }
	sleep 0.1
done

cat >"$TMP/queries" <<-EOQ
api.service.discovery A
api.service.discovery A
api.service.discovery A
_api._tcp.service.discovery SRV
red.api.service.discovery A
nope.service.discovery A
api.service.discovery A
_api._tcp.service.discovery SRV
EOQ
dnsperf -s 127.0.0.1 -p "$port" -e -d "$TMP/queries" -l "$seconds" -c 4 \
	>"$TMP/dnsperf.out" 2>&1
dnsperf -s 127.0.0.1 -p "$port" -e -d "$TMP/queries" -l $((seconds / 2)) \
	-c 4 -v 2>/dev/null | grep '^> ' >"$TMP/dnsperf.v" || true

qps=$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' "$TMP/dnsperf.out")
lost=$(sed -n 's/.*Queries lost: *\([0-9]*\).*/\1/p' "$TMP/dnsperf.out")
p99=$(awk '{print $NF}' "$TMP/dnsperf.v" | sort -g |
	awk '{v[NR] = $1} END {i = int(NR * 0.99); if (i < 1) i = 1;
		if (NR) printf "%.3f", v[i] * 1000}')
still=$(linked)
codes=$(sed -n 's/.*Response codes: *//p' "$TMP/dnsperf.out")
printf '{"links": %s, "linked_during": %s, "dns_qps": %s, "dns_p99_ms": %s, "lost": %s, "seconds": %s, "codes": "%s"}\n' \
	"$n" "${still:-0}" "${qps:-null}" "${p99:-null}" "${lost:-null}" \
	"$seconds" "$codes"
