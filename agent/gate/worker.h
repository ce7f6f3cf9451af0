/*
 * worker: the inside of an upstream worker (upstream.c), shared with the
 * WebSocket relay (relay.c). Everything here runs on the worker's thread
 * unless marked.
 */
#ifndef GATE_WORKER_H
#define GATE_WORKER_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy.h"

#define EASY_CACHE    64    /* idle easy handles kept per worker */
#define RING_CACHE    8     /* idle ring pairs kept per worker */

/* A socket of curl's in our epoll set. curl removes a socket whenever its
 * connection goes back to the pool, and adds it again with the next
 * request: "parked" defers the removal, so that a pooled connection costs
 * no epoll_ctl per request. A parked socket that turns readable (the app
 * closed it) is removed then. */
struct fdstate {
	uint32_t events;                /* registered interest; 0: none */
	bool parked;                    /* curl removed it; still registered */
};

struct worker {
	struct gate_server *server;
	int index;
	CURLM *multi;
	struct MHD_Daemon *mhd;
	int mhd_fd;                     /* MHD's own epoll set */
	int epfd;                       /* ours: mhd_fd, wake_fd, curl's sockets */
	int wake_fd;                    /* eventfd: another thread posted */
	long long curl_due;             /* curl's timer (ms), -1: none */
	long long next_check;           /* when to look for overdue heads */
	bool waiting;                   /* some transfer awaits its head */
	atomic_bool kick;               /* a connection was resumed: run MHD */
	bool started;                   /* the thread runs */
	pthread_t thread;
	pthread_mutex_t qlock;
	struct preq *q_head, *q_tail;   /* under qlock */
	bool stopping;                  /* under qlock */
	atomic_bool quiesce;            /* stop accepting (drain) */
	struct preq *active;            /* transfers and relays */
	struct fdstate *fdst;           /* curl's sockets in epfd, by number */
	size_t fdst_cap;
	struct pollfd *fds;             /* fds[0] = epfd, then relay sockets */
	struct preq **owners;           /* the relay of each fds[i] */
	size_t fds_cap;
	CURL *easy[EASY_CACHE];         /* finished requests' handles, reset */
	size_t n_easy;
	struct { char *up, *down; } rings[RING_CACHE];
	size_t n_rings;
};

/* Drop r from the worker once neither its transfer nor its relay lives. */
void worker_release(struct worker *w, struct preq *r);
/* Let curl go on that way (CURLPAUSE_RECV / _SEND) if it was paused. */
void worker_unpause(struct preq *r, int bit);

/* relay.c */
void relay_start(struct worker *w, struct preq *r);
/* Move what can move; close the relay when both ways are over. */
void relay_step(struct worker *w, struct preq *r, short client_ev);
void relay_close(struct worker *w, struct preq *r, const char *why);
/* Write what `ring` holds to fd; -1 on a dead socket. */
int relay_flush(struct preq *r, struct ring *ring, int fd);
/* w->fds: [0] our epoll set, then the relays' sockets; the count. */
size_t relay_fds(struct worker *w);
/* Step each relay whose sockets poll() reported. */
void relay_service(struct worker *w, size_t n);

#endif
