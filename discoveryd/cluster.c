/*
 * cluster: the Redis side of cluster mode (cluster_int.h):
 * connections, the script, and the lifecycle of the reader and writer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cluster_int.h"
#include "log.h"

/* discoveryd/cluster.lua, linked in as bytes (see Makefile). */
extern const char _binary_cluster_lua_start[];
extern const char _binary_cluster_lua_end[];

/* ---- connections --------------------------------------------------------- */

struct timeval cluster_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (ms % 1000) * 1000 };

	return tv;
}

bool cluster_reply_ok(const redisReply *r)
{
	return r && r->type != REDIS_REPLY_ERROR;
}

/* Load the script (again, after a Redis restart forgot it). */
static int load_script(struct cluster *c, redisContext *ctx)
{
	const char *argv[3] = { "SCRIPT", "LOAD", _binary_cluster_lua_start };
	size_t lens[3] = { 6, 4,
			   (size_t)(_binary_cluster_lua_end -
				    _binary_cluster_lua_start) };
	redisReply *r = redisCommandArgv(ctx, 3, argv, lens);
	int rc = -1;

	if (r && r->type == REDIS_REPLY_STRING && r->len == 40) {
		pthread_mutex_lock(&c->sha_mu);
		memcpy(c->sha, r->str, 41);
		pthread_mutex_unlock(&c->sha_mu);
		rc = 0;
	}
	freeReplyObject(r);
	return rc;
}

redisReply *cluster_check(redisContext *ctx, redisReply *r)
{
	static const char *const demoted[] = {
		"READONLY",
		"UNBLOCKED",
		"MASTERDOWN",
		"LOADING",
		"ERR WAIT cannot be used with replica",
		NULL
	};

	if (!r || r->type != REDIS_REPLY_ERROR || ctx->err)
		return r;
	for (int i = 0; demoted[i]; i++)
		if (strncmp(r->str, demoted[i], strlen(demoted[i])) == 0) {
			/* hiredis refuses every further command on it. */
			ctx->err = REDIS_ERR_OTHER;
			snprintf(ctx->errstr, sizeof(ctx->errstr), "%s",
				 r->str);
			break;
		}
	return r;
}

/* ROLE: is this server a master? A sentinel may still name a demoted one. */
bool cluster_is_master(redisContext *ctx)
{
	redisReply *r = redisCommand(ctx, "ROLE");
	bool master = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		      r->element[0]->type == REDIS_REPLY_STRING &&
		      strcmp(r->element[0]->str, "master") == 0;

	freeReplyObject(r);
	return master;
}

