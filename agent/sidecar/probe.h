/*
 * probe: the sidecar's `ready: "command"` check. A thread runs the command
 * every ready_interval (with ready_timeout) and reports exit 0 as this
 * instance's readiness through agent_set_ready. The first result goes out
 * at once; later ones only change what the daemon sees when they differ.
 */
#ifndef SIDECAR_PROBE_H
#define SIDECAR_PROBE_H

#include <stdint.h>

#include <discovery/agent.h>

struct probe;

/* Start checking; cancel_fd becomes readable at shutdown. NULL on failure. */
struct probe *probe_start(agent_t *a, const char *command, int64_t interval_ms,
			  int64_t timeout_ms, int cancel_fd);
/* Stop (a running check is killed through cancel_fd), join, free. */
void probe_stop(struct probe *p);

#endif
