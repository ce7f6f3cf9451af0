/*
 * store: where the state lives, behind one interface (docs/design.md, "One
 * path for every change"). Two backends implement it:
 *
 *   local.c     one node: the journal in state_dir (evlog over journal.c),
 *               changes decided on the hub thread
 *   cluster*.c  several nodes: Redis decides (cluster.lua), each node
 *               mirrors the stream into its hub
 *
 * Every call of the API goes to store_call(). A backend either answers it
 * (a change, or a read of the state every node shares) or leaves it to the
 * hub, which answers from this node's view (links, retained events,
 * metrics). Either way the events a change makes come back to the hub,
 * which fans them out (fanout.c). The hub knows the store only through
 * this file: it tells it what its links did, and asks it what to say.
 */
#ifndef DISCOVERYD_STORE_H
#define DISCOVERYD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "dconf.h"
#include "hub.h"

struct store;
struct link;
struct webhook_backend;
struct service;
struct metrics_text;

typedef void store_fn(struct store *s, struct hub_req *req);

/* What one of the hub's instances did (store_ops.instance). */
enum store_instance {
	INSTANCE_LINKED = 1, /* its hello was accepted */
	INSTANCE_CHANGED,    /* it reported its readiness */
	INSTANCE_GONE,       /* its link ended: counts already taken off,
				dependencies not yet dropped */
	INSTANCE_MOVED,      /* drained to another node: counts stay here */
};

struct store_ops {
	const char *name; /* "journal", "redis": for logs */
	/* Its calls run on the hub thread, since they change the registry
	 * and the log there (the journal); else on the caller's thread. */
	bool on_hub_thread;
	/* The calls it answers: HUB_OPS entries, by op; NULL: the hub
	 * answers from this node's view (hub_ops in hub_req.c). */
	store_fn *const *call;
	/* Around a write (hub_op_flags OP_WRITE): its Idempotency-Key.
	 * begin: true when it answered (a replay, 422, 409). */
	bool (*begin)(struct store *s, struct hub_req *req);
	void (*end)(struct store *s, struct hub_req *req);

	/* Hub thread. */
	/* A service's counts on this node may have moved. */
	void (*announce)(struct store *s, struct service *svc);
	void (*instance)(struct store *s, struct link *l,
			 enum store_instance what);
	/* Why a hello cannot be welcomed yet (the state is not here),
	 * for its 1013; NULL: it can. */
	const char *(*not_yet)(const struct store *s);
	void (*tick)(struct store *s, int64_t now_ms);
	void (*reload)(struct store *s, const struct dconf *conf);
	void (*info)(struct store *s, cJSON *o); /* GET /info's "cluster" */
	void (*metrics)(struct store *s, struct metrics_text *t);
	/* Where webhook cursors live and which node delivers each endpoint
	 * (webhook.h); NULL: this node's files, every endpoint its own.
	 * Called once, on the main thread, before start. */
	const struct webhook_backend *(*webhooks)(struct store *s);

	/* Main thread, around the hub's own start and stop; free comes
	 * after hub_free (which may still tell it of links closing). */
	int (*start)(struct store *s);
	void (*stop)(struct store *s);
	void (*free)(struct store *s);
};

struct store_pool; /* store.c */

/* The part every backend begins with. */
struct store {
	const struct store_ops *ops;
	struct hub *hub;
	/* A backend whose calls block their thread: the threads that run
	 * store_submit's calls (store_start to store_stop). */
	struct store_pool *pool;
	/* The log here may trail what agents hold (a mirror of another's):
	 * a hello resuming past it waits this long for it. 0: never. */
	int64_t catch_up_ms;
	/* The longest one call may hold a store thread (its backend's
	 * timeouts): the HTTP side's stop waits for that much at least. */
	int64_t call_max_ms;
};

/* The backends: NULL with a message in err. Each opens the hub's log. */
struct store *local_new(const struct dconf *conf, struct hub *h, char *err,
			size_t errlen);
struct store *cluster_store_new(const struct dconf *conf, struct hub *h,
				char *err, size_t errlen);

/* Any thread but the hub's: run req and wait for its answer. Always fills
 * req->status and req->body; header and value are consumed. */
void store_call(struct store *s, struct hub_req *req);
/*
 * Whether s takes calls without a wait: then store_submit runs req as
 * store_call would and calls done(req, arg) once it is answered, on the
 * hub thread for a backend whose state is there, on one of the store's
 * own threads for one whose calls block (Redis), or on this one, before
 * it returns, when they are stopping. req lives until then; what is left
 * of its header and value is the caller's to free afterwards.
 */
bool store_async(const struct store *s);
void store_submit(struct store *s, struct hub_req *req,
		  void (*done)(struct hub_req *req, void *arg), void *arg);

static inline void store_announce(struct store *s, struct service *svc)
{
	s->ops->announce(s, svc);
}

static inline void store_instance(struct store *s, struct link *l,
				  enum store_instance what)
{
	if (s->ops->instance)
		s->ops->instance(s, l, what);
}

static inline const char *store_not_yet(const struct store *s)
{
	return s->ops->not_yet ? s->ops->not_yet(s) : NULL;
}

static inline void store_tick(struct store *s, int64_t now_ms)
{
	if (s->ops->tick)
		s->ops->tick(s, now_ms);
}

static inline const struct webhook_backend *store_webhook_backend(
	struct store *s)
{
	return s->ops->webhooks ? s->ops->webhooks(s) : NULL;
}

static inline void store_reload(struct store *s, const struct dconf *conf)
{
	if (s->ops->reload)
		s->ops->reload(s, conf);
}

/* While on, the writes store_submit queued for the store's threads and
 * that have not begun are answered 503 stopping, unrun (store.c). */
void store_shed(struct store *s, bool on);
/* Main thread: the backend's threads, and the pool's (store.c). */
int store_start(struct store *s);
void store_stop(struct store *s);

static inline void store_free(struct store *s)
{
	if (s)
		s->ops->free(s);
}

#endif
