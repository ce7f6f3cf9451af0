/*
 * cluster: the Redis side of cluster mode (see cluster.h). Connections,
 * the script, the API threads' calls, and the reader and writer threads.
 *
 * hiredis 0.14 is used in blocking mode with a timeout on every call
 * (cluster.timeout): a frozen Redis makes a call fail, never hang. A
 * connection that failed once is thrown away and made again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "evlog.h"
#include "log.h"

/* discoveryd/cluster.lua, linked in as bytes (see Makefile). */
extern const char _binary_cluster_lua_start[];
extern const char _binary_cluster_lua_end[];

#define READ_BLOCK_MS   1000     /* XREAD BLOCK: how often the reader looks up */
#define READ_COUNT      1024     /* entries per XREAD */
#define AGENTS_CHUNK    256      /* HSETs per pipelined batch */
#define RETRY_MIN_MS    100
#define RETRY_MAX_MS    2000

/*
 * A change to report: a service's counts, an agent (json NULL = gone), or
 * an ack (how many links here an event went to).
 */
struct note {
	struct note *next;
	bool agent;
	bool ack;
	uint64_t seq;                /* ack */
	size_t delivered;            /* ack */
	char key[PROTO_NAME_MAX + PROTO_INSTANCE_MAX + 2];  /* name, or svc/inst */
	int64_t min_ready;
	unsigned instances, ready, dependents;
	char *json;
};

struct min_ready {
	char *name;
	int64_t value;
};

struct cluster {
	struct hub *hub;
	struct redis_url url;
	char prefix[PROTO_INSTANCE_MAX + 1];
	char node[PROTO_INSTANCE_MAX + 1];
	int64_t node_ttl_ms;
	int64_t timeout_ms;
	size_t history;
	char sha[41];                /* the script's SHA-1, once loaded */
	pthread_mutex_t sha_mu;

	pthread_key_t conn_key;      /* API threads: one connection each */

	pthread_mutex_t mu;          /* notes, min_ready, full_wanted */
	pthread_cond_t cv;
	struct note *notes, **notes_tail;
	struct min_ready *min;
	size_t n_min;
	pthread_t reader, writer;
	bool started;
	atomic_bool stop;
	atomic_bool up;              /* the reader's connection works */
	atomic_ullong errors;
};

/* ---- connections --------------------------------------------------------- */

static struct timeval tv_ms(int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	return tv;
}

static bool reply_ok(const redisReply *r)
{
	return r && r->type != REDIS_REPLY_ERROR;
}

/* Load the script (again, after a Redis restart forgot it). */
static int load_script(struct cluster *c, redisContext *ctx)
{
	const char *argv[3] = { "SCRIPT", "LOAD", _binary_cluster_lua_start };
	size_t lens[3] = { 6, 4, (size_t)(_binary_cluster_lua_end -
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

/* A new connection named discoveryd:NODE:ROLE, or NULL (logged). */
static redisContext *connect_redis(struct cluster *c, const char *role)
{
	redisContext *ctx = redisConnectWithTimeout(c->url.addr.host,
						    c->url.addr.port,
						    tv_ms(c->timeout_ms));
	redisReply *r;
	char name[300];

	if (!ctx || ctx->err) {
		log_debug("redis connect failed", "role=%s error=\"%s\"", role,
			  ctx ? ctx->errstr : "out of memory");
		redisFree(ctx);
		return NULL;
	}
	redisSetTimeout(ctx, tv_ms(c->timeout_ms));
	if (c->url.password[0]) {
		r = redisCommand(ctx, "AUTH %s", c->url.password);
		if (!reply_ok(r)) {
			log_error("redis auth failed", "role=%s error=\"%s\"", role,
				  r ? r->str : ctx->errstr);
			freeReplyObject(r);
			redisFree(ctx);
			return NULL;
		}
		freeReplyObject(r);
	}
	if (c->url.db) {
		r = redisCommand(ctx, "SELECT %d", c->url.db);
		if (!reply_ok(r)) {
			freeReplyObject(r);
			redisFree(ctx);
			return NULL;
		}
		freeReplyObject(r);
	}
	snprintf(name, sizeof(name), "discoveryd:%s:%s", c->node, role);
	freeReplyObject(redisCommand(ctx, "CLIENT SETNAME %s", name));
	if (ctx->err || load_script(c, ctx) != 0) {
		redisFree(ctx);
		return NULL;
	}
	return ctx;
}

static void new_epoch(char out[33])
{
	unsigned char raw[16];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		memset(raw, 0, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static int64_t wall_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Run the script: op, then extra arguments. The deadline makes a call that
 * Redis runs only after we gave up (it was frozen) change nothing; 0 = none.
 * Returns the reply, or NULL with errno-ish detail in err (the context is
 * then unusable: the caller drops it).
 */
static redisReply *script(struct cluster *c, redisContext *ctx,
			  int64_t deadline, const char *op, int argc,
			  const char **args, const size_t *arglens)
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
		lens[n] = arglens ? arglens[i] : strlen(args[i]);
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
out:
	free(argv);
	free(lens);
	return r;
}

/* ---- API threads --------------------------------------------------------- */

static void drop_conn(void *p)
{
	redisFree(p);
}

/* This thread's connection, made on first use; NULL when Redis is away. */
static redisContext *api_conn(struct cluster *c)
{
	redisContext *ctx = pthread_getspecific(c->conn_key);

	if (ctx && ctx->err) {
		redisFree(ctx);
		ctx = NULL;
		pthread_setspecific(c->conn_key, NULL);
	}
	if (!ctx) {
		ctx = connect_redis(c, "api");
		pthread_setspecific(c->conn_key, ctx);
	}
	return ctx;
}

static void api_conn_failed(struct cluster *c)
{
	redisContext *ctx = pthread_getspecific(c->conn_key);

	atomic_fetch_add(&c->errors, 1);
	redisFree(ctx);
	pthread_setspecific(c->conn_key, NULL);
}

static void answer_json(struct hub_req *req, int status, cJSON *o)
{
	req->status = status;
	req->body = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!req->body) {
		req->status = 500;
		req->body = strdup("{\"error\":\"internal\",\"message\":\"out of memory\"}");
	}
}

static void answer_error(struct hub_req *req, int status, const char *code,
			 const char *message)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "error", code);
	cJSON_AddStringToObject(o, "message", message);
	answer_json(req, status, o);
}

static void unavailable(struct cluster *c, struct hub_req *req,
			const redisContext *ctx, const redisReply *r)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "the cluster backend (Redis) is unavailable, "
		 "nothing was changed: %s",
		 r && r->type == REDIS_REPLY_ERROR ? r->str :
		 ctx && ctx->err ? ctx->errstr : "cannot connect");
	log_warn("cluster write refused", "error=\"%s\"",
		 r && r->type == REDIS_REPLY_ERROR ? r->str :
		 ctx && ctx->err ? ctx->errstr : "cannot connect");
	answer_error(req, 503, "unavailable", msg);
	(void)c;
}

