/*
 * evlog: the log, the one path every broadcast takes (DESIGN.md). It decides
 * the order (epoch and seq) and keeps the last `history` events for resume.
 *
 * The hub appends an event; only once evlog_append has accepted it does the
 * hub deliver it. This build keeps the log in memory: the epoch is new at
 * every start, so an agent that resumes across a restart is told
 * recovered:false. The durable journal and the Redis stream slot in behind
 * this same interface: append may then fail (the caller answers 503 and
 * applies nothing), and the epoch survives restarts.
 */
#ifndef DISCOVERYD_EVLOG_H
#define DISCOVERYD_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct evlog {
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t seq;                 /* last assigned; 0 = none yet */
	struct event **ring;          /* the retained events, oldest first */
	size_t cap, head, count;
};

/* 0, or -1 when out of memory. */
int evlog_init(struct evlog *log, size_t history);
void evlog_release(struct evlog *log);

/*
 * Give ev the next seq, frame it, and retain a reference. 0 on success; -1
 * when the event cannot be made durable (then ev is untouched and nothing was
 * applied).
 */
int evlog_append(struct evlog *log, struct event *ev);

/*
 * Can an agent that last saw (epoch, seq) be resumed: same epoch, and every
 * event after seq still retained?
 */
bool evlog_covers(const struct evlog *log, const char *epoch, uint64_t seq);

/* The i-th retained event (0 = oldest), or NULL. */
struct event *evlog_at(const struct evlog *log, size_t i);
/* Index of the first retained event with seq > after (count if none). */
size_t evlog_find_after(const struct evlog *log, uint64_t after);

#endif
