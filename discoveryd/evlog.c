/*
 * evlog: the log's meaning on top of the journal's bytes (see evlog.h).
 *
 * Records are JSON objects with a "t" field:
 *
 *   {"t":"epoch","epoch":"9f2c...","seq":57}      first record of a file
 *   {"t":"snap","services":[{"name":"cache","declared":"ready",
 *                            "expires":0,"ready":true}, ...]}
 *   {"t":"ev","seq":58,"kind":"readiness","scope":"dependents",
 *    "service":"cache","instance":"","command":"DataSend","header":{...},
 *    "value":{...},"ts":1763899200123,"decl":{...}}  "decl" optional
 *   {"t":"decl","service":"api","declared":"notready","expires":0}
 *
 * Declarations keep their TTL as a wall-clock deadline ("expires", ms since
 * the epoch), since monotonic time does not survive a restart.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "evlog.h"

/* Compact once the journal holds this many records per retained event. */
#define COMPACT_FACTOR 2
#define COMPACT_SLACK  1024

static void new_epoch(char *out, size_t size)
{
	unsigned char raw[16];
	size_t off = 0;

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		/* The kernel always has 16 bytes for us after boot; fall back
		 * to the clock and pid rather than failing start-up. */
		unsigned long long t = (unsigned long long)time(NULL);

		memcpy(raw, &t, sizeof(t));
		t ^= (unsigned long long)getpid() << 32;
		memcpy(raw + 8, &t, sizeof(t));
	}
	for (size_t i = 0; i < sizeof(raw) && off + 2 < size; i++)
		off += (size_t)snprintf(out + off, size - off, "%02x", raw[i]);
}

/* ---- the ring ------------------------------------------------------------ */

static void ring_push(struct evlog *log, struct event *ev)
{
	if (log->count == log->cap) {
		event_unref(log->ring[log->head]);
		log->ring[log->head] = event_ref(ev);
		log->head = (log->head + 1) % log->cap;
	} else {
		log->ring[(log->head + log->count) % log->cap] = event_ref(ev);
		log->count++;
	}
}

static void ring_clear(struct evlog *log)
{
	for (size_t i = 0; i < log->count; i++)
		event_unref(evlog_at(log, i));
	log->count = log->head = 0;
}

struct event *evlog_at(const struct evlog *log, size_t i)
{
	if (i >= log->count)
		return NULL;
	return log->ring[(log->head + i) % log->cap];
}

bool evlog_covers(const struct evlog *log, const char *epoch, uint64_t seq)
{
	struct event *oldest;

	if (strcmp(epoch, log->epoch) != 0 || seq > log->seq)
		return false;
	if (seq == log->seq)
		return true;
	oldest = evlog_at(log, 0);
	return oldest && oldest->seq <= seq + 1;
}

size_t evlog_find_after(const struct evlog *log, uint64_t after)
{
	size_t lo = 0, hi = log->count;

	/* Seqs in the ring increase: binary search. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (evlog_at(log, mid)->seq <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---- records ------------------------------------------------------------- */

static void add_u64(cJSON *o, const char *key, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	cJSON_AddRawToObject(o, key, buf);
}

static uint64_t get_u64(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	/* Seqs stay below 2^53 in any real journal; cJSON holds doubles. */
	return cJSON_IsNumber(v) && v->valuedouble >= 0 ?
		       (uint64_t)v->valuedouble :
		       0;
}

static const char *get_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : "";
}

/* "declared" and "expires"; the caller names the service. */
static void add_decl(cJSON *o, enum declaration d, int64_t expires)
{
	const char *name = declaration_name(d);

	if (name)
		cJSON_AddStringToObject(o, "declared", name);
	else
		cJSON_AddNullToObject(o, "declared");
	cJSON_AddNumberToObject(o, "expires", (double)expires);
}

static enum declaration parse_decl(const cJSON *o)
{
	const char *d = get_str(o, "declared");

	return strcmp(d, "ready") == 0    ? DECL_READY :
	       strcmp(d, "notready") == 0 ? DECL_NOTREADY :
					    DECL_NONE;
}

