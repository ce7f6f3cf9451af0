/*
 * cluster_reader: the reader thread of cluster mode (cluster_int.h). It follows
 * the stream with XREAD BLOCK from the last seq it applied and hands each
 * batch to the hub; after a break it checks that the history it follows is
 * still Redis's, and syncs afresh (epoch, head, readiness, retained
 * history) when it is not. There is no subscription to lose: a reconnect
 * reads on from a position.
 *
 * With cluster.min_replicas, nothing read is handed over before WAIT has
 * seen that many replicas hold it (the reader writes its own position to
 * P.."reader:"..node, so that WAIT has an offset to wait for): an event is
 * never delivered that a failover could take back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_int.h"
#include "log.h"

/* Where the reader is in the history it follows. */
struct position {
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t seq; /* the last seq applied */
	int64_t ts;   /* its entry's ts (0: unknown): the same
			 seq on another history has another */
	bool held;    /* min_replicas: entries wait for WAIT */
};

static uint64_t id_seq(const char *id)
{
	return strtoull(id, NULL, 10);
}

/*
 * One XREAD/XREVRANGE entry into b. 0; 1 when it belongs to another epoch
 * than b's (the history was replaced under the reader: not taken); -1 when
 * it is not ours to read (skipped).
 */
static int take_entry(struct cluster_batch *b, const redisReply *e)
{
	struct cluster_entry *x;
	const redisReply *f;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING ||
	    e->element[1]->type != REDIS_REPLY_ARRAY)
		return -1;
	f = e->element[1];
	x = &b->entries[b->n];
	memset(x, 0, sizeof(*x));
	x->seq = id_seq(e->element[0]->str);
	for (size_t i = 0; i + 1 < f->elements; i += 2) {
		const redisReply *k = f->element[i], *v = f->element[i + 1];

		if (k->type != REDIS_REPLY_STRING ||
		    v->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(k->str, "ep") == 0 && b->epoch[0] &&
		    strcmp(v->str, b->epoch) != 0) {
			free(x->text);
			x->text = NULL;
			return 1;
		}
		if (strcmp(k->str, "e") == 0 && !x->text) {
			x->text = malloc(v->len + 1);
			if (!x->text)
				return -1;
			memcpy(x->text, v->str, v->len);
			x->text[v->len] = '\0';
			x->len = v->len;
		} else if (strcmp(k->str, "ts") == 0) {
			x->wall_ms = strtoll(v->str, NULL, 10);
		}
	}
	if (!x->text)
		return -1;
	b->n++;
	return 0;
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

static void batch_free(struct cluster_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->entries[i].text);
	for (size_t i = 0; i < b->n_ready; i++)
		free(b->ready[i]);
	free(b->entries);
	free(b->ready);
	free(b);
}

static int hand_over(struct cluster *c, struct cluster_batch *b)
{
	struct hub_req req = { .op = HUB_JOB };

	c->applying = b;
	hub_run(c->hub, cluster_mirror_apply, c, &req);
	c->applying = NULL;
	free(req.body);
	return req.status == 200 ? 0 : -1;
}

/*
 * min_replicas: do that many replicas hold everything up to seq? A write of
 * the reader's own (its position, for operators too) gives WAIT an offset
 * past every entry read so far. 0, 1 (not yet), -1 (connection failed).
 */