/*
 * How many links the other nodes delivered seq to: their acks, waited for
 * a short while (a slow or dying node's count is left out, not waited for).
 */
static size_t collect_acks(struct cluster *c, redisContext *ctx, uint64_t seq,
			   int others)
{
	int64_t wait_ms = c->timeout_ms / 2 < 1000 ? c->timeout_ms / 2 : 1000;
	int64_t end = wall_now_ms() + wait_ms;
	size_t sum = 0;
	char key[300], secs[32];

	snprintf(key, sizeof(key), "%sack:%llu", c->prefix,
		 (unsigned long long)seq);
	while (others > 0) {
		int64_t left = end - wall_now_ms();
		redisReply *r;

		if (left <= 0)
			break;
		snprintf(secs, sizeof(secs), "%.3f", (double)left / 1000.0);
		r = redisCommand(ctx, "BLPOP %s %s", key, secs);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[1]->type != REDIS_REPLY_STRING) {
			if (!r || ctx->err)
				api_conn_failed(c);
			freeReplyObject(r);
			break;
		}
		{
			const char *v = r->element[1]->str, *sp = strrchr(v, ' ');

			/* Our own ack is already counted (the hub told us). */
			if (sp && !((size_t)(sp - v) == strlen(c->node) &&
				    strncmp(v, c->node, strlen(c->node)) == 0)) {
				sum += strtoull(sp + 1, NULL, 10);
				others--;
			}
		}
		freeReplyObject(r);
	}
	return sum;
}

/*
 * A write: run op; its reply is JSON with epoch and seq. Then wait until
 * this node has delivered that seq, so the caller reads its own write and
 * learns `delivered`. Returns the reply's JSON (caller deletes), or NULL
 * once req holds an error answer.
 */
static cJSON *write_call(struct cluster *c, struct hub_req *req,
			 const char *op, int argc, const char **args)
{
	redisContext *ctx = api_conn(c);
	redisReply *r = NULL;
	cJSON *o = NULL;
	const cJSON *seq;
	struct hub_req wait = { .op = HUB_AWAIT };

	if (ctx)
		r = script(c, ctx, wall_now_ms() + c->timeout_ms, op, argc, args,
			   NULL);
	if (!r || r->type != REDIS_REPLY_STRING) {
		unavailable(c, req, ctx, r);
		if (!r || ctx->err)
			api_conn_failed(c);
		freeReplyObject(r);
		return NULL;
	}
	o = cJSON_ParseWithLength(r->str, r->len);
	freeReplyObject(r);
	seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		answer_error(req, 500, "internal", "unexpected answer from Redis");
		return NULL;
	}
	req->delivered = 0;
	if (cJSON_IsNumber(seq) && seq->valuedouble > 0) {
		snprintf(wait.epoch, sizeof(wait.epoch), "%s", cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(o, "epoch")) ?: "");
		wait.after = (uint64_t)seq->valuedouble;
		hub_call_local(c->hub, &wait);
		free(wait.body);
		req->delivered = wait.delivered +
			collect_acks(c, ctx, wait.after, (int)cJSON_GetNumberValue(
				cJSON_GetObjectItemCaseSensitive(o, "nodes")) - 1);
	}
	return o;
}

