/*
 * sconf: the sidecar's keys, one table for libcommon's conf loader (see
 * sconf.h). The agent's keys come from agent_conf_keys() at load time and
 * become ignore rows, so the two readers of the file never disagree about
 * which keys exist.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <discovery/agent.h>

#include "sconf.h"

#define F(field) offsetof(struct sconf, field)

const char *const sconf_keys[] = {
	"ready",
	"ready_interval",
	"ready_timeout",
	"load_command",
	"load_interval",
	"load_timeout",
	"drain",
	"hooks",
	"health",
	"log_level",
	NULL,
};

static int parse_ready(const char *s, void *field, char *err, size_t errlen)
{
	struct ready_spec *r = field;

	memset(r, 0, sizeof(*r));
	if (!strcmp(s, "true") || !strcmp(s, "false")) {
		r->value = s[0] == 't';
		return 0;
	}
	if (!*s) {
		snprintf(err, errlen, "need true, false or a command");
		return -1;
	}
	r->command = strdup(s);
	if (!r->command) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->is_command = true;
	return 0;
}

static void free_ready(void *field)
{
	struct ready_spec *r = field;

	free(r->command);
	memset(r, 0, sizeof(*r));
}

static const char *const level_choices[] = { "error", "warn", "info", "debug",
					     NULL };

/* clang-format off */
static const struct conf_key hook_keys[] = {
	{ .name = "on_invalidate", .type = CONF_STRING, .offset = F(on_invalidate),
	  .help = "runs for each invalidation event" },
	{ .name = "on_command", .type = CONF_STRING, .offset = F(on_command),
	  .help = "runs for each command event" },
	{ .name = "on_readiness", .type = CONF_STRING, .offset = F(on_readiness),
	  .help = "runs when a dependency's readiness changes" },
	{ .name = "on_reset", .type = CONF_STRING, .offset = F(on_reset),
	  .help = "runs when the daemon could not replay missed events" },
	{ .name = "on_endpoints", .type = CONF_STRING, .offset = F(on_endpoints),
	  .help = "runs with the newest endpoints of a watched service" },
	{ .name = "timeout", .type = CONF_DURATION, .offset = F(hook_timeout_ms),
	  .min = 1, .max = 3600000, .def = "10s",
	  .help = "a hook running longer is killed" },
	{ .name = "queue", .type = CONF_INT, .offset = F(hook_queue), .min = 1,
	  .max = 100000, .def = "256", .help = "hook runs waiting at most" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key health_keys[] = {
	{ .name = "enabled", .type = CONF_BOOL, .offset = F(health_enabled),
	  .def = "true", .help = "serve /ready and /healthz" },
	{ .name = "listen", .type = CONF_ADDR, .offset = F(health_listen),
	  .def = "127.0.0.1:5918", .help = "address of the health endpoint" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key sidecar_keys[] = {
	{ .name = "ready", .type = CONF_CUSTOM, .offset = F(ready),
	  .def = "true", .parse = parse_ready, .free = free_ready,
	  .help = "true, false, or a command that exits 0 when ready" },
	{ .name = "ready_interval", .type = CONF_DURATION,
	  .offset = F(ready_interval_ms), .min = 100, .max = 86400000,
	  .def = "5s", .help = "how often the ready command runs" },
	{ .name = "ready_timeout", .type = CONF_DURATION,
	  .offset = F(ready_timeout_ms), .min = 10, .max = 3600000,
	  .def = "5s", .help = "a ready command running longer fails" },
	{ .name = "load_command", .type = CONF_STRING, .offset = F(load_command),
	  .help = "a command printing this instance's load, 0 to 1" },
	{ .name = "load_interval", .type = CONF_DURATION,
	  .offset = F(load_interval_ms), .min = 100, .max = 86400000,
	  .def = "5s", .help = "how often load_command runs" },
	{ .name = "load_timeout", .type = CONF_DURATION,
	  .offset = F(load_timeout_ms), .min = 10, .max = 3600000,
	  .def = "5s", .help = "a load_command running longer is killed" },
	{ .name = "drain", .type = CONF_DURATION, .offset = F(drain_ms),
	  .min = 0, .max = 3600000, .def = "5s",
	  .help = "on SIGTERM, draining this long before closing" },
	{ .name = "hooks", .type = CONF_SECTION, .sub = hook_keys,
	  .present = CONF_NO_FIELD, .help = "event hooks" },
	{ .name = "health", .type = CONF_SECTION, .sub = health_keys,
	  .present = CONF_NO_FIELD, .help = "local readiness endpoint" },
	{ .name = "log_level", .type = CONF_ENUM, .offset = F(log_level),
	  .def = "info", .choices = level_choices,
	  .help = "error, warn, info or debug (SIGHUP reloads it)" },
	{ .name = NULL },
};
/* clang-format on */

int sconf_load(const char *path, struct sconf *c, char *err, size_t errlen)
{
	int rc;

	memset(c, 0, sizeof(*c));
	/* libagent reads its own keys from the same file. */
	rc = conf_load_file_ignoring(path, sidecar_keys, agent_conf_keys(), c,
				     err, errlen);
	if (rc) {
		conf_release(sidecar_keys, c);
		memset(c, 0, sizeof(*c));
	}
	return rc;
}

void sconf_release(struct sconf *c)
{
	conf_release(sidecar_keys, c);
	memset(c, 0, sizeof(*c));
}
