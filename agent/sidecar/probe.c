/*
 * probe: run the ready command on a timer (see probe.h). The thread sleeps
 * in poll(2) on the cancel fd, so shutdown wakes it at once.
 */
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "probe.h"
#include "run.h"

struct probe {
	agent_t *agent;
	const char *command; /* the config's; outlives the probe */
	int64_t interval_ms;
	int64_t timeout_ms;
	int cancel_fd;
	pthread_t thread;
};

static void *probe_thread(void *arg)
{
	struct probe *p = arg;
	struct run_result *r = malloc(sizeof(*r));
	int last = -1; /* unknown */

	while (r) {
		struct pollfd pfd = { p->cancel_fd, POLLIN, 0 };
		char status[96], out[512];
		bool ready;

		ready = run_command(p->command, NULL, 0, NULL, p->timeout_ms,
				    p->cancel_fd, r) == 0;
		if (r->outcome == RUN_CANCELLED)
			break;
		if ((int)ready != last) {
			run_describe(r, status, sizeof(status));
			log_msg(ready ? LOG_INFO : LOG_WARN, "ready_check",
				"ready=%s status=%s ms=%lld%s%s",
				ready ? "true" : "false", status,
				(long long)r->elapsed_ms,
				r->output_len ? " output=" : "",
				r->output_len ?
					log_quote(out, sizeof(out), r->output) :
					"");
			agent_set_ready(p->agent, ready);
			last = ready;
		}
		if (poll(&pfd, 1, (int)p->interval_ms) != 0)
			break;
	}
	free(r);
	return NULL;
}

struct probe *probe_start(agent_t *a, const char *command, int64_t interval_ms,
			  int64_t timeout_ms, int cancel_fd)
{
	struct probe *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->agent = a;
	p->command = command;
	p->interval_ms = interval_ms;
	p->timeout_ms = timeout_ms;
	p->cancel_fd = cancel_fd;
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
