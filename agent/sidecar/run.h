/*
 * run: run one shell command to completion, the way the sidecar runs hooks
 * and readiness checks: `/bin/sh -c COMMAND` in a process group of its own,
 * input on stdin, stdout and stderr captured together (capped), extra
 * environment on top of ours, a deadline after which the whole group is
 * killed, and a cancel fd that stops it early (shutdown).
 *
 * The child is watched through a pidfd (pidfd_open(2)) in one poll loop
 * with its pipes: no SIGCHLD handler, no signal races. The calling thread
 * blocks for the duration; the sidecar calls it from its hook and probe
 * threads only.
 */
#ifndef SIDECAR_RUN_H
#define SIDECAR_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RUN_OUTPUT_MAX 4096 /* bytes of captured output kept */

enum run_outcome {
	RUN_EXITED = 1, /* status holds the exit code */
	RUN_SIGNALED,   /* status holds the signal */
	RUN_TIMEOUT,    /* killed at the deadline */
	RUN_CANCELLED,  /* killed because cancel_fd became readable */
	RUN_FAILED,     /* could not start; status holds errno */
};

struct run_result {
	enum run_outcome outcome;
	int status;
	int64_t elapsed_ms;
	char output[RUN_OUTPUT_MAX + 1]; /* NUL-terminated */
	size_t output_len;
	bool truncated; /* more output than RUN_OUTPUT_MAX */
};

/*
 * Run command. input (input_len bytes, may be NULL) goes to stdin, which is
 * then closed. env is a NULL-terminated list of "NAME=value" added to (and
 * overriding) the environment; may be NULL. cancel_fd < 0: none; once it is
 * readable nothing more is started (RUN_CANCELLED at once). Always fills *r;
 * returns 0 when the command exited with 0, else -1. The caller must ignore
 * SIGPIPE (the sidecar does): a command that exits without reading all of
 * its input makes our write fail with EPIPE.
 */
int run_command(const char *command, const char *input, size_t input_len,
		const char *const *env, int64_t timeout_ms, int cancel_fd,
		struct run_result *r);

/* The monotonic clock deadlines are measured on, in ms. */

/* "exit:0", "exit:3", "signal:9", "timeout", "cancelled", "error:..." */
const char *run_describe(const struct run_result *r, char *buf, size_t size);

#endif