static cJSON *event_record(const struct event *ev)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "t", "ev");
	add_u64(o, "seq", ev->seq);
	cJSON_AddStringToObject(o, "kind", event_kind_name(ev->kind));
	cJSON_AddStringToObject(o, "scope", event_scope_name(ev->scope));
	cJSON_AddStringToObject(o, "service", ev->service);
	cJSON_AddStringToObject(o, "instance", ev->instance);
	cJSON_AddStringToObject(o, "command", ev->command);
	if (ev->header)
		cJSON_AddItemToObject(o, "header",
				      cJSON_Duplicate(ev->header, true));
	if (ev->value)
		cJSON_AddItemToObject(o, "value",
				      cJSON_Duplicate(ev->value, true));
	cJSON_AddNumberToObject(o, "ts", (double)ev->created_wall_ms);
	return o;
}

/* Rebuild a retained event from its record (frame included). */
static struct event *event_from_record(const cJSON *r, const char *epoch)
{
	enum event_kind kind = event_kind_parse(get_str(r, "kind"));
	enum event_scope scope = event_scope_parse(get_str(r, "scope"));
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "header");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "value");
	struct event *ev;

	if (!kind || !scope)
		return NULL;
	ev = event_new(kind, scope, get_str(r, "command"),
		       h ? cJSON_Duplicate(h, true) : NULL,
		       v ? cJSON_Duplicate(v, true) : NULL);
	if (!ev)
		return NULL;
	snprintf(ev->service, sizeof(ev->service), "%s", get_str(r, "service"));
	snprintf(ev->instance, sizeof(ev->instance), "%s",
		 get_str(r, "instance"));
	ev->created_wall_ms = (int64_t)cJSON_GetNumberValue(
		cJSON_GetObjectItemCaseSensitive(r, "ts"));
	if (event_seal(ev, epoch, get_u64(r, "seq")) != 0) {
		event_unref(ev);
		return NULL;
	}
	return ev;
}

/* ---- restored state ------------------------------------------------------ */

static struct evlog_service *restored(struct evlog *log, const char *name)
{
	struct evlog_service *v;

	for (size_t i = 0; i < log->n_restored; i++)
		if (strcmp(log->restored[i].name, name) == 0)
			return &log->restored[i];
	if (!proto_valid_name(name))
		return NULL;
	v = realloc(log->restored, (log->n_restored + 1) * sizeof(*v));
	if (!v)
		return NULL;
	log->restored = v;
	v = &log->restored[log->n_restored++];
	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", name);
	return v;
}

static void restore_decl(struct evlog *log, const cJSON *d)
{
	struct evlog_service *s = restored(log, get_str(d, "service"));

	if (s) {
		s->declared = parse_decl(d);
		s->expires_wall_ms = (int64_t)cJSON_GetNumberValue(
			cJSON_GetObjectItemCaseSensitive(d, "expires"));
	}
}

static void restore_event(struct evlog *log, const cJSON *r)
{
	struct event *ev = event_from_record(r, log->epoch);
	const cJSON *decl = cJSON_GetObjectItemCaseSensitive(r, "decl");

	if (!ev)
		return;
	log->seq = ev->seq;
	ring_push(log, ev);
	if (ev->kind == EVENT_READINESS && cJSON_IsObject(ev->value)) {
		struct evlog_service *s =
			restored(log, get_str(ev->value, "service"));
		const cJSON *ready =
			cJSON_GetObjectItemCaseSensitive(ev->value, "ready");

		if (s)
			s->ready = cJSON_IsTrue(ready);
	}
	event_unref(ev);
	if (cJSON_IsObject(decl))
		restore_decl(log, decl);
}

