/*
 * probe: the sidecar's periodic commands. A thread runs a command every
 * interval (killed with its process group past timeout, as hooks are; see
 * run.h) and reports what it says to the agent:
 *
 *   ready  `ready: "command"`: exit 0 is ready (agent_set_ready). The
 *          first result goes out at once; later ones only change what the
 *          daemon sees when they differ. Logged when it changes.
 *   load   `load_command`: exit 0 with a number from 0 to 1 on stdout
 *          (blanks around it allowed) is the load (agent_set_load). Other
 *          output, a failure or a timeout is logged (msg=load_ignored,
 *          once each time the reason changes) and leaves the load as it
 *          was.
 */
#ifndef SIDECAR_PROBE_H
#define SIDECAR_PROBE_H

#include <stdint.h>

#include <discovery/agent.h>

enum probe_kind { PROBE_READY, PROBE_LOAD };

struct probe;

/* Start checking; cancel_fd becomes readable at shutdown. NULL on failure. */
struct probe *probe_start(agent_t *a, enum probe_kind kind, const char *command,
			  int64_t interval_ms, int64_t timeout_ms,
			  int cancel_fd);
/* Stop (a running check is killed through cancel_fd), join, free. NULL is
 * a no-op. */
void probe_stop(struct probe *p);

/* The load a command printed: 0 with *load, or -1 with why in *why
 * (static). */
int probe_parse_load(const char *output, double *load, const char **why);

#endif
