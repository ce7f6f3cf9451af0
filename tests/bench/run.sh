#!/bin/sh
# run.sh: the whole benchmark, as `make bench` runs it (docs/bench.md).
# For each size, for each system, one fresh server and one load generator
# run (tests/bench/fanout.sh): the connect storm, the idle memory, then
# warm-up and measured fan-out rounds. Then sustained delivery to 1k links
# (fanout.sh -Z: a closed and an open loop), durable writes
# (tests/bench/durable.sh, discoveryd and etcd), the gate against nginx
# and HAProxy (tests/gate/bench.sh), blocking queries
# (tests/bench/blocking.sh), DNS (tests/bench/dns.sh) and webhooks
# (tests/bench/webhooks.py). Every run's JSON, log and exit status lands in
# build/bench/raw/; tests/bench/report.py turns them into
# build/bench/results.json, REPORT.md and the PNG plots.
#
#   sh tests/bench/run.sh            sizes 100 1k 2k 5k 10k, 20 rounds, wrk 10s,
#                                    5 s sustained and durable windows
#   QUICK=1 sh tests/bench/run.sh    sizes 1k 10k, 3 rounds, wrk 3s, 2 s windows
#
# SYSTEMS="floor discoveryd", SIZES="1000", CLUSTER_SIZES="" (no cluster
# runs), SUSTAIN_SYSTEMS="" and DURABLE_SYSTEMS="" narrow a run (the
# report then lacks the rest). Expects the tools built (make bench-tools).
# A run that goes wrong is reported as such; it never stops the others.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/bench
RAW=$OUT/raw

if [ -n "${QUICK:-}" ]; then
	sizes=${SIZES:-1000 10000} rounds=3 gate_time=3s dns_s=4 window_s=2
else
	sizes=${SIZES:-100 1000 2000 5000 10000} rounds=20 gate_time=10s dns_s=10
	window_s=5
fi
systems=${SYSTEMS:-discoveryd floor socket.io fastapi lws-minimal redis nats mosquitto}
sustain_systems=${SUSTAIN_SYSTEMS-discoveryd floor redis nats mosquitto}
durable_systems=${DURABLE_SYSTEMS-discoveryd etcd}
cluster_sizes=${CLUSTER_SIZES-10000 30000}
# A round waits ROUND_S for its last link; a storm gets STORM_S in all; a
# whole run gets RUN_S, then it is killed (a peer that cannot hold the
# links must not eat the time budget).
round_s=5 storm_s=30 run_s=240

rm -rf "$RAW"
mkdir -p "$RAW"
cd "$ROOT"
date -u +%Y-%m-%dT%H:%M:%SZ >"$RAW/started"
cat /proc/loadavg >"$RAW/loadavg.start"
t0=$(date +%s)

# one NAME LABEL N SCRIPT ARGS...: one run of a fan-out script, its JSON,
# log and exit status in $RAW/NAME.*, its command in commands.txt.
one() {
	name=$1 label=$2 n=$3
	shift 3
	echo "sh $*" >>"$RAW/commands.txt"
	printf 'bench: %-10s %6s links ... ' "$label" "$n" >&2
	status=0
	timeout "$run_s" sh "$@" >"$RAW/$name.json" 2>"$RAW/$name.log" ||
		status=$?
	echo "$status" >"$RAW/$name.status"
	if [ "$status" -eq 0 ]; then
		echo ok >&2
	else
		echo "exit $status (build/bench/raw/$name.log)" >&2
	fi
}

for n in $sizes; do
	for system in $systems; do
		one "$system-$n" "$system" "$n" tests/bench/fanout.sh "$system" \
			"$n" -r "$rounds" -W 1 -w 2 -T "$round_s" -S "$storm_s"
	done
done

# Sustained delivery to 1,000 links (fanout.sh -Z, loadgen's sustain.c):
# 16 publishes in flight (closed loop), then 64 publishers as fast as the
# server answers (open loop), each counted over a window of window_s.
for system in $sustain_systems; do
	one "sustained-$system-1000" "$system" 1000 tests/bench/fanout.sh \
		"$system" 1000 -r 0 -w 1 -T "$round_s" -S "$storm_s" -Z "$window_s"
done
# The same through three nodes over one Redis (the links spread over them,
# the writes to the first).
case " $sustain_systems " in
*" discoveryd "*)
	one "sustained-discoveryd-cluster3-1000" "3 nodes" 1000 \
		tests/bench/cluster.sh 1000 -r 0 -w 1 -T "$round_s" -S "$storm_s" \
		-Z "$window_s"
	;;