static int replicated(struct cluster *c, redisContext *ctx, uint64_t seq)
{
	redisReply *r;

	if (c->min_replicas <= 0)
		return 0;
	r = cluster_check(ctx, redisCommand(ctx, "SET %sreader:%s %llu PX %lld",
					    c->prefix, c->node,
					    (unsigned long long)seq,
					    (long long)c->node_ttl_ms));
	if (!cluster_reply_ok(r)) {
		freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return cluster_wait_replicas(c, ctx);
}

/*
 * A fresh start on this connection: the epoch, the head, the announced
 * readiness and the retained history, handed over as one sync batch.
 * *pos becomes the position to read on from.
 */
static int sync_state(struct cluster *c, redisContext *ctx,
		      struct position *pos)
{
	redisReply *st = cluster_script(c, ctx, 0, "state", 0, NULL), *h = NULL;
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
	if (!b || !(b->ready = calloc(ready->elements + 1, sizeof(*b->ready))))
		goto out;
	b->sync = true;
	snprintf(b->epoch, sizeof(b->epoch), "%s", st->element[0]->str);
	b->seq = strtoull(st->element[1]->str, NULL, 10);
	for (size_t i = 0; i < ready->elements; i++) {
		b->ready[b->n_ready] = ready->element[i]->type ==
						       REDIS_REPLY_STRING ?
					       strdup(ready->element[i]->str) :
					       NULL;
		if (!b->ready[b->n_ready])
			goto out;
		b->n_ready++;
	}
	/* XREVRANGE is newest first; the hub wants them in order. */
	for (size_t i = h->elements; i-- > 0;)
		if (take_entry(b, h->element[i]) > 0)
			goto out; /* replaced while we read: again */
	if (b->n && b->entries[b->n - 1].seq > b->seq)
		b->seq = b->entries[b->n - 1].seq;
	if (replicated(c, ctx, b->seq) != 0 || hand_over(c, b) != 0)
		goto out;
	snprintf(pos->epoch, sizeof(pos->epoch), "%s", b->epoch);
	pos->seq = b->seq;
	pos->ts = b->n && b->entries[b->n - 1].seq == b->seq ?
			  b->entries[b->n - 1].wall_ms :
			  0;
	/* Up before it is said: a write sent on seeing the line is taken. */
	atomic_store(&c->up, true);
	log_info("cluster synced", "epoch=%s seq=%llu history=%zu services=%zu",
		 b->epoch, (unsigned long long)b->seq, b->n, b->n_ready);
	rc = 0;
out:
	batch_free(b);
	freeReplyObject(st);
	freeReplyObject(h);
	return rc;
}

/* Has Redis a different epoch (it lost its data, or was flushed)? */
static int epoch_changed(struct cluster *c, redisContext *ctx,
			 const char *epoch)
{
	redisReply *r = redisCommand(ctx, "GET %sepoch", c->prefix);
	int rc;

	if (!r || r->type == REDIS_REPLY_ERROR)
		rc = -1;
	else
		rc = r->type != REDIS_REPLY_STRING ||
		     strcmp(r->str, epoch) != 0;
	freeReplyObject(r);
	return rc;
}

/*
 * The ts of the entry at seq, 0 when there is none (trimmed, or never
 * written), -1 when the connection failed.
 */
static int64_t entry_ts(struct cluster *c, redisContext *ctx, uint64_t seq)
{
	redisReply *r = redisCommand(ctx, "XRANGE %slog %llu-0 %llu-0",
				     c->prefix, (unsigned long long)seq,
				     (unsigned long long)seq);
	const redisReply *f;
	int64_t ts = 0;

	if (!r || r->type != REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return -1;
	}
	if (r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2 &&
	    (f = r->element[0]->element[1])->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i + 1 < f->elements; i += 2)
			if (f->element[i]->type == REDIS_REPLY_STRING &&
			    strcmp(f->element[i]->str, "ts") == 0 &&
			    f->element[i + 1]->type == REDIS_REPLY_STRING)
				ts = strtoll(f->element[i + 1]->str, NULL, 10);
	freeReplyObject(r);
	return ts;
}

/*
 * The reader is back on a connection after a break, or the stream was
 * quiet. Is the history it follows still Redis's? 0 (read on), 1 (it is
 * not: sync afresh), -1 (the connection failed). A new epoch means Redis
 * lost its data. The same epoch with a lower seq means it went back in
 * time (an AOF that lost its last second, a replica promoted with less);
 * so does another entry at this node's seq (a replica promoted with less,
 * then written to past it). Either way the events this node applied past
 * what Redis holds are gone, so the epoch is rotated for everyone.
 */
static int still_ours(struct cluster *c, redisContext *ctx,
		      const struct position *pos)
{
	redisReply *r;
	uint64_t head;
	int64_t ts = 0;
	char mine[24], mine_ts[24];
	const char *args[3] = { pos->epoch, mine, mine_ts };
	int changed = epoch_changed(c, ctx, pos->epoch);

	if (changed != 0)
		return changed;
	r = redisCommand(ctx, "GET %sseq", c->prefix);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		freeReplyObject(r);
		return -1;
	}
	head = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
	freeReplyObject(r);
	if (head >= pos->seq && pos->ts > 0 && pos->seq > 0) {
		ts = entry_ts(c, ctx, pos->seq);
		if (ts < 0)
			return -1;
	}
	if (head >= pos->seq && (ts == 0 || ts == pos->ts))
		return 0;
	log_warn("cluster went back",
		 "epoch=%s seq=%llu redis_seq=%llu "
		 "ts=%lld redis_ts=%lld note=\"a new epoch: agents resync\"",
		 pos->epoch, (unsigned long long)pos->seq,
		 (unsigned long long)head, (long long)pos->ts, (long long)ts);
	snprintf(mine, sizeof(mine), "%llu", (unsigned long long)pos->seq);
	snprintf(mine_ts, sizeof(mine_ts), "%lld", (long long)pos->ts);
	r = cluster_script(c, ctx, 0, "rotate", 3, args);
	changed = r && r->type == REDIS_REPLY_STRING ? 1 : -1;
	freeReplyObject(r);
	return changed;
}

