/*
 * hooks: a bounded FIFO of hook runs, the one pending reset that stands in
 * for the runs it dropped, and the one thread that runs them (see hooks.h).
 * A job is copied into one allocation when submitted, so the agent's
 * callback can return at once; the thread runs the reset when one is asked
 * for (and its retry delay is over), else the oldest job, through run.c,
 * and logs the outcome.
 *
 * Latest runs (hooks_submit_latest) wait in a list of their own, at most
 * one per hook and key, so a reset or an overflow, which drop the FIFO's
 * events, never drops the newest state; the thread takes whichever of the
 * two lists' first jobs came first.
 *
 * Locking: the queue, the reset request and the stopping flag are under mu;
 * the retry state, the run counter and the result buffer belong to the hook
 * thread; what /ready reads (hooks_status) is atomic.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hooks.h"
#include "log.h"
#include "run.h"

#define JOB_ENV_MAX 7 /* the DISCOVERY_* variables a run can get */

struct job {
	struct job *next;
	const char *hook;
	const char *command;
	char *input;
	size_t input_len;
	uint64_t seq;
	uint64_t arrival; /* order of submission, FIFO and latest alike */
	char *key;        /* a latest job's (its service); else NULL */
	uint64_t index;
	char *env[JOB_ENV_MAX + 1]; /* NAME=value strings, NULL-terminated */
};

struct hooks {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC: retries wait on it */
	struct job *head, *tail;
	size_t len;
	struct job *latest; /* one per hook and key, oldest arrival first */
	size_t n_latest;
	uint64_t arrivals;
	bool stopping;
	bool overflowing; /* no on_reset: this episode was logged */
	bool reset_asked; /* a reset waits to start; reset says what */
	struct hook_reset reset;
	struct hooks_config conf;

	/* hook thread only */
	unsigned failures; /* resets failed in a row */
	int64_t retry_at;  /* no reset starts before (monotonic ms) */
	uint64_t run_ids;  /* run= of the log lines */
	struct run_result result;

	atomic_bool reset_pending;
	atomic_size_t waiting, dropped;
	atomic_uint_least64_t runs[HOOK_KINDS][HOOK_RESULTS];
	pthread_t thread;
};

const char *const hook_kind_names[HOOK_KINDS] = {
	"on_invalidate", "on_command",   "on_readiness",
	"on_reset",      "on_endpoints",
};

const char *const hook_result_names[HOOK_RESULTS] = {
	"ok", "failed", "signal", "timeout", "cancelled", "error",
};

/* Count one run of hook that ended as r did (NULL: it could not start). */
static void count_run(struct hooks *h, const char *hook,
		      const struct run_result *r)
{
	enum hook_result result = HOOK_ERROR;
	size_t k;

	for (k = 0; k < HOOK_KINDS; k++)
		if (!strcmp(hook, hook_kind_names[k]))
			break;
	if (k == HOOK_KINDS)
		return; /* a hook this table lacks: a bug, not counted */
	if (r) {
		switch (r->outcome) {
		case RUN_EXITED:
			result = r->status == 0 ? HOOK_OK : HOOK_FAILED;
			break;
		case RUN_SIGNALED: result = HOOK_SIGNAL; break;
		case RUN_TIMEOUT: result = HOOK_TIMEOUT; break;
		case RUN_CANCELLED: result = HOOK_CANCELLED; break;
		case RUN_FAILED: result = HOOK_ERROR; break;
		}
	}
	atomic_fetch_add_explicit(&h->runs[k][result], 1, memory_order_relaxed);
}

static void job_free(struct job *j)
{
	for (size_t i = 0; j->env[i]; i++)
		free(j->env[i]);
	free(j->input);
	free(j->key);
	free(j);
}

static void jobs_free(struct job *j)
{
	for (struct job *next; j; j = next) {
		next = j->next;
		job_free(j);
	}
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
	char seq[24], index[24];
	size_t n = 0;

	if (!j)
		return NULL;
	j->hook = in->hook;
	j->command = in->command;
	j->seq = in->seq;
	j->index = in->index;
	j->input = strdup(in->input ? in->input : "");
	j->input_len = j->input ? strlen(j->input) : 0;
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)in->seq);
	snprintf(index, sizeof(index), "%llu", (unsigned long long)in->index);
	if (in->key && !(j->key = strdup(in->key)))
		goto fail;
	if (!j->input || add_env(j, &n, "DISCOVERY_KIND", in->kind) ||
	    add_env(j, &n, "DISCOVERY_SEQ", seq) ||
	    add_env(j, &n, "DISCOVERY_SERVICE", in->service) ||
	    add_env(j, &n, "DISCOVERY_COMMAND", in->command_name) ||
	    add_env(j, &n, "DISCOVERY_READY", in->ready) ||
	    add_env(j, &n, "DISCOVERY_REASON", in->reason) ||
	    add_env(j, &n, "DISCOVERY_INDEX", in->key ? index : NULL))
		goto fail;
	return j;
