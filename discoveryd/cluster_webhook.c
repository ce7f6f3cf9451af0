/*
 * cluster_webhook: webhooks in cluster mode (docs/webhooks.md, "Cluster
 * mode"), the webhook module's backend (webhook.h). Exactly one live node
 * delivers each endpoint: the one holding its lease in Redis,
 *
 *   PREFIX webhook:NAME:lease    the holder's node name, PX node_ttl
 *   PREFIX webhook:NAME:cursor   "EPOCH SEQ", the last acknowledged
 *   PREFIX webhook:NAME:disabled why it was disabled (absent: it is not)
 *   PREFIX webhooks:defs         the API's endpoints: NAME -> entry (JSON)
 *   PREFIX webhooks:rev          moved by each change of defs
 *
 * renewed every node_ttl/3; a node that dies lets it lapse, and another
 * takes it within node_ttl and goes on from the cursor. A cursor is saved
 * only by the lease's holder (one script checks and sets), so a node that
 * lost its lease while a request was in flight never moves it back, and
 * with cluster.min_replicas it waits for the replicas, like every write.
 *
 * All of it runs on the webhook thread, on a connection of its own
 * (blocking, with cluster.timeout, as the reader's and writer's).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cluster_int.h"
#include "log.h"
#include "webhook.h"

/* Renew the lease if ours: 1; take it if free: 2; else 0. A run-time
 * endpoint (ARGV[3], its name) whose definition left the hash KEYS[2]:
 * -2, and nobody holds it. */
static const char lease_lua[] =
	"if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 "
	"then redis.call('DEL', KEYS[1]) return -2 end "
	"local v = redis.call('GET', KEYS[1]) "
	"if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
	"return 1 end "
	"if v then return 0 end "
	"redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2";

/* Set the cursor if the lease is ours and it does not go back in its
 * epoch (but for a replay, ARGV[3] '1'): 1, else 0. Seqs compare as
 * digit strings (Lua's numbers are doubles). */
static const char save_lua[] =
	"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
	"if ARGV[3] ~= '1' then "
	"local cur = redis.call('GET', KEYS[2]) "
	"if cur then "
	"local ce, cs = string.match(cur, '^(%S+) (%d+)$') "
	"local ne, ns = string.match(ARGV[2], '^(%S+) (%d+)$') "
	"if ce and ce == ne and (#cs > #ns or (#cs == #ns and cs > ns)) "
	"then return 0 end end end "
	"redis.call('SET', KEYS[2], ARGV[2]) return 1";

/* Set (ARGV[2] not empty) or clear the disabled state if the lease is
 * ours: 1, else 0. */
static const char disable_lua[] =
	"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
	"if ARGV[2] == '' then redis.call('DEL', KEYS[2]) "
	"else redis.call('SET', KEYS[2], ARGV[2]) end return 1";

struct cluster_webhooks {
	struct webhook_backend ops;
	struct cluster *c;
	redisContext *ctx; /* the webhook thread's; NULL: none now */
};

static struct cluster_webhooks *of(void *arg)
{
	return arg;
}

static redisContext *conn(struct cluster_webhooks *cw)
{
	if (cw->ctx && cw->ctx->err) {
		redisFree(cw->ctx);
		cw->ctx = NULL;
	}
	if (!cw->ctx)
		cw->ctx = cluster_connect(cw->c, "webhooks");
	return cw->ctx;
}

static void key(char *out, size_t size, const struct cluster *c,
		const char *name, const char *what)
{
	snprintf(out, size, "%swebhook:%s:%s", c->prefix, name, what);
}

/* One EVAL (at most 13 keys and arguments); the reply's integer, or -1. */
static long long eval(struct cluster_webhooks *cw, const char *script,
		      int nkeys, const char **args, int nargs)
{
	redisContext *ctx = conn(cw);
	const char *argv[16]; /* 3 + nargs */
	char n[4];
	redisReply *r;
	long long v = -1;

	if (!ctx)
		return -1;
	snprintf(n, sizeof(n), "%d", nkeys);
	argv[0] = "EVAL";
	argv[1] = script;
	argv[2] = n;
	for (int i = 0; i < nargs; i++)
		argv[3 + i] = args[i];
	r = cluster_check(ctx, redisCommandArgv(ctx, 3 + nargs, argv, NULL));
	if (r && r->type == REDIS_REPLY_INTEGER)
		v = r->integer;
	else
		log_debug("redis webhook call failed", "error=\"%s\"",
			  r && r->type == REDIS_REPLY_ERROR ? r->str :
							      ctx->errstr);
	freeReplyObject(r);
	return v;
}

/* Store (KEYS[1] the hash, ARGV[1] the name, ARGV[2] the entry) and, if
 * ARGV[3] is not empty, set the cursor KEYS[3] to it and clear KEYS[4]
 * (disabled); or with ARGV[2] empty remove the entry and the lease,
 * cursor and disabled keys (KEYS[2..4]). The revision KEYS[5] moves. */
