/*
 * cluster_api: the calls the cluster backend answers (store.h, store_call),
 * run on the libmicrohttpd thread that took them, each on its own Redis
 * connection. Writes run the script, then wait (cluster_await) until this
 * node has read the event back from the stream and delivered it; reads are
 * answered for the whole cluster, or from this node's view (the hub's)
 * while Redis is away.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "evlog.h"
#include "log.h"

/* The reader's conn_gen when this thread's connection was made. */
static _Thread_local unsigned conn_gen;

/*
 * This thread's connection, made on first use; NULL when Redis is away.
 * While the reader cannot follow the stream, or shortly after a call
 * failed, no connection is tried: the caller answers at once (503, or
 * from this node's view) rather than hold an HTTP thread for the timeout.
 * A connection made before the reader last lost Redis is made again
 * unused: it is to a server that went away (a dead master, a restart),
 * and its first call would fail and pause every thread's calls in turn.
 */
static redisContext *api_conn(struct cluster *c)
{
	redisContext *ctx = pthread_getspecific(c->conn_key);
	unsigned gen = atomic_load(&c->conn_gen);

	if (!atomic_load(&c->up) ||
	    clock_wall_ms() < atomic_load(&c->api_pause_until))
		return NULL;

	if (ctx && (ctx->err || conn_gen != gen)) {
		redisFree(ctx);
		ctx = NULL;
		pthread_setspecific(c->conn_key, NULL);
	}
	if (!ctx) {
		ctx = cluster_connect(c, "api");
		pthread_setspecific(c->conn_key, ctx);
		conn_gen = gen;
		if (!ctx)
			atomic_store(&c->api_pause_until,
				     clock_wall_ms() + API_PAUSE_MS);
	}
	return ctx;
}

static void api_conn_failed(struct cluster *c)
{
	redisContext *ctx = pthread_getspecific(c->conn_key);

	atomic_fetch_add(&c->errors, 1);
	atomic_store(&c->api_pause_until, clock_wall_ms() + API_PAUSE_MS);
	redisFree(ctx);
	pthread_setspecific(c->conn_key, NULL);
}

static void unavailable(struct hub_req *req, const redisContext *ctx,
			const redisReply *r)
{
	const char *why = r && r->type == REDIS_REPLY_ERROR ? r->str :
			  ctx && ctx->err                   ? ctx->errstr :
							      "not connected";
	char msg[300];

	snprintf(msg, sizeof(msg),
		 "the cluster backend (Redis) is unavailable, "
		 "nothing was changed: %s",
		 why);
	log_warn("cluster write refused", "error=\"%s\"", why);
	hub_answer_error(req, 503, "unavailable", msg);
}

/*
 * The connection failed with the script sent, before the socket's timeout:
 * Redis may have run it and its answer been lost (a reset, a master that
 * died after the run). Unlike a timeout, which the script's deadline makes
 * harmless, this one's outcome is unknown, and the caller is told so.
 */
static void outcome_unknown(struct hub_req *req, const redisContext *ctx)
{
	char msg[400];

	snprintf(msg, sizeof(msg),
		 "the connection to the cluster backend (Redis) failed with "
		 "the write sent: it may or may not have taken effect (a retry "
		 "with the same Idempotency-Key is safe): %s",
		 ctx->errstr);
	log_warn("cluster write unknown", "error=\"%s\"", ctx->errstr);
	hub_answer_error(req, 503, "unavailable", msg);
}

/* Why a script call on ctx, sent at sent_ms, came back without an answer. */
static void call_failed(struct cluster *c, struct hub_req *req,
			const redisContext *ctx, const redisReply *r,
			int64_t sent_ms)
{
	if (!r && ctx && ctx->err && clock_wall_ms() - sent_ms < c->timeout_ms)
		outcome_unknown(req, ctx);
	else
		unavailable(req, ctx, r);
}

/*
 * cluster.min_replicas: the script ran on the master, but WAIT did not see
 * enough replicas take it. It is not delivered until they do (the readers
 * wait for the same count), and a failover meanwhile may lose it: the
 * caller can only be told that it may or may not take effect.
 */