static int setup(struct cluster *c, redisContext *ctx, const char *role)
{
	redisReply *r;
	char name[CLUSTER_KEY_MAX];

	if (c->url.password[0]) {
		/* Redis 6 ACL users, or the classic requirepass. */
		r = c->url.user[0] ?
			    redisCommand(ctx, "AUTH %s %s", c->url.user,
					 c->url.password) :
			    redisCommand(ctx, "AUTH %s", c->url.password);
		if (!cluster_reply_ok(r)) {
			log_error("redis auth failed", "role=%s error=\"%s\"",
				  role, r ? r->str : ctx->errstr);
			freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
	}
	if (c->n_sentinels && !cluster_is_master(ctx)) {
		log_info("redis not master",
			 "role=%s note=\"a sentinel "
			 "named a replica; asking the next\"",
			 role);
		return -1;
	}
	if (c->url.db) {
		r = redisCommand(ctx, "SELECT %d", c->url.db);
		if (!cluster_reply_ok(r)) {
			log_error("redis select failed",
				  "role=%s db=%d error=\"%s\"", role, c->url.db,
				  r ? r->str : ctx->errstr);
			freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
	}
	snprintf(name, sizeof(name), "discoveryd:%s:%s", c->node, role);
	freeReplyObject(redisCommand(ctx, "CLIENT SETNAME %s", name));
	return ctx->err || load_script(c, ctx) != 0 ? -1 : 0;
}

redisContext *cluster_open(struct cluster *c, const struct conf_addr *addr,
			   const char *role)
{
	redisContext *ctx = redisConnectWithTimeout(addr->host, addr->port,
						    cluster_tv(c->timeout_ms));

	if (!ctx || ctx->err) {
		log_debug("redis connect failed", "role=%s error=\"%s\"", role,
			  ctx ? ctx->errstr : "out of memory");
		redisFree(ctx);
		return NULL;
	}
	redisSetTimeout(ctx, cluster_tv(c->timeout_ms));
	if (setup(c, ctx, role) != 0) {
		redisFree(ctx);
		return NULL;
	}
	return ctx;
}

redisContext *cluster_connect(struct cluster *c, const char *role)
{
	if (c->n_sentinels)
		return cluster_sentinel_connect(c, role);
	return cluster_open(c, &c->url.addr, role);
}

int cluster_wait_replicas(struct cluster *c, redisContext *ctx)
{
	int64_t wait_ms = c->timeout_ms / 2;
	redisReply *r;
	int rc;

	if (c->min_replicas <= 0)
		return 0;
	r = cluster_check(ctx, redisCommand(ctx, "WAIT %lld %lld",
					    (long long)c->min_replicas,
					    (long long)wait_ms));
	if (!r || r->type != REDIS_REPLY_INTEGER)
		rc = -1;
	else
		rc = r->integer >= c->min_replicas ? 0 : 1;
	freeReplyObject(r);
	return rc;
}

static void new_epoch(char out[33])
{
	unsigned char raw[16];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		memset(raw, 0, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

redisReply *cluster_script(struct cluster *c, redisContext *ctx,
			   int64_t deadline, const char *op, int argc,
			   const char **args)
{
	const char **argv = calloc((size_t)argc + 9, sizeof(*argv));
	size_t *lens = calloc((size_t)argc + 9, sizeof(*lens));
	char hist[24], dl[24], epoch[33], sha[41];
	int n = 0;
	redisReply *r = NULL;

	if (!argv || !lens)
		goto out;
	new_epoch(epoch);
	snprintf(hist, sizeof(hist), "%zu", c->history);
	snprintf(dl, sizeof(dl), "%lld", (long long)deadline);
	pthread_mutex_lock(&c->sha_mu);
	memcpy(sha, c->sha, sizeof(sha));
	pthread_mutex_unlock(&c->sha_mu);
	argv[n++] = "EVALSHA";
	argv[n++] = sha;
	argv[n++] = "0";
	argv[n++] = op;
	argv[n++] = c->prefix;
	argv[n++] = c->node;
	argv[n++] = epoch;
	argv[n++] = hist;
	argv[n++] = dl;
	for (int i = 0; i < n; i++)
		lens[i] = strlen(argv[i]);
	for (int i = 0; i < argc; i++, n++) {
		argv[n] = args[i];
		lens[n] = strlen(args[i]);
	}
	r = redisCommandArgv(ctx, n, argv, lens);
	if (r && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0) {
		/* Redis restarted and forgot it: load it again, once. */
		freeReplyObject(r);
		r = NULL;
		if (load_script(c, ctx) == 0) {
			pthread_mutex_lock(&c->sha_mu);
			memcpy(sha, c->sha, sizeof(sha));
			pthread_mutex_unlock(&c->sha_mu);
			r = redisCommandArgv(ctx, n, argv, lens);
		}
	}
	cluster_check(ctx, r);
out:
	free(argv);
	free(lens);
	return r;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

void cluster_backoff(struct cluster *c, struct backoff *b)
{
	int64_t left = backoff_next(b);

	for (; left > 0 && !atomic_load(&c->stop); left -= 50)
		sleep_ms(left < 50 ? left : 50);
}

/* ---- lifecycle ----------------------------------------------------------- */

/* An API thread ends: its connection goes with it. */
static void drop_conn(void *p)
{
	redisFree(p);
}

void cluster_apply_conf(struct cluster *c, const struct dconf *conf)
{
	const struct dconf_service *items = conf->services.items;
	struct min_ready *min = calloc(conf->services.n + 1, sizeof(*min));
	size_t n = 0;

	if (!min)
		return;
	for (size_t i = 0; i < conf->services.n; i++) {
		min[n].name = strdup(conf->services.names[i]);
		min[n].value = items[i].min_ready;
		if (min[n].name)
			n++;
	}
	atomic_store(&c->idem_retention_ms, conf->idem_retention_ms);
	atomic_store(&c->coalesce_ms, conf->cluster_coalesce_ms);
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n_min; i++)
		free(c->min[i].name);
	free(c->min);
	c->min = min;
	c->n_min = n;
	pthread_mutex_unlock(&c->mu);
}

static struct cluster *cluster_new(const struct dconf *conf, struct hub *h,
				   char *err, size_t errlen)
{
	struct cluster *c = calloc(1, sizeof(*c));
	pthread_condattr_t attr;

	if (!c || pthread_key_create(&c->conn_key, drop_conn) != 0) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	htab_init(&c->note_table, true);
	c->hub = h;
	c->url = conf->redis;
	c->n_sentinels = conf->cluster_sentinels.n;
	memcpy(c->sentinels, conf->sentinel_addrs, sizeof(c->sentinels));
	snprintf(c->master_name, sizeof(c->master_name), "%s",
		 conf->cluster_master_name ? conf->cluster_master_name : "");
	snprintf(c->sentinel_password, sizeof(c->sentinel_password), "%s",
		 conf->cluster_sentinel_password ?
			 conf->cluster_sentinel_password :
			 "");
	c->min_replicas = conf->cluster_min_replicas;
	pthread_mutex_init(&c->master_mu, NULL);
	snprintf(c->prefix, sizeof(c->prefix), "%s", conf->cluster_prefix);
	snprintf(c->node, sizeof(c->node), "%s", conf->node);
	c->node_ttl_ms = conf->cluster_node_ttl_ms;
	c->timeout_ms = conf->cluster_timeout_ms;
	c->history = (size_t)conf->history;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->sha_mu, NULL);
	/* The writer waits until a monotonic deadline (its next heartbeat). */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &attr);
	pthread_cond_init(&c->peers_cv, &attr);
	pthread_cond_init(&c->applied_cv, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&c->applied_mu, NULL);
	c->notes_tail = &c->notes;
	cluster_apply_conf(c, conf);
	return c;
}

static int cluster_start(struct store *s)
{
	struct cluster *c = (struct cluster *)s;

	if (pthread_create(&c->reader, NULL, cluster_reader_main, c) != 0)
		return -1;
	if (pthread_create(&c->writer, NULL, cluster_writer_main, c) != 0) {
		atomic_store(&c->stop, true);
		pthread_join(c->reader, NULL);
		return -1;
	}
	if (pthread_create(&c->peers, NULL, cluster_peers_main, c) != 0) {
		atomic_store(&c->stop, true);
		pthread_join(c->reader, NULL);
		pthread_join(c->writer, NULL);
		return -1;
	}
	c->started = true;
	return 0;
}

static void cluster_stop(struct store *s)
{
	struct cluster *c = (struct cluster *)s;

	if (!c->started)
		return;
	atomic_store(&c->stop, true);
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->cv);
	pthread_cond_broadcast(&c->peers_cv);
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_lock(&c->applied_mu);
	pthread_cond_broadcast(&c->applied_cv); /* writes waiting: answer */
	pthread_mutex_unlock(&c->applied_mu);
	pthread_join(c->reader, NULL);
	pthread_join(c->writer, NULL);
	pthread_join(c->peers, NULL);
	c->started = false;
}

static void cluster_free(struct store *s)
{
	struct cluster *c = (struct cluster *)s;

	cluster_stop(s);
	cluster_notes_free(c->notes);
	htab_release(&c->note_table);
	for (size_t i = 0; i < c->n_min; i++)
		free(c->min[i].name);
	free(c->min);
	cluster_idem_release(c);
	cluster_webhook_free(c->webhooks);
	/* This thread's API connection, if it made one. */
	redisFree(pthread_getspecific(c->conn_key));
	pthread_key_delete(c->conn_key);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->sha_mu);
	pthread_mutex_destroy(&c->master_mu);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->peers_cv);
	pthread_mutex_destroy(&c->applied_mu);
	pthread_cond_destroy(&c->applied_cv);
	explicit_bzero(&c->url, sizeof(c->url));
	explicit_bzero(c->sentinel_password, sizeof(c->sentinel_password));
	free(c);
}

