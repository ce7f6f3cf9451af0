/*
 * discoveryd: the discovery daemon (man discoveryd). Reads its config, binds
 * the agent listener (the hub) and the HTTP API, says where it listens, then
 * waits for signals on the main thread:
 *
 *   SIGTERM, SIGINT   graceful stop: close links with 1001, finish requests;
 *                     with drain: set, SIGTERM drains the node first (its
 *                     links move to other nodes in steps), then stops; a
 *                     second SIGTERM, or SIGINT, stops at once
 *   SIGHUP            reload what can be reloaded, name what needs a restart
 *
 * Signals are blocked in every thread and taken with sigwaitinfo() here, so
 * no work ever runs in a signal handler.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "api.h"
#include "clock.h"
#include "dconf.h"
#include "dns.h"
#include "hub.h"
#include "store.h"
#include "log.h"
#include "webhook.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: discoveryd [-c FILE] [-t] [-v|-q] [-h] [-V]\n"
		"  -c FILE  configuration (default: %s; conf/ in the source\n"
		"           tree, else /etc/discovery/)\n"
		"  -t       check the configuration and exit\n"
		"  -v       more logging (debug); -q less (warnings and "
		"errors)\n"
		"  -h       this help;  -V  version\n",
		conf_default_path("discoveryd.yaml"));
}

struct options {
	const char *config;
	bool test;
	int verbosity; /* -1 quiet, 0 as configured, 1 debug */
};

