/*
 * hub_req: the HTTP API's requests, run on the hub thread (hub.h). Each one
 * reads or changes the registry, appends at most one event to the log, fans
 * it out, and writes its answer as JSON. A change whose event the log refuses
 * is undone before the answer (503): nothing is half-applied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "hub_int.h"
#include "log.h"

void hub_answer(struct hub_req *req, int status, cJSON *body)
{
	req->status = status;
	req->body = body ? cJSON_PrintUnformatted(body) : NULL;
	cJSON_Delete(body);
	if (!req->body) {
		req->status = 500;
		req->body = strdup("{\"error\":\"internal\",\"message\":\"out "
				   "of memory\"}");
	}
}

void hub_answer_error(struct hub_req *req, int status, const char *code,
		      const char *message)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "error", code);
	cJSON_AddStringToObject(o, "message", message);
	hub_answer(req, status, o);
}

static void add_time(cJSON *o, const char *key, int64_t wall)
{
	char buf[80];
	time_t t = (time_t)(wall / 1000);
	struct tm tm;

	if (!wall) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	gmtime_r(&t, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(wall % 1000));
	cJSON_AddStringToObject(o, key, buf);
}

cJSON *hub_service_json(const struct hub *h, const struct service *s)
{
	cJSON *o = cJSON_CreateObject();
	const char *decl = declaration_name(s->declared);

	(void)h;
	cJSON_AddStringToObject(o, "name", s->name);
	cJSON_AddBoolToObject(o, "ready", s->ready);
	if (decl)
		cJSON_AddStringToObject(o, "declared", decl);
	else
		cJSON_AddNullToObject(o, "declared");
	if (s->declared && s->expires_ms) {
		int64_t left = s->expires_ms - clock_mono_ms();

		cJSON_AddNumberToObject(o, "ttl_ms",
					(double)(left > 0 ? left : 0));
	} else {
		cJSON_AddNullToObject(o, "ttl_ms");
	}
	cJSON_AddNumberToObject(o, "min_ready", (double)s->min_ready);
	cJSON_AddNumberToObject(o, "instances", s->instances);
	cJSON_AddNumberToObject(o, "ready_instances", s->ready_instances);
	cJSON_AddNumberToObject(o, "dependents", s->dependents);
	cJSON_AddBoolToObject(o, "restart_grace", s->grace);
	return o;
}

static void add_seq(cJSON *o, uint64_t seq)
{
	char buf[24];

	/* Exact for every uint64: a raw number, not a double. */
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)seq);
	cJSON_AddRawToObject(o, "seq", buf);
}

static struct evlog_decl decl_of(const struct service *s, int64_t ttl_ms)
{
	struct evlog_decl d = { .service = s->name, .declared = s->declared };

	if (s->declared && ttl_ms)
		d.expires_wall_ms = clock_wall_ms() + ttl_ms;
	return d;
}

static void run_declare(struct hub *h, struct hub_req *req)
{
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
	if (hub_announce(h, s, &decl, &seq, &delivered) != 0) {
		s->declared = old_decl;
		s->expires_ms = old_expires;
		registry_release_service(&h->registry, s);
		hub_answer_error(req, 503, "unavailable",
				 "the change could not be made durable");
		return;
	}
	hub_schedule_ttl(h);
	hub_sse_change(h, s->name);
	log_info("declared", "service=%s declaration=%s ttl_ms=%lld", s->name,
		 req->decl ? declaration_name(req->decl) : "none",
		 (long long)req->ttl_ms);
	o = hub_service_json(h, s);
	if (seq)
		add_seq(o, seq);
	cJSON_AddNumberToObject(o, "delivered", (double)delivered);
	registry_release_service(&h->registry, s);
	hub_answer(req, 200, o);
}

