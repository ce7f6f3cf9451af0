/*
 * webhook: delivers the log's events to HTTP endpoints that cannot hold a
 * link (docs/webhooks.md), signed as Standard Webhooks asks, retried, in
 * order per endpoint, each endpoint's progress kept in a durable cursor.
 *
 * One thread of its own runs every request on libcurl's multi interface:
 * the hub only copies each event it delivers into a lock-free inbox (its
 * sink, hub.h) and wakes that thread, so no endpoint, however slow, delays
 * agents, the API or another endpoint. The thread keeps the last `history`
 * events (as the log does), and each endpoint walks them from its cursor:
 * one that falls behind past them gets a `reset` notice and goes on from
 * the current seq.
 *
 * Other threads (the API) read a snapshot kept under a mutex, and hand
 * their changes (enable, replay, delete) to the thread through a queue,
 * waiting for its answer, like hub_call.
 */
#ifndef DISCOVERYD_WEBHOOK_H
#define DISCOVERYD_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dconf.h"

struct webhook;
struct event;
struct cJSON;
struct metrics_text;

/*
 * Where the cursors live and which node delivers, when not this node's
 * files (cluster mode: Redis, store.h). Every call runs on the webhook
 * thread and may block up to the backend's own timeout.
 */
struct webhook_backend {
	void *arg;
	int64_t renew_ms; /* lease is called this often per endpoint */
	/* 1: this node holds name's lease (renewed); 2: it has just taken
	 * it (another node may have held it meanwhile and moved the
	 * cursor); 0: another node holds it; -1: cannot tell (the backend
	 * is away); -2 (runtime only): its run-time definition is gone,
	 * and no node may take it. */
	int (*lease)(void *arg, const char *name, bool runtime);
	/* 1 with epoch, seq and disabled ("" = not; else why, at most 159
	 * bytes) filled: found; 0: none yet; -1: error. */
	int (*load)(void *arg, const char *name, char *epoch, size_t size,
		    uint64_t *seq, char *disabled, size_t disabled_size);
	/* Record the cursor if this node still holds the lease and, unless
	 * back (a replay), it does not go back: 0, or -1. */
	int (*save)(void *arg, const char *name, const char *epoch,
		    uint64_t seq, bool back);
	/* Record that name is disabled (why; "" = enabled again) if this
	 * node holds its lease: 0, or -1. */
	int (*disable)(void *arg, const char *name, const char *why);
	void (*remove)(void *arg, const char *name);
	/* The node holding name's lease, into out ("" = none): 0, or -1. */
	int (*holder)(void *arg, const char *name, char *out, size_t size);
	/* The run-time definitions every node shares (webhook_def.c):
	 * their revision (0 or -1), all of them as {NAME: entry} (NULL on
	 * error), and one stored (json) with, if start, its cursor set to
	 * (epoch, seq), or removed (json NULL) with its lease, cursor and
	 * disabled state, atomically: 0, or -1. */
	int (*defs_rev)(void *arg, long long *rev);
	struct cJSON *(*defs_get)(void *arg);
	int (*def_set)(void *arg, const char *name, const char *json,
		       bool start, const char *epoch, uint64_t seq);
	void (*release)(void *arg); /* the thread ends */
};

/* Open every endpoint's cursor from conf (copied): in state_dir, or with
 * backend (not owned, outlives the webhooks; NULL: the files). NULL with a
 * message in err. */
struct webhook *webhook_new(const struct dconf *conf,
			    const struct webhook_backend *backend, char *err,
			    size_t errlen);
/* The hub's sink (hub_sink_fn): arg is the struct webhook. Hub thread. */
void webhook_offer(void *arg, const char *epoch, uint64_t seq,
		   const struct event *ev);
/* Start the delivery thread. 0 or -1. */
int webhook_start(struct webhook *w);
/* Stop it (in-flight requests are dropped: they are sent again at the next
 * start, from the cursor). After the hub has stopped offering. */
void webhook_stop(struct webhook *w);
void webhook_free(struct webhook *w);

/* What the API may ask of an endpoint. */
enum webhook_op {
	WEBHOOK_ENABLE = 1,
	WEBHOOK_REPLAY, /* from: the first seq to send again */
	WEBHOOK_DELETE,
	WEBHOOK_TEST,   /* post a test notice now, off the cursor */
	WEBHOOK_PUT,    /* webhook_put */
	WEBHOOK_RELOAD, /* webhook_reload_secrets */
};

/*
 * Any thread but the webhook one: run op on the endpoint name and wait.
 * Returns an HTTP status (200, 404 no such endpoint, 422 replay from a seq
 * no longer retained, 409 a test already running, 502 the test failed, 503
 * stopping), with a message in msg. A test waits for its answer, at most
 * the endpoint's timeout.
 */
int webhook_call(struct webhook *w, enum webhook_op op, const char *name,
		 uint64_t from, char *msg, size_t msglen);
/*
 * PUT /api/discovery/webhooks/NAME: create or replace the run-time
 * endpoint name from def (checked by dconf_webhook_parse; copied) and json,
 * its text, stored durably in state_dir/webhooks-api before the answer.
 * A replaced endpoint goes on from its cursor unless fresh; a new one
 * starts at the current seq. Returns 201 created, 200 replaced, 409 (a
 * config entry's name, cluster mode, DCONF_WEBHOOKS_MAX reached), 500 not
 * stored (nothing changed), 503 stopping; a message in msg. Any thread but
 * the webhook one.
 */
int webhook_put(struct webhook *w, const char *name,
		const struct dconf_webhook *def, const char *json, bool fresh,
		char *msg, size_t msglen);
/* SIGHUP: every endpoint signs with its secrets read anew from the next
 * attempt on: the config's with those conf (just loaded) read, the API's
 * from their secret_file again (one that no longer reads keeps its old
 * ones, logged). Nothing else of an endpoint changes. Any thread but the
 * webhook one. */
void webhook_reload_secrets(struct webhook *w, const struct dconf *conf);
/* GET /api/discovery/webhooks: {"webhooks":[...]}, malloc'd; NULL when out
 * of memory. Any thread. */
char *webhook_list_json(struct webhook *w);
/* Endpoints now, the config's and the API's. Any thread. */
size_t webhook_count(struct webhook *w);
/* The webhook counters, for /metrics. Any thread. */
void webhook_metrics(struct webhook *w, struct metrics_text *t);

#endif
