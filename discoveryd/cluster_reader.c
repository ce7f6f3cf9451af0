/*
 * cluster_reader: the reader thread of cluster mode (cluster.h). It follows
 * the stream with XREAD BLOCK from the last seq it applied and hands each
 * batch to the hub; after a break it checks that the history it follows is
 * still Redis's, and syncs afresh (epoch, head, readiness, retained
 * history) when it is not. There is no subscription to lose: a reconnect
 * reads on from a position.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "log.h"

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

		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
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
		b->ready[b->n_ready] = ready->element[i]->type == REDIS_REPLY_STRING ?
				       strdup(ready->element[i]->str) : NULL;
		if (!b->ready[b->n_ready])
			goto out;
		b->n_ready++;
	}
	/* XREVRANGE is newest first; the hub wants them in order. */
	for (size_t i = h->elements; i-- > 0;)
		if (take_entry(b, h->element[i]) > 0)
			goto out;      /* replaced while we read: again */
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
	batch_free(b);
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

/*
 * The reader is back on a connection after a break. Is the history it
 * follows still Redis's? 0 (read on), 1 (it is not: sync afresh), -1 (the
 * connection failed). A new epoch means Redis lost its data; the same epoch
 * with a lower seq means it went back in time (an AOF that lost its last
 * second, a replica promoted): the events this node applied past Redis's
 * seq are gone, so the epoch is rotated for everyone.
 */
static int still_ours(struct cluster *c, redisContext *ctx, const char *epoch,
		      uint64_t seq)
{
	redisReply *r;
	uint64_t head;
	char mine[24];
	const char *args[2] = { epoch, mine };
	int changed = epoch_changed(c, ctx, epoch);

	if (changed != 0)
		return changed;
	r = redisCommand(ctx, "GET %sseq", c->prefix);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		freeReplyObject(r);
		return -1;
	}
	head = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
	freeReplyObject(r);
	if (head >= seq)
		return 0;
	log_warn("cluster went back", "epoch=%s seq=%llu redis_seq=%llu "
		 "note=\"a new epoch: agents resync\"", epoch,
		 (unsigned long long)seq, (unsigned long long)head);
	snprintf(mine, sizeof(mine), "%llu", (unsigned long long)seq);
	r = cluster_script(c, ctx, 0, "rotate", 2, args);
	changed = r && r->type == REDIS_REPLY_STRING ? 1 : -1;
	freeReplyObject(r);
	return changed;
}

/*
 * One XREAD: hand what came to the hub. 0 (read on), 1 (the history was
 * replaced: sync afresh), -1 (the connection failed).
 */
static int read_once(struct cluster *c, redisContext *ctx, const char *epoch,
		     uint64_t *seq)
{
	struct cluster_batch *b = NULL;
	const redisReply *list;
	redisReply *r;
	char from[32];
	int rc = 0;

	snprintf(from, sizeof(from), "%llu-0", (unsigned long long)*seq);
	r = redisCommand(ctx, "XREAD COUNT %d BLOCK %d STREAMS %slog %s",
			 READ_COUNT, READ_BLOCK_MS, c->prefix, from);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		freeReplyObject(r);
		return -1;
	}
	if (r->type == REDIS_REPLY_NIL) {
		/* Quiet: make sure the history was not replaced (or cut
		 * back) meanwhile. */
		freeReplyObject(r);
		rc = still_ours(c, ctx, epoch, *seq);
		if (rc > 0)
			log_warn("cluster epoch changed", "old=%s", epoch);
		return rc;
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
	snprintf(b->epoch, sizeof(b->epoch), "%s", epoch);
	for (size_t i = 0; i < list->elements && rc == 0; i++)
		if (take_entry(b, list->element[i]) > 0) {
			log_warn("cluster epoch changed", "old=%s", epoch);
			rc = 1;
		}
	if (b->n)
		*seq = b->entries[b->n - 1].seq;
	if (b->n && hand_over(c, b) != 0 && !atomic_load(&c->stop))
		log_warn("cluster apply failed", "seq=%llu",
			 (unsigned long long)*seq);
	batch_free(b);
	freeReplyObject(r);
	return rc;
}

void *cluster_reader_main(void *arg)
{
	struct cluster *c = arg;
	redisContext *ctx = NULL;
	char epoch[PROTO_EPOCH_MAX + 1] = "";
	uint64_t seq = 0;
	int64_t delay = RETRY_MIN_MS;
	bool synced = false;
	int rc;

	while (!atomic_load(&c->stop)) {
		if (!ctx) {
			ctx = cluster_connect(c, "reader");
			if (!ctx) {
				cluster_backoff(c, &delay);
				continue;
			}
			/* Reading blocks up to READ_BLOCK_MS on top of a call. */
			redisSetTimeout(ctx, cluster_tv(c->timeout_ms + READ_BLOCK_MS));
			rc = epoch[0] ? still_ours(c, ctx, epoch, seq) : 1;
			if (rc < 0)
				goto failed;
			synced = rc == 0;
			if (synced)
				log_info("cluster reconnected", "epoch=%s seq=%llu",
					 epoch, (unsigned long long)seq);
		}
		if (!synced) {
			if (sync_state(c, ctx, epoch, &seq) != 0)
				goto failed;
			synced = true;
		}
		delay = RETRY_MIN_MS;
		atomic_store(&c->up, true);
		rc = read_once(c, ctx, epoch, &seq);
		if (rc < 0)
			goto failed;
		synced = rc == 0;
		continue;
failed:
		if (!atomic_load(&c->stop))
			log_warn("cluster redis lost", "role=reader error=\"%s\"",
				 ctx && ctx->err ? ctx->errstr : "reply");
		atomic_fetch_add(&c->errors, 1);
		atomic_store(&c->up, false);
		redisFree(ctx);
		ctx = NULL;
		cluster_backoff(c, &delay);
	}
	atomic_store(&c->up, false);
	redisFree(ctx);
	return NULL;
}
