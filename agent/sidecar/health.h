/*
 * health: the sidecar's local HTTP endpoint (libmicrohttpd, its own epoll
 * thread).
 *
 *   GET /ready    200 when every depends_on is ready, no reset is pending
 *                 (hooks.h) and the sidecar is not draining (SIGTERM),
 *                 else 503; body
 *                 {"ready":bool,"draining":bool,"services":{"cache":true},
 *                  "linked":bool,"reset_pending":bool,
 *                  "hooks":{"waiting":N,"dropped":N}}
 *   GET /healthz  200 while the process runs
 *   GET /endpoints/SERVICE[?state=ready|any][&tag=T]
 *                 a watched service's endpoints from the agent's copy
 *                 (epjson.h), X-Discovery-Index: the index; 404 when not
 *                 watched, 503 before its first set, 400 for another
 *                 state or a tag that is not a name
 *   GET /metrics  Prometheus text: readiness, the link, hook runs
 *                 (stats.h)
 *
 * Handlers only read libagent's and the hooks' lock-free state; nothing
 * here blocks on the agent or on a hook.
 */
#ifndef SIDECAR_HEALTH_H
#define SIDECAR_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include <discovery/agent.h>

#include "conf.h"
#include "hooks.h"

struct health;
struct stats;

/*
 * Bind addr (port 0: the kernel picks) and serve. Logs the bound address as
 * "msg=listening listener=health addr=HOST:PORT". NULL with err on failure.
 */
struct health *health_start(const struct conf_addr *addr, agent_t *a,
			    struct hooks *hooks, struct stats *stats, char *err,
			    size_t errlen);
/* /ready answers 503 with "draining":true from now on. Any thread. */
void health_set_draining(struct health *h, bool draining);
void health_stop(struct health *h);

#endif