static void add_seq(cJSON *o, const cJSON *seq)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu",
		 (unsigned long long)(cJSON_IsNumber(seq) ? seq->valuedouble : 0));
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

static void call_declare(struct cluster *c, struct hub_req *req)
{
	char ttl[24], min[24];
	const char *args[4] = { req->service, req->decl == DECL_READY ? "ready" :
				req->decl == DECL_NOTREADY ? "notready" : "none",
				ttl, min };
	cJSON *o, *svc;

	snprintf(ttl, sizeof(ttl), "%lld", (long long)req->ttl_ms);
	snprintf(min, sizeof(min), "%lld", (long long)min_ready_of(c, req->service));
	o = write_call(c, req, "declare", 4, args);
	if (!o)
		return;
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "missing"))) {
		cJSON_Delete(o);
		answer_error(req, 404, "not_found", "no such service");
		return;
	}
	svc = cJSON_DetachItemFromObjectCaseSensitive(o, "service");
	if (!cJSON_IsObject(svc))
		svc = cJSON_CreateObject();
	if (cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "seq")) > 0)
		add_seq(svc, cJSON_GetObjectItemCaseSensitive(o, "seq"));
	cJSON_AddNumberToObject(svc, "delivered", (double)req->delivered);
	cJSON_Delete(o);
	log_info("declared", "service=%s declaration=%s ttl_ms=%lld cluster=true",
		 req->service, args[1], (long long)req->ttl_ms);
	answer_json(req, 200, svc);
}

static void call_cacheready(struct cluster *c, struct hub_req *req)
{
	char min[24];
	const char *args[1] = { min };
	cJSON *o, *a;

	snprintf(min, sizeof(min), "%lld", (long long)min_ready_of(c, "cache"));
	o = write_call(c, req, "cacheready", 1, args);
	if (!o)
		return;
	a = cJSON_CreateObject();
	add_seq(a, cJSON_GetObjectItemCaseSensitive(o, "seq"));
	cJSON_AddStringToObject(a, "service", "cache");
	cJSON_AddBoolToObject(a, "ready", true);
	cJSON_AddNumberToObject(a, "delivered", (double)req->delivered);
	cJSON_Delete(o);
	answer_json(req, 200, a);
}

static void call_send(struct cluster *c, struct hub_req *req,
		      enum event_kind kind)
{
	enum event_scope scope = req->instance[0] ? SCOPE_INSTANCE :
				 req->service[0] ? SCOPE_SERVICE : SCOPE_ALL;
	struct event *ev = event_new(kind, scope,
				     req->command[0] ? req->command : "DataSend",
				     req->header, req->value);
	const char *args[1];
	char *text;
	cJSON *o, *a;

	req->header = req->value = NULL;
	if (!ev) {
		answer_error(req, 500, "internal", "out of memory");
		return;
	}
	snprintf(ev->service, sizeof(ev->service), "%s", req->service);
	snprintf(ev->instance, sizeof(ev->instance), "%s", req->instance);
	text = evlog_event_text(ev);
	event_unref(ev);
	if (!text) {
		answer_error(req, 500, "internal", "out of memory");
		return;
	}
	args[0] = text;
	o = write_call(c, req, "publish", 1, args);
	free(text);
	if (!o)
		return;
	a = cJSON_CreateObject();
	add_seq(a, cJSON_GetObjectItemCaseSensitive(o, "seq"));
	cJSON_AddNumberToObject(a, "delivered", (double)req->delivered);
	log_info("event", "kind=%s seq=%.0f delivered=%zu cluster=true",
		 event_kind_name(kind),
		 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "seq")),
		 req->delivered);
	cJSON_Delete(o);
	answer_json(req, 202, a);
}

