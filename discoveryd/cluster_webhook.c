/*
 * cluster_webhook: webhooks in cluster mode (docs/webhooks.md, "Cluster
 * mode"), the webhook module's backend (webhook.h). Exactly one live node
 * delivers each endpoint: the one holding its lease in Redis,
 *
 *   PREFIX webhook:NAME:lease    the holder's node name, PX node_ttl
 *   PREFIX webhook:NAME:cursor   "EPOCH SEQ", the last acknowledged
 *   PREFIX webhook:NAME:disabled why it was disabled (absent: it is not)
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

#include "cluster_int.h"
#include "log.h"
#include "webhook.h"

/* Renew the lease if ours: 1; take it if free: 2; else 0. */
static const char lease_lua[] =
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

/* One EVAL with two keys at most; the reply's integer, or -1. */
static long long eval(struct cluster_webhooks *cw, const char *script,
		      int nkeys, const char **args, int nargs)
{
	redisContext *ctx = conn(cw);
	const char *argv[8];
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

static int lease(void *arg, const char *name)
{
	struct cluster_webhooks *cw = of(arg);
	char k[CLUSTER_KEY_MAX], ttl[24];
	const char *args[3] = { k, cw->c->node, ttl };

	key(k, sizeof(k), cw->c, name, "lease");
	snprintf(ttl, sizeof(ttl), "%lld", (long long)cw->c->node_ttl_ms);
	return (int)eval(cw, lease_lua, 1, args, 3);
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
