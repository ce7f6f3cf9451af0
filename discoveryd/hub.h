/*
 * hub: the one libwebsockets service thread (docs/design.md). It owns the
 * agent links, this node's registry (counts per service) and the log's
 * retained events; it fans events out, runs the heartbeat and closes bad
 * links with their codes. Where the state lives (the journal, or Redis) is
 * the store's (store.h): the hub tells it what its links do, and delivers
 * the events it hands back.
 *
 * Other threads (the HTTP API's pool, main's signal loop, a backend's own)
 * never touch lws or the registry: they fill a struct hub_req and call
 * hub_call() or hub_run(), which queue it, wake the hub with
 * lws_cancel_service() (the only thread-safe lws call) and wait for the
 * answer.
 */
#ifndef DISCOVERYD_HUB_H
#define DISCOVERYD_HUB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "auth.h"
#include "dconf.h"
#include "idem.h"
#include "proto.h"
#include "registry.h"
#include "sse.h"

struct hub;
struct store;
struct event;

/* Every call, named once; hub_ops (hub_req.c) says what each is. */
enum hub_op {
	HUB_JOB = 0,    /* not a call: a backend's work (hub_run) */
	HUB_DECLARE,    /* service, decl (DECL_NONE: back to derived), ttl_ms */
	HUB_CACHEREADY, /* declare `cache` ready and broadcast CacheReady */
	HUB_INVALIDATE, /* value {"keys":[...]}, service optional */
	HUB_BROADCAST,  /* command, header, value, service/instance optional */
	HUB_SERVICES,   /* list */
	HUB_SERVICE,    /* one: service */
	HUB_AGENTS,     /* list */
	HUB_RELOAD,     /* conf: apply what can change at run time */
	HUB_EVENTS,     /* retained events with seq > after, at most limit */
	HUB_METRICS,    /* the hub's part of /metrics, as text */
	HUB_INFO,       /* node, epoch, seq, counts */
	HUB_SSE_OPEN, /* start stream: events after `after` (if has_after), then
			 live */
	HUB_SSE_CLOSE,   /* stop feeding stream */
	HUB_SSE_END_ALL, /* end every stream (before the HTTP side stops) */
	HUB_DRAIN,       /* drain the node named by instance, "" = this one
			    (hub_drain.c) */
	HUB_ENDPOINTS,   /* service's endpoints: ready ones (or any), with tag
			    ("": any); answers index */
	HUB_OPS
};

/* hub_op_flags */
#define OP_WRITE   1u /* a change: takes an Idempotency-Key */
#define OP_ANYTIME 2u /* runs even while the hub stops */

/* Where a drain stands (hub_drain.c). */
enum hub_drain_state {
	HUB_SERVING = 0,
	HUB_DRAINING, /* closing its links in steps, refusing hellos */
	HUB_DRAINED,  /* no link left; the API still serves */
};

struct hub_req {
	enum hub_op op;
	char service[PROTO_NAME_MAX + 1]; /* "" = none */
	char instance[PROTO_INSTANCE_MAX + 1];
	enum declaration decl;
	int64_t ttl_ms; /* 0 = no TTL */
	char command[PROTO_COMMAND_MAX];
	cJSON *header;                /* given to the hub by hub_call */
	cJSON *value;                 /* given to the hub by hub_call */
	const struct dconf *conf;     /* HUB_RELOAD; read during the call */
	uint64_t after;               /* HUB_EVENTS, HUB_SSE_OPEN */
	bool has_after;               /* HUB_SSE_OPEN */
	struct sse *stream;           /* HUB_SSE_*; owned by the caller */
	size_t limit;                 /* HUB_EVENTS; 0 = all */
	char tag[PROTO_NAME_MAX + 1]; /* HUB_ENDPOINTS; "" = any */
	bool any;                     /* HUB_ENDPOINTS: not only ready */
	uint64_t index;               /* HUB_ENDPOINTS' answer */
	/* A write's Idempotency-Key, scoped ("" = none), and fingerprint. */
	char idem_key[IDEM_SCOPED_MAX + 1];
	unsigned char idem_fp[IDEM_FP_LEN];
	bool replayed; /* the answer is the first one's */

