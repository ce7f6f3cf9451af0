/*
 * registry: the services the daemon knows, and their readiness
 * (docs/protocol.md, "Concepts").
 *
 * A service's readiness is declared through the API (ready / notready, with
 * an optional TTL), or else derived: ready when at least min_ready of its
 * instances report ready. Instances themselves live on the agent links (the
 * hub owns them); the registry keeps only their counts per service.
 *
 * `ready` is the readiness last announced to agents. The hub compares it with
 * service_computed_ready() after each change and, when they differ, emits a
 * readiness event and updates it: announcing is the hub's job, computing is
 * the registry's.
 *
 * Owned by the hub thread; no locks. Services are allocated once and never
 * move, so links may keep pointers to them; a service is removed only when
 * nothing refers to it (registry_release_service).
 */
#ifndef DISCOVERYD_REGISTRY_H
#define DISCOVERYD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct link;
struct epset;
struct watch;

enum declaration {
	DECL_NONE = 0,
	DECL_READY,
	DECL_NOTREADY,
};

struct service {
	char name[PROTO_NAME_MAX + 1];
	int64_t min_ready;
	bool configured; /* listed under services: in the config */
	enum declaration declared;
	int64_t expires_ms; /* declaration's end (monotonic ms), 0 = none */
	unsigned instances; /* linked instances (after hello) */
	unsigned ready_instances; /* of those, how many report ready */
	unsigned dependents;      /* links whose depends_on names it */
	bool ready;               /* last announced readiness */
	bool grace;               /* restart grace: restored ready, held until
				     its instances are back or the grace ends */
	/* Its endpoints (hub_ep.c): the links with an address, and the set
	 * last published. */
	uint64_t ep_index; /* ep_set's index (0: none yet) */
	struct link *ep_links;
	struct epset *ep_set;    /* the hub's reference */
	struct epset *ep_remote; /* other nodes' (cluster_peers.c); NULL:
				    none */
	char *ep_text; /* ep_set as the link carries it, printed once for
			  every welcome and full message (link_watch.c) */
	uint64_t ep_text_index; /* the index of the set ep_text is */
	bool ep_dirty;          /* on the hub's list, to flush */
	struct service *dirty_prev, *dirty_next;
	struct watch *watchers; /* links that watch it (link_watch.c) */
	unsigned n_watchers;
	unsigned pins; /* held while its watchers are walked */
};

struct registry {
	struct service **services; /* sorted by name */
	size_t n, cap;
	size_t max; /* cap on the number of services */
	/* Told of each service added (gone false) and of each about to be
	 * freed (gone true); NULL: no one. */
	void (*on_service)(void *ctx, struct service *s, bool gone);
	void *ctx;
};

/* The daemon's service table: past it a new service is 503 "full". */
#define REGISTRY_MAX_SERVICES 100000
void registry_init(struct registry *r, size_t max_services);
void registry_release(struct registry *r);

struct service *registry_find(const struct registry *r, const char *name);
/* Find or add (with min_ready 1); NULL when the cap is reached or no memory. */
struct service *registry_get(struct registry *r, const char *name);
/* Drop s if nothing refers to it any more (no instance, dependent,
 * declaration, config entry or restart grace) and it is not ready. s may
 * be freed: do not use it afterwards. */
void registry_release_service(struct registry *r, struct service *s);

/* The readiness s should have now: the declaration, else the instances
 * (or, during restart grace, what the journal said). */
bool service_computed_ready(const struct service *s);
const char *declaration_name(enum declaration d);

/* Clear declarations whose TTL ran out at now_ms; returns how many. The
 * caller then re-announces the services whose readiness changed. */
size_t registry_expire(struct registry *r, int64_t now_ms);
/* The earliest declaration expiry (monotonic ms), 0 if none. */
int64_t registry_next_expiry(const struct registry *r);

#endif
