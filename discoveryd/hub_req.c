/*
 * hub_req: every call, once (hub_ops below), and the ones the hub answers
 * from this node's view, on the hub thread: its services and agents, the
 * retained events, info, metrics, SSE streams, reload and drain. Changes
 * are the store's (store.h, local.c or cluster_api.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "endpoints.h"
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

void hub_json_seq(cJSON *o, uint64_t seq)
{
	char buf[24];

	/* Exact for every uint64: a raw number, not a double. */
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)seq);
	cJSON_AddRawToObject(o, "seq", buf);
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
	cJSON *deps, *tags;
	const char *t;

	cJSON_AddStringToObject(o, "service", l->svc->name);
	cJSON_AddStringToObject(o, "instance", link_instance(l));
	cJSON_AddStringToObject(o, "address", link_address(l));
	cJSON_AddStringToObject(o, "peer", l->peer);
	cJSON_AddStringToObject(o, "node", h->node);
	add_time(o, "connected_at", l->connected_wall_ms);
	add_time(o, "last_pong", l->last_pong_wall_ms);
	cJSON_AddBoolToObject(o, "ready", l->ready);
	cJSON_AddStringToObject(o, "state", proto_state_name(l->status));
	cJSON_AddNumberToObject(o, "weight", l->weight);
	if (l->load != LINK_LOAD_NONE)
		cJSON_AddNumberToObject(o, "load",
					(double)l->load / LINK_LOAD_SCALE);
	else
		cJSON_AddNullToObject(o, "load");
	tags = cJSON_AddArrayToObject(o, "tags");
	t = link_tags(l);
	for (unsigned i = 0; i < l->n_tags; i++, t += strlen(t) + 1)
		cJSON_AddItemToArray(tags, cJSON_CreateString(t));
	deps = cJSON_AddArrayToObject(o, "depends_on");
	for (size_t i = 0; i < l->n_deps; i++)
		cJSON_AddItemToArray(deps,
				     cJSON_CreateString(l->deps[i]->name));
	if (link_meta(l))
		cJSON_AddItemToObject(o, "meta",
				      cJSON_Duplicate(link_meta(l), true));
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
	hub_json_seq(o, log->seq);
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
	hub_json_seq(o, h->log.seq);
	cJSON_AddNumberToObject(o, "history", (double)h->log.count);
	cJSON_AddNumberToObject(o, "services", (double)h->registry.n);
	cJSON_AddNumberToObject(o, "agents", (double)h->n_instances);
	cJSON_AddBoolToObject(o, "auth", auth_enabled(h->auth));
	cJSON_AddStringToObject(o, "state",
				hub_drain_state(h) == HUB_SERVING ? "serving" :
				hub_drain_state(h) == HUB_DRAINING ?
								    "draining" :
								    "drained");
	h->store->ops->info(h->store, o);
	hub_answer(req, 200, o);
}

/* Backlog first (Last-Event-ID), then live: both from this thread, so
 * nothing can fall between them. */
static void run_sse_open(struct hub *h, struct hub_req *req)
{
	const struct evlog *log = &h->log;
	/* In a commit, its events are the log's last: they come to the
	 * stream with the commit, not in the replay as well. */
	size_t end =
		log->count - (h->n_held < log->count ? h->n_held : log->count);

	sse_push(req->stream, "retry: 1000\n\n", 13);
	if (req->has_after)
		for (size_t i = evlog_find_after(log, req->after); i < end; i++)
			hub_sse_push(req->stream, evlog_at(log, i));
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
	store_reload(h->store, conf);
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

/* This node's endpoints of req->service, and its index here. */
static void run_endpoints(struct hub *h, struct hub_req *req)
{
	struct endpoints_filter f = { .any = req->any, .tag = req->tag };
	cJSON *list = hub_ep_answer(h, req->service, &f, &req->index);

	hub_answer(req, 200, endpoints_answer(req->service, req->index, list));
}

static void run_sse_end_all(struct hub *h, struct hub_req *req)
{
	for (struct sse *s = h->streams; s; s = *sse_next(s))
		sse_end(s);
	req->status = 200;
}

static void run_metrics(struct hub *h, struct hub_req *req)
{
	req->body = hub_metrics_text(h);
	req->status = req->body ? 200 : 500;
}

/*
 * Every call: its name, what it is, and how the hub answers it from this
 * node's view. A store may answer any call itself instead (store_ops.call):
 * the changes are always a store's, so the hub has no entry for them.
 */
static const struct hub_op_def {
	const char *name;
	unsigned flags;
	void (*run)(struct hub *h, struct hub_req *req);
} hub_ops[HUB_OPS] = {
	[HUB_JOB] = { "job", 0, NULL },
	[HUB_DECLARE] = { "declare", OP_WRITE, NULL },
	[HUB_CACHEREADY] = { "cacheready", OP_WRITE, NULL },
	[HUB_INVALIDATE] = { "invalidate", OP_WRITE, NULL },
	[HUB_BROADCAST] = { "broadcast", OP_WRITE, NULL },
	[HUB_DRAIN] = { "drain", OP_WRITE, hub_drain_run },
	[HUB_SERVICES] = { "services", 0, run_services },
	[HUB_SERVICE] = { "service", 0, run_service },
	[HUB_AGENTS] = { "agents", 0, run_agents },
	[HUB_RELOAD] = { "reload", 0, run_reload },
	[HUB_EVENTS] = { "events", 0, run_events },
	[HUB_INFO] = { "info", 0, run_info },
	[HUB_METRICS] = { "metrics", 0, run_metrics },
	[HUB_SSE_OPEN] = { "sse_open", 0, run_sse_open },
	[HUB_ENDPOINTS] = { "endpoints", 0, run_endpoints },
	[HUB_SSE_CLOSE] = { "sse_close", OP_ANYTIME, run_sse_close },
	[HUB_SSE_END_ALL] = { "sse_end_all", OP_ANYTIME, run_sse_end_all },
};

unsigned hub_op_flags(enum hub_op op)
{
	return (unsigned)op < HUB_OPS ? hub_ops[op].flags : 0;
}

void hub_run_op(struct hub *h, struct hub_req *req)
{
	const struct hub_op_def *d =
		(unsigned)req->op < HUB_OPS ? &hub_ops[req->op] : NULL;

	if (!d || !d->run) {
		/* A change no store made: a bug, said as such. */
		log_error("no one answers this call", "op=%d", (int)req->op);
		hub_answer_error(req, 500, "internal", "no one answers this");
		return;
	}
	d->run(h, req);
}

/* An invalidation or a broadcast, as req asks for it; header and value are
 * taken. NULL when out of memory. */
struct event *hub_request_event(struct hub_req *req)
{
	enum event_scope scope = req->instance[0] ? SCOPE_INSTANCE :
				 req->service[0]  ? SCOPE_SERVICE :
						    SCOPE_ALL;
	struct event *ev =
		event_new(req->op == HUB_INVALIDATE ? EVENT_INVALIDATE :
						      EVENT_COMMAND,
			  scope, req->command[0] ? req->command : "DataSend",
			  req->header, req->value);

	req->header = req->value = NULL;
	if (ev) {
		snprintf(ev->service, sizeof(ev->service), "%s", req->service);
		snprintf(ev->instance, sizeof(ev->instance), "%s",
			 req->instance);
	}
	return ev;
}
