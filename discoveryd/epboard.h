/*
 * epboard: every service's endpoints as the hub last published them, for
 * the threads that must never wait for the hub: the DNS server, blocking
 * HTTP queries, the endpoints answer, Prometheus service discovery
 * (docs/design.md, "Endpoints").
 *
 * The hub builds a service's set after its endpoints change (at most once
 * per coalescing window, endpoints.coalesce) and publishes it here; a set
 * is immutable once published, and a reader holds a reference to the one
 * it got, so it never sees one half updated and never takes a lock longer
 * than a pointer copy. A service the registry knows has a set (maybe
 * empty) from the moment the hub first publishes it until it forgets the
 * service: epboard_get's NULL is "no such service" (DNS: NXDOMAIN).
 *
 * Indexes grow per service and never go back on one node (they start at
 * the clock in µs): a set's index passes N exactly when something changed
 * since the set that had N.
 */
#ifndef DISCOVERYD_EPBOARD_H
#define DISCOVERYD_EPBOARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define EP_LOAD_SCALE 10000 /* a load of 1.0 (the hub's LINK_LOAD_SCALE) */

/* One endpoint: strings live in its set's storage. */
struct ep {
	const char *instance;
	const char *address; /* host:port, as the instance gave it */
	const char *host;    /* without brackets */
	const char *node;    /* the node its link is on */
	const char *meta;    /* JSON object text, "{}" when none */
	const char *const *tags;
	size_t n_tags;
	unsigned port;
	enum proto_state state;
	unsigned weight; /* 1-1000 */
	int load;        /* in EP_LOAD_SCALE steps of 1.0; -1 = never said */
	int family;      /* AF_INET, AF_INET6, or 0: host is a DNS name */
	unsigned char ip[16]; /* family's address, network order */
};

/* A service's endpoints at one index, sorted by node then instance. */
struct epset {
	atomic_uint refs;
	uint64_t index;
	size_t n;       /* in ep */
	size_t n_ready; /* of them, state READY */
	struct ep *ep;
	char service[PROTO_NAME_MAX + 1];
};

struct epboard;
struct epwaiter;

struct epboard *epboard_new(void);
void epboard_free(struct epboard *b); /* no waiter may be left */

/* Hub thread. publish takes set (its refs at 1) and replaces the
 * service's; then wakes the service's waiters whose index it passes. No
 * two sets published in a process share an index, whatever their
 * service (the hub's endpoint clock numbers them all): readers may know
 * a set by it (dns_cache.c does). */
void epboard_publish(struct epboard *b, struct epset *set);
/* The service left the registry: its set goes, waiters are woken. */
void epboard_forget(struct epboard *b, const char *service);

/* Any thread. A reference to service's set (release it with epset_put),
 * NULL when the hub has published none. */
struct epset *epboard_get(struct epboard *b, const char *service);
/* Any thread. A reference to every service's set, sorted by service
 * name, in *sets (malloc'd: release each with epset_put, then free the
 * array): how many, or -1 (*sets NULL) when out of memory. The lock is
 * held for a walk of the table (one pointer copy per service), so a
 * publish may wait that long; the sort runs after. */
long epboard_all(struct epboard *b, struct epset ***sets);
void epset_hold(struct epset *s);
void epset_put(struct epset *s);

/*
 * A set of n endpoints copied from src (strings and tags copied, so src
 * may be the caller's scratch), sorted by node then instance, refs at 1.
 * Only instance, address, node, meta, tags, state, weight and load of src
 * are read; host, port, family and ip are derived from address. NULL when
 * out of memory.
 */
struct epset *epset_new(const char *service, uint64_t index,
			const struct ep *src, size_t n);

/*
 * Any thread: call fn(arg) once, when service's index passes index: at
 * once, on this thread, if it has already (then NULL is returned and *err
 * is 0); else later on the hub thread, from publish or forget, under the
 * board's lock, so fn must be short and must not call into the board
 * (MHD_resume_connection is fine). NULL with *err -1: no memory. A waiter
 * returned goes to epboard_cancel exactly once, whether fn ran or not:
 * that frees it, and once it returns fn is not running and never will.
 */
struct epwaiter *epboard_wait(struct epboard *b, const char *service,
			      uint64_t index, void (*fn)(void *arg), void *arg,
			      int *err);
void epboard_cancel(struct epboard *b, struct epwaiter *w);

/* How many waiters there are, for /metrics. Any thread. */
size_t epboard_waiters(struct epboard *b);

#endif
