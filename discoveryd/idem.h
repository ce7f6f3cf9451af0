/*
 * idem: the table of idempotency keys (Idempotency-Key, docs/api.md): for
 * each key a caller used on a write within the retention, the fingerprint
 * of its request and the answer it got, so that a retry gets the same
 * answer and makes no second change.
 *
 * The table knows keys, fingerprints and answers, not where they are kept:
 * the hub writes them into the journal (a key rides on its change's record,
 * its answer follows) and hands the records back on start-up. Entries are
 * kept oldest first; past max_keys the oldest goes, past the retention
 * every entry goes. One owner, no lock.
 */
#ifndef DISCOVERYD_IDEM_H
#define DISCOVERYD_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "htab.h"

#define IDEM_KEY_MAX 255 /* bytes in an Idempotency-Key */
#define IDEM_FP_LEN  32  /* SHA-256 */
/* A key as stored: the caller's identity, a newline, the key. */
#define IDEM_SCOPED_MAX (160 + 1 + IDEM_KEY_MAX)

struct idem_entry {
	char *key; /* scoped */
	unsigned char fp[IDEM_FP_LEN];
	int status;   /* 0: still in flight */
	char *body;   /* the answer; NULL: lost in a crash */
	uint64_t seq; /* its change's seq, 0 = none */
	bool applied; /* its change is in the journal */
	int64_t created_wall_ms;
	struct hnode node; /* in idem->tab, by key */
	struct idem_entry *older, *newer;
};

struct idem {
	struct htab tab;
	struct idem_entry *oldest, *newest;
	size_t count;
	size_t max_keys;
	int64_t retention_ms;
	uint64_t replays; /* answers given again */
	uint64_t evicted; /* dropped at max_keys, not by age */
};

int idem_init(struct idem *t, size_t max_keys, int64_t retention_ms);
void idem_release(struct idem *t);
/* New limits (a reload); entries past them go at once. */
void idem_configure(struct idem *t, size_t max_keys, int64_t retention_ms,
		    int64_t now_wall_ms);
/* Drop the entries older than the retention. */
void idem_expire(struct idem *t, int64_t now_wall_ms);

/* The live entry for key, or NULL. */
struct idem_entry *idem_find(struct idem *t, const char *key,
			     int64_t now_wall_ms);
/* A new entry (in flight), the oldest going if full; NULL: no memory. */
struct idem_entry *idem_add(struct idem *t, const char *key,
			    const unsigned char *fp, int64_t created_wall_ms);
void idem_remove(struct idem *t, struct idem_entry *e);
/* Give e its answer (body copied). 0, or -1 (no memory). */
int idem_answer(struct idem_entry *e, int status, const char *body);

/*
 * Journal records. idem_tag is what a change's record carries ("idem"):
 * key, fingerprint and the status a success answers (what a retry gets
 * when the daemon died before the answer was written). idem_record is
 * the whole entry ("t":"idem"): the answer after a change, and each entry
 * in a compacted journal.
 * idem_restore takes either back (an answer completes its tag).
 */
cJSON *idem_tag(const struct idem_entry *e, int status);
cJSON *idem_record(const struct idem_entry *e);
void idem_restore(struct idem *t, const cJSON *record, uint64_t seq,
		  int64_t now_wall_ms);

/* Fingerprint of method, target and body (SHA-256). */
void idem_fingerprint(const char *method, const char *target, const char *body,
		      size_t len, unsigned char *fp);
/* Is s a valid Idempotency-Key (1..255 visible ASCII)? */
bool idem_valid_key(const char *s);

#endif
