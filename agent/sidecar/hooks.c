/*
 * hooks: a bounded FIFO of hook runs and the one thread that runs them (see
 * hooks.h). A job is copied into one allocation when submitted, so the
 * agent's callback can return at once; the thread takes the oldest job,
 * runs it through run.c and logs the outcome.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "log.h"
#include "run.h"

struct job {
	struct job *next;
	const char *hook;
	const char *command;
	char *input;
	size_t input_len;
	uint64_t seq;
	char *env[6];          /* NAME=value strings, NULL-terminated */
};

struct hooks {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
	size_t len, max;
	bool stopping;
	int64_t timeout_ms;
	int cancel_fd;
	uint64_t runs;         /* hook thread only: run= of the log lines */
	pthread_t thread;
};

static void job_free(struct job *j)
{
	for (size_t i = 0; j->env[i]; i++)
		free(j->env[i]);
	free(j->input);
	free(j);
}

static int add_env(struct job *j, size_t *n, const char *name,
		   const char *value)
{
	if (!value)
		return 0;
	if (asprintf(&j->env[*n], "%s=%s", name, value) < 0) {
		j->env[*n] = NULL;
		return -1;
	}
	(*n)++;
	return 0;
}

static struct job *job_new(const struct hook_job *in)
{
	struct job *j = calloc(1, sizeof(*j));
	char seq[24];
	size_t n = 0;

	if (!j)
		return NULL;
	j->hook = in->hook;
	j->command = in->command;
	j->seq = in->seq;
	j->input = strdup(in->input ? in->input : "");
	j->input_len = j->input ? strlen(j->input) : 0;
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)in->seq);
	if (!j->input || add_env(j, &n, "DISCOVERY_KIND", in->kind) ||
	    add_env(j, &n, "DISCOVERY_SEQ", seq) ||
	    add_env(j, &n, "DISCOVERY_SERVICE", in->service) ||
	    add_env(j, &n, "DISCOVERY_COMMAND", in->command_name) ||
	    add_env(j, &n, "DISCOVERY_READY", in->ready)) {
		job_free(j);
		return NULL;
	}
	return j;
}

/*
 * One run's lines. The output goes in the hook line when its quoted form
 * fits in one part; else the hook line says how many parts follow, and
 * log_parts writes them, each tagged with the run's id: every byte of the
 * captured output reaches the log, in lines that are never cut. The
 * truncated flag comes before the output, so no cut could lose it.
 */
static void log_result(struct hooks *h, const struct job *j,
		       const struct run_result *r)
{
	char status[96], head[300], output[LOG_PART_BYTES], run[32];
	bool ok = r->outcome == RUN_EXITED && r->status == 0;
	enum log_level level = ok ? LOG_INFO : LOG_WARN;
	size_t parts = log_parts_count(r->output, r->output_len), used;
	unsigned long long id = ++h->runs;

	if (r->outcome == RUN_CANCELLED)
		level = LOG_INFO;
	snprintf(head, sizeof(head), "hook=%s seq=%llu status=%s ms=%lld run=%llu%s",
		 j->hook, (unsigned long long)j->seq,
		 run_describe(r, status, sizeof(status)),
		 (long long)r->elapsed_ms, id,
		 r->truncated ? " truncated=true" : "");
	if (!parts) {
		log_msg(level, "hook", "%s", head);
	} else if (parts == 1) {
		log_msg(level, "hook", "%s output_bytes=%zu output=%s", head,
			r->output_len,
			log_quote_bytes(output, sizeof(output), r->output,
					r->output_len, &used));
	} else {
		log_msg(level, "hook", "%s output_bytes=%zu parts=%zu", head,
			r->output_len, parts);
		snprintf(run, sizeof(run), "run=%llu", id);
		log_parts(level, "hook_output", run, "output", r->output,
			  r->output_len);
	}
}

static void *hook_thread(void *arg)
{
	struct hooks *h = arg;
	struct run_result *r = malloc(sizeof(*r));

	for (;;) {
		struct job *j;

		pthread_mutex_lock(&h->mu);
		while (!h->head && !h->stopping)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->stopping) {
			pthread_mutex_unlock(&h->mu);
			break;
		}
		j = h->head;
		h->head = j->next;
		if (!h->head)
			h->tail = NULL;
		h->len--;
		pthread_mutex_unlock(&h->mu);

		if (r) {
			run_command(j->command, j->input, j->input_len,
				    (const char *const *)j->env, h->timeout_ms,
				    h->cancel_fd, r);
			log_result(h, j, r);
		} else {
			log_error("hook", "hook=%s seq=%llu status=error:out-of-memory",
				  j->hook, (unsigned long long)j->seq);
		}
		job_free(j);
		/* Shutdown (cancel_fd): start nothing more; hooks_stop drops
		 * and counts what still waits. */
		if (r && r->outcome == RUN_CANCELLED)
			break;
	}
	free(r);
	return NULL;
}

struct hooks *hooks_start(size_t queue_max, int64_t timeout_ms, int cancel_fd)
{
	struct hooks *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->max = queue_max;
	h->timeout_ms = timeout_ms;
	h->cancel_fd = cancel_fd;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	if (pthread_create(&h->thread, NULL, hook_thread, h)) {
		pthread_cond_destroy(&h->cv);
		pthread_mutex_destroy(&h->mu);
		free(h);
		return NULL;
	}
	return h;
}

void hooks_submit(struct hooks *h, const struct hook_job *in)
{
	struct job *j;

	if (!h || !in->command)
		return;
	j = job_new(in);
	if (!j) {
		log_error("hook_dropped", "hook=%s seq=%llu reason=out-of-memory",
			  in->hook, (unsigned long long)in->seq);
		return;
	}
	pthread_mutex_lock(&h->mu);
	if (h->stopping || h->len >= h->max) {
		bool stopping = h->stopping;

		pthread_mutex_unlock(&h->mu);
		log_warn("hook_dropped", "hook=%s seq=%llu reason=%s", j->hook,
			 (unsigned long long)j->seq,
			 stopping ? "stopping" : "queue-full");
		job_free(j);
		return;
	}
	if (h->tail)
		h->tail->next = j;
	else
		h->head = j;
	h->tail = j;
	h->len++;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

void hooks_stop(struct hooks *h)
{
	struct job *j, *next;
	size_t dropped = 0;

	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stopping = true;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	for (j = h->head; j; j = next) {
		next = j->next;
		job_free(j);
		dropped++;
	}
	if (dropped)
		log_warn("hooks_dropped", "count=%zu reason=stopping", dropped);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
