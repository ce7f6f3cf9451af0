#!/bin/sh
# Gate throughput against nginx proxy_pass and HAProxy, all in front of the
# same fast upstream (nginx answering a small body itself, keepalive
# upstreams; two nginx workers, two HAProxy threads, two gate threads),
# driven by wrk with 2 threads and 64 connections; and the gate's locked
# answers per second.
#
#   sh tests/gate/bench.sh [-o FILE] [-r ROUNDS] [DURATION]
#
# DURATION is wrk's (default 5s); needs nginx, haproxy and wrk. The systems
# run in ROUNDS rounds (default 3), in a rotated order each round, so that
# other work on the machine falls on all of them alike rather than on
# whichever ran during it; each figure is the median of its rounds. It
# prints requests/s and p99 for each run and the medians; with -o it also
# writes one JSON object a line to FILE, the medians:
# {"system","case","rps","p99_ms","non2xx","rounds","command"} (make bench
# reads it). It asserts nothing (STYLE §6).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=
if [ "${1:-}" = -o ]; then
  OUT=$2
  shift 2
  : > "$OUT"
fi
ROUNDS=3
if [ "${1:-}" = -r ]; then
  ROUNDS=$2
  shift 2
fi
DUR=${1:-5s}
T=$(mktemp -d)
trap 'kill $(cat $T/pids 2>/dev/null) 2>/dev/null; rm -rf $T' EXIT
free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
APP=$(free_port); NGX=$(free_port); HAP=$(free_port)
mkdir -p $T/logs
cat > $T/nginx.conf <<NGINX
daemon off; master_process on; worker_processes 2; pid $T/nginx.pid;
error_log $T/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $T/b; proxy_temp_path $T/p; fastcgi_temp_path $T/f;
  uwsgi_temp_path $T/u; scgi_temp_path $T/s;
  upstream app { server 127.0.0.1:$APP; keepalive 64; }
  server { listen 127.0.0.1:$APP; location / { return 200 "hello from the app\n"; } }
  server { listen 127.0.0.1:$NGX;
    location / { proxy_pass http://app; proxy_http_version 1.1;
                 proxy_set_header Connection ""; } }
}
NGINX
nginx -p $T -c $T/nginx.conf & echo $! >> $T/pids
cat > $T/haproxy.cfg <<HAPROXY
global
  maxconn 4096
  nbthread 2
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend gate
  bind 127.0.0.1:$HAP
  default_backend app
backend app
  http-reuse always
  server app 127.0.0.1:$APP
HAPROXY
PATH=$PATH:/usr/sbin # Debian's haproxy
haproxy -db -f $T/haproxy.cfg > $T/logs/haproxy.log 2>&1 & echo $! >> $T/pids
for p in $APP $NGX $HAP; do
  until /usr/bin/python3 -c "import socket;socket.create_connection(('127.0.0.1',$p),1)" 2>/dev/null; do :; done
done
gate() { # $1 = requires list; prints the gate's address
  cat > $T/gate$2.yaml <<YAML
listen: 127.0.0.1:0
upstream: http://127.0.0.1:$APP
requires: [$1]
discovery: [ws://127.0.0.1:9]
service: web
log_level: warn
limits: { threads: 2 } # as HAProxy's nbthread and nginx's workers
YAML
  "$ROOT/build/bin/discovery-gate" -v -c $T/gate$2.yaml >/dev/null 2>$T/gate$2.log & echo $! >> $T/pids
  until grep -qs 'msg=ready' $T/gate$2.log; do :; done
  sed -n 's/.*msg=listening listener=http addr=\([^ ]*\).*/\1/p' $T/gate$2.log
}
OPEN=$(gate "" 1)
LOCKED=$(gate "cache" 2)
# run SYSTEM CASE URL: one wrk run; its figures go to $T/runs.
run() {
  wrk -t2 -c64 -d$DUR --latency "$3" > $T/wrk.out
  awk -v sys="$1" -v kind="$2" '
    function ms(v) {
      if (v ~ /us$/) return v * 0.001
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000
      if (v ~ /m$/) return v * 60000
      return v
    }
    /Requests\/sec/ { rps = $2 }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { non2xx = $NF }
    END { printf "%s %s %s %.3f %d\n", sys, kind, rps, p99, non2xx }' \
    $T/wrk.out | tee -a $T/runs
}
set -- "nginx proxy http://127.0.0.1:$NGX/" \
  "haproxy proxy http://127.0.0.1:$HAP/" \
  "discovery-gate proxy http://$OPEN/" \
  "discovery-gate locked http://$LOCKED/"
echo "system case rps p99_ms non2xx"
r=0
while [ $r -lt "$ROUNDS" ]; do
  # Round r starts at system r mod 4: each takes each place in turn.
  i=0
  while [ $i -lt $# ]; do
    k=$(( (i + r) % $# + 1 ))
    eval "run \${$k}"
    i=$((i + 1))
  done
  r=$((r + 1))
done
echo "== medians of $ROUNDS rounds"
for s in "$@"; do
  set -- $s
  sort -k3,3n $T/runs | awk -v sys=$1 -v kind=$2 '$1 == sys && $2 == kind { r[n++] = $3 } END { print r[int(n / 2)] }' > $T/m.rps
  sort -k4,4n $T/runs | awk -v sys=$1 -v kind=$2 '$1 == sys && $2 == kind { p[n] = $4; x[n++] = $5 } END { print p[int(n / 2)], x[int(n / 2)] }' > $T/m.p99
  read rps < $T/m.rps
  read p99 non2xx < $T/m.p99
  echo "$1 $2 rps=$rps p99=${p99}ms non2xx=$non2xx"
  [ -n "$OUT" ] || continue
  printf '{"system":"%s","case":"%s","rps":%s,"p99_ms":%s,"non2xx":%d,"rounds":%d,"command":"%s"}\n' \
    "$1" "$2" "$rps" "$p99" "$non2xx" "$ROUNDS" \
    "wrk -t2 -c64 -d$DUR --latency $3 (median of $ROUNDS rounds)" >> "$OUT"
done