static const struct webhook_backend *cluster_webhooks(struct store *s)
{
	struct cluster *c = (struct cluster *)s;

	if (!c->webhooks)
		c->webhooks = cluster_webhook_backend(c);
	return c->webhooks;
}

static void cluster_reload(struct store *s, const struct dconf *conf)
{
	cluster_apply_conf((struct cluster *)s, conf);
}

static const struct store_ops cluster_ops = {
	.name = "redis",
	.on_hub_thread = false,
	.call = cluster_calls,
	.begin = cluster_call_begin,
	.end = cluster_call_end,
	.announce = cluster_store_announce,
	.instance = cluster_store_instance,
	.not_yet = cluster_store_not_yet,
	.reload = cluster_reload,
	.info = cluster_store_info,
	.metrics = cluster_store_metrics,
	.webhooks = cluster_webhooks,
	.start = cluster_start,
	.stop = cluster_stop,
	.free = cluster_free,
};

/*
 * The hub's log becomes a mirror of the stream, filled by the reader once
 * started (store_start).
 */
struct store *cluster_store_new(const struct dconf *conf, struct hub *h,
				char *err, size_t errlen)
{
	struct cluster *c;
	char where[600];

	if (cluster_mirror_open(h, (size_t)conf->history) != 0) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!(c = cluster_new(conf, h, err, errlen)))
		return NULL;
	c->base.ops = &cluster_ops;
	c->base.hub = h;
	c->base.catch_up_ms = conf->cluster_timeout_ms;
	/* A write's Redis calls, each within cluster.timeout: the connect
	 * (through each sentinel in turn), the script (again after a
	 * NOSCRIPT), WAIT, the wait for its delivery, the acks' second,
	 * the idempotency answer. */
	c->base.call_max_ms = (int64_t)(8 + conf->cluster_sentinels.n) *
				      conf->cluster_timeout_ms +
			      1000;
	if (conf->cluster_sentinels.n)
		snprintf(where, sizeof(where), "sentinels=%s master_name=%s",
			 conf->cluster_sentinels.v[0],
			 conf->cluster_master_name);
	else
		snprintf(where, sizeof(where), "redis=%s:%d",
			 conf->redis.addr.host, conf->redis.addr.port);
	log_info("cluster",
		 "%s db=%d node=%s prefix=%s "
		 "node_ttl_ms=%lld timeout_ms=%lld min_replicas=%lld",
		 where, conf->redis.db, conf->node, conf->cluster_prefix,
		 (long long)conf->cluster_node_ttl_ms,
		 (long long)conf->cluster_timeout_ms,
		 (long long)conf->cluster_min_replicas);
	return &c->base;
}

bool cluster_master(struct cluster *c, char *buf, size_t size)
{
	bool known;

	pthread_mutex_lock(&c->master_mu);
	known = c->n_sentinels && c->master.port;
	if (known)
		conf_addr_format(&c->master, buf, size);
	pthread_mutex_unlock(&c->master_mu);
	return known;
}
