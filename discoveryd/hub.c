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

#include <systemd/sd-daemon.h>

#include "cluster.h"
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

/* The durable state of every service, for a compaction snapshot. */
static void compact(struct hub *h)
{
	struct registry *r = &h->registry;
	struct evlog_service *state = calloc(r->n ? r->n : 1, sizeof(*state));
	int64_t now = clock_mono_ms(), wall = clock_wall_ms();
	cJSON *keys = hub_idem_records(h);
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
	if (evlog_compact(&h->log, state, n, keys) != 0)
		log_warn("compaction failed", "errno=%d", errno);
	else
		log_info("compacted", "events=%zu services=%zu keys=%d",
			 h->log.count, n, cJSON_GetArraySize(keys));
	cJSON_Delete(keys);
	free(state);
}

/*
 * Make a change durable, then deliver it: the one way an event reaches
 * agents. ev may be NULL (a declaration alone). Returns 0, or -1 when the
 * log refused it (nothing recorded, nothing delivered; ev untouched).
 */
int hub_publish(struct hub *h, struct event *ev, const struct evlog_decl *decl,
		size_t *delivered)
{
	if (evlog_append(&h->log, ev, decl) != 0) {
		log_error("journal append failed", "errno=%d kind=%s", errno,
			  ev ? event_kind_name(ev->kind) : "declaration");
		return -1;
	}
	if (evlog_wants_compaction(&h->log))
		compact(h);
	if (ev && ev->kind <= EVENT_COMMAND)
		h->stats.events[ev->kind]++;
	*delivered = ev ? hub_fanout(h, ev) : 0;
	if (ev)
		hub_sse_event(h, ev);
	return 0;
}

/*
 * Record decl (may be NULL) and, if s's readiness is no longer what agents
 * were last told, a readiness event with it, in one durable record; then
 * fan the event out. Returns 0 (done), -1 when the log refused it: then
 * nothing changed and the caller undoes the cause.
 */
