/*
 * evlog: the log, the one path every change takes (docs/design.md). It
 * decides the order (epoch and seq), makes each change durable in the
 * journal before anyone acts on it, and keeps the last `history` events for
 * resume and for GET /api/discovery/events.
 *
 * A change is an event, a declaration, or both in one record (a declaration
 * that moves a service's readiness): one record, so a crash keeps both or
 * neither. The hub applies a change and delivers its event only after
 * evlog_append returned 0; on -1 nothing was written and the seq was not
 * used, and the hub undoes what it had prepared (503 to the caller).
 *
 * Start-up replays the journal (evlog_open): the epoch and seq carry on,
 * the retained events come back into the ring, and the last declaration and
 * readiness of each service are handed to the hub (`restored`). A torn tail
 * is dropped; a corrupt journal keeps its valid prefix's state but starts a
 * new epoch, since the events after the damage are gone.
 */
#ifndef DISCOVERYD_EVLOG_H
#define DISCOVERYD_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "journal.h"
#include "registry.h"

/* A service's durable state: its declaration and last announced readiness. */
struct evlog_service {
	char name[PROTO_NAME_MAX + 1];
	enum declaration declared;
	int64_t expires_wall_ms; /* 0 = no TTL */
	bool ready;
};

/* A declaration change to record with (or without) an event. */
struct evlog_decl {
	const char *service;
	enum declaration declared;
	int64_t expires_wall_ms;
};

struct evlog_rw; /* evlog.c */

struct evlog {
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t seq;        /* last assigned; 0 = none yet */
	struct event **ring; /* the retained events, oldest first */
	size_t cap, head, count;
	struct journal journal;
	bool failing; /* the last append failed */
	bool mirror;  /* cluster mode: no journal, the ring
			 mirrors the Redis stream */

	/* Filled by evlog_open; the hub applies and frees them. */
	struct evlog_service *restored;
	size_t n_restored;

	/*
	 * Idempotency keys (idem.h). The next record evlog_append writes
	 * carries tag (not owned; the hub sets and clears it) and says so in
	 * tag_written. evlog_open fills idem_records, a cJSON array of the
	 * journal's "idem" records in order, tags turned into such records;
	 * the hub takes it. extra_records: how many of those the last
	 * rewrite wrote, not counted towards the next compaction.
	 */
	const cJSON *tag;
	bool tag_written;
	cJSON *idem_records;
	size_t extra_records;
	size_t pending_extra; /* of the rewrite running in the background */
	struct evlog_rw *rw;  /* its records, held until it is done */
};

/* How start-up went, for one log line. */
struct evlog_recovery {
	size_t records;
	size_t events;
	bool new_epoch;
	const char *why; /* when new_epoch: "new journal", "corrupt journal" */
	bool torn;
	size_t dropped_bytes;
};

/*
 * Open the journal in state_dir and replay it. 0, or -1 with a message in
 * err (the journal cannot be opened or written at all: a start-up failure).
 */
int evlog_open(struct evlog *log, size_t history, const char *state_dir,
	       struct evlog_recovery *rec, char *err, size_t errlen);
void evlog_release(struct evlog *log);

/*
 * Make a change durable: ev (may be NULL) gets the next seq and its frame,
 * decl (may be NULL) is recorded with it, then ev is retained. 0, or -1 when
 * it could not be made durable (ev untouched, nothing recorded).
 */
int evlog_append(struct evlog *log, struct event *ev,
		 const struct evlog_decl *decl);

/*
 * Cluster mode (docs/cluster.md): the log lives in Redis and this one only
 * mirrors it: no journal, the ring holds the last `history` events read from
 * the stream. evlog_append is not used.
 */
int evlog_open_mirror(struct evlog *log, size_t history);
/* A new epoch (or a gap in what was read): forget the ring. */
void evlog_reset(struct evlog *log, const char *epoch, uint64_t seq);
/* Retain a sealed event read from the stream (its seq follows log->seq). */
void evlog_adopt(struct evlog *log, struct event *ev);
/* An event's record for the stream (malloc'd JSON; no seq: Redis gives it). */
char *evlog_event_text(const struct event *ev);
/* An event from a stream record, sealed with epoch and seq; NULL if bad. */
struct event *evlog_event_parse(const char *text, size_t len, const char *epoch,
				uint64_t seq, int64_t wall_ms);

/* Has the journal grown past about twice the history (and is no
 * compaction running)? */
bool evlog_wants_compaction(const struct evlog *log);
/*
 * Compact: the current state of every service (from the hub) plus the
 * retained events, then the records in extra (a cJSON array, may be NULL:
 * the live idempotency keys), replace the file, atomically, in the
 * background (journal_rewrite_start): appends go on meanwhile, and
 * evlog_compact_poll makes the switch once the new file is written. 0
 * (started), or -1 (errno set; the old journal stays in use).
 */
int evlog_compact(struct evlog *log, const struct evlog_service *state,
		  size_t n, const cJSON *extra);
/* 1: the compaction is done, the new file in use; 0: none is done; -1: it
 * failed (errno set; the old journal stays in use). */
int evlog_compact_poll(struct evlog *log);
/* Append a record of the hub's own (an idempotency answer). 0 or -1. */
int evlog_append_record(struct evlog *log, const cJSON *record);

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
