/*
 * dconf: discoveryd's configuration (conf/discoveryd.yaml, man
 * discoveryd.yaml): the table of keys, the struct they land in, and the checks
 * across keys.
 *
 * Loading is parse, then validate the whole, then hand the struct over; the
 * daemon never runs on a half-read file. A reload (SIGHUP) loads a fresh
 * struct the same way and then copies only what can change at run time.
 */
#ifndef DISCOVERYD_DCONF_H
#define DISCOVERYD_DCONF_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"

#define DCONF_SENTINELS_MAX    16
#define DCONF_MIN_REPLICAS_MAX 16

/* webhooks.NAME.secret_file: this many whsec_ secrets (a rotation), each
 * decoding to DCONF_WEBHOOK_KEY_MIN..MAX bytes (Standard Webhooks). */
#define DCONF_WEBHOOK_SECRETS_MAX 4
#define DCONF_WEBHOOK_KEY_MIN     24
#define DCONF_WEBHOOK_KEY_MAX     64
/* Endpoints, the config's and the API's together. */
#define DCONF_WEBHOOKS_MAX 64

struct dconf_service {
	int64_t min_ready;
};

/* One webhooks: entry (docs/webhooks.md); the map's name is its name. */
struct dconf_webhook_key {
	unsigned char bytes[DCONF_WEBHOOK_KEY_MAX];
	size_t len;
};

struct dconf_webhook {
	char *url;
	char *ca_file;                /* NULL: the system store */
	char *secret_file;            /* mode 0600 or stricter */
	struct conf_strlist kinds;    /* filter.kinds; none = every kind */
	struct conf_strlist services; /* filter.services; none = all */
	int64_t timeout_ms;           /* one attempt, at most */
	int64_t retry_initial_ms;     /* the first retry's delay cap */
	int64_t retry_max_ms;         /* no delay is longer */
	int64_t retry_max_age_ms;     /* one event retried this long:
					 the endpoint is disabled */
	int64_t max_in_flight;
	/* Filled by validation. */
	unsigned kinds_mask; /* 1u << enum event_kind; 0 = every kind */
	size_t n_keys;       /* the first signs; all are sent */
	struct dconf_webhook_key keys[DCONF_WEBHOOK_SECRETS_MAX];
};

/* A listen address that may be absent (listen.dns: absent is off). */
struct dconf_listen {
	bool set;
	struct conf_addr addr;
};

struct dconf {
	struct conf_addr listen_http;
	struct conf_addr listen_agents;
	struct dconf_listen listen_dns;    /* UDP and TCP, one port */
	struct conf_strlist allowed_hosts; /* Host names the API answers to */
	char *state_dir;
	int64_t history;
	char *log_level;
	char *node; /* welcome's "node"; default: hostname */

	int64_t heartbeat_interval_ms;
	int64_t heartbeat_timeout_ms;
	int64_t hello_timeout_ms;
	int64_t restart_grace_ms;

	bool auth_present;
	bool auth_none; /* "auth: none": open on purpose */
	char *auth_secret_file;
	char *auth_previous_secret_file; /* also accepted while rotating */
	bool tls_present;
	char *tls_cert; /* PEM file paths */
	char *tls_key;
	char *tls_cert_pem; /* their contents, read at load */
	size_t tls_cert_len;
	char *tls_key_pem;
	size_t tls_key_len;
	bool cluster_present;
	char *cluster_redis; /* redis://[:password@]host[:port][/db] */
	struct conf_strlist cluster_sentinels; /* or these: HOST:PORT each */
	char *cluster_master_name;       /* the name the sentinels monitor */
	char *cluster_sentinel_password; /* the sentinels' requirepass */
	char *cluster_user;              /* with sentinels: the data nodes' */
	char *cluster_password;
	int64_t cluster_db;
	int64_t cluster_min_replicas; /* writes wait for this many replicas */
	struct conf_addr sentinel_addrs[DCONF_SENTINELS_MAX]; /* parsed */
	char *cluster_node;          /* overrides node */
	char *cluster_prefix;        /* key prefix in Redis */
	int64_t cluster_node_ttl_ms; /* a silent node is dead after this */
	int64_t cluster_timeout_ms;  /* one Redis call, at most */
	int64_t cluster_coalesce_ms; /* the reader's pause after a batch */
	struct redis_url redis;      /* cluster_redis, parsed (with sentinels:
					user, password, db; no address) */