static const char def_set_lua[] =
	"if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) "
	"redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) "
	"else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
	"if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) "
	"redis.call('DEL', KEYS[4]) end end "
	"redis.call('INCR', KEYS[5]) return 1";

static void defs_key(char *out, size_t size, const struct cluster *c,
		     const char *what)
{
	snprintf(out, size, "%swebhooks:%s", c->prefix, what);
}

/*
 * Whether this node follows the stream: its reader's last read came back
 * within the longest a read blocks plus a call's timeout, plus the pause
 * it may take after a batch (cluster.coalesce, up to 1s: a reader that
 * waits on purpose is not stuck). A node whose reader is stuck (while its
 * other calls go through) would deliver nothing new, and holding the
 * lease, let no other node deliver either.
 */
static bool follows(const struct cluster *c)
{
	return clock_mono_ms() - atomic_load(&c->read_ms) <=
	       READ_BLOCK_MS + c->timeout_ms + atomic_load(&c->coalesce_ms) +
		       1000;
}

static int lease(void *arg, const char *name, bool runtime)
{
	struct cluster_webhooks *cw = of(arg);
	char k[CLUSTER_KEY_MAX], h[CLUSTER_KEY_MAX], ttl[24];
	const char *args[5] = { k, h, cw->c->node, ttl, runtime ? name : "" };

	/* Not following: as if Redis were away (a holder stands by before
	 * its lease lapses, and no other node's is taken). */
	if (!follows(cw->c))
		return -1;
	key(k, sizeof(k), cw->c, name, "lease");
	defs_key(h, sizeof(h), cw->c, "defs");
	snprintf(ttl, sizeof(ttl), "%lld", (long long)cw->c->node_ttl_ms);
	return (int)eval(cw, lease_lua, 2, args, 5);
}

/* GET k into out ("" when there is none): 0, or -1. */
static int get_text(struct cluster_webhooks *cw, const char *k, char *out,
		    size_t size)
{
	redisContext *ctx = conn(cw);
	redisReply *r;
	int rc = -1;

	if (!ctx)
		return -1;
	r = cluster_check(ctx, redisCommand(ctx, "GET %s", k));
	if (r &&
	    (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL)) {
		snprintf(out, size, "%s",
			 r->type == REDIS_REPLY_STRING ? r->str : "");
		rc = 0;
	}
	freeReplyObject(r);
	return rc;
}

static int defs_rev(void *arg, long long *rev)
{
	struct cluster_webhooks *cw = of(arg);
	char k[CLUSTER_KEY_MAX], v[32];

	defs_key(k, sizeof(k), cw->c, "rev");
	if (get_text(cw, k, v, sizeof(v)) != 0)
		return -1;
	*rev = strtoll(v, NULL, 10); /* none yet: 0 */
	return 0;
}

static cJSON *defs_get(void *arg)
{
	struct cluster_webhooks *cw = of(arg);
	redisContext *ctx = conn(cw);
	char k[CLUSTER_KEY_MAX];
	redisReply *r;
	cJSON *out;

	if (!ctx)
		return NULL;
	defs_key(k, sizeof(k), cw->c, "defs");
	r = cluster_check(ctx, redisCommand(ctx, "HGETALL %s", k));
	if (!r || r->type != REDIS_REPLY_ARRAY ||
	    !(out = cJSON_CreateObject())) {
		freeReplyObject(r);
		return NULL;
	}
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *n = r->element[i], *v = r->element[i + 1];
		cJSON *def = v->type == REDIS_REPLY_STRING ?
				     cJSON_Parse(v->str) :
				     NULL;

		/* A field that is not an entry is skipped: the thread
		 * checks each again anyway. */
		if (n->type == REDIS_REPLY_STRING && proto_valid_name(n->str) &&
		    cJSON_IsObject(def))
			cJSON_AddItemToObject(out, n->str, def);
		else
			cJSON_Delete(def);
	}
	freeReplyObject(r);
	return out;
}

static int def_set(void *arg, const char *name, const char *json, bool start,
		   const char *epoch, uint64_t seq)
{
	struct cluster_webhooks *cw = of(arg);
	char h[CLUSTER_KEY_MAX], lk[CLUSTER_KEY_MAX], ck[CLUSTER_KEY_MAX];
	char dk[CLUSTER_KEY_MAX], rk[CLUSTER_KEY_MAX];
	char cursor[PROTO_EPOCH_MAX + 32] = "";
	const char *args[8] = { h,     lk, ck, dk, rk, name, json ? json : "",
				cursor };

	defs_key(h, sizeof(h), cw->c, "defs");
	defs_key(rk, sizeof(rk), cw->c, "rev");
	key(lk, sizeof(lk), cw->c, name, "lease");
	key(ck, sizeof(ck), cw->c, name, "cursor");
	key(dk, sizeof(dk), cw->c, name, "disabled");
	if (json && start)
		snprintf(cursor, sizeof(cursor), "%s %llu", epoch,
			 (unsigned long long)seq);
	if (eval(cw, def_set_lua, 5, args, 8) != 1)
		return -1;
	return cw->ctx && cluster_wait_replicas(cw->c, cw->ctx) == 0 ? 0 : -1;
}

