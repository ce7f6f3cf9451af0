/*
 * discovery-agent: the sidecar (man discovery-agent) for programs that cannot
 * link C.
 *
 * It is libagent plus what is around it: hooks (shell commands run on
 * invalidations, commands, readiness changes, resets and the endpoints of
 * watched services, hooks.c), this instance's readiness from `ready:` (a
 * constant or a periodic check) and its load from `load_command` (probe.c),
 * a local HTTP endpoint answering /ready, /endpoints and /metrics
 * (health.c, stats.c), and the drain on SIGTERM. It uses only the public
 * <discovery/agent.h>; the agent's keys in agent.yaml are read by
 * agent_load_ex, the sidecar's own by sconf.c.
 *
 * Threads: main (signals, through sigwait on blocked signals; the drain
 * waits there too), the agent thread (whose callbacks only queue hook runs
 * and log), the hook thread, the probe threads, libmicrohttpd's thread.
 * Link and readiness log lines (msg=linked, msg=unlinked, msg=readiness)
 * are libagent's, passed through.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cJSON.h>
#include <discovery/agent.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "epjson.h"
#include "health.h"
#include "hooks.h"
#include "log.h"
#include "probe.h"
#include "sconf.h"
#include "stats.h"

#define PROG "discovery-agent"

struct sidecar {
	const char *path;
	int verbosity; /* -v minus -q */
	struct sconf conf;
	agent_t *agent;
	struct hooks *hooks;
	char service[64]; /* a reset's DISCOVERY_SERVICE */
	struct probe *probe, *load_probe;
	struct health *health;
	struct stats *stats;
	int cancel_fd; /* readable at shutdown */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [-c FILE] [-t] [-v|-q]... [-h] [-V]\n"
		   "  -c FILE  configuration (default: conf/agent.yaml in the "
		   "source tree,\n"
		   "           else /etc/discovery/agent.yaml)\n"
		   "  -t       check the configuration and exit\n"
		   "  -v / -q  more / less logging (repeatable)\n"
		   "  -h       this help\n"
		   "  -V       version\n");
}

static enum log_level effective_level(const struct sidecar *s)
{
	int level = s->conf.log_level + s->verbosity;

	if (level < LOG_ERROR)
		return LOG_ERROR;
	return level > LOG_DEBUG ? LOG_DEBUG : (enum log_level)level;
}

static void apply_level(struct sidecar *s)
{
	enum log_level level = effective_level(s);

	log_set_level(level);
	if (s->agent)
		agent_set_log_level(s->agent, (enum agent_log_level)level);
}

/* ---- agent callbacks (agent thread) ------------------------------------ */

/* libagent's "message key=value..." lines, as our own. */
static void on_log(enum agent_log_level level, const char *line, void *ud)
{
	(void)ud;
	log_agent_line((int)level, line);
}

static uint64_t current_seq(const agent_t *a)
{
	struct agent_info info;

	return agent_info(a, &info) == 0 ? info.seq : 0;
}

static const char *own_service(const agent_t *a, char *buf, size_t size)
{
	struct agent_info info;

	snprintf(buf, size, "%s",
		 agent_info(a, &info) == 0 ? info.service : "");
	return buf;
}

static void on_readiness(agent_t *a, const char *service, bool ready, void *ud)
{
	struct sidecar *s = ud;
	struct hook_job job = { 0 };
	char input[200];

	stats_readiness(s->stats, service, ready);
	if (!s->conf.on_readiness)
		return;
	snprintf(input, sizeof(input),
		 "{\"kind\":\"readiness\",\"service\":\"%s\",\"ready\":%s,"
		 "\"all_ready\":%s}\n",
		 service, ready ? "true" : "false",
		 agent_all_ready(a) ? "true" : "false");
	job.hook = "on_readiness";
	job.command = s->conf.on_readiness;
	job.input = input;
	job.kind = "readiness";
	job.seq = current_seq(a);
	job.service = service; /* a valid service name: safe in JSON */
	job.ready = ready ? "true" : "false";
	hooks_submit(s->hooks, &job);
}

