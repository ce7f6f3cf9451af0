#!/bin/sh
# Before `make deb`: debian/control's Build-Depends, checked by Debian's
# dpkg-checkbuilddeps, and a line that installs what is missing (the first
# of alternatives, without versions; debhelper-compat is debhelper's).
#   check-builddeps.sh WHO [ADMINDIR]
# ADMINDIR: another dpkg database than /var/lib/dpkg (the tests use a copy
# with a package taken out). Exit 1 if a build dependency is unmet.
who=$1
out=$(dpkg-checkbuilddeps ${2:+--admindir="$2"} 2>&1) && exit 0
echo "$out" >&2
unmet=$(echo "$out" | sed -n 's/.*Unmet build dependencies: //p' |
	sed -e 's/([^)]*)//g' -e 's/|[^ ]*//g' -e 's/ | [^ ]*//g' \
		-e 's/<[^>]*>//g' -e 's/\bdebhelper-compat\b/debhelper/g' |
	tr -s ' ')
if [ -n "$unmet" ]; then
	echo "$who: install them as root:  apt-get install $unmet (or: make deps)" >&2
fi
exit 1