static int load(void *arg, const char *name, char *epoch, size_t size,
		uint64_t *seq, char *disabled, size_t disabled_size)
{
	struct cluster_webhooks *cw = of(arg);
	redisContext *ctx = conn(cw);
	char ck[CLUSTER_KEY_MAX], dk[CLUSTER_KEY_MAX], e[PROTO_EPOCH_MAX + 1];
	unsigned long long s;
	const redisReply *cur, *dis;
	redisReply *r;
	int rc = -1;

	if (!ctx)
		return -1;
	key(ck, sizeof(ck), cw->c, name, "cursor");
	key(dk, sizeof(dk), cw->c, name, "disabled");
	r = cluster_check(ctx, redisCommand(ctx, "MGET %s %s", ck, dk));
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		freeReplyObject(r);
		return -1;
	}
	cur = r->element[0];
	dis = r->element[1];
	snprintf(disabled, disabled_size, "%s",
		 dis->type == REDIS_REPLY_STRING ? dis->str : "");
	if (cur->type == REDIS_REPLY_NIL)
		rc = 0;
	else if (cur->type == REDIS_REPLY_STRING &&
		 sscanf(cur->str, "%64s %llu", e, &s) == 2) {
		snprintf(epoch, size, "%s", e);
		*seq = s;
		rc = 1;
	}
	freeReplyObject(r);
	return rc;
}

static int disable(void *arg, const char *name, const char *why)
{
	struct cluster_webhooks *cw = of(arg);
	char lk[CLUSTER_KEY_MAX], dk[CLUSTER_KEY_MAX];
	const char *args[4] = { lk, dk, cw->c->node, why };

	key(lk, sizeof(lk), cw->c, name, "lease");
	key(dk, sizeof(dk), cw->c, name, "disabled");
	return eval(cw, disable_lua, 2, args, 4) == 1 ? 0 : -1;
}

static int save(void *arg, const char *name, const char *epoch, uint64_t seq,
		bool back)
{
	struct cluster_webhooks *cw = of(arg);
	char lk[CLUSTER_KEY_MAX], ck[CLUSTER_KEY_MAX];
	char value[PROTO_EPOCH_MAX + 32];
	const char *args[5] = { lk, ck, cw->c->node, value, back ? "1" : "0" };

	key(lk, sizeof(lk), cw->c, name, "lease");
	key(ck, sizeof(ck), cw->c, name, "cursor");
	snprintf(value, sizeof(value), "%s %llu", epoch,
		 (unsigned long long)seq);
	if (eval(cw, save_lua, 2, args, 5) != 1)
		return -1;
	/* As durable as every write of the cluster. */
	return cw->ctx && cluster_wait_replicas(cw->c, cw->ctx) == 0 ? 0 : -1;
}

static int holder(void *arg, const char *name, char *out, size_t size)
{
	struct cluster_webhooks *cw = of(arg);
	char k[CLUSTER_KEY_MAX];

	key(k, sizeof(k), cw->c, name, "lease");
	return get_text(cw, k, out, size);
}

static void remove_keys(void *arg, const char *name)
{
	struct cluster_webhooks *cw = of(arg);
	redisContext *ctx = conn(cw);
	char lk[CLUSTER_KEY_MAX], ck[CLUSTER_KEY_MAX], dk[CLUSTER_KEY_MAX];

	if (!ctx)
		return;
	key(lk, sizeof(lk), cw->c, name, "lease");
	key(ck, sizeof(ck), cw->c, name, "cursor");
	key(dk, sizeof(dk), cw->c, name, "disabled");
	freeReplyObject(redisCommand(ctx, "DEL %s %s %s", lk, ck, dk));
}

static void release(void *arg)
{
	struct cluster_webhooks *cw = of(arg);

	if (cw->ctx)
		redisFree(cw->ctx);
	cw->ctx = NULL;
}

const struct webhook_backend *cluster_webhook_backend(struct cluster *c)
{
	struct cluster_webhooks *cw = calloc(1, sizeof(*cw));

	if (!cw)
		return NULL;
	cw->c = c;
	cw->ops = (struct webhook_backend){
		.arg = cw,
		.renew_ms = c->node_ttl_ms / 3,
		.lease = lease,
		.load = load,
		.save = save,
		.disable = disable,
		.remove = remove_keys,
		.holder = holder,
		.defs_rev = defs_rev,
		.defs_get = defs_get,
		.def_set = def_set,
		.release = release,
	};
	return &cw->ops;
}

void cluster_webhook_free(const struct webhook_backend *b)
{
	if (b) {
		release(b->arg);
		free(b->arg);
	}
}