static int parse_args(int argc, char **argv, struct options *o)
{
	int c;

	o->config = conf_default_path("discoveryd.yaml");
	while ((c = getopt(argc, argv, "c:tvqhV")) != -1) {
		switch (c) {
		case 'c': o->config = optarg; break;
		case 't': o->test = true; break;
		case 'v': o->verbosity = 1; break;
		case 'q': o->verbosity = -1; break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("discoveryd %s\n", DISCOVERY_VERSION); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

static enum log_level level_for(const struct options *o, const struct dconf *c)
{
	if (o->verbosity > 0)
		return LOG_DEBUG;
	if (o->verbosity < 0)
		return LOG_WARN;
	return (enum log_level)log_level_parse(c->log_level);
}

/* Say which changed settings only a restart applies. */
/* Two optional strings (NULL: the key is absent) are the same. */
static bool same_str(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) == 0 : a == b;
}

/*
 * Any cluster key but the ones read anew: where Redis is (cluster.redis,
 * or the sentinels, whose keys are absent with the other), how it is used.
 */
static bool cluster_changed(const struct dconf *old, const struct dconf *now)
{
	bool changed =
		!same_str(old->cluster_redis, now->cluster_redis) ||
		!same_str(old->cluster_master_name, now->cluster_master_name) ||
		!same_str(old->cluster_sentinel_password,
			  now->cluster_sentinel_password) ||
		!same_str(old->cluster_user, now->cluster_user) ||
		!same_str(old->cluster_password, now->cluster_password) ||
		!same_str(old->cluster_prefix, now->cluster_prefix) ||
		old->cluster_db != now->cluster_db ||
		old->cluster_min_replicas != now->cluster_min_replicas ||
		old->cluster_node_ttl_ms != now->cluster_node_ttl_ms ||
		old->cluster_timeout_ms != now->cluster_timeout_ms ||
		old->cluster_sentinels.n != now->cluster_sentinels.n;

	for (size_t i = 0; !changed && i < old->cluster_sentinels.n; i++)
		changed = !same_str(old->cluster_sentinels.v[i],
				    now->cluster_sentinels.v[i]);
	return changed;
}

/* Any webhooks: entry added, removed or changed but for its secrets,
 * which a reload reads anew (webhook_reload_secrets). */
static bool webhooks_changed(const struct dconf *old, const struct dconf *now)
{
	const struct dconf_webhook *a = old->webhooks.items;
	const struct dconf_webhook *b = now->webhooks.items;

	if (old->webhooks.n != now->webhooks.n)
		return true;
	for (size_t i = 0; i < old->webhooks.n; i++)
		if (strcmp(old->webhooks.names[i], now->webhooks.names[i]) !=
			    0 ||
		    strcmp(a[i].url, b[i].url) != 0 ||
		    !same_str(a[i].ca_file, b[i].ca_file) ||
		    a[i].kinds_mask != b[i].kinds_mask ||
		    a[i].services.n != b[i].services.n ||
		    a[i].timeout_ms != b[i].timeout_ms ||
		    a[i].retry_initial_ms != b[i].retry_initial_ms ||
		    a[i].retry_max_ms != b[i].retry_max_ms ||
		    a[i].retry_max_age_ms != b[i].retry_max_age_ms ||
		    a[i].max_in_flight != b[i].max_in_flight)
			return true;
	for (size_t i = 0; i < old->webhooks.n; i++)
		for (size_t k = 0; k < a[i].services.n; k++)
			if (strcmp(a[i].services.v[k], b[i].services.v[k]) != 0)
				return true;
	return false;
}

static void note_restart_needed(const struct dconf *old,
				const struct dconf *now)
{
	char a[CONF_ADDR_TEXT], b[CONF_ADDR_TEXT];

	if (strcmp(conf_addr_format(&old->listen_http, a, sizeof(a)),
		   conf_addr_format(&now->listen_http, b, sizeof(b))) != 0)
		log_warn("reload", "key=listen.http note=\"needs a restart\"");
	if (strcmp(conf_addr_format(&old->listen_agents, a, sizeof(a)),
		   conf_addr_format(&now->listen_agents, b, sizeof(b))) != 0)
		log_warn("reload",
			 "key=listen.agents note=\"needs a restart\"");
	if (old->listen_dns.set != now->listen_dns.set ||
	    strcmp(conf_addr_format(&old->listen_dns.addr, a, sizeof(a)),
		   conf_addr_format(&now->listen_dns.addr, b, sizeof(b))) != 0)
		log_warn("reload", "key=listen.dns note=\"needs a restart\"");
	if (strcmp(old->dns_domain, now->dns_domain) != 0 ||
	    old->dns_ttl_ms != now->dns_ttl_ms ||
	    old->dns_negative_ttl_ms != now->dns_negative_ttl_ms ||
	    old->dns_rate_per_source != now->dns_rate_per_source ||
	    old->dns_burst != now->dns_burst ||
	    old->dns_max_tcp != now->dns_max_tcp ||
	    old->dns_tcp_timeout_ms != now->dns_tcp_timeout_ms ||
	    old->dns_max_udp != now->dns_max_udp)
		log_warn("reload", "key=dns note=\"needs a restart\"");
	if (strcmp(old->state_dir, now->state_dir) != 0)
		log_warn("reload", "key=state_dir note=\"needs a restart\"");
	if (old->history != now->history)
		log_warn("reload", "key=history note=\"needs a restart\"");
	if (old->max_http != now->max_http ||
	    old->http_threads != now->http_threads)
		log_warn("reload", "key=limits.max_http/http_threads "
				   "note=\"needs a restart\"");
	if (strcmp(old->node, now->node) != 0)
		log_warn("reload", "key=node note=\"needs a restart\"");
	if (old->auth_present != now->auth_present)
		log_warn("reload", "key=auth note=\"turning auth on or off "
				   "needs a restart\"");
	if (old->tls_present != now->tls_present)
		log_warn("reload", "key=tls note=\"turning TLS on or off needs "
				   "a restart\"");
	if (webhooks_changed(old, now))
		log_warn("reload", "key=webhooks note=\"needs a restart\"");
	if (old->cluster_present != now->cluster_present ||
	    (old->cluster_present && cluster_changed(old, now)))
		log_warn("reload", "key=cluster note=\"needs a restart\"");
}

static void reload(const struct options *o, struct dconf *conf, struct hub *hub,
		   struct api *api, struct auth *auth, struct webhook *wh)
{
	struct dconf fresh;
	struct hub_req req = { .op = HUB_RELOAD };
	char err[512], q[600];

	memset(&fresh, 0, sizeof(fresh));
	sd_notify(0, "RELOADING=1");
	if (dconf_load(o->config, &fresh, err, sizeof(err)) != 0) {
		log_error("reload failed", "error=%s",
			  log_quote(q, sizeof(q), err));
		sd_notify(0, "READY=1");
		return;
	}
	note_restart_needed(conf, &fresh);
	log_set_level(level_for(o, &fresh));
	if (auth_reload(auth, &fresh, err, sizeof(err)) != 0)
		log_error("reload", "key=auth note=\"secrets kept\" error=%s",
			  log_quote(q, sizeof(q), err));
	req.conf = &fresh;
	hub_call(hub, &req);
	free(req.body);
	api_reload(api, &fresh);
	if (wh)
		webhook_reload_secrets(wh, &fresh);
	dconf_release(conf);
	*conf = fresh;
	log_info("reloaded", "config=%s", o->config);
	sd_notify(0, "READY=1");
}

/* SIGTERM with drain: the node's links move elsewhere first (hub_drain.c). */
static void start_drain(const struct dconf *conf, struct hub *hub)
{
	struct hub_req req = { .op = HUB_DRAIN };

	log_info("stopping", "signal=TERM drain=true timeout_ms=%lld",
		 (long long)conf->drain_timeout_ms);
	sd_notify(0, "STOPPING=1\nSTATUS=draining");
	hub_call(hub, &req); /* instance "": this node */
	free(req.body);
}

/*
 * Until a signal says stop. While a SIGTERM drain runs, the wait wakes every
 * 100 ms to see whether the drain is over (or its timeout has passed).
 */
static void wait_for_signals(const struct options *o, struct dconf *conf,
			     struct hub *hub, struct api *api,
			     struct auth *auth, struct webhook *wh,
			     const sigset_t *set)
{
	const struct timespec step = { .tv_nsec = 100 * 1000000 };
	int64_t drain_deadline = 0;

	for (;;) {
		siginfo_t si;
		int sig = drain_deadline ? sigtimedwait(set, &si, &step) :
					   sigwaitinfo(set, &si);

		if (sig < 0 && errno == EAGAIN) {
			if (hub_drain_state(hub) == HUB_DRAINED)
				return;
			if (clock_mono_ms() >= drain_deadline) {
				log_warn("drain timeout",
					 "note=\"stopping with "
					 "links left\"");
				return;
			}
			continue;
		}
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			log_error("sigwaitinfo", "errno=%d", errno);
			return;
		}
		if (sig == SIGHUP) {
			reload(o, conf, hub, api, auth, wh);
			continue;
		}
		if (sig == SIGTERM && conf->drain_present && !drain_deadline) {
			start_drain(conf, hub);
			drain_deadline =
				clock_mono_ms() + conf->drain_timeout_ms;
			continue;
		}
		log_info("stopping", "signal=%s",
			 sig == SIGTERM ? "TERM" : "INT");
		return;
	}
}

/*
 * The HTTP side first (no new calls; its /metrics reads the DNS server's
 * counters), the DNS server (it reads the hub's board), the store's
 * threads (no new events), then the hub, which closes the links; the
 * store goes last, since a link the hub had left to close when it stopped
 * tells it that it went as the hub frees it.
 */
static void stop(struct hub *hub, struct store *store, struct api *api,
		 struct dns *dns, struct webhook *wh)
{
	/* The webhooks first: a test call waiting on their thread (up to
	 * an endpoint's timeout) is answered 503 as it stops, instead of
	 * holding the HTTP side's stop. What the hub offers after it waits
	 * in the inbox, undelivered: the cursors did not pass it, so the
	 * next start sends it. */
	webhook_stop(wh);
	if (api)
		api_stop(api);
	dns_stop(dns);
	store_stop(store);
	hub_stop(hub);
	hub_free(hub);
	store_free(store);
	webhook_free(wh);
}

/* The other modules' part of /metrics (api_add_metrics). */
struct more_metrics {
	struct dns *dns;
	struct webhook *wh;
};

static void more_metrics_hook(void *arg, struct metrics_text *t)
{
	const struct more_metrics *m = arg;

	if (m->dns)
		dns_metrics(m->dns, t);
	if (m->wh)
		webhook_metrics(m->wh, t);
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct dconf conf;
	struct auth *auth;
	struct hub *hub;
	struct store *store;
	struct api *api;
	struct dns *dns = NULL;
	struct webhook *wh = NULL;
	struct more_metrics more = { 0 };
	sigset_t set;
	char err[512], q[600];

	if (parse_args(argc, argv, &o) != 0)
		return 2;
	memset(&conf, 0, sizeof(conf));
	if (dconf_load(o.config, &conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (o.test) {
		printf("configuration OK\n");
		dconf_release(&conf);
		return 0;
	}
	log_init("discoveryd", level_for(&o, &conf));

	/* Block the signals we wait for before any thread exists, so every
	 * thread inherits the mask and only sigwaitinfo() sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Past a file-size limit write(2) fails with EFBIG, which the journal
	 * turns into a 503; the signal would kill us instead. */
	signal(SIGXFSZ, SIG_IGN);

	auth = auth_new(&conf, err, sizeof(err));
	if (!auth) {
		log_error("fatal", "error=%s", log_quote(q, sizeof(q), err));
		dconf_release(&conf);
		return 1;
	}
	hub = hub_new(&conf, auth, err, sizeof(err));
	if (!hub) {
		log_error("fatal", "error=%s", log_quote(q, sizeof(q), err));
		auth_free(auth);
		dconf_release(&conf);
		return 1;
	}
	/* Where the state lives: Redis, or the journal (store.h). */
	store = conf.cluster_present ?
			cluster_store_new(&conf, hub, err, sizeof(err)) :
			local_new(&conf, hub, err, sizeof(err));
	if (!store) {
		log_error("fatal", "error=%s", log_quote(q, sizeof(q), err));
		hub_free(hub);
		auth_free(auth);
		dconf_release(&conf);
		return 1;
	}
	hub_attach(hub, store);
	/* Webhooks follow the log from where it stands (webhook.h), always:
	 * the API may define endpoints at any time (the thread copies no
	 * event while there is none). */
	{
		wh = webhook_new(&conf, store_webhook_backend(store), err,
				 sizeof(err));
		if (!wh) {
			log_error("fatal", "error=%s",
				  log_quote(q, sizeof(q), err));
			stop(hub, store, NULL, NULL, NULL);
			auth_free(auth);
			dconf_release(&conf);
			return 1;
		}
		hub_set_sink(hub, webhook_offer, wh);
	}
	log_info("listening", "listener=agents addr=%s",
		 hub_listen_address(hub));
	if ((wh && webhook_start(wh) != 0) || hub_start(hub) != 0 ||
	    store_start(store) != 0) {
		log_error("fatal", "error=\"cannot start the hub's threads\"");
		stop(hub, store, NULL, NULL, wh);
		auth_free(auth);
		dconf_release(&conf);
		return 1;
	}
	/* DNS reads the board the hub publishes, never the hub itself. */
	if (conf.listen_dns.set &&
	    !(dns = dns_start(&conf, hub_epboard(hub), err, sizeof(err)))) {
		log_error("fatal", "error=%s", log_quote(q, sizeof(q), err));
		stop(hub, store, NULL, NULL, wh);
		auth_free(auth);
		dconf_release(&conf);
		return 1;
	}
	if (dns)
		log_info("listening", "listener=dns addr=%s domain=%s",
			 dns_listen_address(dns), conf.dns_domain);
	api = api_start(&conf, hub, store, auth, err, sizeof(err));
	if (!api) {
		log_error("fatal", "error=%s", log_quote(q, sizeof(q), err));
		stop(hub, store, NULL, dns, wh);
		auth_free(auth);
		dconf_release(&conf);
		return 1;
	}
	more.dns = dns;
	more.wh = wh;
	if (dns || wh)
		api_add_metrics(api, more_metrics_hook, &more);
	api_set_webhooks(api, wh);
	if (wh)
		log_info("webhooks", "endpoints=%zu", webhook_count(wh));
	log_info("listening", "listener=http addr=%s", api_listen_address(api));
	if (conf.auth_present)
		log_info("auth", "mode=tokens secrets=%d",
			 conf.auth_previous_secret_file ? 2 : 1);
	else
		log_warn("no auth",
			 "mode=%s note=\"anyone who can reach the "
			 "listeners can change readiness\"",
			 conf.auth_none ? "none" : "loopback-only");
	log_info("ready", "version=%s node=%s history=%lld", DISCOVERY_VERSION,
		 conf.node, (long long)conf.history);
	/* Under systemd (Type=notify): only now, with both listeners bound. */
	sd_notifyf(0, "READY=1\nSTATUS=agents on %s, HTTP on %s",
		   hub_listen_address(hub), api_listen_address(api));

	wait_for_signals(&o, &conf, hub, api, auth, wh, &set);

	sd_notify(0, "STOPPING=1");
	stop(hub, store, api, dns, wh);
	auth_free(auth);
	dconf_release(&conf);
	log_info("stopped", NULL);
	return 0;
}
