/*
 * hub_idem: idempotency keys on a single node (docs/api.md,
 * "Idempotency-Key"), run on the hub thread around each write.
 *
 * Before a write runs, its key is looked up: a retry with the same
 * fingerprint gets the first answer again and runs nothing, another body
 * gets 422. A new key goes into the table and onto the write's journal
 * record (evlog's tag), so the change and its key are durable together;
 * after a 2xx the answer is written as a record of its own before the
 * reply leaves. A daemon killed between the two never answered: its retry
 * finds the key and gets the status with a body rebuilt from the seq
 * (docs/durability.md). A write that failed keeps no key, so its retry
 * runs again.
 *
 * Writes run one at a time on this thread, so a key is never in flight
 * twice here; cluster mode decides keys in Redis instead (cluster.lua).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "hub_int.h"
#include "log.h"

static bool is_write(enum hub_op op)
{
	return op == HUB_DECLARE || op == HUB_CACHEREADY ||
	       op == HUB_INVALIDATE || op == HUB_BROADCAST || op == HUB_DRAIN;
}

/* What the write answers when it succeeds. */
static int success_status(enum hub_op op)
{
	return op == HUB_INVALIDATE || op == HUB_BROADCAST || op == HUB_DRAIN ?
		       202 :
		       200;
}

static void drop_input(struct hub_req *req)
{
	cJSON_Delete(req->header);
	cJSON_Delete(req->value);
	req->header = req->value = NULL;
}

/* The first answer again; its body rebuilt when a crash took it. */
static void replay(struct hub *h, struct hub_req *req,
		   const struct idem_entry *e)
{
	char buf[64];

	if (e->body) {
		req->body = strdup(e->body);
	} else {
		if (e->seq)
			snprintf(buf, sizeof(buf), "{\"seq\":%llu}",
				 (unsigned long long)e->seq);
		else
			snprintf(buf, sizeof(buf), "{}");
		req->body = strdup(buf);
	}
	req->status = e->status;
	req->replayed = true;
	h->idem.replays++;
}

bool hub_idem_begin(struct hub *h, struct hub_req *req)
{
	struct idem_entry *e;

	if (!req->idem_key[0] || !is_write(req->op))
		return false;
	e = idem_find(&h->idem, req->idem_key, clock_wall_ms());
	if (e && memcmp(e->fp, req->idem_fp, IDEM_FP_LEN) != 0) {
		drop_input(req);
		hub_answer_error(req, 422, "key_reused",
				 "this Idempotency-Key "
				 "was used with another request");
		return true;
	}
	if (e && !e->status) { /* cannot happen: see above */
		drop_input(req);
		hub_answer_error(req, 409, "in_flight",
				 "a request with this "
				 "Idempotency-Key is still being processed");
		return true;
	}
	if (e) {
		drop_input(req);
		replay(h, req, e);
		return true;
	}
	if (!(e = idem_add(&h->idem, req->idem_key, req->idem_fp,
			   clock_wall_ms())) ||
	    !(h->idem_tag = idem_tag(e, success_status(req->op)))) {
		if (e)
			idem_remove(&h->idem, e);
		drop_input(req);
		hub_answer_error(req, 503, "unavailable", "out of memory");
		return true;
	}
	h->idem_current = e;
	h->log.tag = h->idem_tag;
	h->log.tag_written = false;
	return false;
}

/* The answer, durable before it leaves. */
static void record_answer(struct hub *h, struct idem_entry *e)
{
	cJSON *r = idem_record(e);

	if (!r || evlog_append_record(&h->log, r) != 0)
		log_warn("journal append failed",
			 "errno=%d "
			 "what=idempotency_answer note=\"a retry after a "
			 "restart gets a shorter body\"",
			 errno);
	cJSON_Delete(r);
}

void hub_idem_end(struct hub *h, struct hub_req *req)
{
	struct idem_entry *e = h->idem_current;
	const cJSON *seq;
	cJSON *body;

	if (!e)
		return;
	h->idem_current = NULL;
	h->log.tag = NULL;
	cJSON_Delete(h->idem_tag);
	h->idem_tag = NULL;
	/* A failure changed nothing (the hub undoes what it prepared
	 * before it answers one): its retry runs again. */
	if (req->status < 200 || req->status > 299) {
		idem_remove(&h->idem, e);
		return;
	}
	e->applied = h->log.tag_written;
	body = req->body ? cJSON_Parse(req->body) : NULL;
	seq = cJSON_GetObjectItemCaseSensitive(body, "seq");
	if (cJSON_IsNumber(seq))
		e->seq = (uint64_t)seq->valuedouble;
	cJSON_Delete(body);
	if (idem_answer(e, req->status, req->body) != 0)
		e->status = req->status;
	if (!h->log.mirror && h->log.journal.fd >= 0)
		record_answer(h, e);
}

cJSON *hub_idem_records(struct hub *h)
{
	cJSON *list = cJSON_CreateArray();

	if (!list)
		return NULL;
	idem_expire(&h->idem, clock_wall_ms());
	for (struct idem_entry *e = h->idem.oldest; e; e = e->newer) {
		cJSON *r;

		if (e->status) { /* answered: all of it */
			cJSON_AddItemToArray(list, idem_record(e));
			continue;
		}
		/* The write under way, whose tagged record was just written
		 * and is being compacted away: its tag goes on. */
		if (e != h->idem_current || !h->log.tag_written)
			continue;
		r = cJSON_Duplicate(h->idem_tag, true);
		if (r)
			cJSON_AddStringToObject(r, "t", "idem");
		cJSON_AddItemToArray(list, r);
	}
	return list;
}

void hub_idem_restore(struct hub *h)
{
	const cJSON *r;
	int64_t now = clock_wall_ms();

	cJSON_ArrayForEach (r, h->log.idem_records)
		idem_restore(&h->idem, r, 0, now);
	cJSON_Delete(h->log.idem_records);
	h->log.idem_records = NULL;
	if (h->idem.count)
		log_info("idempotency keys", "restored=%zu", h->idem.count);
}