static void on_event(agent_t *a, const struct agent_event *ev, void *ud)
{
	struct sidecar *s = ud;
	struct hook_job job = { 0 };
	char service[64];

	if (!strcmp(ev->kind, "invalidate")) {
		job.hook = "on_invalidate";
		job.command = s->conf.on_invalidate;
	} else if (!strcmp(ev->kind, "command")) {
		job.hook = "on_command";
		job.command = s->conf.on_command;
	}
	if (!job.command)
		return;
	job.input = ev->json;
	job.kind = ev->kind;
	job.seq = ev->seq;
	job.service = own_service(a, service, sizeof(service));
	job.command_name = ev->command;
	hooks_submit(s->hooks, &job);
}

/* The set, as JSON, in place of one still waiting for the same service. */
static void on_endpoints(agent_t *a, const struct agent_endpoints *set,
			 void *ud)
{
	struct sidecar *s = ud;
	struct hook_job job = { 0 };
	char *input = epjson_build(set, NULL);

	if (!input) {
		log_warn("hook_dropped",
			 "hook=on_endpoints service=%s reason=out-of-memory",
			 set->service);
		return;
	}
	job.hook = "on_endpoints";
	job.command = s->conf.on_endpoints;
	job.input = input;
	job.kind = "endpoints";
	job.seq = current_seq(a);
	job.service = set->service;
	job.key = set->service;
	job.index = set->index;
	hooks_submit_latest(s->hooks, &job);
	free(input);
}

static void on_link(agent_t *a, enum agent_link_state state,
		    const struct agent_link_info *info, void *ud)
{
	struct sidecar *s = ud;

	(void)a;
	stats_link(s->stats, state, info);
	if (state == AGENT_LINK_LINKED && info->reset)
		hooks_reset(s->hooks, info->seq, info->resumed);
}

/* ---- hook thread ------------------------------------------------------- */

/*
 * The stdin of on_reset, made when it is about to run: why, what it covers,
 * and the flags as they are now, since the readiness runs it dropped will
 * not come. A flag that changes after this gets a run queued behind it.
 */
static char *reset_input(const struct hook_reset *reset, void *ud)
{
	const struct sidecar *s = ud;
	struct agent_info info;
	cJSON *o = cJSON_CreateObject(), *services;
	char *text, *copy;

	if (!o || agent_info(s->agent, &info))
		goto fail;
	cJSON_AddStringToObject(o, "kind", "reset");
	cJSON_AddStringToObject(o, "reason", reset->reason);
	cJSON_AddStringToObject(o, "node", info.node);
	cJSON_AddStringToObject(o, "epoch", info.epoch);
	cJSON_AddNumberToObject(o, "seq", (double)reset->seq);
	cJSON_AddBoolToObject(o, "resumed", reset->resumed);
	cJSON_AddNumberToObject(o, "dropped", (double)reset->dropped);
	cJSON_AddBoolToObject(o, "all_ready", agent_all_ready(s->agent));
	services = cJSON_AddObjectToObject(o, "services");
	for (size_t i = 0; services && i < agent_dependency_count(s->agent);
	     i++) {
		const char *name = agent_dependency_name(s->agent, i);

		cJSON_AddBoolToObject(services, name,
				      agent_is_ready(s->agent, name));
	}
	text = services ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	/* cJSON's allocator need not be ours: hand over a malloc'd copy. */
	copy = text ? strdup(text) : NULL;
	cJSON_free(text);
	return copy;
fail:
	cJSON_Delete(o);
	return NULL;
}

/* ---- life cycle -------------------------------------------------------- */

/* The hooks configured, as stats_new wants them (bit k: hook_kind k). */
static unsigned hooks_set(const struct sconf *c)
{
	return (c->on_invalidate ? 1u << HOOK_ON_INVALIDATE : 0) |
	       (c->on_command ? 1u << HOOK_ON_COMMAND : 0) |
	       (c->on_readiness ? 1u << HOOK_ON_READINESS : 0) |
	       (c->on_reset ? 1u << HOOK_ON_RESET : 0) |
	       (c->on_endpoints ? 1u << HOOK_ON_ENDPOINTS : 0);
}