static void unreplicated(struct cluster *c, struct hub_req *req,
			 const redisContext *ctx, int rc)
{
	char msg[400];

	snprintf(msg, sizeof(msg),
		 "the cluster backend (Redis) did not "
		 "confirm the write on %lld replica(s) within %lld ms (%s): it "
		 "may still take effect, or be lost in a failover",
		 (long long)c->min_replicas, (long long)(c->timeout_ms / 2),
		 rc < 0 && ctx && ctx->err ? ctx->errstr : "too few replicas");
	log_warn("cluster write unconfirmed", "min_replicas=%lld error=\"%s\"",
		 (long long)c->min_replicas,
		 rc < 0 ? "connection" : "replicas");
	if (rc < 0)
		api_conn_failed(c); /* ctx is gone from here on */
	hub_answer_error(req, 503, "unavailable", msg);
}

/*
 * One node's ack, "NODE COUNT": 1 and its count when another node's. A
 * value that is not one (no name, a count not all digits, "-1" included,
 * which strtoull would take as 2^64-1) is no node's ack: not counted.
 */
static int ack_of(const struct cluster *c, const redisReply *e, size_t *count)
{
	const char *v, *sp;
	char *end;
	unsigned long long n;

	if (!e || e->type != REDIS_REPLY_STRING)
		return 0;
	v = e->str;
	sp = strrchr(v, ' ');
	if (!sp || sp == v || sp[1] < '0' || sp[1] > '9')
		return 0;
	errno = 0;
	n = strtoull(sp + 1, &end, 10);
	if (*end || errno || n > SIZE_MAX / 2)
		return 0;
	/* Our own ack is already counted (the hub told us). */
	if ((size_t)(sp - v) == strlen(c->node) &&
	    strncmp(v, c->node, strlen(c->node)) == 0)
		return 0;
	*count += (size_t)n;
	return 1;
}

/*
 * How many links the other nodes delivered seq to: their acks, waited for
 * a short while (a slow or dying node's count is left out, not waited for).
 * Those already pushed are taken in one round trip (pipelined LPOPs, one
 * more than the others: this node pushes its own too); BLPOP waits for
 * the rest.
 */
static size_t collect_acks(struct cluster *c, redisContext *ctx, uint64_t seq,
			   int others)
{
	int64_t wait_ms = c->timeout_ms / 2 < 1000 ? c->timeout_ms / 2 : 1000;
	int64_t end = clock_wall_ms() + wait_ms;
	size_t sum = 0;
	int asked = 0;
	char key[CLUSTER_KEY_MAX], secs[32];

	snprintf(key, sizeof(key), "%sack:%llu", c->prefix,
		 (unsigned long long)seq);
	for (int i = 0; i <= others; i++)
		asked += redisAppendCommand(ctx, "LPOP %s", key) == REDIS_OK;
	for (; asked > 0; asked--) {
		redisReply *r = NULL;

		if (redisGetReply(ctx, (void **)&r) != REDIS_OK) {
			api_conn_failed(c);
			return sum;
		}
		others -= ack_of(c, r, &sum);
		freeReplyObject(r);
	}
	while (others > 0) {
		int64_t left = end - clock_wall_ms();
		redisReply *r;

		if (left <= 0)
			break;
		snprintf(secs, sizeof(secs), "%.3f", (double)left / 1000.0);
		r = redisCommand(ctx, "BLPOP %s %s", key, secs);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			if (!r || ctx->err)
				api_conn_failed(c);
			freeReplyObject(r);
			break;
		}
		others -= ack_of(c, r->element[1], &sum);
		freeReplyObject(r);
	}
	return sum;
}

/*
 * A write: run op; its reply is JSON with epoch and seq. Then wait until
 * this node has delivered that seq, so the caller reads its own write and
 * learns *delivered. Returns the reply's JSON (caller deletes), or NULL
 * once req holds an error answer.
 */