	/* The answer: an HTTP status and a malloc'd JSON body (caller frees).
	 */
	int status;
	char *body;

	/* Private to hub.c. */
	pthread_cond_t cv; /* the caller waits on it, under the hub's mu */
	void (*on_done)(struct hub_req *req, void *arg); /* hub_submit */
	void *done_arg;
	bool done;
	bool anytime; /* OP_ANYTIME */
	void (*run)(struct hub *h, void *arg, struct hub_req *req);
	void *run_arg;
	struct hub_req *next;
};

/*
 * Create the hub and bind the agent listener from conf (copied); links are
 * checked against auth (not owned, outlives the hub). Returns NULL
 * with a message in err.
 */
struct hub *hub_new(const struct dconf *conf, struct auth *auth, char *err,
		    size_t errlen);
/* The bound agent listener, e.g. "127.0.0.1:5917" (port 0 resolved). */
const char *hub_listen_address(const struct hub *h);
/* Start the service thread. 0 or -1. */
int hub_start(struct hub *h);
/*
 * Graceful stop: refuse new requests, close every link with 1001, wait for
 * them to go (at most a few seconds), join the thread.
 */
void hub_stop(struct hub *h);
void hub_free(struct hub *h);

/* The endpoint sets the hub publishes (epboard.h), for any thread; lives
 * as long as the hub. */
struct epboard *hub_epboard(const struct hub *h);
/*
 * Another module that follows the log (webhooks): fn gets, on the hub
 * thread, every event the hub delivers, once durable, with the log's epoch
 * and the event's seq. It must not block and must copy what it keeps (an
 * event's reference count is the hub thread's). Set before hub_start, on
 * that thread: fn first gets ev NULL with where the log stands (its epoch
 * and last seq), then each retained event in order, at once.
 */
typedef void hub_sink_fn(void *arg, const char *epoch, uint64_t seq,
			 const struct event *ev);
void hub_set_sink(struct hub *h, hub_sink_fn *fn, void *arg);
/* Before hub_start: where its state lives (not owned). */
void hub_attach(struct hub *h, struct store *s);
/*
 * Any thread but the hub's: run req on the hub thread and wait for it.
 * hub_call runs its op from hub_ops; hub_run runs fn (a backend's job,
 * or its call). Always fill req->status and req->body (503 when the hub
 * is stopping). header and value are consumed.
 */
void hub_call(struct hub *h, struct hub_req *req);
void hub_run(struct hub *h,
	     void (*fn)(struct hub *h, void *arg, struct hub_req *req),
	     void *arg, struct hub_req *req);
/*
 * hub_run without the wait: done(req, done_arg) is called once req is
 * answered (and what it wrote is durable), on the hub thread, or at once
 * on this one when the hub is stopping. req must live until then; header
 * and value are the caller's to free after it.
 */
void hub_submit(struct hub *h,
		void (*fn)(struct hub *h, void *arg, struct hub_req *req),
		void *arg, struct hub_req *req,
		void (*done)(struct hub_req *req, void *done_arg),
		void *done_arg);
/* Hub thread: req's op, as hub_ops has it. */
void hub_run_op(struct hub *h, struct hub_req *req);
unsigned hub_op_flags(enum hub_op op);
/* Fill req's answer: body (taken; NULL = none), or an error body. */
void hub_answer(struct hub_req *req, int status, cJSON *body);
void hub_answer_error(struct hub_req *req, int status, const char *code,
		      const char *message);
/* An invalidation or a broadcast as req asks for it (header and value
 * taken); NULL when out of memory. Any thread. */
struct event *hub_request_event(struct hub_req *req);
/* Any thread: is this node draining, or drained? */
enum hub_drain_state hub_drain_state(const struct hub *h);

#endif