int hub_announce(struct hub *h, struct service *s,
		 const struct evlog_decl *decl, uint64_t *seq,
		 size_t *delivered)
{
	bool ready;
	struct event *ev = NULL;
	cJSON *header, *value;
	size_t n = 0;

	/* Cluster: Redis decides readiness from every node's counts
	 * (cluster.lua); this node only reports its own. */
	if (h->cluster) {
		if (!decl)
			hub_cluster_note_service(h, s);
		return decl ? -1 : 0;
	}
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
	if (hub_publish(h, ev, decl, &n) != 0) {
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

/* ---- timers ------------------------------------------------------------- */

static int64_t tick_period_ms(const struct hub *h)
{
	int64_t p = h->heartbeat_interval_ms;

	if (h->hello_timeout_ms < p)
		p = h->hello_timeout_ms;
	if (h->watchdog_us && (int64_t)(h->watchdog_us / 1000) < p)
		p = (int64_t)(h->watchdog_us / 1000);
	p /= 4;
	return p < 25 ? 25 : p > 1000 ? 1000 : p;
}

/*
 * systemd: WATCHDOG=1 from this thread (the one that must not stall) at
 * half the WatchdogSec, and a STATUS line now and then for systemctl status.
 */
static void tell_systemd(struct hub *h, int64_t now)
{
	if (h->watchdog_us &&
	    now - h->watchdog_sent_ms >= (int64_t)(h->watchdog_us / 2000)) {
		sd_notify(0, "WATCHDOG=1");
		h->watchdog_sent_ms = now;
	}
	if (now - h->status_sent_ms >= 5000) {
		sd_notifyf(0, "STATUS=%zu agents on %zu links, seq %llu",
			   h->n_instances, h->n_links,
			   (unsigned long long)h->log.seq);
		h->status_sent_ms = now;
	}
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
	struct hub *h = lws_container_of(sul, struct hub, tick_sul);
	int64_t now = clock_mono_ms(), now_s = clock_wall_ms() / 1000;
	unsigned secrets = auth_generation(h->auth);
	bool secrets_changed = secrets != h->auth_generation;

	h->auth_generation = secrets;
	for (size_t i = 0; i < h->n_links; i++) {
		struct link *l = h->links[i];

		if (l->state == LINK_CLOSING ||
		    link_auth_lapsed(h, l, now_s, secrets_changed))
			continue;
		if (now - l->last_rx_ms > h->heartbeat_timeout_ms)
			link_kill(l, "heartbeat timeout");
		else if (l->state == LINK_OPEN &&
			 now - l->connected_ms > h->hello_timeout_ms)
			link_close(l, 1008, "no hello in time");
		else if (l->inherited &&
			 now - l->connected_ms > h->heartbeat_timeout_ms)
			link_set_ready(l, false); /* it never reported */
		else if (now - l->last_ping_ms >= h->heartbeat_interval_ms)
			link_ping(l);
	}
	link_admit_tick(h, now);
	hub_sse_keepalive(h, now);
	if (h->waiters)
		hub_cluster_expire_waiters(h, now);
	if (h->n_parked)
		link_unpark(h, false);
	tell_systemd(h, now);
	/* The log refused an announcement (disk full?): try again, so a
	 * readiness change is never left unsaid once the disk is back. */
	if (h->retry_announce && !h->stopping)
		h->retry_announce = hub_announce_all(h) != 0;
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
size_t hub_announce_all(struct hub *h)
{
	struct registry *r = &h->registry;
	size_t n = r->n, failed = 0;
	struct service **v = malloc((n ? n : 1) * sizeof(*v));

	if (!v)
		return 1;
	if (n)
		memcpy(v, r->services, n * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		if (hub_announce(h, v[i], NULL, NULL, NULL) != 0)
			failed++;
	for (size_t i = 0; i < n; i++)
		registry_release_service(r, v[i]);
	free(v);
	return failed;
}

static void on_ttl(lws_sorted_usec_list_t *sul)
{
	struct hub *h = lws_container_of(sul, struct hub, ttl_sul);

	if (registry_expire(&h->registry, clock_mono_ms()))
		hub_announce_all(h);
	hub_schedule_ttl(h);
}

/* Restart grace is over: restored readiness gives way to the instances. */
static void on_grace(lws_sorted_usec_list_t *sul)
{
	struct hub *h = lws_container_of(sul, struct hub, grace_sul);
	struct registry *r = &h->registry;
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		if (r->services[i]->grace) {
			r->services[i]->grace = false;
			n++;
		}
	log_info("restart grace over", "services=%zu", n);
	h->retry_announce = hub_announce_all(h) != 0;
}

/*
 * Take the state the journal kept: declarations (a TTL that ran out while
 * the daemon was down is dropped) and the last announced readiness. A
 * service restored ready without a declaration is held ready by restart
 * grace until its instances are back or the grace ends, so a restart never
 * makes a gate lock up while its dependencies are in fact fine.
 */
static size_t restore(struct hub *h)
{
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
		if (!s->declared && s->ready && h->restart_grace_ms > 0) {
			s->grace = true;
			held++;
		}
	}
	free(h->log.restored);
	h->log.restored = NULL;
	h->log.n_restored = 0;
	return held;
}

void hub_schedule_ttl(struct hub *h)
{
	int64_t next = registry_next_expiry(&h->registry);
	int64_t now = clock_mono_ms();

	if (!next) {
		lws_sul_cancel(&h->ttl_sul);
		return;
	}
	lws_sul_schedule(h->ctx, 0, &h->ttl_sul, on_ttl,
			 (next > now ? next - now : 0) * LWS_US_PER_MS);
}

/* ---- requests from other threads --------------------------------------- */

void hub_reply(struct hub *h, struct hub_req *req)
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
	h->stop_deadline_ms = clock_mono_ms() + STOP_GRACE_MS;
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
		req->deferred = false;
		hub_req_run(h, req);
		if (!req->deferred)
			hub_reply(h, req);
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
	if (h->cluster && cluster_takes(req->op)) {
		cluster_call(h->cluster, req);
		return;
	}
	hub_call_local(h, req);
}

void hub_call_local(struct hub *h, struct hub_req *req)
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
		       rl.rlim_cur - (uint64_t)conf->max_http - 64 :
		       64;
	return (unsigned)(want < room ? want : room);
}

void hub_apply_settings(struct hub *h, const struct dconf *conf)
{
	h->heartbeat_interval_ms = conf->heartbeat_interval_ms;
	h->heartbeat_timeout_ms = conf->heartbeat_timeout_ms;
	h->hello_timeout_ms = conf->hello_timeout_ms;
	h->max_agents = (size_t)conf->max_agents;
	h->max_agents_per_ip = (size_t)conf->max_agents_per_ip;
	h->max_message = (size_t)conf->max_message;
	h->send_queue = (size_t)conf->send_queue;
	h->restart_grace_ms = conf->restart_grace_ms;
	h->accept_rate = (double)conf->accept_rate;
	h->accept_burst = (double)conf->accept_burst;
	h->accept_share = (double)conf->accept_share_per_ip / 100.0;
	h->drain_batch = (size_t)conf->drain_batch;
	h->drain_interval_ms = conf->drain_interval_ms;
	idem_configure(&h->idem, (size_t)conf->idem_max_keys,
		       conf->idem_retention_ms, clock_wall_ms());
}

/*
 * The log: the journal in state_dir, replayed (single node), or a mirror
 * of the Redis stream (cluster mode). 0, or -1 with a message in err.
 */
static int open_log(struct hub *h, const struct dconf *conf, char *err,
		    size_t errlen)
{
	struct evlog_recovery rec;
	size_t held;
	char where[600];

	if (conf->cluster_present) {
		/* The log is Redis; this node mirrors it (cluster.h). */
		h->cluster_timeout_ms = conf->cluster_timeout_ms;
		if (evlog_open_mirror(&h->log, (size_t)conf->history) != 0 ||
		    !(h->cluster = cluster_new(conf, h, err, errlen))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (conf->cluster_sentinels.n)
			snprintf(where, sizeof(where),
				 "sentinels=%s master_name=%s",
				 conf->cluster_sentinels.v[0],
				 conf->cluster_master_name);
		else
			snprintf(where, sizeof(where), "redis=%s:%d",
				 conf->redis.addr.host, conf->redis.addr.port);
		log_info("cluster",
			 "%s db=%d node=%s prefix=%s "
			 "node_ttl_ms=%lld timeout_ms=%lld min_replicas=%lld",
			 where, conf->redis.db, conf->node,
			 conf->cluster_prefix,
			 (long long)conf->cluster_node_ttl_ms,
			 (long long)conf->cluster_timeout_ms,
			 (long long)conf->cluster_min_replicas);
		return 0;
	}
	if (evlog_open(&h->log, (size_t)conf->history, conf->state_dir, &rec,
		       err, errlen) != 0)
		return -1;
	held = restore(h);
	hub_idem_restore(h);
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
	return 0;
}

struct hub *hub_new(const struct dconf *conf, struct auth *auth, char *err,
		    size_t errlen)
{
	struct lws_context_creation_info info;
	struct hub *h = calloc(1, sizeof(*h));
	char addr[CONF_ADDR_TEXT];

	if (!h || idem_init(&h->idem, (size_t)conf->idem_max_keys,
			    conf->idem_retention_ms) != 0) {
		free(h);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	htab_init(&h->peers, true);
	htab_init(&h->index, true);
	hub_apply_settings(h, conf);
	h->tls = conf->tls_present;
	h->auth = auth;
	h->auth_generation = auth_generation(auth);
	if (sd_watchdog_enabled(0, &h->watchdog_us) <= 0)
		h->watchdog_us = 0;
	snprintf(h->node, sizeof(h->node), "%s", conf->node);
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	registry_init(&h->registry, REGISTRY_MAX_SERVICES);
	hub_apply_services_conf(h, conf);
	if (open_log(h, conf, err, errlen) != 0) {
		hub_free(h);
		return NULL;
	}

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_DISABLE_IPV6;
	info.iface = conf->listen_agents.host[0] ? conf->listen_agents.host :
						   NULL;
	info.port = conf->listen_agents.port;
	info.protocols = link_protocols;
	info.user = h;
	info.fd_limit_per_thread = fd_budget(conf);
	info.count_threads = 1;
	info.timeout_secs = 10;
	info.pt_serv_buf_size = 16 * 1024;
	if (conf->tls_present) {
		/* wss://, from the same PEM files as the HTTP API's https. */
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = conf->tls_cert;
		info.ssl_private_key_filepath = conf->tls_key;
	}
	if (strchr(conf->listen_agents.host, ':'))
		info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
	h->ctx = lws_create_context(&info);
	if (!h->ctx) {
		snprintf(err, errlen, "cannot listen for agents on %s",
			 conf_addr_format(&conf->listen_agents, addr,
					  sizeof(addr)));
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
			 conf_addr_format(&conf->listen_agents, addr,
					  sizeof(addr)));
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
	for (size_t i = 0; i < h->registry.n; i++)
		if (h->registry.services[i]->grace) {
			lws_sul_schedule(h->ctx, 0, &h->grace_sul, on_grace,
					 h->restart_grace_ms * LWS_US_PER_MS);
			break;
		}
	/* TTLs that ran out while down, min_ready changed in the config:
	 * tell agents what the state is now. */
	h->retry_announce = hub_announce_all(h) != 0;
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
	hub_cluster_expire_waiters(h, INT64_MAX);
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
	if (h->cluster && cluster_start(h->cluster) != 0) {
		hub_stop(h);
		errno = EAGAIN;
		return -1;
	}
	return 0;
}

void hub_stop(struct hub *h)
{
	if (!h->thread_started)
		return;
	cluster_stop(h->cluster);
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
	cluster_free(h->cluster);
	if (h->ctx)
		lws_context_destroy(h->ctx);
	free(h->links);
	htab_release(&h->index);
	peers_release(h);
	evlog_release(&h->log);
	idem_release(&h->idem);
	cJSON_Delete(h->idem_tag);
	registry_release(&h->registry);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	free(h);
}
