/*
 * local: the single-node backend (store.h). The state is the hub's
 * registry, made durable by the journal (evlog over journal.c): each change
 * is applied, appended as one record (fdatasync'd) and only then delivered
 * (fanout.c). A change the journal refuses is undone before its answer
 * (503): nothing is half-applied. Its calls run on the hub thread, one at a
 * time.
 *
 * It also decides readiness: a service's derived readiness is computed here
 * from its instances on this node, announced when it moves, held by restart
 * grace after a restart, and declarations run out with their TTL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "local_int.h"
#include "log.h"

static struct local *local_of(struct store *s)
{
	return (struct local *)s;
}

/* ---- the journal -------------------------------------------------------- */

/* The durable state of every service, for a compaction snapshot. */
static void compact(struct local *j)
{
	struct hub *h = j->hub;
	struct registry *r = &h->registry;
	struct evlog_service *state = calloc(r->n ? r->n : 1, sizeof(*state));
	int64_t t0 = clock_mono_us();
	int64_t now = clock_mono_ms(), wall = clock_wall_ms();
	cJSON *keys = local_idem_records(j);
	size_t n = 0;

	if (!state || !keys) {
		free(state);
		cJSON_Delete(keys);
		return;
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct service *s = r->services[i];

		if (!s->declared && !s->ready)
			continue;
		snprintf(state[n].name, sizeof(state[n].name), "%s", s->name);
		state[n].declared = s->declared;
		state[n].expires_wall_ms =
			s->declared && s->expires_ms ?
				wall + (s->expires_ms - now) :
				0;
		state[n].ready = s->ready;
		n++;
	}
	j->compact_ms = now;
	j->compact_services = n;
	j->compact_keys = cJSON_GetArraySize(keys);
	if (evlog_compact(&h->log, state, n, keys) != 0)
		log_warn("compaction failed", "errno=%d", errno);
	j->compact_hub_us = clock_mono_us() - t0;
	cJSON_Delete(keys);
	free(state);
}

/* A compaction running in the background: switch to its file once it is
 * written (publish and the tick look). */
static void compact_poll(struct local *j)
{
	struct hub *h = j->hub;
	int64_t t0 = clock_mono_us();
	int rc = evlog_compact_poll(&h->log);

	if (rc < 0)
		log_warn("compaction failed", "errno=%d", errno);
	else if (rc > 0)
		log_info("compacted",
			 "events=%zu services=%zu keys=%d records=%zu ms=%lld "
			 "start_us=%lld switch_us=%lld",
			 h->log.count, j->compact_services, j->compact_keys,
			 h->log.journal.records,
			 (long long)(clock_mono_ms() - j->compact_ms),
			 (long long)j->compact_hub_us,
			 (long long)(clock_mono_us() - t0));
}

/*
 * Make a change durable, then deliver it: the one way an event reaches
 * agents here. ev may be NULL (a declaration alone). Returns 0, or -1 when
 * the journal refused it (nothing recorded, nothing delivered; ev
 * untouched).
 */
static int publish(struct local *j, struct event *ev,
		   const struct evlog_decl *decl, size_t *delivered)
{
	struct hub *h = j->hub;

	if (evlog_append(&h->log, ev, decl) != 0) {
		log_error("journal append failed", "errno=%d kind=%s", errno,
			  ev ? event_kind_name(ev->kind) : "declaration");
		return -1;
	}
	if (h->log.journal.rw)
		compact_poll(j);
	else if (evlog_wants_compaction(&h->log))
		compact(j);
	*delivered = ev ? hub_deliver(h, ev) : 0;
	return 0;
}

/*
 * Record decl (may be NULL) and, if s's readiness is no longer what agents
 * were last told, a readiness event with it, in one durable record; then
 * fan the event out. Returns 0 (done), -1 when the journal refused it: then
 * nothing changed and the caller undoes the cause.
 */
