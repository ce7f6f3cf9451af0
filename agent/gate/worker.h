/*
 * worker: the inside of a worker thread (upstream.c), shared with the
 * upstream client (fetch.c) and the WebSocket relay (relay.c). Everything
 * here runs on the worker's thread unless marked.
 */
#ifndef GATE_WORKER_H
#define GATE_WORKER_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy.h"

#define PARTS_CACHE   64    /* idle sets of request buffers kept per worker */
#define ADDRS_MAX     8     /* upstream addresses tried in turn */

/* What an epoll event points at: our own descriptors, or a connection. */
enum { TAG_MHD, TAG_WAKE, TAG_CONN };

/* A connection to the upstream: in the pool (r == NULL), serving r, or
 * handed to r's WebSocket relay. Registered in the worker's epoll set for
 * its whole life, so a pooled connection costs no epoll_ctl per request;
 * a pooled one that turns readable (the app closed it) is closed then. */
struct uconn {
	int tag;                        /* TAG_CONN: first, as in the others */
	int fd;
	uint32_t events;                /* registered interest */
	bool connecting;                /* the non-blocking connect runs */
	bool reused;                    /* it served a request before */
	bool dead;                      /* closed; freed after this batch */
	size_t addr;                    /* the address it connects to */
	struct preq *r;
	struct uconn *next;             /* the pool, or the dead list */
};

/* One request's buffers, kept between requests. */
struct parts {
	char *up, *down;                /* the rings, limits.buffer each */
	struct buf out, head;           /* request head, response head */
};

struct worker {
	struct gate_server *server;
	int index;
	struct MHD_Daemon *mhd;
	int mhd_fd;                     /* MHD's own epoll set */
	int epfd;                       /* ours: mhd_fd, wake_fd, upstream sockets */
	int wake_fd;                    /* eventfd: another thread posted */
	int mhd_tag, wake_tag;          /* their epoll data */
	long long next_check;           /* when to look at the deadlines */
	atomic_bool kick;               /* a connection was resumed: run MHD */
	bool started;                   /* the thread runs */
	pthread_t thread;
	pthread_mutex_t qlock;
	struct preq *q_head, *q_tail;   /* under qlock */
	bool stopping;                  /* under qlock */
	atomic_bool quiesce;            /* stop accepting (drain) */
	struct preq *active;            /* transfers and relays */
	size_t n_relays;                /* of them, relays */
	struct uconn *idle;             /* the pool, most recently used first */
	size_t n_idle;
	struct uconn *dead;             /* closed in this batch of events */
	struct sockaddr_storage addrs[ADDRS_MAX]; /* the upstream, resolved */
	socklen_t addr_lens[ADDRS_MAX];
	size_t n_addrs;
	long long addrs_until;          /* resolve again after this */
	struct pollfd *fds;             /* fds[0] = epfd, then relay sockets */
	struct preq **owners;           /* the relay of each fds[i] */
	size_t fds_cap;
	struct parts parts[PARTS_CACHE];
	size_t n_parts;
};

/* Drop r from the worker once neither its transfer nor its relay lives. */
void worker_release(struct worker *w, struct preq *r);
long long worker_now_ms(void);
/* Look at the deadlines by `when` (ms) at the latest. */
void worker_check_by(struct worker *w, long long when);

/* fetch.c: the upstream side of a request, on a pooled connection. */
void fetch_start(struct worker *w, struct preq *r);
/* The client fed body bytes (or its end): send them. */
void fetch_send(struct worker *w, struct preq *r);
/* The client took body bytes: read the upstream again. */
void fetch_recv(struct worker *w, struct preq *r);
/* Give the transfer up: status 502/503/504 if no head came yet. */
void fetch_fail(struct worker *w, struct preq *r, unsigned status,
		const char *why);
/* An epoll event on an upstream connection. */
void fetch_event(struct worker *w, struct uconn *c, uint32_t events);
/* Fail the transfers whose deadline passed; the next deadline or -1. */
long long fetch_deadlines(struct worker *w, long long now);
/* Free the connections closed in this batch of events. */
void fetch_reap(struct worker *w);
/* Close the pool (the worker stops). */
void fetch_close_pool(struct worker *w);
/* Close r's connection (the relay is over). */
void fetch_close(struct worker *w, struct preq *r);

/* relay.c */
void relay_start(struct worker *w, struct preq *r);
/* Move what can move; close the relay when both ways are over. */
void relay_step(struct worker *w, struct preq *r, short client_ev,
		short upstream_ev);
void relay_close(struct worker *w, struct preq *r, const char *why);
/* w->fds: [0] our epoll set, then the relays' sockets; the count. */
size_t relay_fds(struct worker *w);
/* Step each relay whose sockets poll() reported. */
void relay_service(struct worker *w, size_t n);

#endif
