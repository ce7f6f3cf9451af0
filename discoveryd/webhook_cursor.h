/*
 * webhook_cursor: one endpoint's durable cursor, the last seq (of an
 * epoch) up to which every event it is for was acknowledged by its
 * receiver. A journal of its own (journal.c) in state_dir, named
 * webhook-NAME: each save is a record, fdatasync'd before it returns, so a
 * cursor saved is never lost and a crash re-sends at most what was not
 * saved yet (at-least-once, with the same webhook-id). Past a few hundred
 * records the file is rewritten to the last one. Webhook thread only.
 */
#ifndef DISCOVERYD_WEBHOOK_CURSOR_H
#define DISCOVERYD_WEBHOOK_CURSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "journal.h"
#include "proto.h"

struct webhook_cursor {
	struct journal journal;
	bool found; /* the file held a cursor at open */
	char epoch[PROTO_EPOCH_MAX + 1];
	uint64_t seq;
	char disabled[160]; /* why it is disabled; "" = it is not */
};

/* Open (creating) state_dir/webhook-name and read its last cursor. 0, or
 * -1 with a message in err. */
int webhook_cursor_open(struct webhook_cursor *c, const char *state_dir,
			const char *name, char *err, size_t errlen);
/* Record (epoch, seq) durably. 0, or -1 (errno set; the last one saved
 * stands). */
int webhook_cursor_save(struct webhook_cursor *c, const char *epoch,
			uint64_t seq);
/* Record that the endpoint is disabled (why; "" = enabled again), with
 * the cursor as it stands. 0, or -1. */
int webhook_cursor_set_disabled(struct webhook_cursor *c, const char *why);
void webhook_cursor_close(struct webhook_cursor *c);
/* Close it and remove its file (the endpoint was deleted). */
void webhook_cursor_remove(struct webhook_cursor *c);

#endif
