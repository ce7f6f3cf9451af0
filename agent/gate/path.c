/*
 * path: the pass test of a locked gate (see path.h).
 */
#include <string.h>

#include "path.h"

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A decoded path every reader reads the same way. */
static bool clean(const char *p, size_t n)
{
	size_t seg = 0; /* start of the current segment */

	if (!n || p[0] != '/')
		return false;
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)p[i] : '/';

		if (c < 0x20 || c == 0x7f || c == '%' || c == ';' || c == '\\')
			return false;
		if (c != '/')
			continue;
		/* the segment p[seg, i): "." and ".." never pass */
		if ((i - seg == 1 && p[seg] == '.') ||
		    (i - seg == 2 && p[seg] == '.' && p[seg + 1] == '.'))
			return false;
		seg = i + 1;
	}
	return true;
}

/* The path part of target, percent-decoded once, into out; its length,
 * or -1 when it cannot be decoded or is too long. */
static long decode(const char *target, char *out)
{
	size_t n = 0;

	for (const char *s = target; *s && *s != '?'; s++) {
		char c = *s;

		if (c == '#' || n >= PATH_MAX_BYTES)
			return -1;
		if (c == '%') {
			int hi = hex(s[1]), lo = hi < 0 ? -1 : hex(s[2]);

			if (lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			if (!c)
				return -1;
			s += 2;
		}
		out[n++] = c;
	}
	return (long)n;
}

static bool under(const char *path, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	/* "/healthz" covers /healthz and /healthz/x, not /healthzz;
	 * "/static/" covers everything below it. */
	return n && len >= n && !memcmp(path, prefix, n) &&
	       (prefix[n - 1] == '/' || len == n || path[n] == '/');
}

bool path_passes(const char *target, char *const *prefixes, size_t n)
{
	char path[PATH_MAX_BYTES];
	long len = n ? decode(target, path) : -1;

	if (len < 0 || !clean(path, (size_t)len))
		return false;
	for (size_t i = 0; i < n; i++)
		if (under(path, (size_t)len, prefixes[i]))
			return true;
	return false;
}

bool path_valid_prefix(const char *prefix)
{
	size_t n = strlen(prefix);

	return n < PATH_MAX_BYTES && !strpbrk(prefix, "?#") && clean(prefix, n);
}