static cJSON *write_call(struct cluster *c, struct hub_req *req, const char *op,
			 int argc, const char **args, size_t *delivered)
{
	redisContext *ctx = api_conn(c);
	redisReply *r = NULL;
	cJSON *o = NULL;
	const cJSON *seq;
	const char *argv[8];
	struct cluster_idem_args idem;
	int64_t sent = 0;
	int n = argc, rc;

	/* The key's four arguments follow the op's (cluster.lua). */
	memcpy(argv, args, (size_t)argc * sizeof(*argv));
	if (req->idem_key[0]) {
		cluster_idem_args(c, req, &idem);
		memcpy(argv + argc, idem.argv, sizeof(idem.argv));
		n += 4;
	}
	/* The deadline is half the socket's timeout: a script that runs at
	 * all has its answer back before this thread gives up and says 503
	 * (unless the network drops the answer itself: docs/cluster.md; the
	 * caller's retry with the same Idempotency-Key is then safe). */
	if (ctx)
		r = cluster_script(c, ctx,
				   (sent = clock_wall_ms()) + c->timeout_ms / 2,
				   op, n, argv);
	if (!r || r->type != REDIS_REPLY_STRING) {
		call_failed(c, req, ctx, r, sent);
		if (ctx && (!r || ctx->err))
			api_conn_failed(c);
		freeReplyObject(r);
		return NULL;
	}
	rc = cluster_wait_replicas(c, ctx);
	if (rc != 0) {
		unreplicated(c, req, ctx, rc);
		freeReplyObject(r);
		return NULL;
	}
	o = cJSON_ParseWithLength(r->str, r->len);
	freeReplyObject(r);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		hub_answer_error(req, 500, "internal",
				 "unexpected answer from Redis");
		return NULL;
	}
	if (cluster_idem_reply(c, req, &o)) {
		cJSON_Delete(o);
		return NULL;
	}
	seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
	*delivered = 0;
	/* A replay rebuilt from the first run: delivered then, not now. */
	if (!req->replayed && cJSON_IsNumber(seq) && seq->valuedouble > 0) {
		const cJSON *nodes =
			cJSON_GetObjectItemCaseSensitive(o, "nodes");
		const char *epoch = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(o, "epoch"));
		uint64_t at = (uint64_t)seq->valuedouble;

		*delivered = cluster_await(c, epoch ? epoch : "", at);
		if (cJSON_IsNumber(nodes) && nodes->valuedouble >= 2)
			*delivered += collect_acks(c, ctx, at,
						   (int)nodes->valuedouble - 1);
	}
	return o;
}

static void add_seq(cJSON *o, const cJSON *seq)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu",
		 (unsigned long long)(cJSON_IsNumber(seq) ? seq->valuedouble :
							    0));
	cJSON_AddRawToObject(o, "seq", buf);
}

static int64_t min_ready_of(struct cluster *c, const char *name)
{
	int64_t v = 1;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n_min; i++)
		if (strcmp(c->min[i].name, name) == 0)
			v = c->min[i].value;
	pthread_mutex_unlock(&c->mu);
	return v;
}

static void call_declare(struct store *s, struct hub_req *req)
{
	struct cluster *c = (struct cluster *)s;
	size_t delivered;
	char ttl[24], min[24];
	const char *args[4] = { req->service,
				req->decl == DECL_READY    ? "ready" :
				req->decl == DECL_NOTREADY ? "notready" :
							     "none",
				ttl, min };
	cJSON *o, *svc;

	snprintf(ttl, sizeof(ttl), "%lld", (long long)req->ttl_ms);
	snprintf(min, sizeof(min), "%lld",
		 (long long)min_ready_of(c, req->service));
	o = write_call(c, req, "declare", 4, args, &delivered);
	if (!o)
		return;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "missing"))) {
		cJSON_Delete(o);
		hub_answer_error(req, 404, "not_found", "no such service");
		return;
	}
	svc = cJSON_DetachItemFromObjectCaseSensitive(o, "service");
	if (!cJSON_IsObject(svc))
		svc = cJSON_CreateObject();
	if (cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "seq")) >
	    0)
		add_seq(svc, cJSON_GetObjectItemCaseSensitive(o, "seq"));
	cJSON_AddNumberToObject(svc, "delivered", (double)delivered);
	cJSON_Delete(o);
	log_info("declared",
		 "service=%s declaration=%s ttl_ms=%lld cluster=true",
		 req->service, args[1], (long long)req->ttl_ms);
	hub_answer(req, 200, svc);
}

