#!/bin/sh
# fanout.sh: one fan-out run against one system. It starts a fresh server on
# kernel-chosen ports, waits for the line that says it listens (no sleeps:
# its output comes through a FIFO and is read line by line), runs
# build/bench/loadgen against it with the server's pid (for VmRSS), prints
# loadgen's JSON line on stdout, stops the server with SIGTERM, and sums up
# what it complained of on stderr.
#
#   tests/bench/fanout.sh SYSTEM N [LOADGEN-ARGS...]
#
#   SYSTEM  discoveryd   build/bin/discoveryd, trigger POST /api/discovery/broadcast
#           discoveryd-endpoints  the links watch service api; one instance
#                        of it (tests/tools/agent_probe) turns ready and
#                        not ready in turn; the endpoints update is timed
#           floor        build/bench/floor (tests/bench/floor.c)
#           socket.io    tests/bench/peers/socketio/server.js on node
#           fastapi      tests/bench/peers/fastapi/server.py on uvicorn
#           lws-minimal  build/bench/lws_minimal (tests/bench/lws_minimal.c):
#                        libwebsockets as discoveryd sets it up, nothing else
#           redis        redis-server, pub/sub (no persistence); raw TCP
#           nats         nats-server, plain NATS over TCP
#           mosquitto    mosquitto, MQTT 3.1.1 over TCP, QoS 0
#   N       links, spread over LOADGEN_PROCS workers (2) and the source
#           addresses 127.0.0.1-127.0.0.4
#
# e.g. tests/bench/fanout.sh floor 10000 -r 10 -W 1 -w 2
#      tests/bench/fanout.sh redis 1000 -r 0 -Z 5    (sustained delivery)
# Builds what is missing (make bench-tools). KEEP=1 keeps the temporary
# directory (logs, config). The peers' servers print
# "ready agents=HOST:PORT http=HOST:PORT" once they listen; Redis, NATS and
# mosquitto get a free port and are ready when their own line says so.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/bench
LOADGEN=$OUT/loadgen
PATH=$PATH:/usr/sbin # Debian puts nats-server and mosquitto there
PROCS=${LOADGEN_PROCS:-2}
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
BODY='{"command":"Reload","header":{"source":"bench"},"value":{"why":"bench"}}'

if [ $# -lt 2 ]; then
	sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
fi
system=$1 n=$2
shift 2

make -C "$ROOT" --no-print-directory -s bench-tools >&2

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fanout.XXXXXX")
pid=
catpid=
probe=

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$probe" ]; then
		exec 4>&- 2>/dev/null || true
		kill -TERM "$probe" 2>/dev/null || true
		wait "$probe" 2>/dev/null || true
	fi
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ -n "$catpid" ]; then
		wait "$catpid" 2>/dev/null || true
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "fanout: kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start CMD...: run the server with its output in $TMP/server.log until it
# says where it listens; sets pid, catpid, agents and http.
start() {
	mkfifo "$TMP/log.fifo"
	"$@" >"$TMP/log.fifo" 2>&1 &
	pid=$!
	exec 3<"$TMP/log.fifo"
	agents='' http='' ready=''
	while IFS= read -r line <&3; do
		printf '%s\n' "$line" >>"$TMP/server.log"
		case $line in
		ready\ agents=*)
			agents=${line#ready agents=}; agents=${agents%% *}
			http=${line##* http=}; ready=1; break ;;
		*msg=listening*listener=agents*) agents=${line##*addr=} ;;
		*msg=listening*listener=http*) http=${line##*addr=} ;;
		*msg=ready*) ready=1; break ;;
		esac
	done
	if [ -z "$ready" ] || [ -z "$agents" ] || [ -z "$http" ]; then
		echo "fanout: $system did not get ready:" >&2
		cat "$TMP/server.log" >&2
		exit 1
	fi
	agents=${agents%% *}
	http=${http%% *}
	cat <&3 >>"$TMP/server.log" &
	catpid=$!
	exec 3<&-
}

# free_port: a port the kernel gives out now (for servers that cannot be
# told to take port 0 and say which they got).
free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_peer ADDR PATTERN CMD...: run a peer's server with its output in
# $TMP/server.log until a line matches PATTERN (a shell pattern); its
# subscribers and its publishers both use ADDR.
start_peer() {
	addr=$1 pattern=$2
	shift 2
	mkfifo "$TMP/log.fifo"
	"$@" >"$TMP/log.fifo" 2>&1 &
	pid=$!
	exec 3<"$TMP/log.fifo"
	ready=''
	while IFS= read -r line <&3; do
		printf '%s\n' "$line" >>"$TMP/server.log"
		case $line in
		*"Listening for client connections on "*)
			addr=${line##*connections on } ;;
		esac
		# shellcheck disable=SC2254 # the pattern is meant to glob
		case $line in $pattern) ready=1; break ;; esac
	done
	if [ -z "$ready" ]; then
		echo "fanout: $system did not get ready:" >&2
		cat "$TMP/server.log" >&2
		exit 1
	fi
	agents=$addr http=$addr
	cat <&3 >>"$TMP/server.log" &
	catpid=$!
	exec 3<&-
}

