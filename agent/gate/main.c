/*
 * discovery-gate: the 423 gate (docs/gate.md), a reverse proxy in front of a
 * web app that answers `locked_status` until the services the app requires are
 * ready, then proxies every request to it.
 *
 * It is libagent (the link to discoveryd and the readiness flags, through
 * the public <discovery/agent.h> only), state.c (open or locked, and the
 * answers the gate gives itself), and the proxy: server.c (listeners and
 * workers), worker.c (a thread's loop over loop.c), client.c (the clients'
 * side) with request.c (reading their requests, strictly, on
 * http-parser), upstream.c (an HTTP/1.1 client to the app, on
 * http-parser), relay.c (WebSocket tunnels), with forward.c (the heads
 * that cross), path.c (what passes a locked gate), admit.c (who may
 * connect), fields.c (a head's fields), ring.c (body rings and their
 * framing) and buf.c (growing buffers).
 *
 * Threads: main (signals, through sigwait on blocked signals), the agent
 * thread (its callbacks rebuild the state view), and the workers.
 */
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <discovery/agent.h>
#include <http_parser.h>

#include "gconf.h"
#include "log.h"
#include "server.h"
#include "state.h"

#define PROG "discovery-gate"

struct gate {
	const char *path;
	int verbosity; /* -v minus -q */
	struct gconf conf;
	agent_t *agent;
	struct gate_state *state;
	struct gate_server *server;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [-c FILE] [-t] [-v|-q]... [-h] [-V]\n"
		   "  -c FILE  configuration (default: conf/gate.yaml in the "
		   "source tree,\n"
		   "           else /etc/discovery/gate.yaml)\n"
		   "  -t       check the configuration and exit\n"
		   "  -v / -q  more / less logging (repeatable)\n"
		   "  -h       this help\n"
		   "  -V       version\n");
}

