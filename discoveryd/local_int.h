/*
 * local_int: the single-node backend (store.h), shared by local.c (changes,
 * readiness, TTLs, restart grace, compaction) and local_idem.c
 * (Idempotency-Key). Everything here runs on the hub thread, on the hub's
 * registry and log; the log is the journal in state_dir.
 */
#ifndef DISCOVERYD_LOCAL_INT_H
#define DISCOVERYD_LOCAL_INT_H

#include "hub_int.h"
#include "idem.h"

struct local {
	struct store base;
	struct hub *hub;
	int64_t grace_ms; /* restart_grace */
	lws_sorted_usec_list_t ttl_sul;
	lws_sorted_usec_list_t grace_sul;
	bool retry;         /* an announcement failed (the journal refused it):
			       the tick tries again */
	int64_t compact_ms; /* when the compaction running began */
	int64_t compact_hub_us;  /* of it, what the hub thread spent */
	size_t compact_services; /* in its snapshot */
	int compact_keys;        /* idempotency keys in it */

	/* Idempotency keys (local_idem.c). */
	struct idem idem;
	struct idem_entry *idem_current; /* the write running now */
	cJSON *idem_tag;                 /* its key, for its journal record */
};

/* local_idem.c: around a write. begin: true when it answered (a replay,
 * 422); end: after the write answered. */
bool local_idem_begin(struct store *s, struct hub_req *req);
void local_idem_end(struct store *s, struct hub_req *req);
cJSON *local_idem_records(struct local *j); /* live keys, for compaction */
void local_idem_restore(struct local *j);   /* from the journal, at start */

#endif
