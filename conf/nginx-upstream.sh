#!/bin/sh
# nginx-upstream.sh: an example discovery-agent on_endpoints hook that keeps
# an nginx `upstream` block in step with a watched service's ready
# endpoints (copy it where your hooks live).
#
# discovery-agent runs it with the service's newest endpoint set as JSON on
# stdin (man discovery-agent.yaml, hooks.on_endpoints) whenever the set
# changes. It writes one `server` line per ready endpoint, with its weight
# (draining and not ready ones are left out, so nginx sends them nothing
# new), and reloads nginx when the block changed. A load change alone
# rewrites nothing and reloads nothing.
#
#   watch: [api]
#   hooks:
#     on_endpoints: >-
#       NGINX_UPSTREAM_FILE=/etc/nginx/discovery/api.conf
#       /usr/local/bin/nginx-upstream.sh
#
# and, in nginx's http block:
#
#   include /etc/nginx/discovery/*.conf;
#   server { location / { proxy_pass http://api; } }
#
# Environment:
#   NGINX_UPSTREAM_FILE  the file to write (required); replaced whole, by a
#                        rename, so nginx never reads half of it
#   NGINX_UPSTREAM_NAME  the upstream's name (default: the service's,
#                        DISCOVERY_SERVICE)
#   NGINX_PID_FILE       reload by SIGHUP to the master whose pid this file
#                        holds (nginx's `pid`); unset: NGINX_RELOAD
#   NGINX_RELOAD         the reload command (default: nginx -s reload)
#   NGINX_EMPTY_SERVER   with no ready endpoint, nginx still needs a server:
#                        this one, marked down (default 127.0.0.1:9), so
#                        requests fail fast with 502
#
# Needs jq. Exits non-zero when it cannot write or reload (the sidecar logs
# the output); the next run reloads again even if the block is unchanged.
set -eu

file=${NGINX_UPSTREAM_FILE:?NGINX_UPSTREAM_FILE is not set}
name=${NGINX_UPSTREAM_NAME:-${DISCOVERY_SERVICE:?DISCOVERY_SERVICE is not set}}
empty=${NGINX_EMPTY_SERVER:-127.0.0.1:9}
pending="$file.reload-pending"

tmp=$(mktemp "$file.XXXXXX")
trap 'rm -f "$tmp"' EXIT

# Addresses, weights and instance names were checked by discoveryd (a
# host:port, 1-1000, printable without spaces): safe in nginx's syntax.
jq -r --arg name "$name" --arg empty "$empty" '
	"# discovery: the ready endpoints of \(.service) (nginx-upstream.sh)",
	"upstream \($name) {",
	([.endpoints[] | select(.state == "ready")] as $ready |
	 if ($ready | length) == 0 then
		"\tserver \($empty) down; # no ready endpoint"
	 else
		$ready[] | "\tserver \(.address) weight=\(.weight); # \(.instance)"
	 end),
	"}"' >"$tmp"

if cmp -s "$tmp" "$file" && [ ! -e "$pending" ]; then
	exit 0 # nothing nginx sees has changed
fi
chmod 644 "$tmp"
mv -f "$tmp" "$file"
: >"$pending"
if [ -n "${NGINX_PID_FILE:-}" ]; then
	kill -HUP "$(cat "$NGINX_PID_FILE")"
else
	${NGINX_RELOAD:-nginx -s reload}
fi
rm -f "$pending"
echo "upstream $name: $(grep -c '^	server .* weight=' "$file" || true) ready"
