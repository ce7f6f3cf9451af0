#!/bin/sh
# Install the Debian packages given as arguments that are not installed yet.
# As root: apt-get. Otherwise: say which are missing and how to get them.
missing=""
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages:$missing" >&2
	echo "install them as root:  apt-get install$missing" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || exit 1
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null || exit 1
# Debian starts a redis-sentinel service (127.0.0.1:26379, watching
# 127.0.0.1:6379) on install. The tests run sentinels of their own, on free
# ports with their own files, and never use it: one this script installed
# is stopped and disabled rather than left running. One installed before
# is the machine's own and is left alone.
case " $missing " in
*" redis-sentinel "*)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now redis-sentinel.service >/dev/null 2>&1 ||
			true
	fi
	;;
esac
# The same for the benchmark's peers (make bench) and Prometheus: each run
# starts its own on free ports, with its own files, and stops it.
for svc in mosquitto nats-server etcd prometheus; do
	case " $missing " in
	*" $svc "* | *" $svc-server "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --now "$svc.service" >/dev/null 2>&1 ||
				true
		fi
		;;
	esac
done