static int announce(struct local *j, struct service *s,
		    const struct evlog_decl *decl, uint64_t *seq,
		    size_t *delivered)
{
	bool ready;
	struct event *ev = NULL;
	cJSON *header, *value;
	size_t n = 0;

	/* Instances back and ready: restart grace has done its job. */
	if (s->grace && s->ready_instances >= s->min_ready) {
		s->grace = false;
		log_info("restart grace done", "service=%s reason=instances",
			 s->name);
	}
	ready = service_computed_ready(s);
	if (ready == s->ready && !decl)
		return 0;
	if (ready != s->ready) {
		header = cJSON_CreateObject();
		value = cJSON_CreateObject();
		cJSON_AddBoolToObject(header, "Ready", ready);
		cJSON_AddStringToObject(value, "service", s->name);
		cJSON_AddBoolToObject(value, "ready", ready);
		ev = event_new(EVENT_READINESS, SCOPE_DEPENDENTS, "DataSend",
			       header, value);
		if (!ev)
			return -1;
		snprintf(ev->service, sizeof(ev->service), "%s", s->name);
	}
	if (publish(j, ev, decl, &n) != 0) {
		event_unref(ev);
		return -1;
	}
	if (!ev)
		return 0;
	s->ready = ready;
	log_info("readiness", "service=%s ready=%s seq=%llu delivered=%zu",
		 s->name, ready ? "true" : "false", (unsigned long long)ev->seq,
		 n);
	if (seq)
		*seq = ev->seq;
	if (delivered)
		*delivered = n;
	event_unref(ev);
	return 0;
}

/* ---- TTLs and restart grace --------------------------------------------- */

static void schedule_ttl(struct local *j);

static void on_ttl(lws_sorted_usec_list_t *sul)
{
	struct local *j = lws_container_of(sul, struct local, ttl_sul);

	if (registry_expire(&j->hub->registry, clock_mono_ms()))
		hub_announce_all(j->hub);
	schedule_ttl(j);
}

static void schedule_ttl(struct local *j)
{
	struct hub *h = j->hub;
	int64_t next = registry_next_expiry(&h->registry);
	int64_t now = clock_mono_ms();

	if (!next) {
		lws_sul_cancel(&j->ttl_sul);
		return;
	}
	lws_sul_schedule(h->ctx, 0, &j->ttl_sul, on_ttl,
			 (next > now ? next - now : 0) * LWS_US_PER_MS);
}

/* Restart grace is over: restored readiness gives way to the instances. */
static void on_grace(lws_sorted_usec_list_t *sul)
{
	struct local *j = lws_container_of(sul, struct local, grace_sul);
	struct registry *r = &j->hub->registry;
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		if (r->services[i]->grace) {
			r->services[i]->grace = false;
			n++;
		}
	log_info("restart grace over", "services=%zu", n);
	hub_announce_all(j->hub);
}

/*
 * Take the state the journal kept: declarations (a TTL that ran out while
 * the daemon was down is dropped) and the last announced readiness. A
 * service restored ready without a declaration is held ready by restart
 * grace until its instances are back or the grace ends, so a restart never
 * makes a gate lock up while its dependencies are in fact fine.
 */
static size_t restore(struct local *j)
{
	struct hub *h = j->hub;
	int64_t now = clock_mono_ms(), wall = clock_wall_ms();
	size_t held = 0;

	for (size_t i = 0; i < h->log.n_restored; i++) {
		const struct evlog_service *r = &h->log.restored[i];
		struct service *s = registry_get(&h->registry, r->name);

		if (!s)
			break;
		s->ready = r->ready;
		if (r->declared &&
		    (!r->expires_wall_ms || r->expires_wall_ms > wall)) {
			s->declared = r->declared;
			s->expires_ms =
				r->expires_wall_ms ?
					now + (r->expires_wall_ms - wall) :
					0;
		}
		if (!s->declared && s->ready && j->grace_ms > 0) {
			s->grace = true;
			held++;
		}
	}
	free(h->log.restored);
	h->log.restored = NULL;
	h->log.n_restored = 0;
	return held;
}

/* ---- the calls ---------------------------------------------------------- */

static void add_service(cJSON *o, const char *name, uint64_t seq,
			size_t delivered)
{
	if (seq)
		hub_json_seq(o, seq);
	if (name) {
		cJSON_AddStringToObject(o, "service", name);
		cJSON_AddBoolToObject(o, "ready", true);
	}
	cJSON_AddNumberToObject(o, "delivered", (double)delivered);
}

static struct evlog_decl decl_of(const struct service *s, int64_t ttl_ms)
{
	struct evlog_decl d = { .service = s->name, .declared = s->declared };

	if (s->declared && ttl_ms)
		d.expires_wall_ms = clock_wall_ms() + ttl_ms;
	return d;
}

