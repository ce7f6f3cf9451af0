/*
 * hub: the service thread that owns every agent link (see hub.h).
 *
 * The thread runs lws_service() until told to stop. Work from other threads
 * arrives on a mutex-protected list and a lws_cancel_service() wake-up; the
 * answers go back through the same mutex and a condition variable. Two timers
 * run on the thread: the tick (heartbeat pings, dead-link and hello
 * timeouts) and the TTL timer (declarations that run out).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "hub_int.h"
#include "log.h"

#define STOP_GRACE_MS 3000

/* ---- fan-out ------------------------------------------------------------ */

/*
 * Hand ev to every linked instance it is addressed to. The frame was built
 * once; each link gets a reference (or a direct write of the same bytes).
 * Returns how many links it went to.
 */
size_t hub_fanout(struct hub *h, struct event *ev)
{
	size_t delivered = 0;

	for (size_t i = 0; i < h->n_links; i++) {
		struct link *l = h->links[i];

		if (l->state != LINK_ACTIVE ||
		    !event_addressed_to(ev, l->svc->name, l->instance,
					l->dep_names, l->n_deps))
			continue;
		link_send(l, ev);
		delivered++;
	}
	return delivered;
}

/*
 * If s's readiness is no longer what agents were last told, log and fan out
 * a readiness event. Returns 0 (nothing to say, or said), -1 when the log
 * refused the event: then nothing changed and the caller may undo its cause.
 */
int hub_announce(struct hub *h, struct service *s, uint64_t *seq,
		 size_t *delivered)
{
	bool ready = service_computed_ready(s);
	struct event *ev;
	cJSON *header, *value;
	size_t n;

	if (ready == s->ready)
		return 0;
	header = cJSON_CreateObject();
	value = cJSON_CreateObject();
	if (header)
		cJSON_AddBoolToObject(header, "Ready", ready);
	if (value) {
		cJSON_AddStringToObject(value, "service", s->name);
		cJSON_AddBoolToObject(value, "ready", ready);
	}
	ev = event_new(EVENT_READINESS, SCOPE_DEPENDENTS, "DataSend", header,
		       value);
	if (!ev || !header || !value || evlog_append(&h->log, ev) != 0) {
		log_error("log append failed", "service=%s ready=%s", s->name,
			  ready ? "true" : "false");
		event_unref(ev);
		return -1;
	}
	snprintf(ev->service, sizeof(ev->service), "%s", s->name);
	s->ready = ready;
	n = hub_fanout(h, ev);
	log_info("readiness", "service=%s ready=%s seq=%llu delivered=%zu",
		 s->name, ready ? "true" : "false",
		 (unsigned long long)ev->seq, n);
	if (seq)
		*seq = ev->seq;
	if (delivered)
		*delivered = n;
	event_unref(ev);
	return 0;
}

/* ---- timers ------------------------------------------------------------- */

static int64_t tick_period_ms(const struct hub *h)
{
	int64_t p = h->heartbeat_interval_ms;

	if (h->hello_timeout_ms < p)
		p = h->hello_timeout_ms;
	p /= 4;
	return p < 25 ? 25 : p > 1000 ? 1000 : p;
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
	struct hub *h = lws_container_of(sul, struct hub, tick_sul);
	int64_t now = mono_ms();

	for (size_t i = 0; i < h->n_links; i++) {
		struct link *l = h->links[i];

		if (l->state == LINK_CLOSING)
			continue;
		if (now - l->last_rx_ms > h->heartbeat_timeout_ms)
			link_kill(l, "heartbeat timeout");
		else if (l->state == LINK_OPEN &&
			 now - l->connected_ms > h->hello_timeout_ms)
			link_close(l, 1008, "no hello in time");
		else if (now - l->last_ping_ms >= h->heartbeat_interval_ms)
			link_ping(l);
	}
	if (h->stopping && (h->n_links == 0 || now >= h->stop_deadline_ms))
		h->finished = true;
	lws_sul_schedule(h->ctx, 0, &h->tick_sul, on_tick,
			 tick_period_ms(h) * LWS_US_PER_MS);
}

