/*
 * url: the discoveryd URLs an agent links to.
 *
 *   ws://host[:port][/path[?query]]      port 80 by default
 *   wss://host[:port][/path[?query]]     port 443 by default, TLS
 *
 * host is a name, an IPv4 address or a bracketed IPv6 address. Parsed once,
 * when the agent is created, so a typo is an error at start-up and not a
 * reconnect loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_int.h"

static bool host_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

static bool path_char_ok(char c)
{
	/* Printable ASCII without space, quote or angle brackets: it goes into
	 * the request line as is. */
	return c > 0x20 && c < 0x7f && c != '"' && c != '<' && c != '>';
}

static int parse_port(const char *s, size_t n, int *port)
{
	long v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = (int)v;
	return 0;
}

/* host[:port] up to the path; p is just after the scheme. */
static const char *parse_authority(const char *text, const char *p,
				   struct url *u, bool *v6, char *err,
				   size_t errlen)
{
	const char *host, *host_end, *port_s;
	size_t host_len;

	if (*p == '[') {
		*v6 = true;
		host = p + 1;
		host_end = strchr(host, ']');
		if (!host_end) {
			snprintf(err, errlen, "URL %s: unclosed '['", text);
			return NULL;
		}
		p = host_end + 1;
	} else {
		host = p;
		while (*p && *p != ':' && *p != '/' && *p != '?')
			p++;
		host_end = p;
	}
	host_len = (size_t)(host_end - host);
	if (host_len == 0 || host_len >= sizeof(u->host)) {
		snprintf(err, errlen, "URL %s: bad host", text);
		return NULL;
	}
	for (size_t i = 0; i < host_len; i++) {
		if (!(host_char_ok(host[i]) ||
		      (*v6 && (host[i] == ':' || host[i] == '%')))) {
			snprintf(err, errlen, "URL %s: bad character in host",
				 text);
			return NULL;
		}
	}
	memcpy(u->host, host, host_len);
	u->host[host_len] = '\0';

	if (*p == ':') {
		port_s = ++p;
		while (*p && *p != '/' && *p != '?')
			p++;
		if (parse_port(port_s, (size_t)(p - port_s), &u->port)) {
			snprintf(err, errlen, "URL %s: bad port", text);
			return NULL;
		}
	} else if (*p && *p != '/' && *p != '?') {
		snprintf(err, errlen, "URL %s: bad host", text);
		return NULL;
	}
	return p;
}

int url_parse(const char *text, struct url *u, char *err, size_t errlen)
{
	const char *p;
	bool v6 = false;

	memset(u, 0, sizeof(*u));
	if (strlen(text) >= sizeof(u->text)) {
		snprintf(err, errlen, "URL longer than %zu bytes",
			 sizeof(u->text) - 1);
		return -1;
	}
	snprintf(u->text, sizeof(u->text), "%s", text);

	if (!strncmp(text, "ws://", 5)) {
		p = text + 5;
		u->port = 80;
	} else if (!strncmp(text, "wss://", 6)) {
		p = text + 6;
		u->port = 443;
		u->tls = true;
	} else {
		snprintf(err, errlen, "URL %s: scheme must be ws:// or wss://",
			 text);
		return -1;
	}
	p = parse_authority(text, p, u, &v6, err, errlen);
	if (!p)
		return -1;

	snprintf(u->path, sizeof(u->path), *p == '?' ? "/%s" : "%s",
		 *p ? p : "/");
	for (const char *c = u->path; *c; c++) {
		if (!path_char_ok(*c) || *c == '#') {
			snprintf(err, errlen, "URL %s: bad character in path",
				 text);
			return -1;
		}
	}

	if (u->port == (u->tls ? 443 : 80))
		snprintf(u->host_header, sizeof(u->host_header),
			 v6 ? "[%s]" : "%s", u->host);
	else
		snprintf(u->host_header, sizeof(u->host_header),
			 v6 ? "[%s]:%d" : "%s:%d", u->host, u->port);
	return 0;
}
