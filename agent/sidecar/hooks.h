/*
 * hooks: the sidecar's event hooks, run one at a time, in arrival order, on
 * a thread of their own, so the agent thread (which submits them from its
 * callbacks) never waits for a hook. The queue is bounded: when it is full
 * a run is dropped and logged, never blocked on.
 *
 * Each run: `/bin/sh -c COMMAND`, the event JSON on stdin, the environment
 * plus DISCOVERY_KIND, DISCOVERY_SEQ, DISCOVERY_SERVICE (and
 * DISCOVERY_COMMAND, DISCOVERY_READY where they apply); killed with its
 * process group past the timeout; logged as
 *   msg=hook hook=on_invalidate seq=N status=exit:0 ms=12 run=R
 *            [truncated=true] output_bytes=B output="..."
 * or, when the quoted output does not fit in one line, with parts=N in
 * place of output= and N lines msg=hook_output run=R part=I/N output="...".
 */
#ifndef SIDECAR_HOOKS_H
#define SIDECAR_HOOKS_H

#include <stddef.h>
#include <stdint.h>

struct hooks;

struct hook_job {
	const char *hook;      /* "on_invalidate", ... (static) */
	const char *command;   /* owned by the caller's config; outlives hooks */
	const char *input;     /* JSON for stdin; copied */
	const char *kind;      /* DISCOVERY_KIND; copied */
	uint64_t seq;          /* DISCOVERY_SEQ */
	const char *service;   /* DISCOVERY_SERVICE; copied */
	const char *command_name; /* DISCOVERY_COMMAND, or NULL; copied */
	const char *ready;     /* DISCOVERY_READY ("true"/"false"), or NULL */
};

/*
 * Start the hook thread. cancel_fd becomes readable at shutdown: the running
 * hook is killed and the thread ends. NULL on failure.
 */
struct hooks *hooks_start(size_t queue_max, int64_t timeout_ms, int cancel_fd);
/* Queue a run (copied); never blocks. Logged and dropped when full. */
void hooks_submit(struct hooks *h, const struct hook_job *job);
/* Stop accepting, drop what waits (logged), join, free. NULL is a no-op. */
void hooks_stop(struct hooks *h);

#endif
