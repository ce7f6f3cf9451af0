#!/bin/sh
# Gate throughput against nginx proxy_pass and HAProxy, all in front of the
# same fast upstream (nginx answering a small body itself, keepalive
# upstreams; two nginx workers, two HAProxy threads), driven by wrk with 2
# threads and 64 connections; and the gate's locked answers per second.
#
#   sh tests/gate/bench.sh [-o FILE] [DURATION]
#
# DURATION is wrk's (default 5s); needs nginx, haproxy and wrk. It prints requests/s
# and p99 for each; with -o it also writes one JSON object a line to FILE:
# {"system","case","rps","p99_ms","non2xx","command"} (make bench reads it).
# It asserts nothing (STYLE §6).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=
if [ "${1:-}" = -o ]; then
  OUT=$2
  shift 2
  : > "$OUT"
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
YAML
  "$ROOT/build/bin/discovery-gate" -v -c $T/gate$2.yaml >/dev/null 2>$T/gate$2.log & echo $! >> $T/pids
  until grep -qs 'msg=ready' $T/gate$2.log; do :; done
  sed -n 's/.*msg=listening listener=http addr=\([^ ]*\).*/\1/p' $T/gate$2.log
}
OPEN=$(gate "" 1)
LOCKED=$(gate "cache" 2)
# run SYSTEM CASE TITLE URL: one wrk run, its summary, and its JSON line.
run() {
  echo "== $3"
  wrk -t2 -c64 -d$DUR --latency "$4" > $T/wrk.out
  grep -E 'Requests/sec|99%|Non-2xx' $T/wrk.out
  [ -n "$OUT" ] || return 0
  awk -v sys="$1" -v kind="$2" -v cmd="wrk -t2 -c64 -d$DUR --latency $4" '
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
    END { printf "{\"system\":\"%s\",\"case\":\"%s\",\"rps\":%s,\"p99_ms\":%.3f,\"non2xx\":%d,\"command\":\"%s\"}\n",
                 sys, kind, rps, p99, non2xx, cmd }' $T/wrk.out >> "$OUT"
}
run nginx proxy "nginx proxy_pass" http://127.0.0.1:$NGX/
run haproxy proxy "haproxy" http://127.0.0.1:$HAP/
run discovery-gate proxy "discovery-gate, open" http://$OPEN/
run discovery-gate locked "discovery-gate, locked (423)" http://$LOCKED/
