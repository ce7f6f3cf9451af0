/*
 * hub: the service thread that owns every agent link (see hub.h).
 *
 * The thread runs lws_service() until told to stop. Work from other threads
 * arrives on a mutex-protected list and a lws_cancel_service() wake-up; the
 * answers go back through the same mutex and a condition variable. The
 * tick runs on the thread: heartbeat pings, dead-link and hello timeouts,
 * and the store's own (store_tick).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <systemd/sd-daemon.h>

#include "hub_int.h"
#include "log.h"

#define STOP_GRACE_MS 3000

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

		link_queue_trim(l);
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
			link_set_status(l, PROTO_STATE_NOTREADY,
					l->load); /* it never reported */
		else if (now - l->last_ping_ms >= h->heartbeat_interval_ms)
			link_ping(l);
	}
	link_admit_tick(h, now);
	hub_sse_keepalive(h, now);
	if (h->n_parked)
		link_unpark(h, false);
	tell_systemd(h, now);
	if (h->announce_due && !h->stopping)
		hub_announce_all(h);
	store_tick(h->store, now);
	if (h->stopping && (h->n_links == 0 || now >= h->stop_deadline_ms))
		h->finished = true;
	lws_sul_schedule(h->ctx, 0, &h->tick_sul, on_tick,
			 tick_period_ms(h) * LWS_US_PER_MS);
}

/*
 * After a change that may move many services at once (the start, TTLs
 * running out, a reload changing min_ready): the store announces each,
 * then the unused go. Works from a copy, since releasing changes the
 * registry; without memory for one, the tick tries again.
 */
void hub_announce_all(struct hub *h)
{
	struct registry *r = &h->registry;
	size_t n = r->n;
	struct service **v = malloc((n ? n : 1) * sizeof(*v));

	h->announce_due = !v;
	if (!v)
		return;
	if (n)
		memcpy(v, r->services, n * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		store_announce(h->store, v[i]);
	for (size_t i = 0; i < n; i++)
		registry_release_service(r, v[i]);
	free(v);
}

/* ---- requests from other threads --------------------------------------- */

/*
 * Calls run in one pass share one fdatasync (a group commit): their
 * records are written as each runs, made durable together, and only then
 * are their events delivered and the calls answered, all at once. At most
 * this many share one, so the first is not kept waiting on the last.
 */
#define GROUP_COMMIT_MAX 256

/* Commit what the calls on done wrote, then answer them: the waiting
 * ones under mu, then the submitted ones' callbacks, outside it. */
static void commit_and_reply(struct hub *h, struct hub_req *done)
{
	struct hub_req *later = NULL, **tail = &later;

	hub_hold_end(h);
	pthread_mutex_lock(&h->mu);
	while (done) {
		struct hub_req *next = done->next; /* done may go once told */

		if (done->on_done) {
			done->next = NULL;
			*tail = done;
			tail = &done->next;
		} else {
			done->done = true;
			/* Its own: a broadcast would wake every caller. */
			pthread_cond_signal(&done->cv);
		}
		done = next;
	}
	pthread_mutex_unlock(&h->mu);
	while (later) {
		struct hub_req *next = later->next;

		later->on_done(later, later->done_arg);
		later = next;
	}
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
	struct hub_req *req, *done = NULL, **tail = &done;
	size_t n = 0;

	hub_hold_begin(h);
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
		if (h->stopping && !req->anytime) {
			cJSON_Delete(req->header);
			cJSON_Delete(req->value);
			req->header = req->value = NULL;
			hub_answer_error(req, 503, "stopping",
					 "the daemon is stopping");
		} else {
			req->run(h, req->run_arg, req);
		}
		req->next = NULL;
		*tail = req;
		tail = &req->next;
		if (++n == GROUP_COMMIT_MAX) {
			commit_and_reply(h, done);
			done = NULL;
			tail = &done;
			n = 0;
			hub_hold_begin(h);
		}
	}
	commit_and_reply(h, done);
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

static void run_op(struct hub *h, void *arg, struct hub_req *req)
{
	(void)arg;
	hub_run_op(h, req);
}

void hub_call(struct hub *h, struct hub_req *req)
{
	hub_run(h, run_op, NULL, req);
}

/* Queue req under mu (held on return); false when the hub takes no more
 * calls: then req is answered 503 and mu is not held. */
static bool enqueue(struct hub *h,
		    void (*fn)(struct hub *h, void *arg, struct hub_req *req),
		    void *arg, struct hub_req *req)
{
	req->run = fn;
	req->run_arg = arg;
	req->anytime = hub_op_flags(req->op) & OP_ANYTIME;
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
		return false;
	}
	if (h->req_tail)
		h->req_tail->next = req;
	else
		h->req_head = req;
	h->req_tail = req;
	lws_cancel_service(h->ctx);
	return true;
}

