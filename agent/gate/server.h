/*
 * server: the gate's HTTP side on libmicrohttpd: one daemon in epoll mode
 * per worker thread (upstream.c runs it next to the upstream side).
 *
 * Each request is decided once, on its first call, against one state view:
 * the gate's own endpoints (/.well-known/discovery-gate and its /check),
 * a locked answer (prebuilt by state.c), or a proxied request (proxy.c,
 * run by the upstream workers of upstream.c). libmicrohttpd is told not to
 * unescape anything, and the raw request target comes from its URI log
 * callback, so the upstream sees the path and query exactly as sent.
 */
#ifndef GATE_SERVER_H
#define GATE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gconf.h"
#include "state.h"

struct worker;

struct gate_server {
	const struct gconf *conf;        /* the start-up config; lives longer */
	struct gate_state *state;
	struct MHD_Daemon **daemons;     /* one per worker, which runs it */
	struct worker **workers;
	size_t n_workers;
	atomic_uint next_worker;
	atomic_int in_flight;            /* requests MHD has not completed */
	char via[64];                    /* "1.1 discovery-gate" */
	uint16_t port;                   /* the bound port */
};

/* Bind, start the workers and the pool; logs msg=listening. NULL + err. */
struct gate_server *server_start(const struct gconf *c, struct gate_state *st,
				 char *err, size_t errlen);

/* Stop accepting; wait up to timeout_ms for the requests in flight.
 * Returns how many were still running. */
int server_drain(struct gate_server *s, long long timeout_ms);

/* Abort what is left, stop the pool and the workers, free. */
void server_stop(struct gate_server *s);

/* The worker for a new request: the calling worker's own, else round robin. */
struct worker *server_pick_worker(struct gate_server *s);

#endif
