#!/bin/sh
# Say which Debian package holds each tool that is missing, before a target
# that needs it runs (rather than let it fail halfway with "not found").
#   check-tools.sh WHO TOOL:PACKAGE...
# WHO starts each message ("make deb"). Exit 1 if a tool is missing.
who=$1
shift
missing=""
for pair in "$@"; do
	tool=${pair%%:*}
	pkg=${pair#*:}
	command -v "$tool" >/dev/null 2>&1 && continue
	echo "$who: $tool not found: it comes with Debian's $pkg package" >&2
	case " $missing " in
	*" $pkg "*) ;;
	*) missing="$missing $pkg" ;;
	esac
done
[ -z "$missing" ] && exit 0
echo "$who: install it as root:  apt-get install$missing  (or: make deps)" >&2
exit 1