# stop: SIGTERM, wait, and sum up the warnings and errors it logged.
stop() {
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
	wait "$catpid" || true
	catpid=
	log=$TMP/server.log
	pat='level=(warn|error)|Error|Traceback|WARNING|ERROR'
	count=$(grep -v -e 'msg="no auth"' -e 'Memory overcommit' "$log" | grep -c -E "$pat" || true)
	if [ "$count" -gt 0 ]; then
		echo "fanout: $system $n: $count warning/error lines, the first:" >&2
		grep -v -e 'msg="no auth"' -e 'Memory overcommit' "$log" | grep -E "$pat" | head -n 5 >&2
	fi
}

case $system in
discoveryd)
	mkdir -p "$TMP/state"
	cat >"$TMP/discoveryd.yaml" <<-EOF
	listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }
	state_dir: $TMP/state
	limits: { max_agents: 100000, max_agents_per_ip: 0, accept_rate: 0 }
	EOF
	start "$ROOT/build/bin/discoveryd" -c "$TMP/discoveryd.yaml"
	set -- -m discovery -t 'POST /api/discovery/broadcast' -d "$BODY" "$@"
	;;
discoveryd-endpoints)
	mkdir -p "$TMP/state"
	cat >"$TMP/discoveryd.yaml" <<-EOF
	listen: { http: 127.0.0.1:0, agents: 127.0.0.1:0 }
	state_dir: $TMP/state
	limits: { max_agents: 100000, max_agents_per_ip: 0, accept_rate: 0 }
	${EP_EXTRA:-}
	EOF
	start "$ROOT/build/bin/discoveryd" -c "$TMP/discoveryd.yaml"
	make -C "$ROOT" --no-print-directory -s build/tests/tools/agent_probe >&2
	mkfifo "$TMP/probe.fifo"
	AGENT_PROBE_ADDRESS=10.0.0.1:80 "$ROOT/build/tests/tools/agent_probe" \
		"ws://$agents/" api probe-1 <"$TMP/probe.fifo" \
		>"$TMP/probe.log" 2>&1 &
	probe=$!
	exec 4>"$TMP/probe.fifo"
	i=0
	until grep -q 'link state=linked' "$TMP/probe.log"; do
		i=$((i + 1))
		[ "$i" -lt 600 ] || { cat "$TMP/probe.log" >&2; exit 1; }
		sleep 0.05
	done
	echo "ready 1" >&4
	# Rounds 100 ms apart: past the coalescing window (50 ms), so that
	# each change is flushed at once, as a lone change is.
	set -- -m discovery -e api -F "$TMP/probe.fifo" -G 0.1 "$@"
	;;
floor)
	start "$OUT/floor"
	set -- -m plain -t 'POST /broadcast' "$@"
	;;
socket.io)
	export NODE_PATH="$OUT/socketio/node_modules"
	start node "$ROOT/tests/bench/peers/socketio/server.js"
	set -- -m engineio -t 'POST /broadcast' "$@"
	;;
fastapi)
	start /usr/bin/python3 "$ROOT/tests/bench/peers/fastapi/server.py"
	set -- -m plain -u /ws/0 -t 'POST /broadcast' "$@"
	;;
lws-minimal)
	start "$OUT/lws_minimal"
	set -- -m plain -t 'POST /broadcast' "$@"
	;;
redis)
	port=$(free_port)
	start_peer "127.0.0.1:$port" '*Ready to accept connections*' \
		redis-server --port "$port" --bind 127.0.0.1 --save '' \
		--appendonly no --dir "$TMP" --maxclients 12000 \
		--protected-mode no --daemonize no
	set -- -m redis "$@"
	;;
nats)
	# -p -1: a random port, which its log line gives.
	start_peer '' '*Server is ready*' nats-server -a 127.0.0.1 -p -1
	set -- -m nats "$@"
	;;
mosquitto)
	port=$(free_port)
	cat >"$TMP/mosquitto.conf" <<-EOF
	listener $port 127.0.0.1
	allow_anonymous true
	persistence false
	connection_messages false
	log_dest stderr
	log_type error
	log_type warning
	log_type notice
	log_type information
	EOF
	start_peer "127.0.0.1:$port" '*mosquitto version * running*' \
		mosquitto -c "$TMP/mosquitto.conf"
	set -- -m mqtt "$@"
	;;
*)
	echo "fanout: unknown system $system" >&2
	exit 2
	;;
esac

status=0
"$LOADGEN" -a "$agents" -H "$http" -p "$pid" -n "$n" -P "$PROCS" \
	-b "$SOURCES" "$@" || status=$?
stop
if [ "$status" -ne 0 ]; then
	echo "fanout: $system $n: loadgen exited with $status" >&2
fi
exit "$status"