/*
 * A quiet stream: has the history been replaced (or cut back) meanwhile?
 * With sentinels, is this still the master (a demoted one, cut off from
 * the new, would keep a reader here quiet for ever)?
 */
static int quiet(struct cluster *c, redisContext *ctx,
		 const struct position *pos)
{
	int rc = still_ours(c, ctx, pos);

	if (rc > 0)
		log_warn("cluster epoch changed", "old=%s", pos->epoch);
	if (rc == 0 && c->n_sentinels && !cluster_is_master(ctx)) {
		if (!ctx->err)
			log_warn("cluster master demoted", "role=reader");
		return -1;
	}
	return rc;
}

/*
 * min_replicas: the batch waits until enough replicas hold it. 0 (hand it
 * over), 1 (not yet: read it again), -1 (the connection failed).
 */
static int hold(struct cluster *c, redisContext *ctx, struct position *pos,
		uint64_t last)
{
	int rc = replicated(c, ctx, last);

	if (rc > 0 && !pos->held)
		log_warn("cluster delivery held",
			 "seq=%llu min_replicas=%lld "
			 "note=\"fewer replicas confirmed it\"",
			 (unsigned long long)last, (long long)c->min_replicas);
	else if (rc == 0 && pos->held)
		log_info("cluster delivery resumed", "seq=%llu",
			 (unsigned long long)last);
	if (rc >= 0)
		pos->held = rc > 0;
	return rc;
}

/*
 * cluster.coalesce: after a batch of more than one event (a sustained
 * stream), pause before the next read for as long as the hub took to
 * deliver it, up to coalesce_ms, so that the next batch gathers what comes
 * meanwhile and each link gets it in one write. A lone event after a quiet
 * spell is read and delivered at once (one that comes during a pause waits
 * for its end). A node holds a third of the links of one that serves them
 * all, and so delivers three times as often, each event in its own write
 * to every link, unless it waits: docs/design.md, "Coalescing in cluster
 * mode".
 */
static void coalesce(struct cluster *c, const struct cluster_batch *b,
		     int64_t took_us)
{
	int64_t cap_us = atomic_load(&c->coalesce_ms) * 1000;
	struct timespec t;

	if (b->n < 2 || cap_us <= 0 || took_us <= 0)
		return;
	if (took_us > cap_us)
		took_us = cap_us;
	t.tv_sec = (time_t)(took_us / 1000000);
	t.tv_nsec = (long)(took_us % 1000000) * 1000;
	nanosleep(&t, NULL);
}

/*
 * One XREAD: hand what came to the hub. 0 (read on), 1 (the history was
 * replaced: sync afresh), -1 (the connection failed).
 */
