/*
 * gconf: the gate's own keys in gate.yaml (docs/gate.md: listen, upstream,
 * locked_status, retry_after, pass, latch, and the proxy's limits and
 * timeouts). libagent's keys in the same file (discovery, service,
 * instance, backoff, ..., and `requires`, its depends_on) belong to
 * agent_load_aliased and are skipped here; the gate's keys are skipped
 * there, so each loader refuses what neither knows.
 */
#ifndef GATE_GCONF_H
#define GATE_GCONF_H

#include <stdbool.h>
#include <stdint.h>

#include <discovery/agent.h>

#include "conf.h"

struct gconf {
	struct conf_addr listen;
	char *upstream;          /* http://host[:port][/prefix] */
	char upstream_host[256]; /* its host, without [] */
	char upstream_port[8];   /* its port, "80" by default */
	char upstream_authority[CONF_ADDR_TEXT]; /* host[:port] as written
						    (Host, if none) */
	const char
		*upstream_prefix; /* its path, "" or "/prefix" (in upstream) */
	int64_t locked_status;    /* 423 or 503 */
	int64_t retry_after_ms;
	struct conf_strlist pass; /* path prefixes always proxied */
	bool latch;
	char *loading_page; /* an HTML file replacing the default page */
	int64_t connect_timeout_ms;
	int64_t upstream_timeout_ms; /* no response head by then: 504 */
	int64_t stall_timeout_ms; /* no body byte for this long: cut; 0 never */
	int64_t drain_timeout_ms; /* SIGTERM: wait this long for requests */
	int64_t idle_timeout_ms;  /* keep-alive client connections */
	int64_t header_timeout_ms; /* a whole request head, from its first byte
				    */
	int64_t client_timeout_ms; /* a client that sends or takes nothing */
	int64_t max_connections;
	int64_t max_per_ip;    /* connections from one address; 0 = any */
	int64_t head_max;      /* bytes of a request head */
	int64_t threads;       /* worker threads; 0 = cores */
	int64_t upstream_idle; /* idle upstream connections kept per worker */
	int64_t buffer;        /* per-direction buffer of one request */
	bool trust_forwarded;  /* extend X-Forwarded-* from the client */
	int log_level;         /* enum log_level */
};

/* The gate's top-level keys, NULL-terminated (libagent skips them). */
extern const char *const gconf_keys[];

/*
 * Load path: the gate's keys, checked for type, bounds and consistency.
 * 0, or -1 with "FILE:LINE:COL: message" (or "FILE: message") in err.
 */
int gconf_load(const char *path, struct gconf *c, char *err, size_t errlen);
void gconf_release(struct gconf *c);

/*
 * The agent for this file (libagent's keys). docs/gate.md spells the
 * dependencies `requires:`, libagent `depends_on:`: either works, both at
 * once is an error, and libagent's loader checks the value with the
 * position in path either way. NULL with the message in err.
 */
agent_t *gconf_load_agent(const char *path, char *err, size_t errlen);

#endif
