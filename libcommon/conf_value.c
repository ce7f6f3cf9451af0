/*
 * conf_value: the scalar parsers behind conf.c, and their messages.
 *
 * One function turns the text of a scalar into the typed field a conf_key row
 * names (integers, doubles, bools, durations, sizes, addresses, enums),
 * checks the row's bounds, and on failure words the message the loader puts
 * after "file:line:col: ". The loader itself, and the string and custom types
 * that need no parsing here, are in conf.c. The public helpers programs use
 * for command-line flags (conf_parse_duration, conf_parse_size,
 * conf_parse_addr, conf_addr_format) live here too. Nothing here knows libyaml.
 *
 * Choices the header leaves open:
 *   - Bounds: min = max = 0 means unbounded; max = 0 alone means "at least
 *     min". Durations and sizes are never negative.
 *   - Durations and sizes may have a fraction if it comes to a whole number
 *     of milliseconds or bytes ("1.5s", "0.5KiB"; not "1.5ms").
 *   - Enum values and units are case-sensitive; bools are not.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/socket.h>
#include <strings.h>

#include "conf.h"
#include "conf_int.h"

struct unit {
	const char *suffix;
	int64_t scale;
};

/* clang-format off */
static const struct unit duration_units[] = {
	{ "ms", 1 }, { "s", 1000 }, { "m", 60 * 1000 }, { "h", 3600 * 1000 },
	{ NULL, 0 },
};
/* clang-format on */

/* Ascending, as format_bound expects; a bare number is bytes. */
/* clang-format off */
static const struct unit size_units[] = {
	{ "", 1 }, { "B", 1 }, { "KiB", INT64_C(1) << 10 },
	{ "MiB", INT64_C(1) << 20 }, { "GiB", INT64_C(1) << 30 }, { NULL, 0 },
};
/* clang-format on */

/* ---- scalar parsers ---------------------------------------------------- */

/*
 * Digits, an optional fraction, then one of units' suffixes. Returns 0, -1
 * when s is not of that form (or the fraction is not a whole number of the
 * base unit), -2 when the value does not fit in int64_t.
 */
static int parse_scaled(const char *s, const struct unit *units, int64_t *out)
{
	int64_t whole = 0, frac = 0, frac_div = 1, frac_scaled;
	bool overflow = false;
	const struct unit *u;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		if (whole > (INT64_MAX - (*s - '0')) / 10)
			overflow = true;
		else
			whole = whole * 10 + (*s - '0');
	}
	if (*s == '.') {
		if (!isdigit((unsigned char)*++s))
			return -1;
		for (; isdigit((unsigned char)*s); s++) {
			if (frac_div == 1000000000)
				return -1; /* more than 9 decimals */
			frac = frac * 10 + (*s - '0');
			frac_div *= 10;
		}
	}
	for (u = units; u->suffix && strcmp(s, u->suffix) != 0; u++)
		;
	if (!u->suffix)
		return -1;
	/* frac < 1e9 and scale <= 2^30: the product fits. */
	if ((frac * u->scale) % frac_div != 0)
		return -1;
	frac_scaled = frac * u->scale / frac_div;
	if (overflow || whole > (INT64_MAX - frac_scaled) / u->scale)
		return -2;
	*out = whole * u->scale + frac_scaled;
	return 0;
}

