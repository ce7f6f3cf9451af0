/*
 * sconf: the sidecar's own keys in agent.yaml (ready, ready_interval,
 * ready_timeout, load_command, load_interval, load_timeout, drain, hooks,
 * health, log_level). The agent's keys in the same
 * file belong to libagent (agent_load_ex) and are skipped here; each loader
 * skips the other's keys, so a key neither knows is an error in the first.
 */
#ifndef SIDECAR_SCONF_H
#define SIDECAR_SCONF_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"

/* `ready:` is true, false, or a shell command that exits 0 when ready. */
struct ready_spec {
	bool is_command;
	bool value;    /* when !is_command */
	char *command; /* when is_command; malloc'd */
};

struct sconf {
	struct ready_spec ready;
	int64_t ready_interval_ms;
	int64_t ready_timeout_ms;
	char *load_command; /* or NULL */
	int64_t load_interval_ms;
	int64_t load_timeout_ms;
	int64_t drain_ms; /* 0: close at once on SIGTERM */
	char *on_invalidate;
	char *on_command;
	char *on_readiness;
	char *on_reset;
	char *on_endpoints;
	int64_t hook_timeout_ms;
	int64_t hook_queue;
	bool health_enabled;
	struct conf_addr health_listen;
	int log_level; /* enum log_level */
};

/* The top-level keys read here, NULL-terminated (for agent_load_ex). */
extern const char *const sconf_keys[];

/* Load path; 0, or -1 with "FILE:LINE:COL: message" in err. */
int sconf_load(const char *path, struct sconf *c, char *err, size_t errlen);
void sconf_release(struct sconf *c);

#endif
