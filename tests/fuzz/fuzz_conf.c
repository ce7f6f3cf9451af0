/*
 * fuzz_conf: libFuzzer harness for conf_load_string, the table-driven YAML
 * loader (libcommon/conf.c, conf_value.c).
 *
 * Each input is the text of a config file, loaded from memory (exactly
 * `size` bytes, not NUL-terminated) against two tables:
 *
 *   1. discoveryd's real table. discoveryd/dconf.c is #included rather than
 *      linked, for its static dconf_keys: a copy would drift from the table
 *      the daemon runs with, and dconf_load only reads files (a temporary
 *      file per input would cost a write and a read for nothing). A rename
 *      in dconf.c breaks this build loudly instead of fuzzing a stale
 *      table. After a successful load the daemon's own validate() runs
 *      too, except when tls or auth is present: then it reads the files
 *      the input names, and a fuzzer must not open /dev/stdin or /proc.
 *   2. conf/agent.yaml's keys as the sidecar reads them (libagent's
 *      file_keys plus sconf.c's), copied here because they live in
 *      libagent and the sidecar, which this harness does not link. They
 *      bring the types dconf lacks: bool, double, enum, custom, string
 *      lists, ignored keys, required keys. One more row, `items`, is a map
 *      whose items hold a section, a list and a custom value, so that
 *      freeing partly loaded map items is exercised too (conf.h allows it;
 *      no program uses it yet).
 *
 * Besides "no crash, no leak, no undefined behaviour", it checks conf.h's
 * contract: an error says "NAME:..." and fits the buffer; after a success
 * every value obeys its row (bounds, choices, list sizes, required keys,
 * map names), checked by walking the table itself; conf_release may run
 * twice.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../discoveryd/dconf.c"

#define NAME "fuzz.yaml"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr,                                        \
				"fuzz_conf: %s:%d: check failed: %s\n",        \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

#define IN(v, lo, hi) ((v) >= (lo) && (v) <= (hi))

/* ---- the agent.yaml table ------------------------------------------------ */

struct ready_spec {
	bool value;
	bool is_command;
	char *command;
};

struct item {
	char *url;
	struct conf_strlist tags;
	struct ready_spec ready;
	int64_t weight;
	int64_t check_interval_ms;
	bool check_enabled;
};

struct agent_file {
	/* libagent (agent/lib/load.c) */
	struct conf_strlist discovery;
	char *service;
	char *instance;
	char *address;
	struct conf_strlist depends_on;
	char *token_file;
	char *ca_file;
	int on_disconnect;
	int64_t backoff_initial_ms;
	int64_t backoff_max_ms;
	double backoff_multiplier;
	int64_t heartbeat_interval_ms;
	int64_t heartbeat_timeout_ms;
	int64_t max_message;
	/* the sidecar (agent/sidecar/sconf.c) */
	struct ready_spec ready;
	int64_t ready_interval_ms;
	int64_t ready_timeout_ms;
	char *on_invalidate;
	char *on_command;
	char *on_readiness;
	char *on_reset;
	int64_t hook_timeout_ms;
	int64_t hook_queue;
	bool health_enabled;
	struct conf_addr health_listen;
	int log_level;
	/* harness only */
	struct conf_map items;
};

/* As the sidecar's parse_ready: true, false or a command. */
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

static bool item_name_ok(const char *name)
{
	return strlen(name) <= 32 && !strchr(name, '/');
}

#define A(field) offsetof(struct agent_file, field)
#define I(field) offsetof(struct item, field)

static const char *const on_disconnect_choices[] = { "keep", "lock", NULL };
static const char *const level_choices[] = { "error", "warn", "info", "debug",
					     NULL };

