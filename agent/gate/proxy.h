/*
 * proxy: one proxied request: its client side (libmicrohttpd's callbacks)
 * and its upstream side (a libcurl transfer), both run by the worker
 * thread (upstream.c) whose daemon accepted the client.
 *
 * Bodies stream through two bounded rings, one per direction, so a 1 GiB
 * upload or download holds at most `limits.buffer` bytes each way. When a
 * ring is full, the producer stops: the client side suspends its MHD
 * connection, the curl side pauses its transfer; the consumer that makes
 * room resumes it. Suspending, pausing, resuming and the rings are guarded
 * by the request's own mutex (uncontended: one thread does both sides;
 * it keeps the request safe should a side ever run elsewhere, as at
 * shutdown).
 *
 * Lifetime: a reference for the MHD side (dropped when MHD reports the
 * request completed), one for the worker while the transfer exists, one
 * while the request sits in a worker's queue.
 */
#ifndef GATE_PROXY_H
#define GATE_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <microhttpd.h>

struct gate_server;
struct worker;

struct ring {
	char *buf;
	size_t cap, head, len;
};

size_t ring_put(struct ring *r, const char *p, size_t n);  /* what fit */
size_t ring_take(struct ring *r, char *p, size_t n);       /* what was there */
/* The readable bytes at the head, contiguous (call twice for a wrap). */
const char *ring_peek(const struct ring *r, size_t *n);
void ring_drop(struct ring *r, size_t n);
static inline size_t ring_room(const struct ring *r) { return r->cap - r->len; }

/* Work a client thread asks of the worker (bits; they coalesce). */
enum {
	OP_START = 1,     /* add the transfer */
	OP_SEND = 2,      /* upload data or its end arrived: unpause sending */
	OP_RECV = 4,      /* the client took body data: unpause receiving */
	OP_ABORT = 8,     /* the client is gone */
	OP_UPGRADED = 16, /* the client socket is ours (WebSocket relay) */
};

struct preq {
	atomic_int refs;
	pthread_mutex_t lock;
	struct gate_server *server;
	char *uri;                       /* the raw request target */
	bool started;                    /* the access handler has seen it */
	bool proxied;                    /* and handed it to proxy.c */
	enum { ANSWER_NONE, ANSWER_HTML, ANSWER_JSON, ANSWER_STATE,
	       ANSWER_CHECK } answer;     /* the gate's own */
	bool answered;
	bool is_head;

	/* guarded by lock */
	struct MHD_Connection *conn;     /* NULL once MHD is done with it */
	bool suspended;                  /* we suspended conn */
	struct ring up, down;            /* client->upstream, upstream->client */
	bool up_eof;                     /* the whole request body is in `up` */
	bool send_paused, recv_paused;   /* curl is paused that way */
	bool head_ready;                 /* the upstream's head is complete */
	unsigned status;                 /* its status */
	bool queued;                     /* a response went to MHD */
	bool done;                       /* the transfer is over */
	CURLcode result;
	unsigned fail_status;            /* 502/504 when it failed before a head */
	char error[CURL_ERROR_SIZE];

	/* the worker's (and the creating thread's, before OP_START) */
	struct worker *worker;
	CURL *easy;
	struct curl_slist *headers;
	int pause_mask;                  /* CURLPAUSE_RECV | CURLPAUSE_SEND */
	bool easy_in_multi;
	bool head_done;
	long long deadline_ms;           /* for the response head */
	struct preq *prev, *next;        /* the worker's transfers */

	/* guarded by the worker's queue lock */
	struct preq *q_next;
	unsigned ops;
	bool in_queue;

	/* upgrades: the byte relay */
	bool upgrade;
	int upstream_fds[4];             /* sockets curl opened for it */
	int client_fd;                   /* -1 until MHD hands it over */
	struct MHD_UpgradeResponseHandle *urh;
	bool relaying;                   /* the worker moves its bytes */
	bool client_eof, upstream_eof, upstream_shut;
};

/* A request for uri (copied); NULL on ENOMEM. One reference, the MHD side's. */
struct preq *preq_new(struct gate_server *s, const char *uri);
void preq_ref(struct preq *r);
void preq_unref(struct preq *r);

/* Begin proxying (the access handler's first call). MHD_YES or MHD_NO. */
enum MHD_Result proxy_begin(struct preq *r, struct MHD_Connection *conn,
			    const char *method, const char *version);
/* Every later call: the body, then the answer. */
enum MHD_Result proxy_continue(struct preq *r, struct MHD_Connection *conn,
			       const char *upload, size_t *upload_size);
/* MHD is done with the request (completed or aborted). */
void proxy_end(struct preq *r);

/* Worker side: the upstream's head is complete; wake the client side. */
void proxy_head_done(struct preq *r);

/* Resume the client connection if we suspended it. Call under r->lock. */
void proxy_wake_client(struct preq *r);

#endif
