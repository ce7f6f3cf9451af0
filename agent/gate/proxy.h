/*
 * proxy: one proxied request: its client side (libmicrohttpd's callbacks)
 * and its upstream side (fetch.c: an HTTP/1.1 exchange on a pooled
 * connection), both run by the worker thread (upstream.c) whose daemon
 * accepted the client.
 *
 * Bodies stream through two bounded rings, one per direction, so a 1 GiB
 * upload or download holds at most `limits.buffer` bytes each way. When a
 * ring is full, the producer stops: the client side suspends its MHD
 * connection, the upstream side stops reading; the consumer that makes
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

#include <http_parser.h>
#include <microhttpd.h>

struct gate_server;
struct uconn;
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

/* A byte buffer that grows up to a cap: the request head going out, the
 * response head coming in. off: what was sent of it. */
struct buf {
	char *p;
	size_t len, off, cap;
};

#define HEAD_MAX (64 * 1024)  /* a request or response head, at most */

/* Append n bytes; -1 past HEAD_MAX or on ENOMEM. */
int buf_add(struct buf *b, const char *p, size_t n);

/* Work a client thread asks of the worker (bits; they coalesce). */
enum {
	OP_START = 1,     /* add the transfer */
	OP_SEND = 2,      /* upload data or its end arrived: send it */
	OP_RECV = 4,      /* the client took body data: read again */
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
	bool send_paused;                /* the upstream side waits for `up` */
	bool recv_paused;                /* it stopped reading: `down` is full */
	bool head_ready;                 /* the upstream's head is complete */
	unsigned status;                 /* its status */
	bool queued;                     /* a response went to MHD */
	bool done;                       /* the transfer is over */
	bool failed;                     /* and it failed */
	unsigned fail_status;            /* 502/504 when it failed before a head */
	char error[256];

	/* the worker's (and the creating thread's, before OP_START) */
	struct worker *worker;
	struct buf out;                  /* request head, then chunk framing */
	struct buf head;                 /* response head: name\0value\0... */
	bool has_body;                   /* the request has one */
	bool chunked;                    /* sent chunked (else Content-Length) */
	long long body_left;             /* Content-Length bytes still to send */
	size_t chunk_left;               /* of the chunk being sent */
	bool body_started;               /* a body byte went out: no retry */
	bool body_end;                   /* the last chunk is queued */
	bool sent;                       /* the whole request went out */
	struct uconn *uc;                /* its upstream connection */
	http_parser parser;
	int field_state;                 /* the head's last callback: 0, 1 field, 2 value */
	bool interim;                    /* a 1xx head is being read */
	bool resp_started;               /* a response byte came */
	bool complete;                   /* the whole response came */
	long long resp_length;           /* its Content-Length, -1: none */
	bool in_transfer;                /* fetch.c runs it */
	bool head_done;
	long long deadline_ms;           /* connect, head or body idle */
	struct preq *prev, *next;        /* the worker's transfers */

	/* guarded by the worker's queue lock */
	struct preq *q_next;
	unsigned ops;
	bool in_queue;

	/* upgrades: the byte relay */
	bool upgrade;
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

/* Worker side: the upstream's final head is complete (r->head). */
void proxy_head_done(struct preq *r, unsigned status);

/* Resume the client connection if we suspended it. Call under r->lock. */
void proxy_wake_client(struct preq *r);

#endif