static void restore_snapshot(struct evlog *log, const cJSON *r)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(r, "services");
	const cJSON *item;

	log->n_restored = 0;
	cJSON_ArrayForEach (item, list) {
		struct evlog_service *s = restored(log, get_str(item, "name"));

		if (s) {
			s->declared = parse_decl(item);
			s->expires_wall_ms = (int64_t)cJSON_GetNumberValue(
				cJSON_GetObjectItemCaseSensitive(item,
								 "expires"));
			s->ready = cJSON_IsTrue(
				cJSON_GetObjectItemCaseSensitive(item,
								 "ready"));
		}
	}
}

/* A change's idempotency key, as an "idem" record of its own. */
static void keep_tag(struct evlog *log, const cJSON *r)
{
	const cJSON *tag = cJSON_GetObjectItemCaseSensitive(r, "idem");
	cJSON *rec;

	if (!cJSON_IsObject(tag) || !(rec = cJSON_Duplicate(tag, true)))
		return;
	cJSON_AddStringToObject(rec, "t", "idem");
	if (strcmp(get_str(r, "t"), "ev") == 0)
		add_u64(rec, "seq", get_u64(r, "seq"));
	cJSON_AddItemToArray(log->idem_records, rec);
}

/* Apply the records in order; returns how many events came back. */
static size_t replay(struct evlog *log, const cJSON *records)
{
	const cJSON *r;
	size_t events = 0;

	cJSON_ArrayForEach (r, records) {
		const char *t = get_str(r, "t");

		if (strcmp(t, "epoch") == 0) {
			snprintf(log->epoch, sizeof(log->epoch), "%s",
				 get_str(r, "epoch"));
			log->seq = get_u64(r, "seq");
			ring_clear(log);
		} else if (strcmp(t, "snap") == 0) {
			restore_snapshot(log, r);
		} else if (strcmp(t, "ev") == 0 && log->epoch[0]) {
			restore_event(log, r);
			events++;
		} else if (strcmp(t, "decl") == 0) {
			restore_decl(log, r);
		} else if (strcmp(t, "idem") == 0) {
			cJSON_AddItemToArray(log->idem_records,
					     cJSON_Duplicate(r, true));
		}
		if (strcmp(t, "ev") == 0 || strcmp(t, "decl") == 0)
			keep_tag(log, r);
	}
	return events;
}

/* ---- writing ------------------------------------------------------------- */

static char *print_free(cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);

	cJSON_Delete(o);
	return s;
}

static char *epoch_record(const struct evlog *log)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "t", "epoch");
	cJSON_AddStringToObject(o, "epoch", log->epoch);
	add_u64(o, "seq", log->seq);
	return print_free(o);
}

static char *snapshot_record(const struct evlog_service *state, size_t n)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *list;

	cJSON_AddStringToObject(o, "t", "snap");
	list = cJSON_AddArrayToObject(o, "services");
	for (size_t i = 0; i < n; i++) {
		cJSON *s = cJSON_CreateObject();

		cJSON_AddStringToObject(s, "name", state[i].name);
		add_decl(s, state[i].declared, state[i].expires_wall_ms);
		cJSON_AddBoolToObject(s, "ready", state[i].ready);
		cJSON_AddItemToArray(list, s);
	}
	return print_free(o);
}

/* A background rewrite's records, held until it is done: the strings
 * made for it, and the events whose own record text it reads. */
struct evlog_rw {
	char **records, **owned;
	size_t total;
	struct event **pinned;
	size_t n_pinned;
};

static void rw_release(struct evlog_rw *rw)
{
	if (!rw)
		return;
	for (size_t i = 0; i < rw->total; i++)
		free(rw->owned[i]);
	for (size_t i = 0; i < rw->n_pinned; i++)
		event_unref(rw->pinned[i]);
	free(rw->owned);
	free(rw->records);
	free(rw->pinned);
	free(rw);
}

/*
 * Write a fresh journal: epoch, state, retained events. Used for compaction
 * (in the background: evlog_compact_poll finishes it) and when a new epoch
 * starts.
 */
