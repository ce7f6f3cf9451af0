#!/bin/sh
# Gate throughput against nginx proxy_pass, both in front of the same fast
# upstream (nginx answering a small body itself), driven by wrk with 64
# connections; and the gate's locked answers per second.
#
#   sh tests/gate/bench.sh [DURATION]      (default 5s; needs nginx and wrk)
#
# Prints requests/s and p99 for each; it asserts nothing (STYLE §6).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DUR=${1:-5s}
T=$(mktemp -d)
trap 'kill $(cat $T/pids 2>/dev/null) 2>/dev/null; rm -rf $T' EXIT
free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
APP=$(free_port); NGX=$(free_port)
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
for p in $APP $NGX; do
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
run() { echo "== $1"; wrk -t2 -c64 -d$DUR --latency "$2" | grep -E 'Requests/sec|99%|Non-2xx'; }
run "nginx proxy_pass" http://127.0.0.1:$NGX/
run "discovery-gate, open" http://$OPEN/
run "discovery-gate, locked (423)" http://$LOCKED/