/* systemd's notify protocol, without libsystemd: one datagram. */
static void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n;
	int fd;

	if (!path || !*path || (n = strlen(path)) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		   (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		log_warn("sd_notify_failed", "state=%s", state);
	close(fd);
}

static enum log_level effective_level(const struct gate *g, int configured)
{
	int level = configured + g->verbosity;

	if (level < LOG_ERROR)
		return LOG_ERROR;
	return level > LOG_DEBUG ? LOG_DEBUG : (enum log_level)level;
}

static void apply_level(struct gate *g)
{
	enum log_level level = effective_level(g, g->conf.log_level);

	log_set_level(level);
	if (g->agent)
		agent_set_log_level(g->agent, (enum agent_log_level)level);
}

/* ---- agent callbacks (agent thread) ------------------------------------ */

static void on_log(enum agent_log_level level, const char *line, void *ud)
{
	(void)ud;
	log_agent_line((int)level, line);
}

static void on_readiness(agent_t *a, const char *service, bool ready, void *ud)
{
	struct gate *g = ud;

	(void)a;
	(void)service;
	(void)ready;
	gstate_update(g->state, "readiness");
}

static void on_link(agent_t *a, enum agent_link_state state,
		    const struct agent_link_info *info, void *ud)
{
	struct gate *g = ud;

	(void)a;
	(void)info;
	if (state != AGENT_LINK_CONNECTING)
		gstate_update(g->state, "link");
}

/* ---- life cycle -------------------------------------------------------- */

static int load(struct gate *g, bool check_only)
{
	char err[1024];

	if (gconf_load(g->path, &g->conf, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	g->agent = gconf_load_agent(g->path, err, sizeof(err));
	if (!g->agent) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	if (check_only)
		printf("configuration OK\n");
	return 0;
}

static int start(struct gate *g)
{
	struct agent_callbacks cb = { .on_readiness = on_readiness,
				      .on_link = on_link,
				      .on_log = on_log,
				      .ud = g };
	char err[1024], q[1100];
	int rc;

	g->state = gstate_new(g->agent, &g->conf, err, sizeof(err));
	if (g->state)
		g->server = server_start(&g->conf, g->state, err, sizeof(err));
	if (!g->state || !g->server) {
		log_error("start_failed", "reason=%s",
			  log_quote(q, sizeof(q), err));
		return -1;
	}
	agent_set_callbacks(g->agent, &cb);
	agent_set_ready(g->agent, true); /* the gate itself is up */
	rc = agent_start(g->agent);
	if (rc) {
		log_error("start_failed", "reason=\"%s\"", agent_strerror(rc));
		return -1;
	}
	return 0;
}

static void reload(struct gate *g)
{
	struct gconf fresh;
	char err[1024], q[1100];

	if (gconf_load(g->path, &fresh, err, sizeof(err)) ||
	    gstate_reload(g->state, &fresh, err, sizeof(err))) {
		log_error("reload_failed", "error=%s",
			  log_quote(q, sizeof(q), err));
		gconf_release(&fresh);
		return;
	}
	g->conf.log_level = fresh.log_level;
	apply_level(g);
	gconf_release(&fresh);
	log_info("reloaded",
		 "log_level=%s reloaded=\"log_level locked_status "
		 "retry_after pass latch loading_page\" "
		 "restart_needed_for=\"other "
		 "keys\"",
		 log_level_name(effective_level(g, g->conf.log_level)));
}

/* SIGTERM: stop taking connections, let requests finish, then stop. */
static void stop(struct gate *g)
{
	if (g->server) {
		int left = server_drain(g->server, g->conf.drain_timeout_ms);

		log_info("drained", "unfinished=%d", left);
	}
	agent_destroy(g->agent); /* no callback runs after this */
	g->agent = NULL;
	server_stop(g->server);
	gstate_free(g->state);
	gconf_release(&g->conf);
}

static void wait_for_signals(struct gate *g, const sigset_t *set)
{
	for (;;) {
		int sig;

		if (sigwait(set, &sig))
			continue;
		if (sig == SIGHUP) {
			reload(g);
			continue;
		}
		log_info("stopping", "signal=%s",
			 sig == SIGTERM ? "TERM" : "INT");
		return;
	}
}

static int parse_args(struct gate *g, int argc, char **argv, bool *check_only)
{
	int opt;

	while ((opt = getopt(argc, argv, "c:tvqhV")) != -1) {
		switch (opt) {
		case 'c': g->path = optarg; break;
		case 't': *check_only = true; break;
		case 'v': g->verbosity++; break;
		case 'q': g->verbosity--; break;
		case 'h': usage(stdout); return 0;
		case 'V':
			printf(PROG
			       " %s (libagent %s, http-parser %lu.%lu.%lu)\n",
			       DISCOVERY_VERSION, agent_version(),
			       (http_parser_version() >> 16) & 255,
			       (http_parser_version() >> 8) & 255,
			       http_parser_version() & 255);
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!g->path)
		g->path = conf_default_path("gate.yaml");
	return -1; /* go on */
}

int main(int argc, char **argv)
{
	struct gate g = { .path = NULL };
	bool check_only = false;
	sigset_t set;
	char q[600];
	int rc = parse_args(&g, argc, argv, &check_only);

	if (rc >= 0)
		return rc;
	log_init(PROG, LOG_INFO);
	if (load(&g, check_only) || check_only) {
		agent_destroy(g.agent);
		gconf_release(&g.conf);
		return check_only && g.agent ? 0 : 1;
	}
	apply_level(&g);

	/* Before any thread exists, so every thread inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (start(&g)) {
		stop(&g);
		return 1;
	}
	log_info("ready", "config=%s version=%s upstream=%s",
		 log_quote(q, sizeof(q), g.path), DISCOVERY_VERSION,
		 g.conf.upstream);
	notify_systemd("READY=1");
	wait_for_signals(&g, &set);
	notify_systemd("STOPPING=1");
	stop(&g);
	log_info("stopped", "%s", "");
	return 0;
}