static int rewrite(struct evlog *log, const struct evlog_service *state,
		   size_t n, const cJSON *extra, bool background)
{
	size_t n_extra = (size_t)cJSON_GetArraySize(extra);
	size_t total = 2 + log->count + n_extra, i = 0;
	/* records[i] is owned[i], or an event's own record (borrowed; in
	 * the background the event is pinned until the rewrite is done). */
	struct evlog_rw *rw = calloc(1, sizeof(*rw));
	char **records = calloc(total, sizeof(*records));
	char **owned = calloc(total, sizeof(*owned));
	struct event **pinned =
		background ? calloc(log->count + 1, sizeof(*pinned)) : NULL;
	const cJSON *x;
	int rc = -1;

	if (!rw || !records || !owned || (background && !pinned)) {
		free(rw);
		free(records);
		free(owned);
		free(pinned);
		return -1;
	}
	*rw = (struct evlog_rw){ records, owned, total, pinned, 0 };
	records[i] = owned[i] = epoch_record(log);
	i++;
	records[i] = owned[i] = snapshot_record(state, n);
	i++;
	for (size_t k = 0; k < log->count; k++, i++) {
		struct event *ev = evlog_at(log, k);

		if (!(records[i] = ev->record))
			records[i] = owned[i] = print_free(event_record(ev));
		else if (background)
			pinned[rw->n_pinned++] = event_ref(ev);
	}
	cJSON_ArrayForEach (x, extra) {
		records[i] = owned[i] = cJSON_PrintUnformatted(x);
		i++;
	}
	for (i = 0; i < total && records[i]; i++)
		;
	if (i == total && background) {
		rc = journal_rewrite_start(&log->journal, records, total);
		if (rc == 0) { /* held until evlog_compact_poll */
			log->rw = rw;
			log->pending_extra = n_extra;
			return 0;
		}
	} else if (i == total) {
		rc = journal_rewrite(&log->journal, records, total);
		if (rc == 0)
			log->extra_records = n_extra;
	}
	rw_release(rw);
	return rc;
}

int evlog_open(struct evlog *log, size_t history, const char *state_dir,
	       struct evlog_recovery *rec, char *err, size_t errlen)
{
	struct journal_damage damage;
	cJSON *records = NULL;

	memset(log, 0, sizeof(*log));
	memset(rec, 0, sizeof(*rec));
	log->journal.fd = log->journal.dir_fd = -1;
	log->ring = calloc(history, sizeof(*log->ring));
	if (!log->ring) {
		snprintf(err, errlen, "out of memory for history");
		return -1;
	}
	log->cap = history;
	log->idem_records = cJSON_CreateArray();
	if (!log->idem_records) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (journal_open(&log->journal, state_dir, &records, &damage, err,
			 errlen) != 0) {
		cJSON_Delete(records);
		return -1;
	}
	rec->records = damage.valid_records;
	rec->torn = damage.torn;
	rec->dropped_bytes = damage.dropped_bytes;
	rec->events = replay(log, records);
	cJSON_Delete(records);

	if (!log->epoch[0] || damage.corrupt) {
		/* History is gone (or never was): a new epoch, so every agent
		 * resumes with recovered:false. The seq carries on. */
		rec->new_epoch = true;
		rec->why = log->epoch[0] ? "corrupt journal" : "new journal";
		new_epoch(log->epoch, sizeof(log->epoch));
		ring_clear(log);
		if (rewrite(log, log->restored, log->n_restored,
			    log->idem_records, false) != 0) {
			snprintf(err, errlen,
				 "cannot write the journal in %s: %s",
				 state_dir, strerror(errno));
			return -1;
		}
	}
	return 0;
}

void evlog_release(struct evlog *log)
{
	ring_clear(log);
	free(log->ring);
	free(log->restored);
	cJSON_Delete(log->idem_records);
	journal_close(&log->journal); /* joins a background rewrite */
	rw_release(log->rw);
	memset(log, 0, sizeof(*log));
	log->journal.fd = log->journal.dir_fd = -1;
}