/* A read the script answers for the whole cluster; NULL when Redis is away. */
static redisReply *read_call(struct cluster *c, const char *op, int argc,
			     const char **args)
{
	redisContext *ctx = api_conn(c);
	redisReply *r = ctx ? script(c, ctx, 0, op, argc, args, NULL) : NULL;

	if (!r || r->type == REDIS_REPLY_ERROR) {
		if (!r || ctx->err)
			api_conn_failed(c);
		log_warn("cluster read failed", "op=%s note=\"answered from this "
			 "node's view\"", op);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static void call_services(struct cluster *c, struct hub_req *req)
{
	const char *args[1] = { req->op == HUB_SERVICE ? req->service : "" };
	redisReply *r = read_call(c, "services", 1, args);
	cJSON *o, *item;

	if (!r || r->type != REDIS_REPLY_STRING) {
		freeReplyObject(r);
		hub_call_local(c->hub, req);
		return;
	}
	o = cJSON_ParseWithLength(r->str, r->len);
	freeReplyObject(r);
	if (req->op == HUB_SERVICES) {
		item = cJSON_DetachItemFromObjectCaseSensitive(o, "services");
		cJSON_Delete(o);
		o = cJSON_CreateObject();
		cJSON_AddItemToObject(o, "services",
				      cJSON_IsArray(item) ? item :
				      cJSON_CreateArray());
		if (!cJSON_IsArray(item))
			cJSON_Delete(item);
		answer_json(req, 200, o);
		return;
	}
	item = cJSON_DetachItemFromObjectCaseSensitive(o, "service");
	cJSON_Delete(o);
	if (!cJSON_IsObject(item)) {
		cJSON_Delete(item);
		answer_error(req, 404, "not_found", "no such service");
		return;
	}
	answer_json(req, 200, item);
}

/* This node's agents from its hub (live), the others' from Redis. */
static void call_agents(struct cluster *c, struct hub_req *req)
{
	redisReply *r;
	cJSON *o, *list;

	hub_call_local(c->hub, req);
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
			cJSON *a = e->type == REDIS_REPLY_STRING ?
				   cJSON_ParseWithLength(e->str, e->len) : NULL;

			if (cJSON_IsObject(a))
				cJSON_AddItemToArray(list, a);
			else
				cJSON_Delete(a);
		}
		free(req->body);
		answer_json(req, 200, o);
		o = NULL;
	}
	cJSON_Delete(o);
	freeReplyObject(r);
}

bool cluster_takes(enum hub_op op)
{
	switch (op) {
	case HUB_DECLARE:
	case HUB_CACHEREADY:
	case HUB_INVALIDATE:
	case HUB_BROADCAST:
	case HUB_SERVICES:
	case HUB_SERVICE:
	case HUB_AGENTS:
		return true;
	default:
		return false;
	}
}

void cluster_call(struct cluster *c, struct hub_req *req)
{
	req->status = 0;
	req->body = NULL;
	switch (req->op) {
	case HUB_DECLARE:    call_declare(c, req); break;
	case HUB_CACHEREADY: call_cacheready(c, req); break;
	case HUB_INVALIDATE: call_send(c, req, EVENT_INVALIDATE); break;
	case HUB_BROADCAST:  call_send(c, req, EVENT_COMMAND); break;
	case HUB_SERVICES:
	case HUB_SERVICE:    call_services(c, req); break;
	case HUB_AGENTS:     call_agents(c, req); break;
	default:             hub_call_local(c->hub, req); break;
	}
	cJSON_Delete(req->header);
	cJSON_Delete(req->value);
	req->header = req->value = NULL;
}

/* ---- the reader ---------------------------------------------------------- */

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Wait before reconnecting, in short steps so a stop is noticed. */
static void backoff(struct cluster *c, int64_t *delay)
{
	for (int64_t left = *delay; left > 0 && !atomic_load(&c->stop); left -= 50)
		sleep_ms(left < 50 ? left : 50);
	*delay = *delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *delay * 2;
}

static uint64_t id_seq(const char *id)
{
	return strtoull(id, NULL, 10);
}

/* One XREAD/XREVRANGE entry into b; false if it is not ours. */
static bool take_entry(struct cluster_batch *b, const redisReply *e)
{
	struct cluster_entry *x;
	const redisReply *f;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    e->element[1]->type != REDIS_REPLY_ARRAY)
		return false;
	f = e->element[1];
	x = &b->entries[b->n];
	memset(x, 0, sizeof(*x));
	x->seq = id_seq(e->element[0]->str);
	for (size_t i = 0; i + 1 < f->elements; i += 2) {
		const redisReply *k = f->element[i], *v = f->element[i + 1];

		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(k->str, "e") == 0 && !x->text) {
			x->text = malloc(v->len + 1);
			if (!x->text)
				return false;
			memcpy(x->text, v->str, v->len);
			x->text[v->len] = '\0';
			x->len = v->len;
		} else if (strcmp(k->str, "ts") == 0) {
			x->wall_ms = strtoll(v->str, NULL, 10);
		}
	}
	if (!x->text)
		return false;
	b->n++;
	return true;
}

static struct cluster_batch *batch_new(size_t cap)
{
	struct cluster_batch *b = calloc(1, sizeof(*b));

	if (b && cap && !(b->entries = calloc(cap, sizeof(*b->entries)))) {
		free(b);
		return NULL;
	}
	return b;
}

void cluster_batch_free(struct cluster_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->entries[i].text);
	for (size_t i = 0; i < b->n_ready; i++)
		free(b->ready_names[i]);
	free(b->entries);
	free(b->ready_names);
	free(b->ready);
	free(b);
}

