/*
 * local_idem: idempotency keys on a single node (docs/api.md,
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

#include "local_int.h"
#include "log.h"

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
static void replay(struct local *j, struct hub_req *req,
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
	j->idem.replays++;
}

bool local_idem_begin(struct store *s, struct hub_req *req)
{
	struct local *j = (struct local *)s;
	struct evlog *log = &j->hub->log;
	struct idem_entry *e;

	if (!req->idem_key[0])
		return false;
	e = idem_find(&j->idem, req->idem_key, clock_wall_ms());
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
		replay(j, req, e);
		return true;
	}
	if (!(e = idem_add(&j->idem, req->idem_key, req->idem_fp,
			   clock_wall_ms())) ||
	    !(j->idem_tag = idem_tag(e, success_status(req->op)))) {
		if (e)
			idem_remove(&j->idem, e);
		drop_input(req);
		hub_answer_error(req, 503, "unavailable", "out of memory");
		return true;
	}
	j->idem_current = e;
	log->tag = j->idem_tag;
	log->tag_written = false;
	return false;
}

/* The answer, durable before it leaves. */
static void record_answer(struct evlog *log, struct idem_entry *e)
{
	cJSON *r = idem_record(e);

	if (!r || evlog_append_record(log, r) != 0)
		log_warn("journal append failed",
			 "errno=%d "
			 "what=idempotency_answer note=\"a retry after a "
			 "restart gets a shorter body\"",
			 errno);
	cJSON_Delete(r);
}

void local_idem_end(struct store *s, struct hub_req *req)
{
	struct local *j = (struct local *)s;
	struct evlog *log = &j->hub->log;
	struct idem_entry *e = j->idem_current;
	const cJSON *seq;
	cJSON *body;

	if (!e)
		return;
	j->idem_current = NULL;
	log->tag = NULL;
	cJSON_Delete(j->idem_tag);
	j->idem_tag = NULL;
	/* A failure changed nothing (the hub undoes what it prepared
	 * before it answers one): its retry runs again. */
	if (req->status < 200 || req->status > 299) {
		idem_remove(&j->idem, e);
		return;
	}
	e->applied = log->tag_written;
	body = req->body ? cJSON_Parse(req->body) : NULL;
	seq = cJSON_GetObjectItemCaseSensitive(body, "seq");
	if (cJSON_IsNumber(seq))
		e->seq = (uint64_t)seq->valuedouble;
	cJSON_Delete(body);
	if (idem_answer(e, req->status, req->body) != 0)
		e->status = req->status;
	if (log->journal.fd >= 0)
		record_answer(log, e);
}

cJSON *local_idem_records(struct local *j)
{
	cJSON *list = cJSON_CreateArray();

	if (!list)
		return NULL;
	idem_expire(&j->idem, clock_wall_ms());
	for (struct idem_entry *e = j->idem.oldest; e; e = e->newer) {
		cJSON *r;

		if (e->status) { /* answered: all of it */
			cJSON_AddItemToArray(list, idem_record(e));
			continue;
		}
		/* The write under way, whose tagged record was just written
		 * and is being compacted away: its tag goes on. */
		if (e != j->idem_current || !j->hub->log.tag_written)
			continue;
		r = cJSON_Duplicate(j->idem_tag, true);
		if (r)
			cJSON_AddStringToObject(r, "t", "idem");
		cJSON_AddItemToArray(list, r);
	}
	return list;
}

void local_idem_restore(struct local *j)
{
	struct evlog *log = &j->hub->log;
	const cJSON *r;
	int64_t now = clock_wall_ms();

	cJSON_ArrayForEach (r, log->idem_records)
		idem_restore(&j->idem, r, 0, now);
	cJSON_Delete(log->idem_records);
	log->idem_records = NULL;
	if (j->idem.count)
		log_info("idempotency keys", "restored=%zu", j->idem.count);
}