static int read_once(struct cluster *c, redisContext *ctx, struct position *pos)
{
	struct cluster_batch *b = NULL;
	const redisReply *list;
	redisReply *r;
	char from[32];
	int64_t took;
	int rc = 0, held;

	snprintf(from, sizeof(from), "%llu-0", (unsigned long long)pos->seq);
	r = cluster_check(ctx, redisCommand(ctx,
					    "XREAD COUNT %d BLOCK %d "
					    "STREAMS %slog %s",
					    READ_COUNT, READ_BLOCK_MS,
					    c->prefix, from));
	if (!r || r->type == REDIS_REPLY_ERROR) {
		freeReplyObject(r);
		return -1;
	}
	if (r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		return quiet(c, ctx, pos);
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
	    r->element[0]->elements != 2) {
		freeReplyObject(r);
		return -1;
	}
	list = r->element[0]->element[1];
	b = batch_new(list->elements);
	if (!b) {
		freeReplyObject(r);
		return -1;
	}
	snprintf(b->epoch, sizeof(b->epoch), "%s", pos->epoch);
	for (size_t i = 0; i < list->elements && rc == 0; i++)
		if (take_entry(b, list->element[i]) > 0) {
			log_warn("cluster epoch changed", "old=%s", pos->epoch);
			rc = 1;
		}
	held = b->n ? hold(c, ctx, pos, b->entries[b->n - 1].seq) : 0;
	if (held != 0) {
		/* Not delivered, nor the position moved: read again. */
		batch_free(b);
		freeReplyObject(r);
		return held < 0 ? -1 : 0;
	}
	if (b->n) {
		pos->seq = b->entries[b->n - 1].seq;
		pos->ts = b->entries[b->n - 1].wall_ms;
	}
	took = clock_mono_us();
	if (b->n && hand_over(c, b) != 0 && !atomic_load(&c->stop))
		log_warn("cluster apply failed", "seq=%llu",
			 (unsigned long long)pos->seq);
	/* Not when the history was replaced (a sync is due) or stopping. */
	if (rc == 0 && !atomic_load(&c->stop))
		coalesce(c, b, clock_mono_us() - took);
	batch_free(b);
	freeReplyObject(r);
	return rc;
}

void *cluster_reader_main(void *arg)
{
	struct cluster *c = arg;
	redisContext *ctx = NULL;
	struct position pos = { .seq = 0 };
	struct backoff retry;
	bool synced = false;
	int rc;

	backoff_init(&retry, RETRY_MIN_MS, RETRY_MAX_MS, 2.0, 0);
	while (!atomic_load(&c->stop)) {
		if (!ctx) {
			ctx = cluster_connect(c, "reader");
			if (!ctx) {
				cluster_backoff(c, &retry);
				continue;
			}
			/* Reading blocks up to READ_BLOCK_MS on top of a call.
			 */
			redisSetTimeout(ctx, cluster_tv(c->timeout_ms +
							READ_BLOCK_MS));
			rc = pos.epoch[0] ? still_ours(c, ctx, &pos) : 1;
			if (rc < 0)
				goto failed;
			synced = rc == 0;
			if (synced)
				log_info("cluster reconnected",
					 "epoch=%s seq=%llu", pos.epoch,
					 (unsigned long long)pos.seq);
		}
		if (!synced) {
			if (sync_state(c, ctx, &pos) != 0)
				goto failed;
			synced = true;
		}
		backoff_reset(&retry);
		atomic_store(&c->up, true);
		rc = read_once(c, ctx, &pos);
		if (rc < 0)
			goto failed;
		atomic_store(&c->read_ms, clock_mono_ms());
		synced = rc == 0;
		continue;
	failed:
		if (!atomic_load(&c->stop))
			log_warn("cluster redis lost",
				 "role=reader error=\"%s\"",
				 ctx && ctx->err ? ctx->errstr : "reply");
		atomic_fetch_add(&c->errors, 1);
		atomic_fetch_add(&c->conn_gen, 1);
		atomic_store(&c->up, false);
		redisFree(ctx);
		ctx = NULL;
		cluster_backoff(c, &retry);
	}
	atomic_store(&c->up, false);
	redisFree(ctx);
	return NULL;
}