static int hand_over(struct cluster *c, struct cluster_batch *b)
{
	struct hub_req req = { .op = HUB_CLUSTER_APPLY, .batch = b };

	hub_call_local(c->hub, &req);
	free(req.body);
	return req.status == 200 ? 0 : -1;
}

/*
 * A fresh start on this connection: the epoch, the head, the announced
 * readiness and the retained history, handed over as one sync batch.
 * *epoch and *seq become the position to read on from.
 */
static int sync_state(struct cluster *c, redisContext *ctx, char *epoch,
		      uint64_t *seq)
{
	redisReply *st = script(c, ctx, 0, "state", 0, NULL, NULL), *h = NULL;
	struct cluster_batch *b = NULL;
	const redisReply *ready;
	int rc = -1;

	if (!st || st->type != REDIS_REPLY_ARRAY || st->elements != 3 ||
	    st->element[0]->type != REDIS_REPLY_STRING ||
	    st->element[1]->type != REDIS_REPLY_STRING ||
	    st->element[2]->type != REDIS_REPLY_ARRAY)
		goto out;
	{
		char count[24];

		snprintf(count, sizeof(count), "%zu", c->history);
		h = redisCommand(ctx, "XREVRANGE %slog + - COUNT %s", c->prefix,
				 count);
	}
	if (!h || h->type != REDIS_REPLY_ARRAY)
		goto out;
	ready = st->element[2];
	b = batch_new(h->elements);
	if (!b || !(b->ready_names = calloc(ready->elements / 2 + 1, sizeof(char *))) ||
	    !(b->ready = calloc(ready->elements / 2 + 1, sizeof(bool))))
		goto out;
	b->sync = true;
	snprintf(b->epoch, sizeof(b->epoch), "%s", st->element[0]->str);
	b->seq = strtoull(st->element[1]->str, NULL, 10);
	for (size_t i = 0; i + 1 < ready->elements; i += 2) {
		b->ready_names[b->n_ready] = strdup(ready->element[i]->str);
		if (!b->ready_names[b->n_ready])
			goto out;
		b->ready[b->n_ready++] = strcmp(ready->element[i + 1]->str, "1") == 0;
	}
	/* XREVRANGE is newest first; the hub wants them in order. */
	for (size_t i = h->elements; i-- > 0;)
		take_entry(b, h->element[i]);
	if (b->n && b->entries[b->n - 1].seq > b->seq)
		b->seq = b->entries[b->n - 1].seq;
	if (hand_over(c, b) != 0)
		goto out;
	snprintf(epoch, PROTO_EPOCH_MAX + 1, "%s", b->epoch);
	*seq = b->seq;
	log_info("cluster synced", "epoch=%s seq=%llu history=%zu services=%zu",
		 b->epoch, (unsigned long long)b->seq, b->n, b->n_ready);
	rc = 0;
out:
	cluster_batch_free(b);
	freeReplyObject(st);
	freeReplyObject(h);
	return rc;
}

/* Has Redis a different epoch (it lost its data, or was flushed)? */
static int epoch_changed(struct cluster *c, redisContext *ctx, const char *epoch)
{
	redisReply *r = redisCommand(ctx, "GET %sepoch", c->prefix);
	int rc;

	if (!r || r->type == REDIS_REPLY_ERROR)
		rc = -1;
	else
		rc = r->type != REDIS_REPLY_STRING || strcmp(r->str, epoch) != 0;
	freeReplyObject(r);
	return rc;
}