static int parse_duration(const char *s, int64_t *ms)
{
	if (s && strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	return parse_scaled(s, duration_units, ms);
}

int conf_parse_duration(const char *s, int64_t *ms)
{
	return parse_duration(s, ms) == 0 ? 0 : -1;
}

int conf_parse_size(const char *s, int64_t *bytes)
{
	return parse_scaled(s, size_units, bytes) == 0 ? 0 : -1;
}

/* A decimal integer with an optional sign: 0, -1 (syntax) or -2 (range). */
static int parse_int(const char *s, int64_t *out)
{
	const char *p = s + (*s == '-' || *s == '+');
	char *end;
	long long v;

	if (!isdigit((unsigned char)*p))
		return -1;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -2;
	*out = v;
	return 0;
}

/* Decimal notation only: no hex, inf or nan. 0, -1 or -2 as parse_int. */
static int parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (!*s || strspn(s, "0123456789+-.eE") != strlen(s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end)
		return -1;
	if (!isfinite(v))
		return -2;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", NULL };
	static const char *const no[] = { "false", "no", "off", NULL };

	for (size_t i = 0; yes[i]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* The port after the last colon: 1 to 5 digits, at most 65535. */
static int parse_port(const char *s, int *port)
{
	size_t len = strspn(s, "0123456789");
	long v;

	if (len == 0 || len > 5 || s[len])
		return -1;
	v = strtol(s, NULL, 10);
	if (v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

int conf_parse_addr(const char *s, struct conf_addr *addr)
{
	const char *host = s, *port_text;
	size_t host_len;
	int port;

	if (!s)
		return -1;
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -1;
		host = s + 1;
		host_len = (size_t)(close - host);
		port_text = close + 2;
		if (!memchr(host, ':', host_len))
			return -1; /* brackets are for IPv6 only */
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon)
			return -1;
		host_len = (size_t)(colon - s);
		port_text = colon + 1;
		if (memchr(s, ':', host_len) || memchr(s, ']', host_len))
			return -1; /* IPv6 needs brackets */
	}
	if (host_len >= sizeof(addr->host) || parse_port(port_text, &port) != 0)
		return -1;
	for (size_t i = 0; i < host_len; i++)
		if (isspace((unsigned char)host[i]) || host[i] == '[')
			return -1;
	memcpy(addr->host, host, host_len);
	addr->host[host_len] = '\0';
	addr->port = port;
	return 0;
}

int conf_redis_url_parse(const char *s, struct redis_url *u, char *err,
			 size_t errlen)
{
	const char *rest, *at, *slash;
	char hostport[CONF_ADDR_TEXT];
	size_t len;

	memset(u, 0, sizeof(*u));
	if (!s || strncmp(s, "redis://", 8) != 0) {
		snprintf(err, errlen,
			 "must start with redis:// (rediss:// and "
			 "unix sockets are not supported)");
		return -1;
	}
	rest = s + 8;
	/* The credentials end at the last '@' (a password may hold '/' or
	 * '@'); the user at the first ':'. Written as they are: no
	 * percent-decoding. */
	at = strrchr(rest, '@');
	if (at) {
		const char *colon = memchr(rest, ':', (size_t)(at - rest));
		size_t ulen = colon ? (size_t)(colon - rest) : 0;

		len = colon ? (size_t)(at - colon - 1) : 0;
		if (!colon || len == 0 || len >= sizeof(u->password) ||
		    ulen >= sizeof(u->user)) {
			snprintf(err, errlen,
				 "credentials must be written "
				 "[user]:password@ (at most 127 and 255 "
				 "bytes)");
			return -1;
		}
		memcpy(u->user, rest, ulen);
		u->user[ulen] = '\0';
		memcpy(u->password, colon + 1, len);
		u->password[len] = '\0';
		rest = at + 1;
	}
	slash = strchr(rest, '/');
	len = slash ? (size_t)(slash - rest) : strlen(rest);
	if (len == 0 || len + 6 >= sizeof(hostport)) {
		snprintf(err, errlen, "no host");
		return -1;
	}
	memcpy(hostport, rest, len);
	hostport[len] = '\0';
	if (!strrchr(hostport, ':') || (hostport[len - 1] == ']'))
		snprintf(hostport + len, sizeof(hostport) - len, ":6379");
	if (conf_parse_addr(hostport, &u->addr) != 0 || u->addr.port == 0) {
		snprintf(err, errlen, "host[:port] is not valid");
		return -1;
	}
	if (slash && slash[1]) {
		size_t digits = strspn(slash + 1, "0123456789");

		if (digits == 0 || digits > 7 || slash[1 + digits] ||
		    (u->db = atoi(slash + 1)) > (1 << 20)) {
			snprintf(err, errlen, "the database must be a number");
			return -1;
		}
	}
	return 0;
}

const char *conf_addr_format(const struct conf_addr *addr, char *buf,
			     size_t size)
{
	bool v6 = strchr(addr->host, ':') != NULL;

	snprintf(buf, size, "%s%s%s:%d", v6 ? "[" : "", addr->host,
		 v6 ? "]" : "", addr->port);
	return buf;
}

/* ---- messages ---------------------------------------------------------- */

/* A bound as the user would write it: "1h" rather than "3600000". */
static void format_bound(const struct conf_key *row, int64_t v, char *buf,
			 size_t size)
{
	const struct unit *units = row->type == CONF_DURATION ? duration_units :
				   row->type == CONF_SIZE     ? size_units :
								NULL;
	size_t i = 0;

	if (!units || v == 0) {
		snprintf(buf, size, "%" PRId64, v);
		return;
	}
	while (units[i + 1].suffix)
		i++; /* the largest unit; the smallest has scale 1 */
	while (v % units[i].scale != 0)
		i--;
	snprintf(buf, size, "%" PRId64 "%s", v / units[i].scale,
		 units[i].suffix);
}

static bool bounded(const struct conf_key *row)
{
	return row->min != 0 || row->max != 0;
}

/* Write why the value is out of row's bounds to msg; returns -1. */
static int bounds_error(const struct conf_key *row, char *msg, size_t size)
{
	char lo[32], hi[32];

	if (!bounded(row)) {
		snprintf(msg, size, "'%s' is out of range", row->name);
		return -1;
	}
	format_bound(row, row->min, lo, sizeof(lo));
	if (row->max == 0) {
		snprintf(msg, size, "'%s' must be at least %s", row->name, lo);
		return -1;
	}
	format_bound(row, row->max, hi, sizeof(hi));
	snprintf(msg, size, "'%s' must be between %s and %s", row->name, lo,
		 hi);
	return -1;
}

static const char *expected(enum conf_type type)
{
	switch (type) {
	case CONF_STRING: return "a string";
	case CONF_INT: return "an integer";
	case CONF_BOOL: return "true or false (or yes/no, on/off)";
	case CONF_DOUBLE: return "a number";
	case CONF_DURATION: return "a duration like 250ms, 10s, 5m or 1h";
	case CONF_SIZE: return "a size like 512B, 64KiB, 1MiB or 1GiB";
	case CONF_ADDR:
		return "an address like 127.0.0.1:5916, [::1]:5916 or :5916";
	case CONF_STRLIST: return "a string or a list of strings";
	case CONF_SECTION:
	case CONF_MAP: return "a mapping";
	default: return "a single value";
	}
}

int conf_value_type_error(const struct conf_key *row, char *msg, size_t size)
{
	char list[256];
	size_t used = 0;

	if (row->type != CONF_ENUM || !row->choices) {
		snprintf(msg, size, "'%s' must be %s", row->name,
			 expected(row->type));
		return -1;
	}
	list[0] = '\0';
	for (size_t i = 0; row->choices[i] && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used,
					 "%s%s", i ? ", " : "",
					 row->choices[i]);
	snprintf(msg, size, "'%s' must be one of: %s", row->name, list);
	return -1;
}

/* ---- storing one scalar ------------------------------------------------ */

int conf_value_parse(const struct conf_key *row, void *field, const char *s,
		     char *msg, size_t size)
{
	int64_t v = 0;
	double d = 0;
	int rc;

	switch (row->type) {
	case CONF_BOOL:
		return parse_bool(s, field) == 0 ?
			       0 :
			       conf_value_type_error(row, msg, size);
	case CONF_ADDR:
		return conf_parse_addr(s, field) == 0 ?
			       0 :
			       conf_value_type_error(row, msg, size);
	case CONF_ENUM:
		for (int i = 0; row->choices && row->choices[i]; i++) {
			if (strcmp(s, row->choices[i]) == 0) {
				*(int *)field = i;
				return 0;
			}
		}
		return conf_value_type_error(row, msg, size);
	case CONF_DOUBLE:
		rc = parse_double(s, &d);
		if (rc == 0 && bounded(row) &&
		    (d < (double)row->min ||
		     (row->max && d > (double)row->max)))
			rc = -2;
		break;
	case CONF_INT: rc = parse_int(s, &v); break;
	case CONF_DURATION: rc = parse_duration(s, &v); break;
	case CONF_SIZE: rc = parse_scaled(s, size_units, &v); break;
	default:
		snprintf(msg, size, "'%s' is not a scalar key", row->name);
		return -1;
	}
	if (rc == 0 && row->type != CONF_DOUBLE && bounded(row) &&
	    (v < row->min || (row->max && v > row->max)))
		rc = -2;
	if (rc == -1)
		return conf_value_type_error(row, msg, size);
	if (rc == -2)
		return bounds_error(row, msg, size);
	if (row->type == CONF_DOUBLE)
		*(double *)field = d;
	else
		*(int64_t *)field = v;
	return 0;
}

int conf_addr_resolve(const struct conf_addr *addr, const char *what,
		      struct sockaddr_storage *ss, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[8];
	int rc;

	snprintf(port, sizeof(port), "%d", addr->port);
	rc = getaddrinfo(addr->host[0] ? addr->host : NULL, port, &hints, &res);
	if (rc || !res) {
		snprintf(err, errlen, "%s: %s: %s", what, addr->host,
			 rc ? gai_strerror(rc) : "no address");
		if (res)
			freeaddrinfo(res);
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}