/*
 * After a change that may move many services at once (TTLs running out, a
 * reload changing min_ready): announce each, then drop the unused. Works
 * from a copy, since announcing and releasing change the registry.
 */
void hub_announce_all(struct hub *h)
{
	struct registry *r = &h->registry;
	size_t n = r->n;
	struct service **v = malloc((n ? n : 1) * sizeof(*v));

	if (!v)
		return;
	memcpy(v, r->services, n * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		hub_announce(h, v[i], NULL, NULL);
	for (size_t i = 0; i < n; i++)
		registry_release_service(r, v[i]);
	free(v);
}

static void on_ttl(lws_sorted_usec_list_t *sul)
{
	struct hub *h = lws_container_of(sul, struct hub, ttl_sul);

	if (registry_expire(&h->registry, mono_ms()))
		hub_announce_all(h);
	hub_schedule_ttl(h);
}

void hub_schedule_ttl(struct hub *h)
{
	int64_t next = registry_next_expiry(&h->registry);
	int64_t now = mono_ms();

	if (!next) {
		lws_sul_cancel(&h->ttl_sul);
		return;
	}
	lws_sul_schedule(h->ctx, 0, &h->ttl_sul, on_ttl,
			 (next > now ? next - now : 0) * LWS_US_PER_MS);
}

/* ---- requests from other threads --------------------------------------- */

static void reply(struct hub *h, struct hub_req *req)
{
	pthread_mutex_lock(&h->mu);
	req->done = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

static void begin_stop(struct hub *h)
{
	if (h->stopping)
		return;
	h->stopping = true;
	h->stop_deadline_ms = mono_ms() + STOP_GRACE_MS;
	for (size_t i = 0; i < h->n_links; i++)
		link_close(h->links[i], 1001, "daemon stopping");
	if (h->n_links == 0)
		h->finished = true;
}

void hub_drain_requests(struct hub *h)
{
	struct hub_req *req;

	for (;;) {
		pthread_mutex_lock(&h->mu);
		req = h->req_head;
		if (req) {
			h->req_head = req->next;
			if (!h->req_head)
				h->req_tail = NULL;
		}
		pthread_mutex_unlock(&h->mu);
		if (!req)
			break;
		hub_req_run(h, req);
		reply(h, req);
	}
	if (atomic_load(&h->stop))
		begin_stop(h);
}

static char *error_body(const char *code, const char *message)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	cJSON_AddStringToObject(o, "error", code);
	cJSON_AddStringToObject(o, "message", message);
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

void hub_call(struct hub *h, struct hub_req *req)
{
	req->done = false;
	req->next = NULL;
	req->status = 0;
	req->body = NULL;
	pthread_mutex_lock(&h->mu);
	if (!h->accepting) {
		pthread_mutex_unlock(&h->mu);
		cJSON_Delete(req->header);
		cJSON_Delete(req->value);
		req->header = req->value = NULL;
		req->status = 503;
		req->body = error_body("stopping", "the daemon is stopping");
		return;
	}
	if (h->req_tail)
		h->req_tail->next = req;
	else
		h->req_head = req;
	h->req_tail = req;
	lws_cancel_service(h->ctx);
	while (!req->done)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void lws_log_line(int level, const char *line)
{
	log_text(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "lws", line);
}

/*
 * Descriptors: the agent listener may hold at most max_agents links plus
 * a margin for links being refused, and never more than the process limit
 * leaves after the HTTP side (max_http) and the rest of the process.
 */
static unsigned fd_budget(const struct dconf *conf)
{
	struct rlimit rl;
	uint64_t want = (uint64_t)conf->max_agents + 64;
	uint64_t room;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return (unsigned)(want > 1000000 ? 1000000 : want);
	room = rl.rlim_cur > (uint64_t)conf->max_http + 64 ?
	       rl.rlim_cur - (uint64_t)conf->max_http - 64 : 64;
	return (unsigned)(want < room ? want : room);
}

void hub_apply_settings(struct hub *h, const struct dconf *conf)
{
	h->heartbeat_interval_ms = conf->heartbeat_interval_ms;
	h->heartbeat_timeout_ms = conf->heartbeat_timeout_ms;
	h->hello_timeout_ms = conf->hello_timeout_ms;
	h->max_agents = (size_t)conf->max_agents;
	h->max_message = (size_t)conf->max_message;
	h->send_queue = (size_t)conf->send_queue;
}

struct hub *hub_new(const struct dconf *conf, char *err, size_t errlen)
{
	struct lws_context_creation_info info;
	struct hub *h = calloc(1, sizeof(*h));
	char addr[300];

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	hub_apply_settings(h, conf);
	snprintf(h->node, sizeof(h->node), "%s", conf->node);
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	registry_init(&h->registry, 100000);
	hub_apply_services_conf(h, conf);
	if (evlog_init(&h->log, (size_t)conf->history) != 0) {
		snprintf(err, errlen, "out of memory for history");
		hub_free(h);
		return NULL;
	}

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_DISABLE_IPV6;
	info.iface = conf->listen_agents.host[0] ? conf->listen_agents.host : NULL;
	info.port = conf->listen_agents.port;
	info.protocols = link_protocols;
	info.user = h;
	info.fd_limit_per_thread = fd_budget(conf);
	info.count_threads = 1;
	info.timeout_secs = 10;
	info.pt_serv_buf_size = 16 * 1024;
	if (strchr(conf->listen_agents.host, ':'))
		info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
	h->ctx = lws_create_context(&info);
	if (!h->ctx) {
		snprintf(err, errlen, "cannot listen for agents on %s",
			 conf_addr_format(&conf->listen_agents, addr, sizeof(addr)));
		hub_free(h);
		return NULL;
	}
	h->vhost = lws_get_vhost_by_name(h->ctx, "default");
	{
		struct conf_addr bound = conf->listen_agents;

		if (h->vhost)
			bound.port = lws_get_vhost_listen_port(h->vhost);
		if (!bound.host[0])
			snprintf(bound.host, sizeof(bound.host), "0.0.0.0");
		conf_addr_format(&bound, h->listen_address,
				 sizeof(h->listen_address));
	}
	if (!h->vhost || lws_get_vhost_listen_port(h->vhost) <= 0) {
		snprintf(err, errlen, "cannot listen for agents on %s",
			 conf_addr_format(&conf->listen_agents, addr, sizeof(addr)));
		hub_free(h);
		return NULL;
	}
	h->accepting = true;
	return h;
}

const char *hub_listen_address(const struct hub *h)
{
	return h->listen_address;
}

static void *hub_thread(void *arg)
{
	struct hub *h = arg;

	lws_sul_schedule(h->ctx, 0, &h->tick_sul, on_tick,
			 tick_period_ms(h) * LWS_US_PER_MS);
	hub_schedule_ttl(h);
	while (!h->finished)
		if (lws_service(h->ctx, 0) < 0)
			break;
	/* From here hub_call answers 503 itself; what is already queued is
	 * answered now (503 too: the hub is stopping). */
	pthread_mutex_lock(&h->mu);
	h->accepting = false;
	pthread_mutex_unlock(&h->mu);
	h->stopping = true;
	hub_drain_requests(h);
	return NULL;
}

int hub_start(struct hub *h)
{
	int rc = pthread_create(&h->thread, NULL, hub_thread, h);

	if (rc != 0) {
		errno = rc;
		return -1;
	}
	h->thread_started = true;
	return 0;
}

void hub_stop(struct hub *h)
{
	if (!h->thread_started)
		return;
	atomic_store(&h->stop, true);
	lws_cancel_service(h->ctx);
	pthread_join(h->thread, NULL);
	h->thread_started = false;
}

void hub_free(struct hub *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->accepting = false;
	pthread_mutex_unlock(&h->mu);
	if (h->ctx)
		lws_context_destroy(h->ctx);
	free(h->links);
	free(h->index);
	evlog_release(&h->log);
	registry_release(&h->registry);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	free(h);
}
