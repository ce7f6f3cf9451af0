/*
 * cluster_writer: the writer thread of cluster mode (cluster_int.h). It reports
 * this node's state to Redis: each service's counts, each agent, and acks
 * (how many links here an event went to), from notes the hub thread
 * leaves; and it beats the node's heartbeat, whose script also sweeps dead
 * nodes and expired declarations. After a reconnect, or when the heartbeat
 * says the others had given this node up, it reports everything afresh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cluster_int.h"
#include "log.h"

/* ---- notes: from the hub thread ----------------------------------------- */

static uint64_t note_hash(const struct cluster *c, const struct note *n)
{
	return htab_hash(&c->note_table, n->key) ^ (uint64_t)n->kind;
}

/* The queued note of n's kind and key (mu held). */
static struct note *note_find(struct cluster *c, const struct note *n,
			      uint64_t hv)
{
	for (struct hnode *e = htab_first(&c->note_table, hv); e;
	     e = htab_next(e, hv)) {
		struct note *old = htab_entry(e, struct note, node);

		if (old->kind == n->kind && strcmp(old->key, n->key) == 0)
			return old;
	}
	return NULL;
}

/*
 * Queue n, or fold it into the queued note for the same key: state is
 * absolute, so only the newest counts. Acks are queued only while the
 * writer is connected (an outage would pile them up for nothing).
 */
static void note_push(struct cluster *c, struct note *n)
{
	uint64_t hv = note_hash(c, n);
	struct note *old;

	pthread_mutex_lock(&c->mu);
	old = n->kind != NOTE_ACK ? note_find(c, n, hv) : NULL;
	if (old) {
		free(old->json);
		old->json = n->json;
		old->min_ready = n->min_ready;
		old->instances = n->instances;
		old->ready = n->ready;
		old->dependents = n->dependents;
		free(n);
	} else if (n->kind == NOTE_ACK && !atomic_load(&c->writer_up)) {
		free(n);
	} else {
		/* A note the table has no room for is only not folded. */
		if (n->kind != NOTE_ACK)
			(void)htab_add(&c->note_table, &n->node, hv);
		n->next = NULL;
		*c->notes_tail = n;
		c->notes_tail = &n->next;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
}

void cluster_note_service(struct cluster *c, const char *name,
			  int64_t min_ready, unsigned instances, unsigned ready,
			  unsigned dependents)
{
	struct note *n = calloc(1, sizeof(*n));

	if (!n)
		return;
	n->kind = NOTE_SERVICE;
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
	n->kind = NOTE_AGENT;
	snprintf(n->key, sizeof(n->key), "%s/%s", service, instance);
	n->json = json;
	note_push(c, n);
}

void cluster_note_ack(struct cluster *c, uint64_t seq, size_t delivered)
{
	struct note *n = calloc(1, sizeof(*n));

	if (!n)
		return;
	n->kind = NOTE_ACK;
	n->seq = seq;
	n->delivered = delivered;
	note_push(c, n);
}

void cluster_notes_free(struct note *n)
{
	while (n) {
		struct note *next = n->next;

		free(n->json);
		free(n);
		n = next;
	}
}

/* Everything queued, oldest first; the queue and its table are empty. */
static struct note *notes_take(struct cluster *c)
{
	struct note *n;

	pthread_mutex_lock(&c->mu);
	n = c->notes;
	c->notes = NULL;
	c->notes_tail = &c->notes;
	htab_clear(&c->note_table);
	pthread_mutex_unlock(&c->mu);
	return n;
}

/* ---- the writer thread --------------------------------------------------- */

/* Another node asked this one to drain (cluster_api.c, call_drain). */
static void drain(struct cluster *c)
{
	struct hub_req req = { .op = HUB_DRAIN };

	log_info("drain requested", "node=%s via=redis", c->node);
	snprintf(req.instance, sizeof(req.instance), "%s", c->node);
	hub_call(c->hub, &req);
	free(req.body);
}

/*
 * Beat: this node is alive. 1 when the others had swept it (or it is new):
 * then it must report everything; 0; -1 when the call failed.
 */
static int heartbeat(struct cluster *c, redisContext *ctx)
{
	char ttl[24];
	const char *args[1] = { ttl };
	redisReply *r;
	cJSON *o;
	int rc;

	snprintf(ttl, sizeof(ttl), "%lld", (long long)c->node_ttl_ms);
	r = cluster_script(c, ctx, 0, "heartbeat", 1, args);
	if (!r || r->type != REDIS_REPLY_STRING) {
		freeReplyObject(r);
		return -1;
	}
	o = cJSON_ParseWithLength(r->str, r->len);
	freeReplyObject(r);
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "dead")) >
	    0) {
		char *dead = cJSON_PrintUnformatted(
			cJSON_GetObjectItemCaseSensitive(o, "dead"));

		log_warn("cluster nodes dead",
			 "nodes=%s note=\"their instances "
			 "are gone\"",
			 dead ? dead : "?");
		free(dead);
	}
	rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "rejoined"));
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "drain")))
		drain(c);
	cJSON_Delete(o);
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
	char(*nums)[24];
	redisReply *r;
	int rc;

	for (const struct note *p = list; p; p = p->next)
		n += p->kind == NOTE_SERVICE;
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
		if (p->kind != NOTE_SERVICE)
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
	r = cluster_script(c, ctx, 0, "counts", (int)k, args);
	rc = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
	freeReplyObject(r);
	free(args);
	free(nums);
	return rc;
}

