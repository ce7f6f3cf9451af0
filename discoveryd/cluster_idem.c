/*
 * cluster_idem: Idempotency-Key in cluster mode (docs/api.md,
 * docs/cluster.md). The key is looked up and recorded by the script run
 * that makes the write's change (cluster.lua, idem_seen and idem_keep), so
 * it is atomic with the change whichever node runs it, and a retry after a
 * reply lost between Redis and the node finds it. After the node answered,
 * the answer is stored beside it (op idem_answer) for retries to get byte
 * for byte; when that is missing (the first node never answered), the
 * retry's answer is rebuilt from what the first run returned.
 *
 * The same key twice at once on this node is refused here (409) without
 * asking Redis: the set of keys in flight, under c->mu.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_int.h"
#include "log.h"

struct idem_flight {
	struct idem_flight *next;
	char key[];
};

static bool flight_add(struct cluster *c, const char *key)
{
	struct idem_flight *f, **p;
	bool added = false;

	pthread_mutex_lock(&c->mu);
	for (p = &c->idem_flights; *p; p = &(*p)->next)
		if (strcmp((*p)->key, key) == 0)
			break;
	if (!*p && (f = malloc(sizeof(*f) + strlen(key) + 1))) {
		strcpy(f->key, key);
		f->next = NULL;
		*p = f;
		added = true;
	}
	pthread_mutex_unlock(&c->mu);
	return added;
}

static void flight_remove(struct cluster *c, const char *key)
{
	struct idem_flight *f, **p;

	pthread_mutex_lock(&c->mu);
	for (p = &c->idem_flights; (f = *p); p = &f->next)
		if (strcmp(f->key, key) == 0) {
			*p = f->next;
			free(f);
			break;
		}
	pthread_mutex_unlock(&c->mu);
}

void cluster_idem_release(struct cluster *c)
{
	struct idem_flight *f = c->idem_flights, *next;

	for (; f; f = next) {
		next = f->next;
		free(f);
	}
	c->idem_flights = NULL;
}

static void in_flight(struct hub_req *req)
{
	hub_answer_error(req, 409, "in_flight",
			 "a request with this "
			 "Idempotency-Key is still being processed; try again");
}

bool cluster_idem_begin(struct cluster *c, struct hub_req *req)
{
	if (!req->idem_key[0])
		return false;
	if (flight_add(c, req->idem_key)) {
		log_debug("idempotency key in flight", "op=%d", (int)req->op);
		return false;
	}
	in_flight(req);
	req->idem_key[0] = '\0'; /* not ours to end */
	return true;
}

int cluster_idem_args(struct cluster *c, const struct hub_req *req,
		      struct cluster_idem_args *a)
{
	static const char hexd[] = "0123456789abcdef";

	for (size_t i = 0; i < IDEM_FP_LEN; i++) {
		a->fp[2 * i] = hexd[req->idem_fp[i] >> 4];
		a->fp[2 * i + 1] = hexd[req->idem_fp[i] & 15];
	}
	a->fp[2 * IDEM_FP_LEN] = '\0';
	snprintf(a->retention, sizeof(a->retention), "%lld",
		 (long long)atomic_load(&c->idem_retention_ms));
	/* The first node answers after its script call: its wait for its
	 * own delivery (timeout) and for the others' acks (timeout/2 at
	 * most), and a second of slack for a busy machine. */
	snprintf(a->window, sizeof(a->window), "%lld",
		 (long long)(c->timeout_ms + c->timeout_ms / 2 + 1000));
	a->argv[0] = req->idem_key;
	a->argv[1] = a->fp;
	a->argv[2] = a->retention;
	a->argv[3] = a->window;
	return 4;
}

int cluster_idem_reply(struct cluster *c, struct hub_req *req, cJSON **o)
{
	const char *idem = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(*o, "idem"));
	const cJSON *status, *answer;
	const char *reply;
	cJSON *first;

	if (!idem)
		return 0;
	if (strcmp(idem, "reused") == 0) {
		hub_answer_error(req, 422, "key_reused",
				 "this Idempotency-Key "
				 "was used with another request");
		return 1;
	}
	if (strcmp(idem, "in_flight") == 0) {
		in_flight(req);
		return 1;
	}
	atomic_fetch_add(&c->idem_replays, 1);
	req->replayed = true;
	status = cJSON_GetObjectItemCaseSensitive(*o, "status");
	answer = cJSON_GetObjectItemCaseSensitive(*o, "answer");
	if (cJSON_IsNumber(status) && cJSON_IsString(answer)) {
		req->status = (int)status->valuedouble;
		req->body = strdup(answer->valuestring);
		return 1;
	}
	/* The first node never answered: rebuild from its run's reply. */
	reply = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(*o, "reply"));
	first = reply ? cJSON_Parse(reply) : NULL;
	if (!cJSON_IsObject(first)) {
		cJSON_Delete(first);
		hub_answer_error(req, 500, "internal",
				 "unexpected answer from Redis");
		return 1;
	}
	cJSON_Delete(*o);
	*o = first;
	return 0;
}

void cluster_idem_end(struct cluster *c, redisContext *ctx, struct hub_req *req)
{
	char status[8];
	struct cluster_idem_args a;
	const char *args[4];
	redisReply *r;

	if (!req->idem_key[0])
		return;
	flight_remove(c, req->idem_key);
	if (req->replayed || req->status < 200 || req->status > 299 ||
	    !req->body || !ctx || ctx->err)
		return;
	cluster_idem_args(c, req, &a);
	snprintf(status, sizeof(status), "%d", req->status);
	args[0] = req->idem_key;
	args[1] = a.fp;
	args[2] = status;
	args[3] = req->body;
	r = cluster_script(c, ctx, 0, "idem_answer", 4, args);
	if (!r || r->type == REDIS_REPLY_ERROR)
		log_warn("idempotency answer not stored",
			 "error=\"%s\" "
			 "note=\"a retry gets an answer rebuilt from the "
			 "change\"",
			 r ? r->str : ctx->errstr);
	freeReplyObject(r);
}
