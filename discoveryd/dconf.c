/*
 * dconf: discoveryd's config table. One row per key, as conf.h describes;
 * the reference file conf/discoveryd.yaml documents every key for users.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dconf.h"
#include "log.h"
#include "proto.h"

#define F(field) offsetof(struct dconf, field)
#define KIB      (INT64_C(1) << 10)
#define MIB      (INT64_C(1) << 20)
#define HOUR_MS  (INT64_C(3600) * 1000)
#define PEM_MAX  (256 * 1024)

/* listen.dns: an address; absent, there is no DNS server. */
static int parse_listen_opt(const char *s, void *field, char *err,
			    size_t errlen)
{
	struct dconf_listen *l = field;

	if (conf_parse_addr(s, &l->addr) != 0) {
		snprintf(err, errlen, "must be host:port or [v6]:port");
		return -1;
	}
	l->set = true;
	return 0;
}

/* clang-format off */
static const struct conf_key listen_keys[] = {
	{ .name = "http", .type = CONF_ADDR, .offset = F(listen_http),
	  .def = "127.0.0.1:5916", .help = "HTTP API address" },
	{ .name = "agents", .type = CONF_ADDR, .offset = F(listen_agents),
	  .def = "127.0.0.1:5917", .help = "agent WebSocket address" },
	{ .name = "dns", .type = CONF_CUSTOM, .offset = F(listen_dns),
	  .parse = parse_listen_opt, .help = "DNS address (UDP and TCP)" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key heartbeat_keys[] = {
	{ .name = "interval", .type = CONF_DURATION, .offset = F(heartbeat_interval_ms),
	  .min = 100, .max = HOUR_MS, .def = "10s" },
	{ .name = "timeout", .type = CONF_DURATION, .offset = F(heartbeat_timeout_ms),
	  .min = 100, .max = HOUR_MS, .def = "30s" },
	{ .name = "hello_timeout", .type = CONF_DURATION, .offset = F(hello_timeout_ms),
	  .min = 100, .max = HOUR_MS, .def = "5s" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key auth_keys[] = {
	{ .name = "secret_file", .type = CONF_STRING, .offset = F(auth_secret_file),
	  .flags = CONF_REQUIRED },
	{ .name = "previous_secret_file", .type = CONF_STRING,
	  .offset = F(auth_previous_secret_file) },
	{ .name = NULL },
};
/* clang-format on */

/* "auth: none" instead of the section: no tokens, and the operator says so. */
static int parse_auth_word(const char *s, void *field, char *err, size_t errlen)
{
	if (strcmp(s, "none") != 0) {
		snprintf(err, errlen,
			 "must be a mapping (secret_file: ...) or the word "
			 "none");
		return -1;
	}
	*(bool *)field = true;
	return 0;
}

/* clang-format off */
static const struct conf_key tls_keys[] = {
	{ .name = "cert", .type = CONF_STRING, .offset = F(tls_cert),
	  .flags = CONF_REQUIRED },
	{ .name = "key", .type = CONF_STRING, .offset = F(tls_key),
	  .flags = CONF_REQUIRED },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key cluster_keys[] = {
	{ .name = "redis", .type = CONF_STRING, .offset = F(cluster_redis) },
	{ .name = "sentinels", .type = CONF_STRLIST,
	  .offset = F(cluster_sentinels), .max = DCONF_SENTINELS_MAX },
	{ .name = "master_name", .type = CONF_STRING,
	  .offset = F(cluster_master_name) },
	{ .name = "sentinel_password", .type = CONF_STRING,
	  .offset = F(cluster_sentinel_password) },
	{ .name = "user", .type = CONF_STRING, .offset = F(cluster_user) },
	{ .name = "password", .type = CONF_STRING,
	  .offset = F(cluster_password) },
	{ .name = "db", .type = CONF_INT, .offset = F(cluster_db),
	  .min = 0, .max = 1 << 20, .def = "0" },
	{ .name = "min_replicas", .type = CONF_INT,
	  .offset = F(cluster_min_replicas), .min = 0,
	  .max = DCONF_MIN_REPLICAS_MAX, .def = "0" },
	{ .name = "node", .type = CONF_STRING, .offset = F(cluster_node) },
	{ .name = "prefix", .type = CONF_STRING, .offset = F(cluster_prefix),
	  .def = "discovery:" },
	{ .name = "node_ttl", .type = CONF_DURATION, .offset = F(cluster_node_ttl_ms),
	  .min = 300, .max = 10 * 60 * 1000, .def = "5s" },
	{ .name = "timeout", .type = CONF_DURATION, .offset = F(cluster_timeout_ms),
	  .min = 50, .max = 60 * 1000, .def = "2s" },
	{ .name = "coalesce", .type = CONF_DURATION,
	  .offset = F(cluster_coalesce_ms), .min = 0, .max = 1000, .def = "8ms" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key drain_keys[] = {
	{ .name = "batch", .type = CONF_INT, .offset = F(drain_batch),
	  .min = 1, .max = 1000000, .def = "100" },
	{ .name = "interval", .type = CONF_DURATION, .offset = F(drain_interval_ms),
	  .min = 10, .max = 10 * 60 * 1000, .def = "1s" },
	{ .name = "timeout", .type = CONF_DURATION, .offset = F(drain_timeout_ms),
	  .min = 100, .max = 24 * HOUR_MS, .def = "60s" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key endpoints_keys[] = {
	{ .name = "coalesce", .type = CONF_DURATION,
	  .offset = F(endpoints_coalesce_ms), .min = 0, .max = 10 * 1000,
	  .def = "50ms" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key idem_keys[] = {
	{ .name = "retention", .type = CONF_DURATION,
	  .offset = F(idem_retention_ms), .min = 1000, .max = 7 * 24 * HOUR_MS,
	  .def = "24h" },
	{ .name = "max_keys", .type = CONF_INT, .offset = F(idem_max_keys),
	  .min = 1, .max = 10000000, .def = "100000" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key service_keys[] = {
	{ .name = "min_ready", .type = CONF_INT,
	  .offset = offsetof(struct dconf_service, min_ready),
	  .min = 1, .max = 1000000, .def = "1" },
	{ .name = NULL },
};
/* clang-format on */

/* limits.max_streams: "auto" (0: a quarter of max_http) or 1 to 50000. */
static int parse_streams(const char *s, void *field, char *err, size_t errlen)
{
	char *end;
	long long n;

	if (strcmp(s, "auto") == 0) {
		*(int64_t *)field = 0;
		return 0;
	}
	errno = 0;
	n = strtoll(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end || errno || n < 1 || n > 50000) {
		snprintf(err, errlen,
			 "must be auto or an integer from 1 to 50000");
		return -1;
	}
	*(int64_t *)field = n;
	return 0;
}

/* clang-format off */
static const struct conf_key limits_keys[] = {
	{ .name = "max_agents", .type = CONF_INT, .offset = F(max_agents),
	  .min = 1, .max = 1000000, .def = "100000" },
	{ .name = "max_agents_per_ip", .type = CONF_INT,
	  .offset = F(max_agents_per_ip), .min = 0, .max = 1000000,
	  .def = "1024" },
	{ .name = "max_message", .type = CONF_SIZE, .offset = F(max_message),
	  .min = 1 * KIB, .max = 16 * MIB, .def = "64KiB" },
	{ .name = "send_queue", .type = CONF_SIZE, .offset = F(send_queue),
	  .min = 4 * KIB, .max = 1024 * MIB, .def = "1MiB" },
	{ .name = "max_http", .type = CONF_INT, .offset = F(max_http),
	  .min = 4, .max = 100000, .def = "1024" },
	{ .name = "max_http_per_ip", .type = CONF_INT, .offset = F(max_http_per_ip),
	  .min = 1, .max = 100000, .def = "64" },
	{ .name = "max_streams", .type = CONF_CUSTOM, .offset = F(max_streams),
	  .def = "auto", .parse = parse_streams },
	{ .name = "max_streams_per_ip", .type = CONF_INT,
	  .offset = F(max_streams_per_ip), .min = 1, .max = 50000, .def = "8" },
	{ .name = "header_timeout", .type = CONF_DURATION,
	  .offset = F(header_timeout_ms), .min = 100, .max = HOUR_MS,
	  .def = "10s" },
	{ .name = "body_timeout", .type = CONF_DURATION,
	  .offset = F(body_timeout_ms), .min = 100, .max = HOUR_MS,
	  .def = "30s" },
	{ .name = "http_threads", .type = CONF_INT, .offset = F(http_threads),
	  .min = 1, .max = 64, .def = "2" },
	{ .name = "accept_rate", .type = CONF_INT, .offset = F(accept_rate),
	  .min = 0, .max = 1000000, .def = "2000" },
	{ .name = "accept_burst", .type = CONF_INT, .offset = F(accept_burst),
	  .min = 1, .max = 1000000, .def = "2000" },
	{ .name = "accept_share_per_ip", .type = CONF_INT,
	  .offset = F(accept_share_per_ip), .min = 1, .max = 100, .def = "10" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key dns_keys[] = {
	{ .name = "domain", .type = CONF_STRING, .offset = F(dns_domain),
	  .def = "discovery" },
	{ .name = "ttl", .type = CONF_DURATION, .offset = F(dns_ttl_ms),
	  .min = 0, .max = 24 * HOUR_MS, .def = "5s" },
	{ .name = "negative_ttl", .type = CONF_DURATION,
	  .offset = F(dns_negative_ttl_ms), .min = 0, .max = 24 * HOUR_MS,
	  .def = "2s" },
	{ .name = "rate_per_source", .type = CONF_INT,
	  .offset = F(dns_rate_per_source), .min = 0, .max = 100000000,
	  .def = "2000" },
	{ .name = "burst", .type = CONF_INT, .offset = F(dns_burst),
	  .min = 1, .max = 100000000, .def = "4000" },
	{ .name = "max_tcp", .type = CONF_INT, .offset = F(dns_max_tcp),
	  .min = 1, .max = 10000, .def = "64" },
	{ .name = "tcp_timeout", .type = CONF_DURATION,
	  .offset = F(dns_tcp_timeout_ms), .min = 100, .max = 5 * 60 * 1000,
	  .def = "10s" },
	{ .name = "max_udp_size", .type = CONF_SIZE, .offset = F(dns_max_udp),
	  .min = 512, .max = 4096, .def = "1232" },
	{ .name = NULL },
};
/* clang-format on */

static bool valid_service_name(const char *name)
{
	return proto_valid_name(name);
}

/* clang-format off */
static const struct conf_key dconf_keys[] = {
	{ .name = "listen", .type = CONF_SECTION, .sub = listen_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "allowed_hosts", .type = CONF_STRLIST,
	  .offset = F(allowed_hosts), .max = 64 },
	{ .name = "state_dir", .type = CONF_STRING, .offset = F(state_dir),
	  .def = "var/discoveryd" },
	{ .name = "history", .type = CONF_INT, .offset = F(history),
	  .min = 16, .max = 10000000, .def = "10000" },
	{ .name = "log_level", .type = CONF_STRING, .offset = F(log_level),
	  .def = "info" },
	{ .name = "node", .type = CONF_STRING, .offset = F(node) },
	{ .name = "heartbeat", .type = CONF_SECTION, .sub = heartbeat_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "restart_grace", .type = CONF_DURATION, .offset = F(restart_grace_ms),
	  .min = 0, .max = 24 * HOUR_MS, .def = "30s" },
	{ .name = "auth", .type = CONF_SECTION, .sub = auth_keys,
	  .present = F(auth_present), .offset = F(auth_none),
	  .parse = parse_auth_word },
	{ .name = "tls", .type = CONF_SECTION, .sub = tls_keys,
	  .present = F(tls_present) },
	{ .name = "cluster", .type = CONF_SECTION, .sub = cluster_keys,
	  .present = F(cluster_present) },
	{ .name = "drain", .type = CONF_SECTION, .sub = drain_keys,
	  .present = F(drain_present) },
	{ .name = "idempotency", .type = CONF_SECTION, .sub = idem_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "endpoints", .type = CONF_SECTION, .sub = endpoints_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "services", .type = CONF_MAP, .offset = F(services),
	  .sub = service_keys, .item_size = sizeof(struct dconf_service),
	  .name_check = valid_service_name },
	{ .name = "webhooks", .type = CONF_MAP, .offset = F(webhooks),
	  .sub = dconf_webhook_keys, .item_size = sizeof(struct dconf_webhook),
	  .name_check = valid_service_name },
	{ .name = "limits", .type = CONF_SECTION, .sub = limits_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "dns", .type = CONF_SECTION, .sub = dns_keys,
	  .present = CONF_NO_FIELD },
	{ .name = NULL },
};
/* clang-format on */

/* An allowed_hosts entry: a DNS name, "*.domain" or "*" (the API's Host
 * check matches them case-insensitively, without the port). */
static bool valid_host_pattern(const char *name)
{
	size_t n = strlen(name), i = 0;

	if (strcmp(name, "*") == 0)
		return true;
	if (strncmp(name, "*.", 2) == 0)
		i = 2;
	if (n == i || n > 253)
		return false;
	for (; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= 'A' && name[i] <= 'Z') ||
		      (name[i] >= '0' && name[i] <= '9') || name[i] == '-' ||
		      name[i] == '.'))
			return false;
	return true;
}

/*
 * dns.domain: a DNS name (labels of letters, digits and '-', not at either
 * end), short enough that the longest name below it fits 255 bytes.
 * Lower-cased here: names are compared that way.
 */
static bool valid_dns_domain(char *d)
{
	size_t n = strlen(d), label = 0;

	if (n && d[n - 1] == '.')
		d[--n] = '\0';
	if (n == 0 || n > 100)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = d[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || d[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			d[i] = c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      (c == '-' && label > 0)) ||
		    ++label > 63)
			return false;
	}
	return true;
}

static int validate_dns(const char *path, struct dconf *c, char *err,
			size_t errlen)
{
	if (!valid_dns_domain(c->dns_domain)) {
		snprintf(err, errlen,
			 "%s: dns.domain must be a DNS name of at most 100 "
			 "bytes (labels of letters, digits and '-')",
			 path);
		return -1;
	}
	if (c->dns_ttl_ms % 1000 || c->dns_negative_ttl_ms % 1000) {
		snprintf(err, errlen,
			 "%s: dns.ttl and dns.negative_ttl are whole seconds "
			 "(DNS counts TTLs in seconds)",
			 path);
		return -1;
	}
	return 0;
}

static bool loopback(const struct conf_addr *a)
{
	return strncmp(a->host, "127.", 4) == 0 ||
	       strcmp(a->host, "::1") == 0 || strcmp(a->host, "localhost") == 0;
}

/*
 * Read a PEM file whole (the same bytes feed lws and libmicrohttpd, and a
 * reload reads them again). Capped: a certificate chain is kilobytes.
 */
static int read_pem(const char *path, const char *key, const char *file,
		    char **out, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(file, "r");
	char *buf;
	size_t n;

	if (!f) {
		snprintf(err, errlen, "%s: %s: cannot read %s: %s", path, key,
			 file, strerror(errno));
		return -1;
	}
	buf = malloc(PEM_MAX + 1);
	n = buf ? fread(buf, 1, PEM_MAX + 1, f) : 0;
	fclose(f);
	if (!buf || n == 0 || n > PEM_MAX || !strstr(buf, "-----BEGIN ")) {
		free(buf);
		snprintf(err, errlen,
			 "%s: %s: %s is not a PEM file of at most "
			 "%d bytes",
			 path, key, file, PEM_MAX);
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* cluster.redis: one server, its credentials and database in the URL. */
static int validate_redis_url(const char *path, struct dconf *c, char *err,
			      size_t errlen)
{
	char why[256];

	if (c->cluster_master_name || c->cluster_sentinel_password ||
	    c->cluster_user || c->cluster_password || c->cluster_db) {
		snprintf(err, errlen,
			 "%s: cluster.master_name, "
			 "sentinel_password, user, password and db go with "
			 "cluster.sentinels; with cluster.redis, write the "
			 "credentials and database in its URL",
			 path);
		return -1;
	}
	if (conf_redis_url_parse(c->cluster_redis, &c->redis, why,
				 sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: cluster.redis: %s", path, why);
		return -1;
	}
	return 0;
}

/*
 * cluster.sentinels and master_name: whichever server the sentinels say is
 * the master. The data nodes' credentials and database are keys of their
 * own, since there is no URL to hold them.
 */
static int validate_sentinels(const char *path, struct dconf *c, char *err,
			      size_t errlen)
{
	const char *user = c->cluster_user, *password = c->cluster_password;

	if (!c->cluster_master_name ||
	    !proto_valid_instance(c->cluster_master_name)) {
		snprintf(err, errlen,
			 "%s: cluster.master_name (the name the "
			 "sentinels monitor) is required with "
			 "cluster.sentinels, 1 to 128 printable characters",
			 path);
		return -1;
	}
	for (size_t i = 0; i < c->cluster_sentinels.n; i++)
		if (conf_parse_addr(c->cluster_sentinels.v[i],
				    &c->sentinel_addrs[i]) != 0 ||
		    c->sentinel_addrs[i].port == 0) {
			snprintf(err, errlen,
				 "%s: cluster.sentinels: '%s' is "
				 "not HOST:PORT",
				 path, c->cluster_sentinels.v[i]);
			return -1;
		}
	if ((user && !password) ||
	    (password &&
	     (!password[0] || strlen(password) >= sizeof(c->redis.password))) ||
	    (user && strlen(user) >= sizeof(c->redis.user))) {
		snprintf(err, errlen,
			 "%s: cluster.password must be 1 to 255 "
			 "bytes, and cluster.user (at most 127) needs it",
			 path);
		return -1;
	}
	snprintf(c->redis.user, sizeof(c->redis.user), "%s", user ? user : "");
	snprintf(c->redis.password, sizeof(c->redis.password), "%s",
		 password ? password : "");
	c->redis.db = (int)c->cluster_db;
	return 0;
}

/* Where Redis is: cluster.redis or cluster.sentinels, never both. */
static int validate_redis(const char *path, struct dconf *c, char *err,
			  size_t errlen)
{
	if (!c->cluster_redis == !c->cluster_sentinels.n) {
		snprintf(err, errlen,
			 "%s: cluster: set either redis (one "
			 "server) or sentinels and master_name (Redis "
			 "Sentinel), not %s",
			 path, c->cluster_redis ? "both" : "neither");
		return -1;
	}
	return c->cluster_redis ? validate_redis_url(path, c, err, errlen) :
				  validate_sentinels(path, c, err, errlen);
}

/*
 * Checks across keys, and features whose keys the contract reserves but this
 * build does not implement yet: refusing them is safer than running without
 * the auth or TLS the operator asked for.
 */
static int validate(const char *path, struct dconf *c, char *err, size_t errlen)
{
	if (log_level_parse(c->log_level) < 0) {
		snprintf(err, errlen,
			 "%s: log_level must be error, warn, info or debug",
			 path);
		return -1;
	}
	for (size_t i = 0; i < c->allowed_hosts.n; i++)
		if (!valid_host_pattern(c->allowed_hosts.v[i])) {
			snprintf(err, errlen,
				 "%s: allowed_hosts: '%s' is not a "
				 "host name, '*.domain' or '*'",
				 path, c->allowed_hosts.v[i]);
			return -1;
		}
	if (c->max_streams * 2 > c->max_http) {
		snprintf(err, errlen,
			 "%s: limits.max_streams must be at most "
			 "half of limits.max_http (streams must leave room for "
			 "calls)",
			 path);
		return -1;
	}
	if (c->heartbeat_timeout_ms <= c->heartbeat_interval_ms) {
		snprintf(err, errlen,
			 "%s: heartbeat.timeout must be longer than "
			 "heartbeat.interval",
			 path);
		return -1;
	}
	if (validate_dns(path, c, err, errlen) != 0)
		return -1;
	if (c->cluster_present && validate_redis(path, c, err, errlen) != 0)
		return -1;
	if (c->cluster_present &&
	    c->cluster_timeout_ms * 2 > c->cluster_node_ttl_ms) {
		snprintf(err, errlen,
			 "%s: cluster.timeout must be at most half of "
			 "cluster.node_ttl (a node stalled on one Redis call "
			 "must "
			 "not look dead)",
			 path);
		return -1;
	}
	if (c->cluster_present && !proto_valid_instance(c->cluster_prefix)) {
		snprintf(err, errlen,
			 "%s: cluster.prefix must be 1 to 128 "
			 "printable characters",
			 path);
		return -1;
	}
	if (!c->auth_present && !c->auth_none &&
	    (!loopback(&c->listen_http) || !loopback(&c->listen_agents))) {
		snprintf(err, errlen,
			 "%s: listen.%s is not a loopback address "
			 "and no auth is configured: anyone who can reach it "
			 "could "
			 "lock every gate; set auth.secret_file, or write "
			 "'auth: none' to accept that",
			 path, loopback(&c->listen_http) ? "agents" : "http");
		return -1;
	}
	if (c->tls_present &&
	    (read_pem(path, "tls.cert", c->tls_cert, &c->tls_cert_pem,
		      &c->tls_cert_len, err, errlen) != 0 ||
	     read_pem(path, "tls.key", c->tls_key, &c->tls_key_pem,
		      &c->tls_key_len, err, errlen) != 0))
		return -1;
	if (dconf_webhooks_validate(path, c, err, errlen) != 0)
		return -1;
	if (!c->node) {
		char host[256];

		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "discoveryd");
		host[sizeof(host) - 1] = '\0';
		c->node = strdup(host);
	}
	/* One name per node: cluster.node, else node, else the hostname. */
	if (c->cluster_present && c->cluster_node) {
		free(c->node);
		c->node = strdup(c->cluster_node);
	}
	if (!c->node || !proto_valid_instance(c->node)) {
		snprintf(err, errlen,
			 "%s: node must be 1 to 128 printable "
			 "characters",
			 path);
		return -1;
	}
	return 0;
}

int dconf_load(const char *path, struct dconf *c, char *err, size_t errlen)
{
	if (conf_load_file(path, dconf_keys, c, err, errlen) != 0 ||
	    validate(path, c, err, errlen) != 0) {
		dconf_release(c);
		return -1;
	}
	return 0;
}

void dconf_release(struct dconf *c)
{
	dconf_webhooks_wipe(c);
	conf_release(dconf_keys, c);
	free(c->tls_cert_pem);
	if (c->tls_key_pem)
		explicit_bzero(c->tls_key_pem, c->tls_key_len);
	free(c->tls_key_pem);
	c->tls_cert_pem = c->tls_key_pem = NULL;
}

int64_t dconf_min_ready(const struct dconf *c, const char *service)
{
	const struct dconf_service *items = c->services.items;

	for (size_t i = 0; i < c->services.n; i++)
		if (strcmp(c->services.names[i], service) == 0)
			return items[i].min_ready;
	return 1;
}