/* Agents (HSET/HDEL) and acks (RPUSH), pipelined in chunks. */
/* An agent of key's service ("service/instance") changed: its endpoint
 * index moves (cluster.lua, P.."eindex"). 1 when appended. */
static int bump_index(struct cluster *c, redisContext *ctx, const char *key)
{
	const char *slash = strchr(key, '/');
	char name[PROTO_NAME_MAX + 1], hash[CLUSTER_KEY_MAX];
	size_t n = slash ? (size_t)(slash - key) : 0;

	if (!n || n >= sizeof(name))
		return 0;
	memcpy(name, key, n);
	name[n] = '\0';
	snprintf(hash, sizeof(hash), "%seindex", c->prefix);
	return redisAppendCommand(ctx, "HINCRBY %s %s 1", hash, name) ==
	       REDIS_OK;
}

static int by_service(const void *x, const void *y)
{
	const redisReply *a = *(redisReply *const *)x,
			 *b = *(redisReply *const *)y;
	const char *sa = strchr(a->str, '/'), *sb = strchr(b->str, '/');
	size_t na = sa ? (size_t)(sa - a->str) : a->len,
	       nb = sb ? (size_t)(sb - b->str) : b->len;
	int c = memcmp(a->str, b->str, na < nb ? na : nb);

	return c ? c : (na > nb) - (na < nb);
}

/*
 * A full report replaces this node's agents: the services of those it
 * held before move their index too, once each, so that the other nodes
 * see the ones that left while Redis was away (cluster_peers.c). How
 * many commands it appended, or -1 when the connection failed.
 */
static int bump_held(struct cluster *c, redisContext *ctx, const char *key)
{
	redisReply *r = redisCommand(ctx, "HKEYS %s", key);
	int n = 0;

	if (!r || ctx->err) {
		freeReplyObject(r);
		return -1;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements) {
		qsort(r->element, r->elements, sizeof(*r->element), by_service);
		for (size_t i = 0; i < r->elements; i++)
			if (r->element[i]->type == REDIS_REPLY_STRING &&
			    (i == 0 || by_service(&r->element[i - 1],
						  &r->element[i]) != 0))
				n += bump_index(c, ctx, r->element[i]->str);
	}
	freeReplyObject(r);
	return n;
}