/* Make ev (and decl) durable, fan it out; on failure answer 503. */
static int publish(struct hub *h, struct hub_req *req, struct event *ev,
		   const struct evlog_decl *decl, size_t *delivered)
{
	if (!ev || hub_publish(h, ev, decl, delivered) != 0) {
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

/*
 * NetCoreStack's CacheReady: declare `cache` ready and tell every agent,
 * whether or not its readiness changed (the original broadcasts each call).
 * The declaration and the event are one record.
 */
static void run_cacheready(struct hub *h, struct hub_req *req)
{
	struct service *s = registry_get(&h->registry, "cache");
	enum declaration old_decl;
	int64_t old_expires;
	struct evlog_decl decl;
	struct event *ev;
	cJSON *header, *value, *o;
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
	header = cJSON_CreateObject();
	cJSON_AddNumberToObject(header, "CacheReady", 1);
	value = cJSON_CreateObject();
	cJSON_AddStringToObject(value, "service", "cache");
	cJSON_AddBoolToObject(value, "ready", true);
	ev = event_new(EVENT_READINESS, SCOPE_ALL, "DataSend", header, value);
	if (ev)
		snprintf(ev->service, sizeof(ev->service), "cache");
	if (publish(h, req, ev, &decl, &delivered) != 0) {
		s->declared = old_decl;
		s->expires_ms = old_expires;
		registry_release_service(&h->registry, s);
		return;
	}
	s->ready = true;
	s->grace = false;
	hub_schedule_ttl(h);
	o = cJSON_CreateObject();
	add_seq(o, ev->seq);
	cJSON_AddStringToObject(o, "service", "cache");
	cJSON_AddBoolToObject(o, "ready", true);
	cJSON_AddNumberToObject(o, "delivered", (double)delivered);
	event_unref(ev);
	hub_answer(req, 200, o);
}

static void run_send(struct hub *h, struct hub_req *req, enum event_kind kind)
{
	enum event_scope scope = SCOPE_ALL;
	struct event *ev;
	size_t delivered;
	cJSON *o;

	if (req->instance[0])
		scope = SCOPE_INSTANCE;
	else if (req->service[0])
		scope = SCOPE_SERVICE;
	ev = event_new(kind, scope, req->command[0] ? req->command : "DataSend",
		       req->header, req->value);
	req->header = req->value = NULL;
	if (ev) {
		snprintf(ev->service, sizeof(ev->service), "%s", req->service);
		snprintf(ev->instance, sizeof(ev->instance), "%s",
			 req->instance);
	}
	if (publish(h, req, ev, NULL, &delivered) != 0)
		return;
	o = cJSON_CreateObject();
	add_seq(o, ev->seq);
	cJSON_AddNumberToObject(o, "delivered", (double)delivered);
	event_unref(ev);
	hub_answer(req, 202, o);
}

static void run_services(struct hub *h, struct hub_req *req)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(o, "services");

	for (size_t i = 0; i < h->registry.n; i++)
		cJSON_AddItemToArray(list,
				     hub_service_json(h,
						      h->registry.services[i]));
	hub_answer(req, 200, o);
}

static void run_service(struct hub *h, struct hub_req *req)
{
	struct service *s = registry_find(&h->registry, req->service);

	if (!s) {
		hub_answer_error(req, 404, "not_found", "no such service");
		return;
	}
	hub_answer(req, 200, hub_service_json(h, s));
}

cJSON *hub_agent_json(const struct hub *h, const struct link *l)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *deps;

	cJSON_AddStringToObject(o, "service", l->svc->name);
	cJSON_AddStringToObject(o, "instance", l->instance);
	cJSON_AddStringToObject(o, "address", link_address(l));
	cJSON_AddStringToObject(o, "peer", l->peer);
	cJSON_AddStringToObject(o, "node", h->node);
	add_time(o, "connected_at", l->connected_wall_ms);
	add_time(o, "last_pong", l->last_pong_wall_ms);
	cJSON_AddBoolToObject(o, "ready", l->ready);
	deps = cJSON_AddArrayToObject(o, "depends_on");
	for (size_t i = 0; i < l->n_deps; i++)
		cJSON_AddItemToArray(deps, cJSON_CreateString(l->dep_names[i]));
	if (l->meta)
		cJSON_AddItemToObject(o, "meta",
				      cJSON_Duplicate(l->meta, true));
	return o;
}

