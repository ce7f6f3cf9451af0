/*
 * probe: run a command on a timer (see probe.h). The thread sleeps in
 * poll(2) on the cancel fd, so shutdown wakes it at once. What a result
 * means (readiness or load) is one report function per kind; the thread
 * is the same.
 */
#include <ctype.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "probe.h"
#include "run.h"

struct probe {
	agent_t *agent;
	enum probe_kind kind;
	const char *command; /* the config's; outlives the probe */
	int64_t interval_ms;
	int64_t timeout_ms;
	int cancel_fd;
	/* probe thread only */
	int last;             /* ready: the last readiness; -1 unknown */
	const char *last_why; /* load: why the last one was ignored; NULL ok */
	bool reported;        /* load: one was taken */
	pthread_t thread;
};

static void report_ready(struct probe *p, const struct run_result *r, bool ok)
{
	char status[96], out[512];

	if ((int)ok == p->last)
		return;
	run_describe(r, status, sizeof(status));
	log_msg(ok ? LOG_INFO : LOG_WARN, "ready_check",
		"ready=%s status=%s ms=%lld%s%s", ok ? "true" : "false", status,
		(long long)r->elapsed_ms, r->output_len ? " output=" : "",
		r->output_len ? log_quote(out, sizeof(out), r->output) : "");
	agent_set_ready(p->agent, ok);
	p->last = ok;
}

int probe_parse_load(const char *output, double *load, const char **why)
{
	const char *s = output;
	char *end;
	double v;

	while (isspace((unsigned char)*s))
		s++;
	if (!*s) {
		*why = "no output";
		return -1;
	}
	v = strtod(s, &end);
	while (end != s && isspace((unsigned char)*end))
		end++;
	if (end == s || *end || !isfinite(v)) {
		*why = "not a number";
		return -1;
	}
	if (v < 0.0 || v > 1.0) {
		*why = "out of range (0-1)";
		return -1;
	}
	*load = v;
	return 0;
}

static void report_load(struct probe *p, const struct run_result *r, bool ok)
{
	char status[96], out[512];
	const char *why = "the command failed";
	double load = 0;

	/* A NUL inside, or more than was kept, is no number either. */
	if (ok && (r->truncated || strlen(r->output) != r->output_len)) {
		ok = false;
		why = "not a number";
	}
	if (ok && !probe_parse_load(r->output, &load, &why)) {
		if (p->last_why || !p->reported)
			log_info("load_check", "load=%g ms=%lld", load,
				 (long long)r->elapsed_ms);
		agent_set_load(p->agent, load);
		p->last_why = NULL;
		p->reported = true;
		return;
	}
	/* Once per reason: a command that keeps failing says so once. */
	log_msg(why == p->last_why ? LOG_DEBUG : LOG_WARN, "load_ignored",
		"reason=\"%s\" status=%s ms=%lld output=%s", why,
		run_describe(r, status, sizeof(status)),
		(long long)r->elapsed_ms,
		log_quote(out, sizeof(out), r->output));
	p->last_why = why;
}

static void *probe_thread(void *arg)
{
	struct probe *p = arg;
	struct run_result *r = malloc(sizeof(*r));

	while (r) {
		struct pollfd pfd = { p->cancel_fd, POLLIN, 0 };
		bool ok = run_command(p->command, NULL, 0, NULL, p->timeout_ms,
				      p->cancel_fd, r) == 0;

		if (r->outcome == RUN_CANCELLED)
			break;
		if (p->kind == PROBE_READY)
			report_ready(p, r, ok);
		else
			report_load(p, r, ok);
		if (poll(&pfd, 1, (int)p->interval_ms) != 0)
			break;
	}
	free(r);
	return NULL;
}

struct probe *probe_start(agent_t *a, enum probe_kind kind, const char *command,
			  int64_t interval_ms, int64_t timeout_ms,
			  int cancel_fd)
{
	struct probe *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->agent = a;
	p->kind = kind;
	p->command = command;
	p->interval_ms = interval_ms;
	p->timeout_ms = timeout_ms;
	p->cancel_fd = cancel_fd;
	p->last = -1;
	if (pthread_create(&p->thread, NULL, probe_thread, p)) {
		free(p);
		return NULL;
	}
	return p;
}

void probe_stop(struct probe *p)
{
	if (!p)
		return;
	pthread_join(p->thread, NULL);
	free(p);
}
