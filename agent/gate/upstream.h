/*
 * upstream: the worker threads. Each runs one libmicrohttpd daemon (the
 * clients) and the upstream side of its requests (fetch.c, with its own
 * pool of keep-alive upstream connections) on one epoll loop, so a
 * request's two sides share a thread. MHD's callbacks queue work with
 * worker_post; the loop runs it before it waits again. Every upstream
 * socket, and the WebSocket byte relay of upgraded requests, is handled
 * on its worker.
 */
#ifndef GATE_UPSTREAM_H
#define GATE_UPSTREAM_H

#include "proxy.h"

/* Start a worker thread that runs mhd (MHD_USE_EPOLL, no thread of its
 * own; the caller stops it after worker_stop). NULL + err. */
struct worker *worker_start(struct gate_server *s, int index,
			    struct MHD_Daemon *mhd, char *err, size_t errlen);

/* The worker whose thread calls this; NULL on any other thread. */
struct worker *worker_current(void);

/* A new request's ring buffers (cap bytes each) and head buffers, reused
 * from finished requests when called on w's thread. -1 on ENOMEM. */
int worker_take_parts(struct worker *w, struct preq *r, size_t cap);
/* r is being freed: keep its buffers if on w's thread. */
void worker_recycle(struct worker *w, struct preq *r);

/* A client connection of w's was resumed: w must run its daemon. */
void worker_kick(struct worker *w);

/* Stop accepting (the drain); the worker quiesces its daemon. */
void worker_drain(struct worker *w);

/*
 * Ask w for ops on r (OP_* bits). 0, or -1 once w is stopping (then the
 * request is not taken: the caller answers it).
 */
int worker_post(struct worker *w, struct preq *r, unsigned ops);

/* Fail every transfer and relay and stop the thread; from then on
 * worker_post refuses. */
void worker_stop(struct worker *w);
/* Free a stopped worker, once no thread can post to it. */
void worker_free(struct worker *w);

#endif