static void call_cacheready(struct store *s, struct hub_req *req)
{
	struct cluster *c = (struct cluster *)s;
	size_t delivered;
	char min[24];
	const char *args[1] = { min };
	cJSON *o, *a;

	snprintf(min, sizeof(min), "%lld", (long long)min_ready_of(c, "cache"));
	o = write_call(c, req, "cacheready", 1, args, &delivered);
	if (!o)
		return;
	a = cJSON_CreateObject();
	add_seq(a, cJSON_GetObjectItemCaseSensitive(o, "seq"));
	cJSON_AddStringToObject(a, "service", "cache");
	cJSON_AddBoolToObject(a, "ready", true);
	cJSON_AddNumberToObject(a, "delivered", (double)delivered);
	cJSON_Delete(o);
	hub_answer(req, 200, a);
}

static void call_send(struct store *s, struct hub_req *req)
{
	struct cluster *c = (struct cluster *)s;
	struct event *ev = hub_request_event(req);
	enum event_kind kind;
	size_t delivered;
	const char *args[1];
	char *text;
	cJSON *o, *a;

	if (!ev) {
		hub_answer_error(req, 500, "internal", "out of memory");
		return;
	}
	kind = ev->kind;
	text = evlog_event_text(ev);
	event_unref(ev);
	if (!text) {
		hub_answer_error(req, 500, "internal", "out of memory");
		return;
	}
	args[0] = text;
	o = write_call(c, req, "publish", 1, args, &delivered);
	free(text);
	if (!o)
		return;
	a = cJSON_CreateObject();
	add_seq(a, cJSON_GetObjectItemCaseSensitive(o, "seq"));
	cJSON_AddNumberToObject(a, "delivered", (double)delivered);
	log_info("event", "kind=%s seq=%.0f delivered=%zu cluster=true",
		 event_kind_name(kind),
		 cJSON_GetNumberValue(
			 cJSON_GetObjectItemCaseSensitive(o, "seq")),
		 delivered);
	cJSON_Delete(o);
	hub_answer(req, 202, a);
}