	struct conf_map services; /* items: struct dconf_service */
	struct conf_map webhooks; /* items: struct dconf_webhook */

	bool drain_present;            /* SIGTERM drains the node first */
	int64_t drain_batch;           /* links closed per step */
	int64_t drain_interval_ms;     /* between steps; the agents' spread */
	int64_t drain_timeout_ms;      /* SIGTERM: stop anyway after this */
	int64_t idem_retention_ms;     /* idempotency keys kept this long */
	int64_t idem_max_keys;         /* at most this many; the oldest go */
	int64_t endpoints_coalesce_ms; /* endpoint changes flushed per window */

	int64_t max_agents;
	int64_t max_agents_per_ip; /* 0 = no limit */
	int64_t max_message;
	int64_t send_queue;
	int64_t max_http; /* concurrent HTTP connections */
	int64_t max_http_per_ip;
	int64_t max_streams; /* live event streams; 0 = auto: max_http/4 */
	int64_t max_streams_per_ip;
	int64_t header_timeout_ms; /* a whole request head, at most */
	int64_t body_timeout_ms;   /* then its whole body */
	int64_t accept_rate;       /* agent connections per second, 0 = any */
	int64_t accept_burst;
	int64_t accept_share_per_ip; /* percent of both, for one address */
	int64_t http_threads;

	char *dns_domain;            /* lower case, no trailing dot */
	int64_t dns_ttl_ms;          /* answers' TTL, whole seconds */
	int64_t dns_negative_ttl_ms; /* SOA minimum (NXDOMAIN, NODATA) */
	int64_t dns_rate_per_source; /* queries a second; 0 = no limit */
	int64_t dns_burst;           /* a source's bucket */
	int64_t dns_max_tcp;         /* open TCP connections */
	int64_t dns_tcp_timeout_ms;  /* idle, or one exchange, at most */
	int64_t dns_max_udp;         /* EDNS0 sizes are capped here */
};

/*
 * Load and validate path into c (zeroed by the caller). Returns 0, or -1 with
 * "path:line:col: message" in err; c is then released already.
 */
int dconf_load(const char *path, struct dconf *c, char *err, size_t errlen);
void dconf_release(struct dconf *c);

/* dconf_webhook.c: the webhooks: entries' rows, and their checks (URL,
 * filter, secrets read and decoded). 0, or -1 with "path: webhooks.NAME.
 * key: what is wrong" in err. */
extern const struct conf_key dconf_webhook_keys[];
int dconf_webhooks_validate(const char *path, struct dconf *c, char *err,
			    size_t errlen);
void dconf_webhooks_wipe(struct dconf *c); /* the keys, before release */
/* One entry from text (JSON or YAML: a run-time definition, from the API
 * or state_dir), loaded by the same rows and checked by the same checks as
 * the config's, w zeroed here. 0; -1, text refused ("origin:line:col:
 * what" in err); -2, a check refused it ("webhooks.NAME.key: what"). w is
 * to be released whatever the result. */
int dconf_webhook_parse(const char *text, size_t len, const char *origin,
			const char *name, struct dconf_webhook *w, char *err,
			size_t errlen);
void dconf_webhook_release(struct dconf_webhook *w); /* keys wiped */

/* min_ready for a service: from services:, else 1. */
int64_t dconf_min_ready(const struct dconf *c, const char *service);

#endif