static void *reader_main(void *arg)
{
	struct cluster *c = arg;
	redisContext *ctx = NULL;
	char epoch[PROTO_EPOCH_MAX + 1] = "";
	uint64_t seq = 0;
	int64_t delay = RETRY_MIN_MS;
	bool synced = false;

	while (!atomic_load(&c->stop)) {
		redisReply *r;
		struct cluster_batch *b;
		char from[32];

		if (!ctx) {
			ctx = connect_redis(c, "reader");
			if (!ctx) {
				backoff(c, &delay);
				continue;
			}
			/* Reading blocks up to READ_BLOCK_MS on top of a call. */
			redisSetTimeout(ctx, tv_ms(c->timeout_ms + READ_BLOCK_MS));
			synced = false;
		}
		if (!synced) {
			int changed = epoch[0] ? epoch_changed(c, ctx, epoch) : 1;

			if (changed < 0 ||
			    (changed && sync_state(c, ctx, epoch, &seq) != 0))
				goto failed;
			if (!changed)
				log_info("cluster reconnected", "epoch=%s seq=%llu",
					 epoch, (unsigned long long)seq);
			synced = true;
			delay = RETRY_MIN_MS;
			atomic_store(&c->up, true);
		}
		snprintf(from, sizeof(from), "%llu-0", (unsigned long long)seq);
		r = redisCommand(ctx, "XREAD COUNT %d BLOCK %d STREAMS %slog %s",
				 READ_COUNT, READ_BLOCK_MS, c->prefix, from);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			freeReplyObject(r);
			goto failed;
		}
		if (r->type == REDIS_REPLY_NIL) {
			/* Quiet: make sure history was not lost meanwhile. */
			freeReplyObject(r);
			int changed = epoch_changed(c, ctx, epoch);

			if (changed < 0)
				goto failed;
			if (changed) {
				log_warn("cluster epoch changed", "old=%s", epoch);
				synced = false;
				epoch[0] = '\0';
			}
			continue;
		}
		b = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		    r->element[0]->elements == 2 ?
		    batch_new(r->element[0]->element[1]->elements) : NULL;
		if (b) {
			const redisReply *list = r->element[0]->element[1];

			snprintf(b->epoch, sizeof(b->epoch), "%s", epoch);
			for (size_t i = 0; i < list->elements; i++)
				take_entry(b, list->element[i]);
			if (b->n)
				seq = b->entries[b->n - 1].seq;
			if (hand_over(c, b) != 0 && !atomic_load(&c->stop))
				log_warn("cluster apply failed", "seq=%llu",
					 (unsigned long long)seq);
		}
		cluster_batch_free(b);
		freeReplyObject(r);
		continue;
failed:
		if (!atomic_load(&c->stop))
			log_warn("cluster redis lost", "role=reader error=\"%s\"",
				 ctx && ctx->err ? ctx->errstr : "reply");
		atomic_fetch_add(&c->errors, 1);
		atomic_store(&c->up, false);
		redisFree(ctx);
		ctx = NULL;
		backoff(c, &delay);
	}
	redisFree(ctx);
	return NULL;
}

/* ---- the writer ---------------------------------------------------------- */