int evlog_append(struct evlog *log, struct event *ev,
		 const struct evlog_decl *decl)
{
	cJSON *o, *d = NULL;
	char *text;
	int rc;

	if (ev && event_seal(ev, log->epoch, log->seq + 1) != 0)
		return -1;
	if (decl) {
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "service", decl->service);
		add_decl(d, decl->declared, decl->expires_wall_ms);
	}
	if (ev) {
		o = event_record(ev);
		if (d)
			cJSON_AddItemToObject(o, "decl", d);
	} else {
		o = d;
		cJSON_AddStringToObject(o, "t", "decl");
	}
	/* The key rides on its change: a crash keeps both or neither. */
	if (o && log->tag)
		cJSON_AddItemToObject(o, "idem",
				      cJSON_Duplicate(log->tag, true));
	text = o ? print_free(o) : NULL;
	rc = text ? journal_append(&log->journal, text, strlen(text)) : -1;
	log->failing = rc != 0;
	if (rc != 0) {
		free(text);
		return -1;
	}
	/* The event's record alone: kept for the next compaction, which
	 * would print the same text again (one with a declaration or a key
	 * is printed then, without them). */
	if (ev && !d && !log->tag && !ev->record)
		ev->record = text;
	else
		free(text);
	if (log->tag) {
		log->tag = NULL;
		log->tag_written = true;
	}
	if (ev) {
		log->seq++;
		ring_push(log, ev);
	}
	return 0;
}

/* ---- cluster mode: a mirror of the Redis stream -------------------------- */

int evlog_open_mirror(struct evlog *log, size_t history)
{
	memset(log, 0, sizeof(*log));
	log->journal.fd = log->journal.dir_fd = -1;
	log->ring = calloc(history, sizeof(*log->ring));
	if (!log->ring)
		return -1;
	log->cap = history;
	log->mirror = true;
	return 0;
}

void evlog_reset(struct evlog *log, const char *epoch, uint64_t seq)
{
	ring_clear(log);
	snprintf(log->epoch, sizeof(log->epoch), "%s", epoch);
	log->seq = seq;
}

void evlog_adopt(struct evlog *log, struct event *ev)
{
	log->seq = ev->seq;
	ring_push(log, ev);
}

char *evlog_event_text(const struct event *ev)
{
	cJSON *o = event_record(ev);

	cJSON_DeleteItemFromObjectCaseSensitive(o, "t");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "seq");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "ts");
	return print_free(o);
}

struct event *evlog_event_parse(const char *text, size_t len, const char *epoch,
				uint64_t seq, int64_t wall_ms)
{
	cJSON *r = cJSON_ParseWithLength(text, len);
	struct event *ev = NULL;

	if (cJSON_IsObject(r)) {
		/* header and value as the caller wrote them, numbers too. */
		proto_json_exact(r, text, len);
		cJSON_DeleteItemFromObjectCaseSensitive(r, "seq");
		cJSON_DeleteItemFromObjectCaseSensitive(r, "ts");
		cJSON_AddNumberToObject(r, "seq", (double)seq);
		cJSON_AddNumberToObject(r, "ts", (double)wall_ms);
		ev = event_from_record(r, epoch);
	}
	cJSON_Delete(r);
	return ev;
}

bool evlog_wants_compaction(const struct evlog *log)
{
	if (log->mirror || log->journal.rw)
		return false;
	return log->journal.records - log->extra_records >=
	       COMPACT_FACTOR * log->cap + COMPACT_SLACK;
}

int evlog_compact(struct evlog *log, const struct evlog_service *state,
		  size_t n, const cJSON *extra)
{
	return rewrite(log, state, n, extra, true);
}

int evlog_compact_poll(struct evlog *log)
{
	int rc = journal_rewrite_poll(&log->journal);

	if (rc > 0)
		log->extra_records = log->pending_extra;
	if (rc != 0) {
		rw_release(log->rw);
		log->rw = NULL;
	}
	return rc;
}

int evlog_append_record(struct evlog *log, const cJSON *record)
{
	char *text = cJSON_PrintUnformatted(record);
	int rc = text ? journal_append(&log->journal, text, strlen(text)) : -1;

	free(text);
	return rc;
}
