/*
 * hooks: the sidecar's event hooks, run one at a time, in arrival order, on
 * a thread of their own, so the agent thread (which submits them from its
 * callbacks) never waits for a hook.
 *
 * The queue holds queue_max runs and never blocks the agent. When a run
 * finds it full, that run and every run still waiting are dropped and
 * replaced by one reset: the on_reset hook, which tells the application it
 * missed events and should flush what it derived from them, as when the
 * daemon could not replay its history (hooks_reset, which also supersedes
 * what waits). Requests coalesce: however many come before it starts, one
 * reset runs, before any run queued after them. From the first request
 * until a reset exits 0, hooks_status says a reset is pending (the
 * sidecar's /ready answers 503); a reset that fails or times out is tried
 * again after 1 s, 2 s, 4 s ... at most 30 s apart, and what waits behind
 * it waits. Without on_reset nothing can tell the
 * application: a run that finds the queue full is dropped alone.
 *
 * A latest run (hooks_submit_latest: on_endpoints) stands for a state,
 * not an event: while one of the same hook and key waits, a newer one
 * takes its place in line, so a slow hook sees the newest state next and
 * never a backlog. Latest runs are not counted in queue_max (there is one
 * per key at most) and a reset does not drop them.
 *
 * Each run: `/bin/sh -c COMMAND`, the event JSON on stdin, the environment
 * plus DISCOVERY_KIND, DISCOVERY_SEQ, DISCOVERY_SERVICE (and
 * DISCOVERY_COMMAND, DISCOVERY_READY, DISCOVERY_REASON, DISCOVERY_INDEX
 * where they apply);
 * killed with its process group past the timeout; logged as
 *   msg=hook hook=on_invalidate seq=N status=exit:0 ms=12 run=R
 *            [service=S index=I] [truncated=true] output_bytes=B
 *            output="..."
 * or, when the quoted output does not fit in one line, with parts=N in
 * place of output= and N lines msg=hook_output run=R part=I/N output="...".
 * Overflows are logged once per episode (msg=hook_overflow, at warn).
 */
#ifndef SIDECAR_HOOKS_H
#define SIDECAR_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOOKS_RETRY_FIRST_MS 1000  /* a failed reset is tried again... */
#define HOOKS_RETRY_MAX_MS   30000 /* ...doubling, up to this */

struct hooks;

struct hook_job {
	const char *hook;    /* "on_invalidate", ... (static) */
	const char *command; /* owned by the caller's config; outlives hooks */
	const char *input;   /* JSON for stdin; copied */
	const char *kind;    /* DISCOVERY_KIND; copied */
	uint64_t seq;        /* DISCOVERY_SEQ */
	const char *service; /* DISCOVERY_SERVICE; copied */
	const char *command_name; /* DISCOVERY_COMMAND, or NULL; copied */
	const char *ready;  /* DISCOVERY_READY ("true"/"false"), or NULL */
	const char *reason; /* DISCOVERY_REASON, or NULL; copied */
	/* hooks_submit_latest: what one run replaces another of (the
	 * service; DISCOVERY_SERVICE is set apart), and DISCOVERY_INDEX. */
	const char *key; /* copied */
	uint64_t index;
};

/* A reset about to run: what its requests, merged, said. */
struct hook_reset {
	const char *reason; /* the latest request's: "link" or "overflow" */
	uint64_t seq;       /* the last seq it covers */
	size_t dropped;     /* runs dropped in its favour */
	bool resumed;       /* link: the hello had asked to resume */
};

struct hooks_config {
	size_t queue_max;
	int64_t timeout_ms;
	int cancel_fd;        /* readable at shutdown: the running hook is
			       * killed and the thread ends */
	const char *on_reset; /* or NULL; outlives hooks */
	const char *service;  /* DISCOVERY_SERVICE of a reset; outlives hooks */
	/* The stdin of a reset, asked for on the hook thread just before each
	 * attempt: malloc'd JSON, or NULL (the attempt fails). */
	char *(*reset_input)(const struct hook_reset *reset, void *ud);
	void *ud;
};

/* The hooks and the ways a run ends, as /metrics counts them
 * (discovery_agent_hook_runs_total{hook,result}). */
enum hook_kind {
	HOOK_ON_INVALIDATE,
	HOOK_ON_COMMAND,
	HOOK_ON_READINESS,
	HOOK_ON_RESET,
	HOOK_ON_ENDPOINTS,
	HOOK_KINDS
};
enum hook_result {
	HOOK_OK,        /* exit 0 */
	HOOK_FAILED,    /* another exit status */
	HOOK_SIGNAL,    /* killed by a signal not ours */
	HOOK_TIMEOUT,   /* killed past hooks.timeout */
	HOOK_CANCELLED, /* killed at shutdown */
	HOOK_ERROR,     /* could not start (or no memory to) */
	HOOK_RESULTS
};
extern const char *const hook_kind_names[HOOK_KINDS];     /* "on_reset" */
extern const char *const hook_result_names[HOOK_RESULTS]; /* "ok" */

/* What /ready and /metrics show; any thread, lock-free. */
struct hooks_status {
	bool reset_pending; /* asked for, running or failed: not yet done */
	size_t waiting;     /* runs in the queue */
	size_t dropped;     /* runs dropped since start */
	uint64_t runs[HOOK_KINDS][HOOK_RESULTS]; /* runs ended, since start */
};

/* Start the hook thread (*conf is copied). NULL on failure. */
struct hooks *hooks_start(const struct hooks_config *conf);
/* Queue a run (copied); never blocks. Past queue_max, see above. */
void hooks_submit(struct hooks *h, const struct hook_job *job);
/* Queue a latest run (job->key set; copied), in place of a waiting one of
 * the same hook and key. Never blocks. */
void hooks_submit_latest(struct hooks *h, const struct hook_job *job);
/* libagent reported a reset: run on_reset next, in place of what waits. */
void hooks_reset(struct hooks *h, uint64_t seq, bool resumed);
void hooks_status(struct hooks *h, struct hooks_status *out);
/* Stop accepting, drop what waits (logged), join, free. NULL is a no-op. */
void hooks_stop(struct hooks *h);

#endif
