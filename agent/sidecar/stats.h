/*
 * stats: the sidecar's /metrics (Prometheus text, docs/sidecar.md,
 * "Metrics"): this instance's readiness as /ready gives it, its
 * dependencies' and when each was last seen ready, the link, and the
 * hooks' runs. Most numbers are read when scraped, from libagent's
 * lock-free state and the hooks' atomics; what no one else keeps (when a
 * dependency was last ready, how links ended) is kept here, from the
 * agent's callbacks.
 */
#ifndef SIDECAR_STATS_H
#define SIDECAR_STATS_H

#include <stdbool.h>

#include <discovery/agent.h>

#include "hooks.h"

struct stats;

/* After the agent is made (its dependencies are known) and before it
 * starts. hooks_set: bit k for each hook_kind configured, whose runs are
 * shown from 0. NULL when out of memory. */
struct stats *stats_new(agent_t *a, unsigned hooks_set);
void stats_free(struct stats *st);

/* The agent thread's callbacks (on_link, on_readiness) tell these. */
void stats_link(struct stats *st, enum agent_link_state state,
		const struct agent_link_info *info);
void stats_readiness(struct stats *st, const char *service, bool ready);

/* The exposition text (malloc'd), given what /ready would answer; NULL
 * when out of memory. Any thread. */
char *stats_text(struct stats *st, const struct hooks_status *hs, bool draining,
		 bool ready);

#endif