static void run_agents(struct hub *h, struct hub_req *req)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *list = cJSON_AddArrayToObject(o, "agents");

	for (size_t i = 0; i < h->n_links; i++)
		if (h->links[i]->state == LINK_ACTIVE)
			cJSON_AddItemToArray(list,
					     hub_agent_json(h, h->links[i]));
	hub_answer(req, 200, o);
}

/*
 * The retained events after `after`, oldest first, as the agents got them.
 * "complete" says whether every event after `after` is still retained (the
 * API's counterpart of recovered:true).
 */
static void run_events(struct hub *h, struct hub_req *req)
{
	const struct evlog *log = &h->log;
	size_t i = evlog_find_after(log, req->after), n = 0;
	const struct event *oldest = evlog_at(log, 0);
	cJSON *o = cJSON_CreateObject(), *list;

	cJSON_AddStringToObject(o, "epoch", log->epoch);
	add_seq(o, log->seq);
	cJSON_AddBoolToObject(o, "complete",
			      req->after >= log->seq ||
				      (oldest &&
				       oldest->seq <= req->after + 1));
	list = cJSON_AddArrayToObject(o, "events");
	for (; i < log->count && (!req->limit || n < req->limit); i++, n++) {
		const struct event *ev = evlog_at(log, i);

		cJSON_AddItemToArray(list,
				     cJSON_CreateRaw((const char *)ev->frame +
						     LWS_PRE));
	}
	cJSON_AddBoolToObject(o, "more", i < log->count);
	hub_answer(req, 200, o);
}

/* GET /api/discovery/info: who this daemon is, for dashboards and scripts. */
static void run_info(struct hub *h, struct hub_req *req)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "node", h->node);
	cJSON_AddStringToObject(o, "version", DISCOVERY_VERSION);
	cJSON_AddStringToObject(o, "epoch", h->log.epoch);
	add_seq(o, h->log.seq);
	cJSON_AddNumberToObject(o, "history", (double)h->log.count);
	cJSON_AddNumberToObject(o, "services", (double)h->registry.n);
	cJSON_AddNumberToObject(o, "agents", (double)h->n_instances);
	cJSON_AddBoolToObject(o, "auth", auth_enabled(h->auth));
	cJSON_AddStringToObject(o, "state",
				hub_drain_state(h) == HUB_SERVING ? "serving" :
				hub_drain_state(h) == HUB_DRAINING ?
								    "draining" :
								    "drained");
	if (h->cluster) {
		cJSON *c = cJSON_AddObjectToObject(o, "cluster");

		cJSON_AddBoolToObject(c, "redis", cluster_redis_up(h->cluster));
		cJSON_AddBoolToObject(c, "synced", h->cluster_synced);
	} else {
		cJSON_AddNullToObject(o, "cluster");
	}
	hub_answer(req, 200, o);
}

/* ---- SSE ---------------------------------------------------------------- */

#define SSE_KEEPALIVE_MS 15000

static void push_event(struct sse *s, const struct event *ev)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "id: %llu\nevent: event\ndata: ",
			 (unsigned long long)ev->seq);

	/* One frame is one line of JSON: data needs no splitting. */
	sse_push(s, head, (size_t)n);
	sse_push(s, (const char *)ev->frame + LWS_PRE, ev->len);
	sse_push(s, "\n\n", 2);
}

void hub_sse_event(struct hub *h, const struct event *ev)
{
	for (struct sse *s = h->streams; s; s = *sse_next(s))
		push_event(s, ev);
}

void hub_sse_change(struct hub *h, const char *service)
{
	char text[128];
	int n;

	if (!h->streams)
		return;
	n = snprintf(text, sizeof(text),
		     "event: change\ndata: {\"service\":\"%s\"}\n\n", service);
	for (struct sse *s = h->streams; s; s = *sse_next(s))
		sse_push(s, text, (size_t)n);
}

void hub_sse_keepalive(struct hub *h, int64_t now_ms)
{
	for (struct sse *s = h->streams; s; s = *sse_next(s))
		if (now_ms - sse_last_push_ms(s) >= SSE_KEEPALIVE_MS)
			sse_push(s, ": keep-alive\n\n", 14);
}

/* Backlog first (Last-Event-ID), then live: both from this thread, so
 * nothing can fall between them. */