static void call_declare(struct store *st, struct hub_req *req)
{
	struct local *j = local_of(st);
	struct hub *h = j->hub;
	struct service *s;
	enum declaration old_decl;
	int64_t old_expires;
	struct evlog_decl decl;
	uint64_t seq = 0;
	size_t delivered = 0;
	cJSON *o;

	s = req->decl == DECL_NONE ? registry_find(&h->registry, req->service) :
				     registry_get(&h->registry, req->service);
	if (!s) {
		if (req->decl == DECL_NONE)
			hub_answer_error(req, 404, "not_found",
					 "no such service");
		else
			hub_answer_error(req, 503, "full",
					 "the service table is full");
		return;
	}
	old_decl = s->declared;
	old_expires = s->expires_ms;
	s->declared = req->decl;
	s->expires_ms =
		req->decl && req->ttl_ms ? clock_mono_ms() + req->ttl_ms : 0;
	decl = decl_of(s, req->ttl_ms);
	if (announce(j, s, &decl, &seq, &delivered) != 0) {
		s->declared = old_decl;
		s->expires_ms = old_expires;
		registry_release_service(&h->registry, s);
		hub_answer_error(req, 503, "unavailable",
				 "the change could not be made durable");
		return;
	}
	schedule_ttl(j);
	hub_sse_change(h, s->name);
	log_info("declared", "service=%s declaration=%s ttl_ms=%lld", s->name,
		 req->decl ? declaration_name(req->decl) : "none",
		 (long long)req->ttl_ms);
	o = hub_service_json(h, s);
	add_service(o, NULL, seq, delivered);
	registry_release_service(&h->registry, s);
	hub_answer(req, 200, o);
}

/* Make ev (and decl) durable, fan it out; on failure answer 503. */
static int publish_event(struct local *j, struct hub_req *req, struct event *ev,
			 const struct evlog_decl *decl, size_t *delivered)
{
	if (!ev || publish(j, ev, decl, delivered) != 0) {
		event_unref(ev);
		hub_answer_error(req, 503, "unavailable",
				 "the event could not be made durable");
		return -1;
	}
	log_info("event", "kind=%s seq=%llu delivered=%zu",
		 event_kind_name(ev->kind), (unsigned long long)ev->seq,
		 *delivered);
	return 0;
}

/* CacheReady's event: to every agent, with the header the original sends. */
static struct event *cacheready_event(void)
{
	cJSON *header = cJSON_CreateObject(), *value = cJSON_CreateObject();
	struct event *ev;

	cJSON_AddNumberToObject(header, "CacheReady", 1);
	cJSON_AddStringToObject(value, "service", "cache");
	cJSON_AddBoolToObject(value, "ready", true);
	ev = event_new(EVENT_READINESS, SCOPE_ALL, "DataSend", header, value);
	if (ev)
		snprintf(ev->service, sizeof(ev->service), "cache");
	return ev;
}

/*
 * NetCoreStack's CacheReady: declare `cache` ready and tell every agent,
 * whether or not its readiness changed (the original broadcasts each call).
 * The declaration and the event are one record.
 */
static void call_cacheready(struct store *st, struct hub_req *req)
{
	struct local *j = local_of(st);
	struct hub *h = j->hub;
	struct service *s = registry_get(&h->registry, "cache");
	enum declaration old_decl;
	int64_t old_expires;
	struct evlog_decl decl;
	struct event *ev;
	cJSON *o;
	size_t delivered;

	if (!s) {
		hub_answer_error(req, 503, "full", "the service table is full");
		return;
	}
	old_decl = s->declared;
	old_expires = s->expires_ms;
	s->declared = DECL_READY;
	s->expires_ms = 0;
	decl = decl_of(s, 0);
	ev = cacheready_event();
	if (publish_event(j, req, ev, &decl, &delivered) != 0) {
		s->declared = old_decl;
		s->expires_ms = old_expires;
		registry_release_service(&h->registry, s);
		return;
	}
	s->ready = true;
	s->grace = false;
	schedule_ttl(j);
	o = cJSON_CreateObject();
	add_service(o, "cache", ev->seq, delivered);
	event_unref(ev);
	hub_answer(req, 200, o);
}

static void call_send(struct store *st, struct hub_req *req)
{
	struct local *j = local_of(st);
	struct event *ev = hub_request_event(req);
	size_t delivered;
	cJSON *o;

	if (publish_event(j, req, ev, NULL, &delivered) != 0)
		return;
	o = cJSON_CreateObject();
	add_service(o, NULL, ev->seq, delivered);
	event_unref(ev);
	hub_answer(req, 202, o);
}

