/*
 * cluster_sentinel: finding the Redis master through Redis Sentinel
 * (cluster.sentinels, cluster.master_name; docs/cluster.md).
 *
 * Every connection of cluster mode (reader, writer and heartbeat, each API
 * thread's) is made here when sentinels are configured: the sentinels are
 * asked in turn, starting with the one that answered last, for the master's
 * address (SENTINEL get-master-addr-by-name); cluster_open then connects
 * and checks with ROLE that the server is a master. Nothing is cached
 * across connections: a connection that fails, or that the server refuses
 * because it was demoted (cluster_check), is dropped by its owner, whose
 * next attempt asks the sentinels again, with the usual backoff. That is
 * how a failover is followed, with no subscription to keep: until the
 * sentinels have promoted a replica they name the dead master, connecting
 * fails, and the caller retries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "log.h"

/* Sentinel s's answer for the master's address into *out: 0, or -1. */
static int ask(struct cluster *c, const struct conf_addr *s,
	       struct conf_addr *out)
{
	redisContext *ctx = redisConnectWithTimeout(s->host, s->port,
						    cluster_tv(c->timeout_ms));
	redisReply *r = NULL;
	long port;
	int rc = -1;

	if (!ctx || ctx->err)
		goto out;
	redisSetTimeout(ctx, cluster_tv(c->timeout_ms));
	if (c->sentinel_password[0]) {
		r = redisCommand(ctx, "AUTH %s", c->sentinel_password);
		if (!cluster_reply_ok(r)) {
			log_error("sentinel auth failed",
				  "sentinel=%s:%d error=\"%s\"", s->host,
				  s->port, r ? r->str : ctx->errstr);
			goto out;
		}
		freeReplyObject(r);
	}
	r = redisCommand(ctx, "SENTINEL get-master-addr-by-name %s",
			 c->master_name);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len >= sizeof(out->host))
		goto out;
	port = strtol(r->element[1]->str, NULL, 10);
	if (port < 1 || port > 65535)
		goto out;
	snprintf(out->host, sizeof(out->host), "%s", r->element[0]->str);
	out->port = (int)port;
	rc = 0;
out:
	if (rc != 0)
		log_debug("sentinel asked",
			  "sentinel=%s:%d master_name=%s "
			  "error=\"%s\"",
			  s->host, s->port, c->master_name,
			  ctx && ctx->err                   ? ctx->errstr :
			  r && r->type == REDIS_REPLY_ERROR ? r->str :
							      "no such master");
	freeReplyObject(r);
	redisFree(ctx);
	return rc;
}

/* Sentinel i named m, and m is a master: remember both, count a change. */
static void found(struct cluster *c, size_t i, const struct conf_addr *m,
		  const char *role)
{
	bool first, changed;
	char addr[CONF_ADDR_TEXT];

	pthread_mutex_lock(&c->master_mu);
	c->next_sentinel = i;
	first = c->master.port == 0;
	changed = !first && (c->master.port != m->port ||
			     strcmp(c->master.host, m->host) != 0);
	c->master = *m;
	pthread_mutex_unlock(&c->master_mu);
	conf_addr_format(m, addr, sizeof(addr));
	if (changed) {
		atomic_fetch_add(&c->failovers, 1);
		log_warn("cluster master changed",
			 "master=%s role=%s "
			 "master_name=%s",
			 addr, role, c->master_name);
	} else if (first) {
		log_info("cluster master",
			 "master=%s master_name=%s "
			 "via=sentinel",
			 addr, c->master_name);
	}
}

/* addr is one of the n in list. */
static bool among(const struct conf_addr *addr, const struct conf_addr *list,
		  size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].port == addr->port &&
		    strcmp(list[i].host, addr->host) == 0)
			return true;
	return false;
}

/*
 * A master that failed to open (down, frozen, or a replica) is not tried
 * again in the same round when the next sentinel names it too, as they all
 * do until a failover: each try can cost several cluster.timeout, and this
 * runs on API threads as well as the reader's and the writer's.
 */
redisContext *cluster_sentinel_connect(struct cluster *c, const char *role)
{
	struct conf_addr failed[DCONF_SENTINELS_MAX];
	size_t first, n_failed = 0;

	pthread_mutex_lock(&c->master_mu);
	first = c->next_sentinel;
	pthread_mutex_unlock(&c->master_mu);
	for (size_t k = 0; k < c->n_sentinels && !atomic_load(&c->stop); k++) {
		size_t i = (first + k) % c->n_sentinels;
		struct conf_addr m;
		redisContext *ctx;

		if (ask(c, &c->sentinels[i], &m) != 0 ||
		    among(&m, failed, n_failed))
			continue;
		ctx = cluster_open(c, &m, role);
		if (ctx) {
			found(c, i, &m, role);
			return ctx;
		}
		failed[n_failed++] = m;
	}
	return NULL;
}