static void note_push(struct cluster *c, struct note *n)
{
	pthread_mutex_lock(&c->mu);
	n->next = NULL;
	*c->notes_tail = n;
	c->notes_tail = &n->next;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void cluster_note_service(struct cluster *c, const char *name,
			  int64_t min_ready, unsigned instances,
			  unsigned ready, unsigned dependents)
{
	struct note *n = calloc(1, sizeof(*n));

	if (!n)
		return;
	snprintf(n->key, sizeof(n->key), "%s", name);
	n->min_ready = min_ready;
	n->instances = instances;
	n->ready = ready;
	n->dependents = dependents;
	note_push(c, n);
}

void cluster_note_agent(struct cluster *c, const char *service,
			const char *instance, char *json)
{
	struct note *n = calloc(1, sizeof(*n));

	if (!n) {
		free(json);
		return;
	}
	n->agent = true;
	snprintf(n->key, sizeof(n->key), "%s/%s", service, instance);
	n->json = json;
	note_push(c, n);
}

void cluster_note_ack(struct cluster *c, uint64_t seq, size_t delivered)
{
	struct note *n = calloc(1, sizeof(*n));

	if (!n)
		return;
	n->ack = true;
	n->seq = seq;
	n->delivered = delivered;
	note_push(c, n);
}

static void notes_free(struct note *n)
{
	while (n) {
		struct note *next = n->next;

		free(n->json);
		free(n);
		n = next;
	}
}

static struct note *notes_take(struct cluster *c)
{
	struct note *n;

	pthread_mutex_lock(&c->mu);
	n = c->notes;
	c->notes = NULL;
	c->notes_tail = &c->notes;
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* Keep the last note per key (they are absolute), in order. */
static void coalesce(struct note **list)
{
	for (struct note **p = list; *p;) {
		bool later = false;

		for (struct note *q = (*p)->next; q && !later && !(*p)->ack;
		     q = q->next)
			later = !q->ack && q->agent == (*p)->agent &&
				strcmp(q->key, (*p)->key) == 0;
		if (later) {
			struct note *dead = *p;

			*p = dead->next;
			free(dead->json);
			free(dead);
		} else {
			p = &(*p)->next;
		}
	}
}

static int heartbeat(struct cluster *c, redisContext *ctx)
{
	char ttl[24];
	const char *args[1] = { ttl };
	redisReply *r;
	int rc;

	snprintf(ttl, sizeof(ttl), "%lld", (long long)c->node_ttl_ms);
	r = script(c, ctx, 0, "heartbeat", 1, args, NULL);
	rc = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
	if (rc == 0 && strstr(r->str, "\"dead\":[")) {
		cJSON *o = cJSON_ParseWithLength(r->str, r->len);
		char *dead = cJSON_PrintUnformatted(
			cJSON_GetObjectItemCaseSensitive(o, "dead"));

		log_warn("cluster nodes dead", "nodes=%s note=\"their instances "
			 "are gone\"", dead ? dead : "?");
		free(dead);
		cJSON_Delete(o);
	}
	freeReplyObject(r);
	return rc;
}

/*
 * Counts of the services in list, in one call (full: and none elsewhere, so
 * the whole list must be in the same call).
 */
static int send_counts(struct cluster *c, redisContext *ctx,
		       const struct note *list, bool full)
{
	size_t n = 0, k = 0;
	const char **args;
	char (*nums)[24];
	redisReply *r;
	int rc;

	for (const struct note *p = list; p; p = p->next)
		n += !p->agent && !p->ack;
	if (!n && !full)
		return 0;
	args = calloc(1 + 5 * n, sizeof(*args));
	nums = calloc(4 * n + 1, sizeof(*nums));
	if (!args || !nums) {
		free(args);
		free(nums);
		return -1;
	}
	args[k++] = full ? "1" : "0";
	n = 0;
	for (const struct note *p = list; p; p = p->next) {
		if (p->agent || p->ack)
			continue;
		snprintf(nums[n], 24, "%lld", (long long)p->min_ready);
		snprintf(nums[n + 1], 24, "%u", p->instances);
		snprintf(nums[n + 2], 24, "%u", p->ready);
		snprintf(nums[n + 3], 24, "%u", p->dependents);
		args[k++] = p->key;
		for (int i = 0; i < 4; i++)
			args[k++] = nums[n + (size_t)i];
		n += 4;
	}
	r = script(c, ctx, 0, "counts", (int)k, args, NULL);
	rc = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
	freeReplyObject(r);
	free(args);
	free(nums);
	return rc;
}

/* Agents (HSET/HDEL) and acks (RPUSH), pipelined. */
static int send_agents(struct cluster *c, redisContext *ctx,
		       const struct note *list, bool full)
{
	size_t pending = 0;
	int rc = 0;
	char key[300];

	snprintf(key, sizeof(key), "%sagents:%s", c->prefix, c->node);
	if (full) {
		redisAppendCommand(ctx, "DEL %s", key);
		pending++;
	}
	for (const struct note *p = list; p; p = p->next) {
		if (p->ack) {
			char ack[300], val[200];

			snprintf(ack, sizeof(ack), "%sack:%llu", c->prefix,
				 (unsigned long long)p->seq);
			snprintf(val, sizeof(val), "%s %zu", c->node, p->delivered);
			redisAppendCommand(ctx, "RPUSH %s %s", ack, val);
			redisAppendCommand(ctx, "PEXPIRE %s 60000", ack);
			pending += 2;
		} else if (!p->agent) {
			continue;
		} else if (p->json) {
			redisAppendCommand(ctx, "HSET %s %s %s", key, p->key, p->json);
			pending++;
		} else {
			redisAppendCommand(ctx, "HDEL %s %s", key, p->key);
			pending++;
		}
		if (pending < AGENTS_CHUNK && p->next)
			continue;
		while (pending) {
			redisReply *r = NULL;

			if (redisGetReply(ctx, (void **)&r) != REDIS_OK)
				return -1;
			if (!reply_ok(r))
				rc = -1;
			freeReplyObject(r);
			pending--;
		}
	}
	while (pending) {
		redisReply *r = NULL;

		if (redisGetReply(ctx, (void **)&r) != REDIS_OK)
			return -1;
		freeReplyObject(r);
		pending--;
	}
	return rc;
}

/*
 * The hub's whole state, as notes: after a (re)connect. -1 when the hub
 * could not say (it is stopping): then nothing must be sent, since a full
 * report of nothing would take this node's instances away at once.
 */
static int snapshot(struct cluster *c, struct note **out)
{
	struct hub_req req = { .op = HUB_CLUSTER_SNAPSHOT };
	struct note *list = NULL, **tail = &list;
	cJSON *o, *item;

	*out = NULL;
	hub_call_local(c->hub, &req);
	o = req.status == 200 ? cJSON_Parse(req.body) : NULL;
	free(req.body);
	if (!o)
		return -1;
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(o, "services")) {
		struct note *n = calloc(1, sizeof(*n));

		if (!n || cJSON_GetArraySize(item) != 5) {
			free(n);
			continue;
		}
		snprintf(n->key, sizeof(n->key), "%s",
			 cJSON_GetStringValue(cJSON_GetArrayItem(item, 0)) ?: "");
		n->min_ready = (int64_t)cJSON_GetNumberValue(cJSON_GetArrayItem(item, 1));
		n->instances = (unsigned)cJSON_GetNumberValue(cJSON_GetArrayItem(item, 2));
		n->ready = (unsigned)cJSON_GetNumberValue(cJSON_GetArrayItem(item, 3));
		n->dependents = (unsigned)cJSON_GetNumberValue(cJSON_GetArrayItem(item, 4));
		*tail = n;
		tail = &n->next;
	}
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(o, "agents")) {
		struct note *n = calloc(1, sizeof(*n));

		if (!n)
			continue;
		n->agent = true;
		snprintf(n->key, sizeof(n->key), "%s", item->string);
		n->json = cJSON_PrintUnformatted(item);
		*tail = n;
		tail = &n->next;
	}
	cJSON_Delete(o);
	*out = list;
	return 0;
}

