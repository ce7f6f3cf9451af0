/*
 * health: the sidecar's local HTTP endpoint (libmicrohttpd, its own epoll
 * thread).
 *
 *   GET /ready    200 when every depends_on is ready and no reset is
 *                 pending (hooks.h), else 503; body
 *                 {"ready":bool,"services":{"cache":true,...},"linked":bool,
 *                  "reset_pending":bool,"hooks":{"waiting":N,"dropped":N}}
 *   GET /healthz  200 while the process runs
 *
 * Handlers only read libagent's and the hooks' lock-free flags; nothing
 * here blocks on the agent or on a hook.
 */
#ifndef SIDECAR_HEALTH_H
#define SIDECAR_HEALTH_H

#include <stddef.h>

#include <discovery/agent.h>

#include "conf.h"
#include "hooks.h"

struct health;

/*
 * Bind addr (port 0: the kernel picks) and serve. Logs the bound address as
 * "msg=listening listener=health addr=HOST:PORT". NULL with err on failure.
 */
struct health *health_start(const struct conf_addr *addr, const agent_t *a,
			    struct hooks *hooks, char *err, size_t errlen);
void health_stop(struct health *h);

#endif