/* A read the script answers for the whole cluster; NULL when Redis is away. */
static redisReply *read_call(struct cluster *c, const char *op, int argc,
			     const char **args)
{
	redisContext *ctx = api_conn(c);
	redisReply *r = ctx ? cluster_script(c, ctx, 0, op, argc, args) : NULL;

	if (!r || r->type == REDIS_REPLY_ERROR) {
		if (ctx && (!r || ctx->err))
			api_conn_failed(c);
		log_debug("cluster read failed",
			  "op=%s note=\"answered from this "
			  "node's view\"",
			  op);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static void call_services(struct store *s, struct hub_req *req)
{
	struct cluster *c = (struct cluster *)s;
	const char *args[1] = { req->op == HUB_SERVICE ? req->service : "" };
	redisReply *r = read_call(c, "services", 1, args);
	cJSON *o, *item;

	if (!r || r->type != REDIS_REPLY_STRING) {
		freeReplyObject(r);
		hub_call(c->hub, req);
		return;
	}
	o = cJSON_ParseWithLength(r->str, r->len);
	freeReplyObject(r);
	if (req->op == HUB_SERVICES) {
		item = cJSON_DetachItemFromObjectCaseSensitive(o, "services");
		cJSON_Delete(o);
		o = cJSON_CreateObject();
		cJSON_AddItemToObject(o, "services",
				      cJSON_IsArray(item) ?
					      item :
					      cJSON_CreateArray());
		if (!cJSON_IsArray(item))
			cJSON_Delete(item);
		hub_answer(req, 200, o);
		return;
	}
	item = cJSON_DetachItemFromObjectCaseSensitive(o, "service");
	cJSON_Delete(o);
	if (!cJSON_IsObject(item)) {
		cJSON_Delete(item);
		hub_answer_error(req, 404, "not_found", "no such service");
		return;
	}
	hub_answer(req, 200, item);
}

/* This node's agents from its hub (live), the others' from Redis. */
static void call_agents(struct store *s, struct hub_req *req)
{
	struct cluster *c = (struct cluster *)s;
	redisReply *r;
	cJSON *o, *list;

	hub_call(c->hub, req);
	if (req->status != 200)
		return;
	r = read_call(c, "agents", 0, NULL);
	if (!r)
		return;
	o = cJSON_Parse(req->body);
	list = cJSON_GetObjectItemCaseSensitive(o, "agents");
	if (cJSON_IsArray(list) && r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->elements; i++) {
			const redisReply *e = r->element[i];
			cJSON *a =
				e->type == REDIS_REPLY_STRING ?
					cJSON_ParseWithLength(e->str, e->len) :
					NULL;

			if (cJSON_IsObject(a))
				cJSON_AddItemToArray(list, a);
			else
				cJSON_Delete(a);
		}
		free(req->body);
		hub_answer(req, 200, o);
		o = NULL;
	}
	cJSON_Delete(o);
	freeReplyObject(r);
}

/*
 * Drain a node: this one at once; another through Redis, whose heartbeat
 * hands it the request (within node_ttl/3). 404 for a node not alive.
 * This node's drain with an Idempotency-Key goes through Redis too, so
 * that its retry on any node replays (docs/api.md); with Redis away it
 * drains all the same, the key unkept (draining twice is draining once).
 */
static void call_drain(struct store *s, struct hub_req *req)
{
	struct cluster *c = (struct cluster *)s;
	bool self = strcmp(req->instance, c->node) == 0;
	redisContext *ctx;
	redisReply *r = NULL;
	char ttl[24];
	const char *args[6] = { req->instance, ttl };
	struct cluster_idem_args idem;
	int64_t sent = 0;
	int n = 2;
	cJSON *o;

	if (self && !req->idem_key[0]) {
		hub_call(c->hub, req);
		return;
	}
	snprintf(ttl, sizeof(ttl), "%lld", (long long)c->node_ttl_ms);
	if (req->idem_key[0]) {
		cluster_idem_args(c, req, &idem);
		memcpy(args + 2, idem.argv, sizeof(idem.argv));
		n += 4;
	}
	ctx = api_conn(c);
	if (ctx)
		r = cluster_script(c, ctx,
				   (sent = clock_wall_ms()) + c->timeout_ms / 2,
				   "drain", n, args);
	if (!r || r->type != REDIS_REPLY_STRING) {
		if (!self)
			call_failed(c, req, ctx, r, sent);
		if (ctx && (!r || ctx->err))
			api_conn_failed(c); /* ctx is gone from here on */
		freeReplyObject(r);
		if (self)
			hub_call(c->hub, req);
		return;
	}
	o = cJSON_ParseWithLength(r->str, r->len);
	freeReplyObject(r);
	if (cJSON_IsObject(o) && cluster_idem_reply(c, req, &o)) {
		cJSON_Delete(o);
		return;
	}
	if (self && !req->replayed) {
		cJSON_Delete(o);
		hub_call(c->hub, req); /* its answer: this node's links */
		return;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "missing"))) {
		cJSON_Delete(o);
		hub_answer_error(req, 404, "not_found", "no such node");
		return;
	}
	cJSON_Delete(o);
	log_info("drain requested", "node=%s cluster=true", req->instance);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "node", req->instance);
	cJSON_AddBoolToObject(o, "draining", true);
	cJSON_AddNullToObject(o, "links"); /* that node's to tell */
	hub_answer(req, 202, o);
}

store_fn *const cluster_calls[HUB_OPS] = {
	[HUB_DECLARE] = call_declare,   [HUB_CACHEREADY] = call_cacheready,
	[HUB_INVALIDATE] = call_send,   [HUB_BROADCAST] = call_send,
	[HUB_SERVICES] = call_services, [HUB_SERVICE] = call_services,
	[HUB_AGENTS] = call_agents,     [HUB_DRAIN] = call_drain,
};

bool cluster_call_begin(struct store *s, struct hub_req *req)
{
	return cluster_idem_begin((struct cluster *)s, req);
}

void cluster_call_end(struct store *s, struct hub_req *req)
{
	struct cluster *c = (struct cluster *)s;

	cluster_idem_end(c, pthread_getspecific(c->conn_key), req);
}