static int load(struct sidecar *s, bool check_only)
{
	char err[1024];

	if (sconf_load(s->path, &s->conf, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	s->agent = agent_load_ex(s->path, sconf_keys, err, sizeof(err));
	if (!s->agent) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	if (s->conf.on_endpoints && !agent_watch_count(s->agent)) {
		fprintf(stderr,
			"%s: hooks.on_endpoints: no service is watched (set "
			"watch, or watch_depends_on with depends_on)\n",
			s->path);
		return -1;
	}
	if (check_only)
		printf("configuration OK\n");
	return 0;
}

static int start(struct sidecar *s)
{
	struct agent_callbacks cb = { .on_readiness = on_readiness,
				      .on_event = on_event,
				      .on_link = on_link,
				      .on_log = on_log,
				      .ud = s };

	/* Only a hook needs the sets as JSON: no work for nothing. */
	if (s->conf.on_endpoints)
		cb.on_endpoints = on_endpoints;
	struct hooks_config hc = { 0 };
	char err[512];
	int rc;

	if (!s->conf.on_reset && (s->conf.on_invalidate || s->conf.on_command ||
				  s->conf.on_readiness))
		log_warn(
			"no_reset_hook", "reason=%s",
			"\"hooks.on_reset is not set: runs dropped from a full "
			"queue, and events the daemon could not replay, cannot "
			"be told to the application\"");

	s->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	own_service(s->agent, s->service, sizeof(s->service));
	hc.queue_max = (size_t)s->conf.hook_queue;
	hc.timeout_ms = s->conf.hook_timeout_ms;
	hc.cancel_fd = s->cancel_fd;
	hc.on_reset = s->conf.on_reset;
	hc.service = s->service;
	hc.reset_input = reset_input;
	hc.ud = s;
	s->hooks = s->cancel_fd >= 0 ? hooks_start(&hc) : NULL;
	if (!s->hooks) {
		log_error("start_failed", "reason=%s",
			  "cannot start the hook thread");
		return -1;
	}
	if (!(s->stats = stats_new(s->agent, hooks_set(&s->conf)))) {
		log_error("start_failed", "reason=%s", "out of memory");
		return -1;
	}
	if (s->conf.health_enabled) {
		s->health = health_start(&s->conf.health_listen, s->agent,
					 s->hooks, s->stats, err, sizeof(err));
		if (!s->health) {
			char q[600];

			log_error("start_failed", "reason=%s",
				  log_quote(q, sizeof(q), err));
			return -1;
		}
	}
	agent_set_callbacks(s->agent, &cb);
	if (!s->conf.ready.is_command)
		agent_set_ready(s->agent, s->conf.ready.value);
	rc = agent_start(s->agent);
	if (rc) {
		log_error("start_failed", "reason=\"%s\"", agent_strerror(rc));
		return -1;
	}
	if (s->conf.ready.is_command) {
		s->probe = probe_start(s->agent, PROBE_READY,
				       s->conf.ready.command,
				       s->conf.ready_interval_ms,
				       s->conf.ready_timeout_ms, s->cancel_fd);
		if (!s->probe) {
			log_error("start_failed", "reason=%s",
				  "cannot start the ready check");
			return -1;
		}
	}
	if (s->conf.load_command) {
		s->load_probe =
			probe_start(s->agent, PROBE_LOAD, s->conf.load_command,
				    s->conf.load_interval_ms,
				    s->conf.load_timeout_ms, s->cancel_fd);
		if (!s->load_probe) {
			log_error("start_failed", "reason=%s",
				  "cannot start the load command");
			return -1;
		}
	}
	return 0;
}

static void reload(struct sidecar *s)
{
	struct sconf fresh;
	char err[1024], q[1100];

	if (sconf_load(s->path, &fresh, err, sizeof(err))) {
		log_error("reload_failed", "error=%s",
			  log_quote(q, sizeof(q), err));
		return;
	}
	s->conf.log_level = fresh.log_level;
	sconf_release(&fresh);
	apply_level(s);
	log_info("reloaded", "log_level=%s restart_needed_for=\"other keys\"",
		 log_level_name(effective_level(s)));
}

static void stop(struct sidecar *s)
{
	uint64_t one = 1;

	health_stop(s->health);
	if (s->cancel_fd >= 0 && write(s->cancel_fd, &one, sizeof(one)) < 0)
		log_warn("stop", "error=%s", strerror(errno));
	probe_stop(s->probe);
	probe_stop(s->load_probe);
	agent_destroy(s->agent); /* no callback runs after this */
	hooks_stop(s->hooks);
	stats_free(s->stats);
	if (s->cancel_fd >= 0)
		close(s->cancel_fd);
	sconf_release(&s->conf);
}

/* Wait for SIGTERM or SIGINT (SIGHUP reloads); which one came. */
static int wait_for_signals(struct sidecar *s, const sigset_t *set)
{
	for (;;) {
		int sig;

		if (sigwait(set, &sig))
			continue;
		if (sig == SIGHUP) {
			reload(s);
			continue;
		}
		log_info("stopping", "signal=%s",
			 sig == SIGTERM ? "TERM" : "INT");
		return sig;
	}
}

/*
 * The preStop pattern: say draining (the daemon takes this instance out
 * of its service's ready endpoints, /ready answers 503 for a balancer),
 * keep serving for drain, then close. Another SIGTERM or a SIGINT ends the
 * wait at once; SIGHUP still reloads.
 */
static void drain(struct sidecar *s, const sigset_t *set)
{
	int64_t deadline = clock_mono_ms() + s->conf.drain_ms, left;

	agent_set_draining(s->agent, true);
	health_set_draining(s->health, true);
	sd_notify(0, "STATUS=draining");
	log_info("draining", "drain_ms=%lld", (long long)s->conf.drain_ms);
	while ((left = deadline - clock_mono_ms()) > 0) {
		struct timespec ts = { .tv_sec = left / 1000,
				       .tv_nsec = (left % 1000) * 1000000 };
		int sig = sigtimedwait(set, NULL, &ts);

		if (sig == SIGHUP) {
			reload(s);
		} else if (sig > 0) {
			log_info("drain_cut", "signal=%s",
				 sig == SIGTERM ? "TERM" : "INT");
			return;
		}
	}
	log_info("drained", "drain_ms=%lld", (long long)s->conf.drain_ms);
}

int main(int argc, char **argv)
{
	struct sidecar s = { .path = NULL, .cancel_fd = -1 };
	bool check_only = false;
	sigset_t set;
	int opt;

	while ((opt = getopt(argc, argv, "c:tvqhV")) != -1) {
		switch (opt) {
		case 'c': s.path = optarg; break;
		case 't': check_only = true; break;
		case 'v': s.verbosity++; break;
		case 'q': s.verbosity--; break;
		case 'h': usage(stdout); return 0;
		case 'V':
			printf(PROG " %s (libagent %s)\n", DISCOVERY_VERSION,
			       agent_version());
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!s.path)
		s.path = conf_default_path("agent.yaml");
	log_init(PROG, LOG_INFO);
	if (load(&s, check_only)) {
		sconf_release(&s.conf);
		return 1;
	}
	if (check_only) {
		agent_destroy(s.agent);
		sconf_release(&s.conf);
		return 0;
	}
	apply_level(&s);

	/* Before any thread exists, so every thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (start(&s)) {
		stop(&s);
		return 1;
	}
	{
		char q[600];

		log_info("started", "config=%s version=%s",
			 log_quote(q, sizeof(q), s.path), DISCOVERY_VERSION);
	}
	sd_notify(0, "READY=1");
	if (wait_for_signals(&s, &set) == SIGTERM && s.conf.drain_ms > 0)
		drain(&s, &set);
	sd_notify(0, "STOPPING=1");
	stop(&s);
	log_info("stopped", "%s", "");
	return 0;
}