void hub_submit(struct hub *h,
		void (*fn)(struct hub *h, void *arg, struct hub_req *req),
		void *arg, struct hub_req *req,
		void (*done)(struct hub_req *req, void *done_arg),
		void *done_arg)
{
	req->on_done = done;
	req->done_arg = done_arg;
	if (!enqueue(h, fn, arg, req)) {
		done(req, done_arg);
		return;
	}
	pthread_mutex_unlock(&h->mu);
}

void hub_run(struct hub *h,
	     void (*fn)(struct hub *h, void *arg, struct hub_req *req),
	     void *arg, struct hub_req *req)
{
	req->on_done = NULL;
	if (!enqueue(h, fn, arg, req))
		return;
	pthread_cond_init(&req->cv, NULL);
	while (!req->done)
		pthread_cond_wait(&req->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
	pthread_cond_destroy(&req->cv);
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
 * Admission enforces it (REFUSED_FULL), not lws: given a limit below the
 * process's, lws 4.1 finds each ready descriptor's connection by walking
 * its whole table (wsi_from_fd), which made every pass over N links cost
 * N^2/2 compares.
 */
static unsigned fd_budget(const struct dconf *conf)
{
	struct rlimit rl;
	uint64_t want = (uint64_t)conf->max_agents + 64;
	/* The others' descriptors: HTTP's, and DNS's TCP connections, its
	 * two sockets and two eventfds. */
	uint64_t others =
		(uint64_t)conf->max_http + 64 +
		(conf->listen_dns.set ? (uint64_t)conf->dns_max_tcp + 4 : 0);
	uint64_t room;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return (unsigned)(want > 1000000 ? 1000000 : want);
	room = rl.rlim_cur > others ? rl.rlim_cur - others : 64;
	return (unsigned)(want < room ? want : room);
}

void hub_apply_settings(struct hub *h, const struct dconf *conf)
{
	h->heartbeat_interval_ms = conf->heartbeat_interval_ms;
	h->ep_window_ms = conf->endpoints_coalesce_ms;
	h->heartbeat_timeout_ms = conf->heartbeat_timeout_ms;
	h->hello_timeout_ms = conf->hello_timeout_ms;
	h->max_agents = (size_t)conf->max_agents;
	h->max_agents_per_ip = (size_t)conf->max_agents_per_ip;
	h->max_conns = fd_budget(conf);
	h->max_message = (size_t)conf->max_message;
	h->send_queue = (size_t)conf->send_queue;
	h->accept_rate = (double)conf->accept_rate;
	h->accept_burst = (double)conf->accept_burst;
	h->accept_share = (double)conf->accept_share_per_ip / 100.0;
	h->drain_batch = (size_t)conf->drain_batch;
	h->drain_interval_ms = conf->drain_interval_ms;
}

/*
 * lws's own idle check ("validity") files a timer in its sorted list again
 * on every frame a link receives, at the far end of the list: a walk of
 * every link per frame, most of a 10k heartbeat's pongs. The hub's
 * heartbeat does that job (on_tick), so lws's is off: a policy with
 * neither a ping time nor a hang-up time.
 */
static const lws_retry_bo_t no_idle_check;

struct hub *hub_new(const struct dconf *conf, struct auth *auth, char *err,
		    size_t errlen)
{
	struct lws_context_creation_info info;
	struct hub *h = calloc(1, sizeof(*h));
	char addr[CONF_ADDR_TEXT];

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* The log is the store's to open (store.h); until then, closed. */
	h->log.journal.fd = h->log.journal.dir_fd = -1;
	/* Endpoint indexes start past any a previous run gave out: the
	 * clock in µs (a restart never repeats one, short of a clock set
	 * back). */
	h->ep_clock = (uint64_t)clock_wall_ms() * 1000;
	htab_init(&h->peers, true);
	htab_init(&h->index, true);
	backoff_init(&h->ping_phase, 1, 1, 1.0, 0);
	hub_apply_settings(h, conf);
	h->tls = conf->tls_present;
	h->auth = auth;
	h->auth_generation = auth_generation(auth);
	if (sd_watchdog_enabled(0, &h->watchdog_us) <= 0)
		h->watchdog_us = 0;
	snprintf(h->node, sizeof(h->node), "%s", conf->node);
	pthread_mutex_init(&h->mu, NULL);
	registry_init(&h->registry, REGISTRY_MAX_SERVICES);
	hub_ep_init(h);
	if (!(h->board = epboard_new())) {
		snprintf(err, errlen, "out of memory");
		hub_free(h);
		return NULL;
	}
	hub_apply_services_conf(h, conf);

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_DISABLE_IPV6;
	info.iface = conf->listen_agents.host[0] ? conf->listen_agents.host :
						   NULL;
	info.port = conf->listen_agents.port;
	info.protocols = link_protocols;
	info.user = h;
	/* 0: tables for the process's limit, indexed by descriptor. */
	info.fd_limit_per_thread = 0;
	info.count_threads = 1;
	info.timeout_secs = 10;
	info.pt_serv_buf_size = 16 * 1024;
	info.retry_and_idle_policy = &no_idle_check;
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

void hub_attach(struct hub *h, struct store *s)
{
	h->store = s;
}

/* Where the log stands, then every retained event, to fn. */
static void sink_replay(struct hub *h, hub_sink_fn *fn, void *arg)
{
	fn(arg, h->log.epoch, h->log.seq, NULL);
	for (size_t i = 0; i < h->log.count; i++) {
		const struct event *ev = evlog_at(&h->log, i);

		fn(arg, h->log.epoch, ev->seq, ev);
	}
}

void hub_set_sink(struct hub *h, hub_sink_fn *fn, void *arg)
{
	sink_replay(h, fn, arg);
	h->sink_arg = arg;
	h->sink = fn;
}

void hub_sink_resync(struct hub *h)
{
	if (h->sink)
		sink_replay(h, h->sink, h->sink_arg);
}

struct epboard *hub_epboard(const struct hub *h)
{
	return h->board;
}

const char *hub_listen_address(const struct hub *h)
{
	return h->listen_address;
}

static void *hub_thread(void *arg)
{
	struct hub *h = arg;

	hub_ep_start(h);
	lws_sul_schedule(h->ctx, 0, &h->tick_sul, on_tick,
			 tick_period_ms(h) * LWS_US_PER_MS);
	/* TTLs that ran out while down, min_ready changed in the config:
	 * tell agents what the state is now (or, in a cluster, Redis what
	 * this node has). */
	hub_announce_all(h);
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
	free(h->held); /* empty: every pass ends its commit */
	free(h->changes);
	free(h->corked_links);
	htab_release(&h->index);
	peers_release(h);
	evlog_release(&h->log);
	registry_release(&h->registry);
	epboard_free(h->board);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
