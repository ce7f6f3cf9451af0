/*
 * gconf: the gate's keys, one table for libcommon's conf loader (see
 * gconf.h), and the agent from the same file: docs/gate.md names the
 * dependencies `requires:`, which libagent reads as its `depends_on:` under
 * that alias.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gconf.h"
#include "path.h"

#define F(field) offsetof(struct gconf, field)

const char *const gconf_keys[] = {
	"listen",      "upstream", "requires",        "locked_status",
	"retry_after", "pass",     "latch",           "loading_page",
	"timeouts",    "limits",   "trust_forwarded", "log_level",
	NULL,
};

static const char *const level_choices[] = { "error", "warn", "info", "debug",
					     NULL };

/* clang-format off */
static const struct conf_key timeout_keys[] = {
	{ .name = "connect", .type = CONF_DURATION, .offset = F(connect_timeout_ms),
	  .min = 1, .max = 600000, .def = "5s",
	  .help = "connecting to the upstream; then 502" },
	{ .name = "upstream", .type = CONF_DURATION,
	  .offset = F(upstream_timeout_ms), .min = 1, .max = 86400000,
	  .def = "60s", .help = "waiting for the response head; then 504" },
	{ .name = "stall", .type = CONF_DURATION, .offset = F(stall_timeout_ms),
	  .min = 0, .max = 86400000, .def = "60s",
	  .help = "no byte of a response body for this long: cut; 0 = never" },
	{ .name = "drain", .type = CONF_DURATION, .offset = F(drain_timeout_ms),
	  .min = 0, .max = 3600000, .def = "10s",
	  .help = "SIGTERM: requests in flight get this long" },
	{ .name = "idle", .type = CONF_DURATION, .offset = F(idle_timeout_ms),
	  .min = 1000, .max = 3600000, .def = "60s",
	  .help = "an idle keep-alive client connection is closed" },
	{ .name = "header", .type = CONF_DURATION,
	  .offset = F(header_timeout_ms), .min = 100, .max = 600000,
	  .def = "10s", .help = "a request head must be whole this long after "
	  "its first byte; then 408" },
	{ .name = "client", .type = CONF_DURATION,
	  .offset = F(client_timeout_ms), .min = 100, .max = 3600000,
	  .def = "60s", .help = "a client that sends no body byte, or takes no "
	  "response byte, for this long is cut" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key limit_keys[] = {
	{ .name = "connections", .type = CONF_INT, .offset = F(max_connections),
	  .min = 1, .max = 1000000, .def = "1024",
	  .help = "client connections at once" },
	{ .name = "connections_per_ip", .type = CONF_INT, .offset = F(max_per_ip),
	  .min = 0, .max = 1000000, .def = "256",
	  .help = "of them from one address (IPv6: one /64); 0 = no cap" },
	{ .name = "head", .type = CONF_SIZE, .offset = F(head_max),
	  .min = 4 * 1024, .max = 1024 * 1024, .def = "32KiB",
	  .help = "bytes of a request head; more is 431" },
	{ .name = "threads", .type = CONF_INT, .offset = F(threads), .min = 0,
	  .max = 256, .def = "0", .help = "worker threads; 0 = cores" },
	{ .name = "upstream_idle", .type = CONF_INT, .offset = F(upstream_idle),
	  .min = 0, .max = 100000, .def = "64",
	  .help = "idle upstream connections kept per thread" },
	{ .name = "buffer", .type = CONF_SIZE, .offset = F(buffer),
	  .min = 32 * 1024, .max = 64 * 1024 * 1024, .def = "128KiB",
	  .help = "body bytes held per request and direction" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key gate_keys[] = {
	{ .name = "listen", .type = CONF_ADDR, .offset = F(listen),
	  .def = "127.0.0.1:8080", .help = "where clients connect" },
	{ .name = "upstream", .type = CONF_STRING, .offset = F(upstream),
	  .flags = CONF_REQUIRED, .help = "the app: http://host:port[/prefix]" },
	{ .name = "requires", .type = CONF_IGNORE,
	  .help = "services the app waits for (libagent's depends_on)" },
	{ .name = "locked_status", .type = CONF_INT, .offset = F(locked_status),
	  .min = 423, .max = 503, .def = "423", .help = "423 or 503" },
	{ .name = "retry_after", .type = CONF_DURATION,
	  .offset = F(retry_after_ms), .min = 0, .max = 86400000, .def = "5s",
	  .help = "Retry-After of locked answers" },
	{ .name = "pass", .type = CONF_STRLIST, .offset = F(pass), .max = 256,
	  .help = "path prefixes always proxied" },
	{ .name = "latch", .type = CONF_BOOL, .offset = F(latch), .def = "false",
	  .help = "once open, stay open" },
	{ .name = "loading_page", .type = CONF_STRING, .offset = F(loading_page),
	  .help = "an HTML file for browsers while locked" },
	{ .name = "timeouts", .type = CONF_SECTION, .sub = timeout_keys,
	  .present = CONF_NO_FIELD, .help = "proxy timeouts" },
	{ .name = "limits", .type = CONF_SECTION, .sub = limit_keys,
	  .present = CONF_NO_FIELD, .help = "proxy limits" },
	{ .name = "trust_forwarded", .type = CONF_BOOL,
	  .offset = F(trust_forwarded), .def = "false",
	  .help = "extend the client's X-Forwarded-* instead of replacing" },
	{ .name = "log_level", .type = CONF_ENUM, .offset = F(log_level),
	  .def = "info", .choices = level_choices,
	  .help = "error, warn, info or debug (SIGHUP reloads it)" },
	{ .name = NULL },
};
/* clang-format on */

/* http://host[:port][/prefix] into its parts; -1 if it is not that. */
static int split_upstream(struct gconf *c)
{
	const char *auth = c->upstream + 7, *end, *host = auth, *colon;
	size_t alen, hlen;
	char *digits_end;
	long port = 80;

	if (strncmp(c->upstream, "http://", 7))
		return -1;
	/* The raw request target is appended to the prefix. */
	for (size_t n = strlen(c->upstream);
	     n > 7 && c->upstream[n - 1] == '/';)
		c->upstream[--n] = '\0';
	end = auth + strcspn(auth, "/?#@");
	if (*end && *end != '/')
		return -1;
	alen = (size_t)(end - auth);
	c->upstream_prefix = end;
	if (*auth == '[') {
		const char *close = memchr(auth, ']', alen);

		if (!close)
			return -1;
		host = auth + 1;
		hlen = (size_t)(close - host);
		colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
		if (!colon && close + 1 != end)
			return -1;
	} else {
		colon = memchr(auth, ':', alen);
		hlen = (size_t)((colon ? colon : end) - auth);
	}
	if (colon) {
		port = strtol(colon + 1, &digits_end, 10);
		if (digits_end != end || colon + 1 == end)
			return -1;
	}
	if (!hlen || hlen >= sizeof(c->upstream_host) || port < 1 ||
	    port > 65535 || alen >= sizeof(c->upstream_authority))
		return -1;
	memcpy(c->upstream_host, host, hlen);
	c->upstream_host[hlen] = '\0';
	memcpy(c->upstream_authority, auth, alen);
	c->upstream_authority[alen] = '\0';
	snprintf(c->upstream_port, sizeof(c->upstream_port), "%ld", port);
	return 0;
}

static int check(const char *path, struct gconf *c, char *err, size_t errlen)
{
	if (c->locked_status != 423 && c->locked_status != 503) {
		snprintf(err, errlen, "%s: locked_status: need 423 or 503",
			 path);
		return -1;
	}
	if (split_upstream(c)) {
		snprintf(err, errlen,
			 "%s: upstream: need http://host[:port][/prefix]",
			 path);
		return -1;
	}
	for (size_t i = 0; i < c->pass.n; i++)
		if (!path_valid_prefix(c->pass.v[i])) {
			snprintf(err, errlen,
				 "%s: pass: \"%s\" must be a plain "
				 "path: / then no dot segment, %%, ;, \\, ? or "
				 "#",
				 path, c->pass.v[i]);
			return -1;
		}
	if (c->loading_page && access(c->loading_page, R_OK)) {
		snprintf(err, errlen, "%s: loading_page: cannot read %s", path,
			 c->loading_page);
		return -1;
	}
	return 0;
}

int gconf_load(const char *path, struct gconf *c, char *err, size_t errlen)
{
	int rc;

	memset(c, 0, sizeof(*c));
	/* libagent reads its own keys from the same file. */
	rc = conf_load_file_ignoring(path, gate_keys, agent_conf_keys(), c, err,
				     errlen);
	if (!rc)
		rc = check(path, c, err, errlen);
	if (rc) {
		gconf_release(c);
		return -1;
	}
	return 0;
}

void gconf_release(struct gconf *c)
{
	conf_release(gate_keys, c);
	memset(c, 0, sizeof(*c));
}

/* ---- the agent ---------------------------------------------------------- */

/* docs/gate.md names the dependencies as the app sees them. */
/* clang-format off */
static const struct agent_key_alias gate_aliases[] = {
	{ "requires", "depends_on" },
	{ NULL, NULL },
};
/* clang-format on */

agent_t *gconf_load_agent(const char *path, char *err, size_t errlen)
{
	return agent_load_aliased(path, gconf_keys, gate_aliases, err, errlen);
}