static void *writer_main(void *arg)
{
	struct cluster *c = arg;
	redisContext *ctx = NULL;
	int64_t delay = RETRY_MIN_MS, beat_every = c->node_ttl_ms / 3;
	struct timespec next_beat = { 0 };

	while (!atomic_load(&c->stop)) {
		struct note *list;
		struct timespec now;
		bool full = false;

		if (!ctx) {
			ctx = connect_redis(c, "writer");
			if (!ctx) {
				backoff(c, &delay);
				continue;
			}
			/* Alive first, so the counts that follow are counted;
			 * then the whole state, which Redis may have lost. */
			if (heartbeat(c, ctx) != 0)
				goto failed;
			clock_gettime(CLOCK_MONOTONIC, &next_beat);
			next_beat.tv_sec += beat_every / 1000;
			next_beat.tv_nsec += (beat_every % 1000) * 1000000;
			full = true;
		}
		if (!full) {
			pthread_mutex_lock(&c->mu);
			while (!c->notes && !atomic_load(&c->stop)) {
				clock_gettime(CLOCK_MONOTONIC, &now);
				if (now.tv_sec > next_beat.tv_sec ||
				    (now.tv_sec == next_beat.tv_sec &&
				     now.tv_nsec >= next_beat.tv_nsec))
					break;
				pthread_cond_timedwait(&c->cv, &c->mu, &next_beat);
			}
			pthread_mutex_unlock(&c->mu);
		}
		if (atomic_load(&c->stop))
			break;
		if (full) {
			notes_free(notes_take(c));
			if (snapshot(c, &list) != 0)
				continue;
		} else {
			list = notes_take(c);
			coalesce(&list);
		}
		if ((list || full) &&
		    (send_counts(c, ctx, list, full) != 0 ||
		     send_agents(c, ctx, list, full) != 0)) {
			/* Lost with the connection: the next one resends all. */
			notes_free(list);
			goto failed;
		}
		notes_free(list);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > next_beat.tv_sec ||
		    (now.tv_sec == next_beat.tv_sec && now.tv_nsec >= next_beat.tv_nsec)) {
			if (heartbeat(c, ctx) != 0)
				goto failed;
			next_beat = now;
			next_beat.tv_sec += beat_every / 1000;
			next_beat.tv_nsec += (beat_every % 1000) * 1000000;
		}
		if (next_beat.tv_nsec >= 1000000000) {
			next_beat.tv_sec++;
			next_beat.tv_nsec -= 1000000000;
		}
		delay = RETRY_MIN_MS;
		continue;
failed:
		if (!atomic_load(&c->stop))
			log_warn("cluster redis lost", "role=writer error=\"%s\"",
				 ctx && ctx->err ? ctx->errstr : "reply");
		atomic_fetch_add(&c->errors, 1);
		redisFree(ctx);
		ctx = NULL;
		backoff(c, &delay);
	}
	redisFree(ctx);
	return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

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
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n_min; i++)
		free(c->min[i].name);
	free(c->min);
	c->min = min;
	c->n_min = n;
	pthread_mutex_unlock(&c->mu);
}

struct cluster *cluster_new(const struct dconf *conf, struct hub *h,
			    char *err, size_t errlen)
{
	struct cluster *c = calloc(1, sizeof(*c));
	pthread_condattr_t attr;

	if (!c || pthread_key_create(&c->conn_key, drop_conn) != 0) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->hub = h;
	c->url = conf->redis;
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
	pthread_condattr_destroy(&attr);
	c->notes_tail = &c->notes;
	cluster_apply_conf(c, conf);
	return c;
}

int cluster_start(struct cluster *c)
{
	if (pthread_create(&c->reader, NULL, reader_main, c) != 0)
		return -1;
	if (pthread_create(&c->writer, NULL, writer_main, c) != 0) {
		atomic_store(&c->stop, true);
		pthread_join(c->reader, NULL);
		return -1;
	}
	c->started = true;
	return 0;
}

void cluster_stop(struct cluster *c)
{
	if (!c || !c->started)
		return;
	atomic_store(&c->stop, true);
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->reader, NULL);
	pthread_join(c->writer, NULL);
	c->started = false;
}

void cluster_free(struct cluster *c)
{
	if (!c)
		return;
	cluster_stop(c);
	notes_free(c->notes);
	for (size_t i = 0; i < c->n_min; i++)
		free(c->min[i].name);
	free(c->min);
	/* This thread's API connection, if it made one. */
	redisFree(pthread_getspecific(c->conn_key));
	pthread_key_delete(c->conn_key);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->sha_mu);
	pthread_cond_destroy(&c->cv);
	explicit_bzero(&c->url, sizeof(c->url));
	free(c);
}

bool cluster_redis_up(const struct cluster *c)
{
	return atomic_load(&c->up);
}

uint64_t cluster_redis_errors(const struct cluster *c)
{
	return atomic_load(&((struct cluster *)c)->errors);
}