static void run_sse_open(struct hub *h, struct hub_req *req)
{
	const struct evlog *log = &h->log;

	sse_push(req->stream, "retry: 1000\n\n", 13);
	if (req->has_after)
		for (size_t i = evlog_find_after(log, req->after);
		     i < log->count; i++)
			push_event(req->stream, evlog_at(log, i));
	*sse_next(req->stream) = h->streams;
	h->streams = req->stream;
	req->status = 200;
}

static void run_sse_close(struct hub *h, struct hub_req *req)
{
	for (struct sse **p = &h->streams; *p; p = sse_next(*p))
		if (*p == req->stream) {
			*p = *sse_next(req->stream);
			break;
		}
	req->status = 200;
}

/* services: in the config set min_ready; a reload re-applies it. */
void hub_apply_services_conf(struct hub *h, const struct dconf *conf)
{
	const struct dconf_service *items = conf->services.items;
	struct registry *r = &h->registry;

	for (size_t i = 0; i < r->n; i++) {
		r->services[i]->configured = false;
		r->services[i]->min_ready = 1;
	}
	for (size_t i = 0; i < conf->services.n; i++) {
		struct service *s = registry_get(r, conf->services.names[i]);

		if (s) {
			s->configured = true;
			s->min_ready = items[i].min_ready;
		}
	}
}

static void run_reload(struct hub *h, struct hub_req *req)
{
	const struct dconf *conf = req->conf;

	hub_apply_settings(h, conf);
	hub_apply_services_conf(h, conf);
	if (h->cluster)
		cluster_apply_conf(h->cluster, conf);
	hub_announce_all(h); /* min_ready may have moved */
	/* New links get the certificate as the files hold it now. */
	if (conf->tls_present &&
	    lws_tls_cert_updated(h->ctx, conf->tls_cert, conf->tls_key,
				 conf->tls_cert_pem, conf->tls_cert_len,
				 conf->tls_key_pem, conf->tls_key_len) != 0)
		log_warn("reload",
			 "note=\"agent listener kept its old certificate\"");
	hub_answer(req, 200, cJSON_CreateObject());
}

void hub_req_run(struct hub *h, struct hub_req *req)
{
	if (req->op == HUB_SSE_CLOSE) { /* even while stopping */
		run_sse_close(h, req);
		return;
	}
	if (req->op == HUB_SSE_END_ALL) {
		for (struct sse *s = h->streams; s; s = *sse_next(s))
			sse_end(s);
		req->status = 200;
		return;
	}
	if (h->stopping) {
		cJSON_Delete(req->header);
		cJSON_Delete(req->value);
		req->header = req->value = NULL;
		hub_answer_error(req, 503, "stopping",
				 "the daemon is stopping");
		return;
	}
	if (hub_idem_begin(h, req))
		return;
	switch (req->op) {
	case HUB_DECLARE: run_declare(h, req); break;
	case HUB_CACHEREADY: run_cacheready(h, req); break;
	case HUB_INVALIDATE: run_send(h, req, EVENT_INVALIDATE); break;
	case HUB_BROADCAST: run_send(h, req, EVENT_COMMAND); break;
	case HUB_SERVICES: run_services(h, req); break;
	case HUB_SERVICE: run_service(h, req); break;
	case HUB_AGENTS: run_agents(h, req); break;
	case HUB_RELOAD: run_reload(h, req); break;
	case HUB_EVENTS: run_events(h, req); break;
	case HUB_INFO: run_info(h, req); break;
	case HUB_SSE_OPEN: run_sse_open(h, req); break;
	case HUB_SSE_CLOSE:          /* both answered above, before */
	case HUB_SSE_END_ALL: break; /* the stopping check */
	case HUB_AWAIT: hub_cluster_await(h, req); break;
	case HUB_CLUSTER_APPLY: hub_cluster_apply(h, req); break;
	case HUB_CLUSTER_SNAPSHOT: hub_cluster_snapshot(h, req); break;
	case HUB_DRAIN: hub_drain_run(h, req); break;
	case HUB_METRICS:
		req->body = hub_metrics_text(h);
		req->status = req->body ? 200 : 500;
		break;
	}
	hub_idem_end(h, req);
}