static int send_agents(struct cluster *c, redisContext *ctx,
		       const struct note *list, bool full)
{
	size_t pending = 0;
	int rc = 0, n;
	char key[CLUSTER_KEY_MAX];

	snprintf(key, sizeof(key), "%sagents:%s", c->prefix, c->node);
	if (full && (n = bump_held(c, ctx, key)) < 0)
		return -1;
	if (full)
		pending += (size_t)n;
	if (full && redisAppendCommand(ctx, "DEL %s", key) == REDIS_OK)
		pending++;
	for (const struct note *p = list; p || pending;
	     p = p ? p->next : NULL) {
		if (p && p->kind == NOTE_ACK) {
			char ack[CLUSTER_KEY_MAX], val[200];

			snprintf(ack, sizeof(ack), "%sack:%llu", c->prefix,
				 (unsigned long long)p->seq);
			snprintf(val, sizeof(val), "%s %zu", c->node,
				 p->delivered);
			pending += redisAppendCommand(ctx, "RPUSH %s %s", ack,
						      val) == REDIS_OK;
			pending += redisAppendCommand(ctx, "PEXPIRE %s 60000",
						      ack) == REDIS_OK;
		} else if (p && p->kind == NOTE_AGENT) {
			pending +=
				(p->json ? redisAppendCommand(ctx,
							      "HSET %s %s %s",
							      key, p->key,
							      p->json) :
					   redisAppendCommand(ctx, "HDEL %s %s",
							      key, p->key)) ==
				REDIS_OK;
			pending += bump_index(c, ctx, p->key);
		}
		if (p && p->next && pending < AGENTS_CHUNK)
			continue;
		for (; pending; pending--) {
			redisReply *r = NULL;

			if (redisGetReply(ctx, (void **)&r) != REDIS_OK)
				return -1;
			if (!cluster_reply_ok(r))
				rc = -1;
			freeReplyObject(r);
		}
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
	struct hub_req req = { .op = HUB_JOB };
	struct note *list = NULL, **tail = &list;
	cJSON *o, *item;

	*out = NULL;
	hub_run(c->hub, cluster_mirror_snapshot, c, &req);
	o = req.status == 200 ? cJSON_Parse(req.body) : NULL;
	free(req.body);
	if (!o)
		return -1;
	cJSON_ArrayForEach (item,
			    cJSON_GetObjectItemCaseSensitive(o, "services")) {
		struct note *n = calloc(1, sizeof(*n));

		if (!n || cJSON_GetArraySize(item) != 5) {
			free(n);
			continue;
		}
		n->kind = NOTE_SERVICE;
		snprintf(n->key, sizeof(n->key), "%s",
			 cJSON_GetStringValue(cJSON_GetArrayItem(item, 0)) ?:
									     "");
		n->min_ready = (int64_t)cJSON_GetNumberValue(
			cJSON_GetArrayItem(item, 1));
		n->instances = (unsigned)cJSON_GetNumberValue(
			cJSON_GetArrayItem(item, 2));
		n->ready = (unsigned)cJSON_GetNumberValue(
			cJSON_GetArrayItem(item, 3));
		n->dependents = (unsigned)cJSON_GetNumberValue(
			cJSON_GetArrayItem(item, 4));
		*tail = n;
		tail = &n->next;
	}
	cJSON_ArrayForEach (item,
			    cJSON_GetObjectItemCaseSensitive(o, "agents")) {
		struct note *n = calloc(1, sizeof(*n));

		if (!n)
			continue;
		n->kind = NOTE_AGENT;
		snprintf(n->key, sizeof(n->key), "%s", item->string);
		n->json = cJSON_PrintUnformatted(item);
		*tail = n;
		tail = &n->next;
	}
	cJSON_Delete(o);
	*out = list;
	return 0;
}

static struct timespec after_ms(int64_t ms)
{
	return clock_mono_ts(clock_mono_ms() + ms);
}

static bool passed(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec ||
	       (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* Until there are notes, the next beat is due, or the writer must stop. */
static void wait_for_work(struct cluster *c, const struct timespec *beat)
{
	pthread_mutex_lock(&c->mu);
	while (!c->notes && !atomic_load(&c->stop) && !passed(beat))
		pthread_cond_timedwait(&c->cv, &c->mu, beat);
	pthread_mutex_unlock(&c->mu);
}

/*
 * Report what is queued, or (full) the hub's whole state in place of it.
 * 0; 1 when the hub could not give its state (try again later); -1 when
 * the connection failed (the next one reports all again).
 */
static int report(struct cluster *c, redisContext *ctx, bool *full)
{
	struct note *list;
	int rc;

	if (*full) {
		cluster_notes_free(notes_take(c));
		if (snapshot(c, &list) != 0)
			return 1;
	} else {
		list = notes_take(c);
	}
	/* Agents (and endpoint indexes) first: whoever sees a service's
	 * readiness move (the counts' effect) finds its agents, endpoints
	 * included, as they were when it moved. */
	rc = list || *full ? send_agents(c, ctx, list, *full) : 0;
	if (rc == 0 && (list || *full))
		rc = send_counts(c, ctx, list, *full);
	cluster_notes_free(list);
	if (rc == 0)
		*full = false;
	return rc;
}

void *cluster_writer_main(void *arg)
{
	struct cluster *c = arg;
	redisContext *ctx = NULL;
	int64_t beat_every = c->node_ttl_ms / 3;
	struct backoff retry;
	struct timespec beat = { 0 };
	bool full = true;
	int rc;

	backoff_init(&retry, RETRY_MIN_MS, RETRY_MAX_MS, 2.0, 0);
	while (!atomic_load(&c->stop)) {
		if (!ctx) {
			ctx = cluster_connect(c, "writer");
			if (!ctx) {
				cluster_backoff(c, &retry);
				continue;
			}
			/* Alive first, so the counts that follow are counted;
			 * then the whole state, which Redis may have lost. */
			if (heartbeat(c, ctx) < 0)
				goto failed;
			atomic_store(&c->writer_up, true);
			beat = after_ms(beat_every);
			full = true;
		}
		if (!full)
			wait_for_work(c, &beat);
		if (atomic_load(&c->stop))
			break;
		rc = report(c, ctx, &full);
		if (rc < 0)
			goto failed;
		if (rc > 0)
			cluster_backoff(c, &retry);
		if (passed(&beat)) {
			rc = heartbeat(c, ctx);
			if (rc < 0)
				goto failed;
			if (rc > 0) {
				log_warn("cluster rejoined",
					 "note=\"the other "
					 "nodes had given this one up; "
					 "reporting "
					 "all its agents again\"");
				full = true;
			}
			beat = after_ms(beat_every);
		}
		if (rc == 0)
			backoff_reset(&retry);
		continue;
	failed:
		if (!atomic_load(&c->stop))
			log_warn("cluster redis lost",
				 "role=writer error=\"%s\"",
				 ctx && ctx->err ? ctx->errstr : "reply");
		atomic_store(&c->writer_up, false);
		atomic_fetch_add(&c->errors, 1);
		redisFree(ctx);
		ctx = NULL;
		cluster_backoff(c, &retry);
	}
	atomic_store(&c->writer_up, false);
	redisFree(ctx);
	return NULL;
}