esac

# Durable writes, 1, 8 and 64 clients, the state on the real disk.
for system in $durable_systems; do
	echo "sh tests/bench/durable.sh $system $window_s" >>"$RAW/commands.txt"
	echo "bench: durable writes, $system, ${window_s}s per client count" >&2
	timeout "$run_s" sh tests/bench/durable.sh "$system" "$window_s" \
		>"$RAW/durable-$system.json" 2>"$RAW/durable-$system.log" ||
		echo "bench: durable $system: exit $? (build/bench/raw/durable-$system.log)" >&2
done

# Cluster mode (docs/cluster.md): three nodes over one redis-server, the
# links spread over them, the trigger on the first; 10k (to compare with
# one node) and 30k (more than one process here can hold).
for n in $cluster_sizes; do
	one "cluster3-$n" "3 nodes" "$n" tests/bench/cluster.sh "$n" \
		-r "$rounds" -W 1 -w 2 -T "$round_s" -S 60
done

# Endpoint updates (docs/protocol.md, "Endpoints"): 10k links watch one
# service, one instance of it changes state; the last watcher's update.
# And the bytes one change costs a watcher in a service of 1,000.
case " $systems " in
*" discoveryd "*)
	one "endpoints-10000" "endpoints" 10000 tests/bench/fanout.sh \
		discoveryd-endpoints 10000 -r "$rounds" -W 1 -w 2 -T "$round_s" \
		-S "$storm_s"
	echo "python3 tests/bench/endpoints_bytes.py 1000" >>"$RAW/commands.txt"
	timeout "$run_s" /usr/bin/python3 tests/bench/endpoints_bytes.py 1000 \
		>"$RAW/endpoints_bytes.json" 2>"$RAW/endpoints_bytes.log" ||
		echo "bench: endpoints bytes: exit $?" >&2
	;;
esac

# Webhooks (docs/webhooks.md): one endpoint on a local receiver that
# answers at once, invalidations posted as fast as the API takes them;
# max_in_flight 1 and 16.
case " $systems " in
*" discoveryd "*)
	echo "python3 tests/bench/webhooks.py 5000" >>"$RAW/commands.txt"
	echo "bench: webhooks, 5000 events" >&2
	timeout "$run_s" /usr/bin/python3 tests/bench/webhooks.py 5000 \
		>"$RAW/webhooks.json" 2>"$RAW/webhooks.log" ||
		echo "bench: webhooks: exit $? (build/bench/raw/webhooks.log)" >&2
	;;
esac

# Blocking queries: 1,000 callers blocked on one service, one change.
echo "sh tests/bench/blocking.sh 1000 $rounds" >>"$RAW/commands.txt"
echo "bench: blocking queries, 1000 callers" >&2
timeout "$run_s" sh tests/bench/blocking.sh 1000 "$rounds" \
	>"$RAW/blocking.json" 2>"$RAW/blocking.log" ||
	echo "bench: blocking: exit $? (build/bench/raw/blocking.log)" >&2
# DNS (docs/dns.md): dnsperf against listen.dns while 10k agents are
# linked; dns_qps and dns_p99_ms.
echo "sh tests/bench/dns.sh 10000 $dns_s > build/bench/raw/dns.json" \
	>>"$RAW/commands.txt"
echo "bench: dns, dnsperf ${dns_s}s with 10000 links" >&2
timeout "$run_s" sh tests/bench/dns.sh 10000 "$dns_s" >"$RAW/dns.json" \
	2>"$RAW/dns.log" || echo "bench: dns: exit $? (build/bench/raw/dns.log)" >&2

echo "sh tests/gate/bench.sh -o build/bench/raw/gate.json $gate_time" \
	>>"$RAW/commands.txt"
echo "bench: discovery-gate, nginx and haproxy, wrk $gate_time each" >&2
sh tests/gate/bench.sh -o "$RAW/gate.json" "$gate_time" >"$RAW/gate.log" 2>&1 ||
	echo "bench: gate: exit $? (build/bench/raw/gate.log)" >&2

cat /proc/loadavg >"$RAW/loadavg.end"
echo $(($(date +%s) - t0)) >"$RAW/seconds"
/usr/bin/python3 tests/bench/report.py "$RAW" "$OUT" ${QUICK:+--quick}