/* ---- the hub's questions ------------------------------------------------ */

static void local_announce(struct store *st, struct service *s)
{
	struct local *j = local_of(st);

	if (announce(j, s, NULL, NULL, NULL) != 0)
		j->retry = true;
}

static void local_instance(struct store *st, struct link *l,
			   enum store_instance what)
{
	if (what == INSTANCE_CHANGED || what == INSTANCE_GONE)
		local_announce(st, l->svc);
}

/* The journal refused an announcement (disk full?): try again, so a
 * readiness change is never left unsaid once the disk is back. */
static void local_tick(struct store *st, int64_t now_ms)
{
	struct local *j = local_of(st);

	(void)now_ms;
	if (j->hub->log.journal.rw)
		compact_poll(j);
	if (j->retry && !j->hub->stopping) {
		j->retry = false;
		hub_announce_all(j->hub);
	}
}

static void local_reload(struct store *st, const struct dconf *conf)
{
	struct local *j = local_of(st);

	j->grace_ms = conf->restart_grace_ms;
	idem_configure(&j->idem, (size_t)conf->idem_max_keys,
		       conf->idem_retention_ms, clock_wall_ms());
}

static void local_info(struct store *st, cJSON *o)
{
	(void)st;
	cJSON_AddNullToObject(o, "cluster");
}

static void local_metrics(struct store *st, struct metrics_text *t)
{
	const struct idem *idem = &local_of(st)->idem;

	hub_metrics_idempotency(t, idem->replays, idem->count, idem->evicted);
	metrics_family(t, "discovery_cluster_enabled", "gauge",
		       "1 when nodes share state over Redis (cluster mode).");
	metrics_sample(t, "discovery_cluster_enabled", NULL, 0);
}

static void local_free(struct store *st)
{
	struct local *j = local_of(st);

	/* Its timers went with the hub's lws context (freed before it, or
	 * never armed): nothing to cancel, and no hub to touch. */
	idem_release(&j->idem);
	cJSON_Delete(j->idem_tag);
	free(j);
}

/* The changes; every read, and a drain, are the hub's own. */
static store_fn *const local_calls[HUB_OPS] = {
	[HUB_DECLARE] = call_declare,
	[HUB_CACHEREADY] = call_cacheready,
	[HUB_INVALIDATE] = call_send,
	[HUB_BROADCAST] = call_send,
};

static const struct store_ops local_ops = {
	.name = "journal",
	.on_hub_thread = true,
	.call = local_calls,
	.begin = local_idem_begin,
	.end = local_idem_end,
	.announce = local_announce,
	.instance = local_instance,
	.tick = local_tick,
	.reload = local_reload,
	.info = local_info,
	.metrics = local_metrics,
	.free = local_free,
};

/*
 * Open the journal in state_dir and replay it into the hub's registry,
 * before the hub thread starts.
 */
struct store *local_new(const struct dconf *conf, struct hub *h, char *err,
			size_t errlen)
{
	struct local *j = calloc(1, sizeof(*j));
	struct evlog_recovery rec;
	size_t held;

	if (!j || idem_init(&j->idem, (size_t)conf->idem_max_keys,
			    conf->idem_retention_ms) != 0) {
		free(j);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	j->base.ops = &local_ops;
	j->base.hub = j->hub = h;
	j->grace_ms = conf->restart_grace_ms;
	if (evlog_open(&h->log, (size_t)conf->history, conf->state_dir, &rec,
		       err, errlen) != 0) {
		local_free(&j->base);
		return NULL;
	}
	held = restore(j);
	local_idem_restore(j);
	log_info("journal",
		 "state_dir=%s records=%zu events=%zu epoch=%s seq=%llu "
		 "new_epoch=%s torn_tail=%s dropped_bytes=%zu grace_held=%zu",
		 conf->state_dir, rec.records, rec.events, h->log.epoch,
		 (unsigned long long)h->log.seq, rec.new_epoch ? rec.why : "no",
		 rec.torn ? "dropped" : "no", rec.dropped_bytes, held);
	if (rec.new_epoch && rec.records)
		log_warn("journal damaged",
			 "note=\"history lost: a new epoch, "
			 "agents resume with recovered:false\"");
	/* The hub thread has not started: its timers can be set from here. */
	schedule_ttl(j);
	if (held)
		lws_sul_schedule(h->ctx, 0, &j->grace_sul, on_grace,
				 j->grace_ms * LWS_US_PER_MS);
	return &j->base;
}
