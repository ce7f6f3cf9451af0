/*
 * event: one thing broadcast to agents (docs/protocol.md, "Concepts"): a
 * readiness change, a cache invalidation or a custom command, with its address
 * (who receives it) and its frame.
 *
 * An event is serialized and framed exactly once, into a buffer with LWS_PRE
 * bytes of headroom, when the log has given it its epoch and seq. Every link
 * it goes to holds a reference to that one buffer, as does the history ring;
 * the last unref frees it. Reference counts are plain integers: events live on
 * the hub thread only.
 */
#ifndef DISCOVERYD_EVENT_H
#define DISCOVERYD_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "proto.h"

enum event_kind {
	EVENT_READINESS = 1,
	EVENT_INVALIDATE,
	EVENT_COMMAND,
	EVENT_WELCOME,   /* one link's welcome: never logged, never shared */
	EVENT_ENDPOINTS, /* a service's endpoints to its watchers: never
			    logged */
};

/* Who receives an event. */
enum event_scope {
	SCOPE_ALL = 1,    /* every linked agent */
	SCOPE_DEPENDENTS, /* agents whose depends_on holds `service` */
	SCOPE_SERVICE,    /* instances of `service` */
	SCOPE_INSTANCE,   /* the instance `instance` (of `service` if set) */
};

struct event {
	unsigned refs;
	enum event_kind kind;
	enum event_scope scope;
	char service[PROTO_NAME_MAX + 1];
	char instance[PROTO_INSTANCE_MAX + 1];
	uint64_t seq;
	int64_t created_us;      /* when the trigger arrived (monotonic) */
	int64_t created_wall_ms; /* the same, wall clock, journaled */
	char command[PROTO_COMMAND_MAX];
	cJSON *header;        /* owned */
	cJSON *value;         /* owned */
	unsigned char *frame; /* LWS_PRE headroom, then len bytes of JSON */
	size_t len;
	/* Its journal record as appended, when that was the event alone
	 * (evlog.c): a compaction writes it again as it is. NULL: none. */
	char *record;
};

/* A new event with refs = 1; header and value become the event's. */
struct event *event_new(enum event_kind kind, enum event_scope scope,
			const char *command, cJSON *header, cJSON *value);
/* Serialize the frame for epoch/seq (sets ev->seq). 0, or -1 out of memory. */
int event_seal(struct event *ev, const char *epoch, uint64_t seq);
/* A welcome is framed at once, from a JSON text already built. */
struct event *event_new_frame(enum event_kind kind, unsigned char *frame,
			      size_t len);
struct event *event_ref(struct event *ev);
void event_unref(struct event *ev);
const char *event_kind_name(enum event_kind kind);
const char *event_scope_name(enum event_scope scope);
/* Parse the names above back; 0 when unknown. */
enum event_kind event_kind_parse(const char *name);
enum event_scope event_scope_parse(const char *name);

/*
 * Does an agent with this service, instance and dependencies receive ev?
 * deps holds the services (not owned); a NULL one is none.
 */
struct service;
bool event_addressed_to(const struct event *ev, const char *service,
			const char *instance, struct service *const *deps,
			size_t n_deps);

#endif