fail:
	job_free(j);
	return NULL;
}

/*
 * One run's lines. The output goes in the hook line when its quoted form
 * fits in one part; else the hook line says how many parts follow, and
 * log_parts writes them, each tagged with the run's id: every byte of the
 * captured output reaches the log, in lines that are never cut. The
 * truncated flag comes before the output, so no cut could lose it.
 */
static void log_result(struct hooks *h, const struct job *j,
		       const struct run_result *r, const char *extra)
{
	char status[96], head[300], output[LOG_PART_BYTES], run[32];
	bool ok = r->outcome == RUN_EXITED && r->status == 0;
	enum log_level level = ok ? LOG_INFO : LOG_WARN;
	size_t parts = log_parts_count(r->output, r->output_len), used;
	unsigned long long id = ++h->run_ids;

	/* Counted before the line: whoever reads the line finds it counted. */
	count_run(h, j->hook, r);
	if (r->outcome == RUN_CANCELLED)
		level = LOG_INFO;
	snprintf(head, sizeof(head),
		 "hook=%s seq=%llu status=%s ms=%lld run=%llu%s%s", j->hook,
		 (unsigned long long)j->seq,
		 run_describe(r, status, sizeof(status)),
		 (long long)r->elapsed_ms, id, extra,
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

/* Run j on the hook thread (mu not held). */
static const struct run_result *run_job(struct hooks *h, const struct job *j)
{
	run_command(j->command, j->input, j->input_len,
		    (const char *const *)j->env, h->conf.timeout_ms,
		    h->conf.cancel_fd, &h->result);
	return &h->result;
}

/* ---- the reset -------------------------------------------------------- */

/* Ask for a reset (mu held), merged into one already asked for. */
static void ask_reset(struct hooks *h, const char *reason, uint64_t seq,
		      size_t dropped, bool resumed)
{
	if (!h->reset_asked)
		memset(&h->reset, 0, sizeof(h->reset));
	h->reset_asked = true;
	/* The latest request's position: the last run it stands for, or the
	 * welcome (whose seq starts over in a new epoch). */
	h->reset.reason = reason;
	h->reset.seq = seq;
	if (!strcmp(reason, "link"))
		h->reset.resumed = resumed;
	h->reset.dropped += dropped;
	atomic_fetch_add(&h->dropped, dropped);
	atomic_store(&h->reset_pending, true);
	pthread_cond_signal(&h->cv);
}

/* Take every waiting job (mu held); *count gets how many. */
static struct job *take_waiting(struct hooks *h, size_t *count)
{
	struct job *list = h->head;

	*count = h->len;
	h->head = h->tail = NULL;
	h->len = 0;
	atomic_store(&h->waiting, h->n_latest);
	return list;
}

static uint32_t retry_delay(unsigned failures)
{
	uint64_t ms = HOOKS_RETRY_FIRST_MS;

	while (failures-- > 1 && ms < HOOKS_RETRY_MAX_MS)
		ms *= 2;
	return ms < HOOKS_RETRY_MAX_MS ? (uint32_t)ms : HOOKS_RETRY_MAX_MS;
}

/*
 * Run the reset asked for (mu held on entry and exit, released while it
 * runs). Success ends the pending state unless another request came in
 * meanwhile; a failure puts the request back, merged with any newer one,
 * behind a growing delay (shutdown: no delay, nothing more runs). True when
 * shutdown cancelled it.
 */
static bool run_reset(struct hooks *h)
{
	struct hook_reset req = h->reset;
	struct hook_job in = {
		.hook = "on_reset",
		.command = h->conf.on_reset,
		.kind = "reset",
		.seq = req.seq,
		.service = h->conf.service,
		.reason = req.reason,
	};
	const struct run_result *r = NULL;
	struct job *j = NULL;
	char *input = NULL, extra[96];
	bool ok, cancelled;

	h->reset_asked = false;
	pthread_mutex_unlock(&h->mu);

	/* No reset_input: an empty stdin; NULL from it: out of memory. */
	if (h->conf.reset_input)
		input = h->conf.reset_input(&req, h->conf.ud);
	in.input = input;
	if (input || !h->conf.reset_input)
		j = job_new(&in);
	free(input);
	if (j)
		r = run_job(h, j);
	ok = r && r->outcome == RUN_EXITED && r->status == 0;
	cancelled = r && r->outcome == RUN_CANCELLED;
	snprintf(extra, sizeof(extra), " reason=%s dropped=%zu", req.reason,
		 req.dropped);
	if (!ok && !cancelled) {
		uint32_t delay = retry_delay(++h->failures);

		h->retry_at = clock_mono_ms() + delay;
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
			 " retry_ms=%u", delay);
	}
	if (j) {
		log_result(h, j, r, extra);
		job_free(j);
	} else {
		count_run(h, "on_reset", NULL);
		log_error("hook",
			  "hook=on_reset seq=%llu status=error:out-of-memory%s",
			  (unsigned long long)req.seq, extra);
	}

	/* After the line: whoever sees /ready turn 200 finds it logged. */
	pthread_mutex_lock(&h->mu);
	if (ok) {
		h->failures = 0;
		if (!h->reset_asked)
			atomic_store(&h->reset_pending, false);
	} else if (h->reset_asked) {
		h->reset.dropped += req.dropped;
	} else {
		h->reset = req;
		h->reset_asked = true;
	}
	return cancelled;
}

/* ---- the thread ------------------------------------------------------- */

/* The job submitted first of the FIFO's head and the oldest latest one,
 * taken out of its list (mu held); NULL when none waits. */
static struct job *take_next(struct hooks *h)
{
	struct job *j;

	if (h->latest && (!h->head || h->latest->arrival < h->head->arrival)) {
		j = h->latest;
		h->latest = j->next;
		h->n_latest--;
	} else if ((j = h->head)) {
		h->head = j->next;
		if (!h->head)
			h->tail = NULL;
		h->len--;
	}
	atomic_store(&h->waiting, h->len + h->n_latest);
	return j;
}

static void run_one(struct hooks *h, struct job *j, bool *cancelled)
{
	const struct run_result *r = run_job(h, j);
	char extra[128] = "";

	if (j->key)
		snprintf(extra, sizeof(extra), " service=%s index=%llu", j->key,
			 (unsigned long long)j->index);
	log_result(h, j, r, extra);
	*cancelled = r->outcome == RUN_CANCELLED;
	job_free(j);
}

/* Sleep (mu held) until ms on the monotonic clock, or a signal of cv. */
static void wait_until(struct hooks *h, int64_t ms)
{
	struct timespec ts = clock_mono_ts(ms);

	pthread_cond_timedwait(&h->cv, &h->mu, &ts);
}

static void *hook_thread(void *arg)
{
	struct hooks *h = arg;
	struct job *j;
	bool cancelled = false;

	pthread_mutex_lock(&h->mu);
	/* Shutdown (cancel_fd) ends a run as cancelled: start nothing more;
	 * hooks_stop drops and counts what still waits. */
	while (!h->stopping && !cancelled) {
		if (h->reset_asked && clock_mono_ms() < h->retry_at) {
			wait_until(h, h->retry_at);
		} else if (h->reset_asked) {
			cancelled = run_reset(h);
		} else if ((j = take_next(h))) {
			pthread_mutex_unlock(&h->mu);
			run_one(h, j, &cancelled);
			pthread_mutex_lock(&h->mu);
		} else {
			pthread_cond_wait(&h->cv, &h->mu);
		}
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

struct hooks *hooks_start(const struct hooks_config *conf)
{
	struct hooks *h = calloc(1, sizeof(*h));
	pthread_condattr_t attr;

	if (!h)
		return NULL;
	h->conf = *conf;
	/* The first link is a reset: until it has run, one is pending. */
	atomic_init(&h->reset_pending, conf->on_reset != NULL);
	atomic_init(&h->waiting, 0);
	atomic_init(&h->dropped, 0);
	pthread_mutex_init(&h->mu, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cv, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&h->thread, NULL, hook_thread, h)) {
		pthread_cond_destroy(&h->cv);
		pthread_mutex_destroy(&h->mu);
		free(h);
		return NULL;
	}
	return h;
}

/* j (or, out of memory, the run in) does not fit (mu held; released). */
static void overflow(struct hooks *h, struct job *j, const struct hook_job *in)
{
	struct job *waiting = NULL;
	size_t count = 0;
	bool first;

	if (h->conf.on_reset) {
		first = !h->reset_asked;
		waiting = take_waiting(h, &count);
		ask_reset(h, "overflow", in->seq, count + 1, false);
	} else {
		first = !h->overflowing;
		h->overflowing = true;
		atomic_fetch_add(&h->dropped, 1);
	}
	pthread_mutex_unlock(&h->mu);
	log_msg(first ? LOG_WARN : LOG_DEBUG, "hook_overflow",
		"hook=%s seq=%llu queue=%zu reset=%s%s", in->hook,
		(unsigned long long)in->seq, h->conf.queue_max,
		h->conf.on_reset ? "pending" : "none",
		j ? "" : " reason=out-of-memory");
	jobs_free(waiting);
	if (j)
		job_free(j);
}

void hooks_submit(struct hooks *h, const struct hook_job *in)
{
	struct job *j;

	if (!h || !in->command)
		return;
	j = job_new(in);
	pthread_mutex_lock(&h->mu);
	if (h->stopping) {
		pthread_mutex_unlock(&h->mu);
		log_warn("hook_dropped", "hook=%s seq=%llu reason=stopping",
			 in->hook, (unsigned long long)in->seq);
		if (j)
			job_free(j);
		return;
	}
	if (!j || h->len >= h->conf.queue_max) {
		overflow(h, j, in);
		return;
	}
	if (h->tail)
		h->tail->next = j;
	else
		h->head = j;
	h->tail = j;
	h->len++;
	j->arrival = ++h->arrivals;
	atomic_store(&h->waiting, h->len + h->n_latest);
	h->overflowing = false;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

void hooks_submit_latest(struct hooks *h, const struct hook_job *in)
{
	struct job *j, **p;
	bool replaced = false;

	if (!h || !in->command || !in->key)
		return;
	j = job_new(in);
	pthread_mutex_lock(&h->mu);
	if (h->stopping || !j) {
		pthread_mutex_unlock(&h->mu);
		log_warn("hook_dropped", "hook=%s service=%s reason=%s",
			 in->hook, in->key, j ? "stopping" : "out-of-memory");
		if (j)
			job_free(j);
		return;
	}
	for (p = &h->latest; *p; p = &(*p)->next) {
		struct job *old = *p;

		if (old->hook != in->hook || strcmp(old->key, in->key))
			continue;
		/* The newer run takes the older one's place in line. */
		j->arrival = old->arrival;
		j->next = old->next;
		*p = j;
		job_free(old);
		replaced = true;
		break;
	}
	if (!replaced) {
		j->arrival = ++h->arrivals;
		*p = j;
		h->n_latest++;
	}
	atomic_store(&h->waiting, h->len + h->n_latest);
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
	log_debug("hook_queued", "hook=%s service=%s index=%llu replaced=%s",
		  in->hook, in->key, (unsigned long long)in->index,
		  replaced ? "true" : "false");
}

void hooks_reset(struct hooks *h, uint64_t seq, bool resumed)
{
	struct job *waiting;
	size_t count;

	if (!h || !h->conf.on_reset)
		return;
	pthread_mutex_lock(&h->mu);
	if (h->stopping) {
		pthread_mutex_unlock(&h->mu);
		return;
	}
	/* What waits came before the reset: flushing covers it. */
	waiting = take_waiting(h, &count);
	ask_reset(h, "link", seq, count, resumed);
	pthread_mutex_unlock(&h->mu);
	jobs_free(waiting);
}

void hooks_status(struct hooks *h, struct hooks_status *out)
{
	memset(out, 0, sizeof(*out));
	if (!h)
		return;
	out->reset_pending = atomic_load(&h->reset_pending);
	out->waiting = atomic_load(&h->waiting);
	out->dropped = atomic_load(&h->dropped);
	for (size_t k = 0; k < HOOK_KINDS; k++)
		for (size_t r = 0; r < HOOK_RESULTS; r++)
			out->runs[k][r] =
				atomic_load_explicit(&h->runs[k][r],
						     memory_order_relaxed);
}

void hooks_stop(struct hooks *h)
{
	size_t dropped = 0;
	bool reset;

	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stopping = true;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	dropped = h->len + h->n_latest;
	jobs_free(h->head);
	jobs_free(h->latest);
	reset = h->reset_asked;
	if (dropped || reset)
		log_warn("hooks_dropped", "count=%zu reason=stopping%s",
			 dropped, reset ? " reset=pending" : "");
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