/* clang-format off */
static const struct conf_key backoff_keys[] = {
	{ .name = "initial", .type = CONF_DURATION, .offset = A(backoff_initial_ms),
	  .min = 1, .max = 3600000, .def = "100ms" },
	{ .name = "max", .type = CONF_DURATION, .offset = A(backoff_max_ms),
	  .min = 1, .max = 86400000, .def = "30s" },
	{ .name = "multiplier", .type = CONF_DOUBLE,
	  .offset = A(backoff_multiplier), .min = 1, .max = 10, .def = "2.0" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key agent_heartbeat_keys[] = {
	{ .name = "interval", .type = CONF_DURATION,
	  .offset = A(heartbeat_interval_ms), .min = 10, .max = 3600000,
	  .def = "10s" },
	{ .name = "timeout", .type = CONF_DURATION,
	  .offset = A(heartbeat_timeout_ms), .min = 20, .max = 86400000,
	  .def = "30s" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key hook_keys[] = {
	{ .name = "on_invalidate", .type = CONF_STRING, .offset = A(on_invalidate) },
	{ .name = "on_command", .type = CONF_STRING, .offset = A(on_command) },
	{ .name = "on_readiness", .type = CONF_STRING, .offset = A(on_readiness) },
	{ .name = "on_reset", .type = CONF_STRING, .offset = A(on_reset) },
	{ .name = "timeout", .type = CONF_DURATION, .offset = A(hook_timeout_ms),
	  .min = 1, .max = 3600000, .def = "10s" },
	{ .name = "queue", .type = CONF_INT, .offset = A(hook_queue), .min = 1,
	  .max = 100000, .def = "256" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key health_keys[] = {
	{ .name = "enabled", .type = CONF_BOOL, .offset = A(health_enabled),
	  .def = "true" },
	{ .name = "listen", .type = CONF_ADDR, .offset = A(health_listen),
	  .def = "127.0.0.1:5918" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key item_check_keys[] = {
	{ .name = "interval", .type = CONF_DURATION, .offset = I(check_interval_ms),
	  .min = 100, .max = 3600000, .def = "5s" },
	{ .name = "enabled", .type = CONF_BOOL, .offset = I(check_enabled),
	  .def = "yes" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key item_keys[] = {
	{ .name = "url", .type = CONF_STRING, .offset = I(url),
	  .flags = CONF_REQUIRED },
	{ .name = "tags", .type = CONF_STRLIST, .offset = I(tags), .max = 4,
	  .def = "default" },
	{ .name = "ready", .type = CONF_CUSTOM, .offset = I(ready),
	  .def = "true", .parse = parse_ready, .free = free_ready },
	{ .name = "weight", .type = CONF_SIZE, .offset = I(weight),
	  .min = 1, .max = 1 << 20, .def = "1KiB" },
	{ .name = "check", .type = CONF_SECTION, .sub = item_check_keys,
	  .present = CONF_NO_FIELD },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key agent_keys[] = {
	{ .name = "discovery", .type = CONF_STRLIST, .offset = A(discovery),
	  .max = 16, .flags = CONF_REQUIRED },
	{ .name = "service", .type = CONF_STRING, .offset = A(service),
	  .flags = CONF_REQUIRED },
	{ .name = "instance", .type = CONF_STRING, .offset = A(instance) },
	{ .name = "address", .type = CONF_STRING, .offset = A(address) },
	{ .name = "depends_on", .type = CONF_STRLIST, .offset = A(depends_on),
	  .alias = "requires", .max = 64 },  /* the gate's spelling */
	{ .name = "meta", .type = CONF_IGNORE },
	{ .name = "token_file", .type = CONF_STRING, .offset = A(token_file) },
	{ .name = "ca_file", .type = CONF_STRING, .offset = A(ca_file) },
	{ .name = "on_disconnect", .type = CONF_ENUM,
	  .offset = A(on_disconnect), .def = "keep",
	  .choices = on_disconnect_choices },
	{ .name = "backoff", .type = CONF_SECTION, .sub = backoff_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "heartbeat", .type = CONF_SECTION, .sub = agent_heartbeat_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "max_message", .type = CONF_SIZE, .offset = A(max_message),
	  .min = 1024, .max = 64 * 1024 * 1024, .def = "1MiB" },
	{ .name = "ready", .type = CONF_CUSTOM, .offset = A(ready),
	  .def = "true", .parse = parse_ready, .free = free_ready },
	{ .name = "ready_interval", .type = CONF_DURATION,
	  .offset = A(ready_interval_ms), .min = 100, .max = 86400000,
	  .def = "5s" },
	{ .name = "ready_timeout", .type = CONF_DURATION,
	  .offset = A(ready_timeout_ms), .min = 10, .max = 3600000,
	  .def = "5s" },
	{ .name = "hooks", .type = CONF_SECTION, .sub = hook_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "health", .type = CONF_SECTION, .sub = health_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "log_level", .type = CONF_ENUM, .offset = A(log_level),
	  .def = "info", .choices = level_choices },
	{ .name = "items", .type = CONF_MAP, .offset = A(items),
	  .sub = item_keys, .item_size = sizeof(struct item),
	  .name_check = item_name_ok },
	{ .name = NULL },
};
/* clang-format on */

/* ---- checks on a successful load ---------------------------------------- */

static void check_addr(const struct conf_addr *a)
{
	CHECK(strnlen(a->host, sizeof(a->host)) < sizeof(a->host));
	CHECK(IN(a->port, 0, 65535));
}

static void check_ready(const struct ready_spec *r)
{
	CHECK(r->is_command == (r->command != NULL));
	CHECK(!r->command || r->command[0]);
}

static void check_rows(const struct conf_key *table, const void *base,
		       bool present);

/* A map's names are unique, non-empty, pass name_check; each item obeys
 * the sub table. */
static void check_map(const struct conf_key *row, const struct conf_map *m)
{
	CHECK((m->n == 0) == (m->names == NULL));
	CHECK((m->n == 0) == (m->items == NULL));
	for (size_t i = 0; i < m->n; i++) {
		CHECK(m->names[i] && m->names[i][0]);
		CHECK(!row->name_check || row->name_check(m->names[i]));
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(m->names[i], m->names[j]) != 0);
		check_rows(row->sub,
			   (const char *)m->items + i * row->item_size, true);
	}
}

/*
 * Every value a successful load stored obeys its row, read off the table
 * itself so the checks never drift from it: numbers within bounds (min =
 * max = 0: none; max = 0: at least min; durations and sizes never
 * negative), enums index their choices, lists within max, strings with a
 * default set, and required keys set wherever their section is present
 * (always-on sections count as present, as conf.c checks them).
 */
static void check_rows(const struct conf_key *table, const void *base,
		       bool present)
{
	for (const struct conf_key *row = table; row->name; row++) {
		const void *field = (const char *)base + row->offset;
		bool bounded = row->min != 0 || row->max != 0;
		bool required = present && (row->flags & CONF_REQUIRED);

		switch (row->type) {
		case CONF_INT:
		case CONF_DURATION:
		case CONF_SIZE: {
			int64_t v = *(const int64_t *)field;

			CHECK(row->type == CONF_INT || v >= 0);
			CHECK(!bounded || (v >= row->min &&
					   (row->max == 0 || v <= row->max)));
			break;
		}
		case CONF_DOUBLE: {
			double v = *(const double *)field;

			CHECK(isfinite(v));
			CHECK(!bounded ||
			      (v >= (double)row->min &&
			       (row->max == 0 || v <= (double)row->max)));
			break;
		}
		case CONF_ENUM: {
			int v = *(const int *)field, n = 0;

			while (row->choices[n])
				n++;
			CHECK(IN(v, 0, n - 1));
			break;
		}
		case CONF_ADDR: check_addr(field); break;
		case CONF_STRING:
			CHECK(!(row->def || required) ||
			      *(char *const *)field != NULL);
			break;
		case CONF_STRLIST: {
			const struct conf_strlist *l = field;

			CHECK(row->max == 0 || l->n <= (uint64_t)row->max);
			CHECK((l->n == 0) == (l->v == NULL));
			for (size_t i = 0; i < l->n; i++)
				CHECK(l->v[i] != NULL);
			break;
		}
		case CONF_SECTION:
			check_rows(row->sub, base,
				   row->present == CONF_NO_FIELD ?
					   present :
					   *(const bool *)((const char *)base +
							   row->present));
			break;
		case CONF_MAP: check_map(row, field); break;
		default: break;
		}
	}
}

static void check_agent(const struct agent_file *c)
{
	const struct item *items = c->items.items;

	check_rows(agent_keys, c, true);
	check_ready(&c->ready);
	for (size_t i = 0; i < c->items.n; i++)
		check_ready(&items[i].ready);
}

/* ---- the harness -------------------------------------------------------- */

static void check_error(int rc, const char *err, size_t errlen)
{
	size_t n = strnlen(err, errlen);

	CHECK(rc == -1);
	CHECK(n < errlen);
	CHECK(strncmp(err, NAME ":", sizeof(NAME)) == 0);
	CHECK(n > sizeof(NAME)); /* a message after the prefix */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct dconf dc;
	struct agent_file af;
	char err[512];
	int rc;

	memset(&dc, 0, sizeof(dc));
	memset(err, 'x', sizeof(err));
	rc = conf_load_string(text, size, NAME, dconf_keys, &dc, err,
			      sizeof(err));
	if (rc == 0) {
		CHECK(err[0] == '\0');
		check_rows(dconf_keys, &dc, true);
		/* The checks across keys that dconf_load runs next, unless they
		 * would open files the input names (tls.cert: /dev/stdin). */
		if (!dc.tls_present && !dc.auth_present &&
		    validate(NAME, &dc, err, sizeof(err)) == 0)
			CHECK(dc.node != NULL);
	} else {
		check_error(rc, err, sizeof(err));
	}
	dconf_release(&dc);
	dconf_release(&dc); /* conf.h: conf_release may run twice */

	memset(&af, 0, sizeof(af));
	memset(err, 'x', sizeof(err));
	rc = conf_load_string(text, size, NAME, agent_keys, &af, err,
			      sizeof(err));
	if (rc == 0) {
		CHECK(err[0] == '\0');
		check_agent(&af);
	} else {
		check_error(rc, err, sizeof(err));
	}
	conf_release(agent_keys, &af);
	conf_release(agent_keys, &af);
	return 0;
}
