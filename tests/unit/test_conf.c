/*
 * test_conf: unit tests for libcommon/conf.c, the table-driven YAML loader.
 *
 * One table below uses every key type; each test loads a small document
 * from a string and checks what landed in the struct, or the exact
 * "name:line:col: message" the loader wrote. Every test ends in conf_release,
 * so valgrind and ASan also check that nothing leaks, failures included.
 * What the loader takes as a document at all (syntax, aliases, depth,
 * size, files) is test_conf_input.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

#define ERRLEN  512
#define KIB     (INT64_C(1) << 10)
#define MIB     (INT64_C(1) << 20)
#define HOUR_MS (INT64_C(3600) * 1000)

struct hook {
	bool enabled;
	char *command;
};

struct service {
	int64_t weight;
	char *label;
	struct conf_strlist tags;
	bool check_present;
	int64_t check_interval_ms;
};

struct cfg {
	char *name;
	int64_t count;
	int64_t total;
	bool enabled;
	double ratio;
	int64_t interval_ms;
	int64_t buffer;
	struct conf_addr listen;
	int color;
	struct hook hook;
	struct conf_strlist hosts;
	bool auth_present;
	char *auth_secret;
	int64_t auth_ttl_ms;
	int64_t hb_interval_ms;
	int64_t hb_timeout_ms;
	struct conf_map services;
};

/* "true", "false" or a command to run. */
static int parse_hook(const char *s, void *field, char *err, size_t errlen)
{
	struct hook *h = field;

	if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
		h->enabled = s[0] == 't';
		return 0;
	}
	if (!s[0]) {
		snprintf(err, errlen, "must be true, false or a command");
		return -1;
	}
	h->command = strdup(s);
	h->enabled = true;
	return h->command ? 0 : -1;
}

static void free_hook(void *field)
{
	struct hook *h = field;

	free(h->command);
	h->command = NULL;
}

static bool lowercase_name(const char *name)
{
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") ==
	       strlen(name);
}

#define F(field) offsetof(struct cfg, field)
#define S(field) offsetof(struct service, field)

static const char *const colors[] = { "red", "green", "blue", NULL };

/* clang-format off */
static const struct conf_key auth_keys[] = {
	{ .name = "secret", .type = CONF_STRING, .offset = F(auth_secret) },
	{ .name = "ttl", .type = CONF_DURATION, .offset = F(auth_ttl_ms),
	  .def = "1h" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key heartbeat_keys[] = {
	{ .name = "interval", .type = CONF_DURATION, .offset = F(hb_interval_ms),
	  .min = 100, .max = HOUR_MS, .def = "1s" },
	{ .name = "timeout", .type = CONF_DURATION, .offset = F(hb_timeout_ms),
	  .def = "3s" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key check_keys[] = {
	{ .name = "interval", .type = CONF_DURATION,
	  .offset = S(check_interval_ms), .def = "5s" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key service_keys[] = {
	{ .name = "weight", .type = CONF_INT, .offset = S(weight),
	  .min = 1, .max = 10, .def = "1" },
	{ .name = "label", .type = CONF_STRING, .offset = S(label) },
	{ .name = "tags", .type = CONF_STRLIST, .offset = S(tags), .max = 2 },
	{ .name = "check", .type = CONF_SECTION, .sub = check_keys,
	  .present = S(check_present) },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key cfg_keys[] = {
	{ .name = "name", .type = CONF_STRING, .offset = F(name), .def = "demo" },
	{ .name = "count", .type = CONF_INT, .offset = F(count),
	  .min = 1, .max = 100, .def = "10" },
	{ .name = "total", .type = CONF_INT, .offset = F(total) },
	{ .name = "enabled", .type = CONF_BOOL, .offset = F(enabled),
	  .def = "yes" },
	{ .name = "ratio", .type = CONF_DOUBLE, .offset = F(ratio),
	  .min = 0, .max = 1, .def = "0.5" },
	{ .name = "interval", .type = CONF_DURATION, .offset = F(interval_ms),
	  .min = 100, .max = HOUR_MS, .def = "10s" },
	{ .name = "buffer", .type = CONF_SIZE, .offset = F(buffer),
	  .min = KIB, .max = 16 * MIB, .def = "64KiB" },
	{ .name = "listen", .type = CONF_ADDR, .offset = F(listen),
	  .def = "127.0.0.1:5916" },
	{ .name = "color", .type = CONF_ENUM, .offset = F(color),
	  .choices = colors, .def = "green" },
	{ .name = "hook", .type = CONF_CUSTOM, .offset = F(hook),
	  .parse = parse_hook, .free = free_hook, .def = "true" },
	{ .name = "hosts", .type = CONF_STRLIST, .offset = F(hosts), .max = 3,
	  .def = "localhost" },
	{ .name = "auth", .type = CONF_SECTION, .sub = auth_keys,
	  .present = F(auth_present) },
	{ .name = "heartbeat", .type = CONF_SECTION, .sub = heartbeat_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "services", .type = CONF_MAP, .offset = F(services),
	  .sub = service_keys, .item_size = sizeof(struct service),
	  .name_check = lowercase_name },
	{ .name = "other", .type = CONF_IGNORE },
	{ .name = NULL },
};
/* clang-format on */

/* A second table for required keys. */
struct req {
	char *token;
	int64_t max;
	bool tls_present;
	char *tls_cert;
	char *tls_key;
	char *db_url;
};

#define R(field) offsetof(struct req, field)

/* clang-format off */
static const struct conf_key tls_keys[] = {
	{ .name = "cert", .type = CONF_STRING, .offset = R(tls_cert),
	  .flags = CONF_REQUIRED },
	{ .name = "key", .type = CONF_STRING, .offset = R(tls_key) },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key db_keys[] = {
	{ .name = "url", .type = CONF_STRING, .offset = R(db_url),
	  .flags = CONF_REQUIRED },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key req_keys[] = {
	{ .name = "token", .type = CONF_STRING, .offset = R(token),
	  .flags = CONF_REQUIRED },
	{ .name = "max", .type = CONF_INT, .offset = R(max),
	  .flags = CONF_REQUIRED, .def = "5" },
	{ .name = "tls", .type = CONF_SECTION, .sub = tls_keys,
	  .present = R(tls_present) },
	{ .name = "db", .type = CONF_SECTION, .sub = db_keys,
	  .present = CONF_NO_FIELD },
	{ .name = NULL },
};
/* clang-format on */

static int load(const char *text, struct cfg *c, char *err)
{
	return conf_load_string(text, strlen(text), "t.yaml", cfg_keys, c, err,
				ERRLEN);
}

/* Load text, expect failure with exactly `want`, and free what was stored. */
static void expect_error(const char *text, const char *want)
{
	struct cfg c = { 0 };
	char err[ERRLEN] = "";

	assert_int_equal(load(text, &c, err), -1);
	assert_string_equal(err, want);
	conf_release(cfg_keys, &c);
}

static void expect_req_error(const char *text, const char *want)
{
	struct req r = { 0 };
	char err[ERRLEN] = "";

	assert_int_equal(conf_load_string(text, strlen(text), "t.yaml",
					  req_keys, &r, err, ERRLEN),
			 -1);
	assert_string_equal(err, want);
	conf_release(req_keys, &r);
}

static void check_defaults(const struct cfg *c)
{
	assert_string_equal(c->name, "demo");
	assert_int_equal(c->count, 10);
	assert_int_equal(c->total, 0);
	assert_true(c->enabled);
	assert_true(c->ratio == 0.5);
	assert_int_equal(c->interval_ms, 10000);
	assert_int_equal(c->buffer, 64 * KIB);
	assert_string_equal(c->listen.host, "127.0.0.1");
	assert_int_equal(c->listen.port, 5916);
	assert_int_equal(c->color, 1);
	assert_true(c->hook.enabled);
	assert_null(c->hook.command);
	assert_int_equal(c->hosts.n, 1);
	assert_string_equal(c->hosts.v[0], "localhost");
	assert_false(c->auth_present);
	assert_null(c->auth_secret);
	assert_int_equal(c->auth_ttl_ms, HOUR_MS);
	assert_int_equal(c->hb_interval_ms, 1000);
	assert_int_equal(c->hb_timeout_ms, 3000);
	assert_int_equal(c->services.n, 0);
	assert_null(c->services.names);
}

/* ---- whole documents --------------------------------------------------- */

static void test_empty_document_gives_defaults(void **state)
{
	static const char *const empties[] = {
		"", "\n", "# only a comment\n", "~\n", "---\n", "--- ~\n...\n",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
		struct cfg c = { 0 };
		char err[ERRLEN] = "";

		assert_int_equal(load(empties[i], &c, err), 0);
		assert_string_equal(err, "");
		check_defaults(&c);
		conf_release(cfg_keys, &c);
	}
}

static void test_every_type(void **state)
{
	const char *text = "name: \"my service\"\n"
			   "count: 42\n"
			   "total: -9223372036854775808\n"
			   "enabled: off\n"
			   "ratio: 0.25\n"
			   "interval: 1.5s\n"
			   "buffer: 2MiB\n"
			   "listen: \"[::1]:8080\"\n"
			   "color: blue\n"
			   "hook: /usr/bin/check --quick\n"
			   "hosts: [a.example, b.example]\n"
			   "auth:\n"
			   "  secret: /etc/secret\n"
			   "  ttl: 5m\n"
			   "heartbeat: {interval: 250ms, timeout: 0}\n"
			   "other: {owned: [by, someone, else]}\n";
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(load(text, &c, err), 0);
	assert_string_equal(c.name, "my service");
	assert_int_equal(c.count, 42);
	assert_true(c.total == INT64_MIN);
	assert_false(c.enabled);
	assert_true(c.ratio == 0.25);
	assert_int_equal(c.interval_ms, 1500);
	assert_int_equal(c.buffer, 2 * MIB);
	assert_string_equal(c.listen.host, "::1");
	assert_int_equal(c.listen.port, 8080);
	assert_int_equal(c.color, 2);
	assert_true(c.hook.enabled);
	assert_string_equal(c.hook.command, "/usr/bin/check --quick");
	assert_int_equal(c.hosts.n, 2);
	assert_string_equal(c.hosts.v[0], "a.example");
	assert_string_equal(c.hosts.v[1], "b.example");
	assert_true(c.auth_present);
	assert_string_equal(c.auth_secret, "/etc/secret");
	assert_int_equal(c.auth_ttl_ms, 5 * 60 * 1000);
	assert_int_equal(c.hb_interval_ms, 250);
	assert_int_equal(c.hb_timeout_ms, 0);
	conf_release(cfg_keys, &c);
	assert_null(c.name);
	assert_null(c.hook.command);
	assert_null(c.hosts.v);
	assert_int_equal(c.hosts.n, 0);
	assert_null(c.auth_secret);
	conf_release(cfg_keys, &c); /* twice is safe */
}

/* ---- keys -------------------------------------------------------------- */

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error("name: x\nfoo: 1\n", "t.yaml:2:1: unknown key 'foo'");
	expect_error("heartbeat:\n  interval: 1s\n  bogus: 2\n",
		     "t.yaml:3:3: unknown key 'bogus' in 'heartbeat'");
	expect_error("services:\n  web:\n    weight: 2\n    port: 80\n",
		     "t.yaml:4:5: unknown key 'port' in 'services.web'");
	expect_error("services:\n  web:\n    check: {every: 1s}\n",
		     "t.yaml:3:13: unknown key 'every' in "
		     "'services.web.check'");
	expect_error("? [a, b]\n: 1\n", "t.yaml:1:3: keys must be plain names");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	expect_error("count: 1\nname: x\ncount: 2\n",
		     "t.yaml:3:1: duplicate key 'count'");
	expect_error("auth:\n  secret: a\n  secret: b\n",
		     "t.yaml:3:3: duplicate key 'secret' in 'auth'");
	expect_error("auth: {}\nauth: {}\n",
		     "t.yaml:2:1: duplicate key 'auth'");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_error("name: [a]\n", "t.yaml:1:7: 'name' must be a string");
	expect_error("count: abc\n", "t.yaml:1:8: 'count' must be an integer");
	expect_error("count: 1.0\n", "t.yaml:1:8: 'count' must be an integer");
	expect_error("count: 0x10\n", "t.yaml:1:8: 'count' must be an integer");
	expect_error("count: {a: 1}\n",
		     "t.yaml:1:8: 'count' must be an integer");
	expect_error("enabled: maybe\n", "t.yaml:1:10: 'enabled' must be true "
					 "or false (or yes/no, on/off)");
	expect_error("ratio: half\n", "t.yaml:1:8: 'ratio' must be a number");
	expect_error("ratio: nan\n", "t.yaml:1:8: 'ratio' must be a number");
	expect_error("ratio: 0x1p-1\n", "t.yaml:1:8: 'ratio' must be a number");
	expect_error("interval: 10\n", "t.yaml:1:11: 'interval' must be a "
				       "duration like 250ms, 10s, 5m or 1h");
	expect_error("buffer: 1KB\n", "t.yaml:1:9: 'buffer' must be a size "
				      "like 512B, 64KiB, 1MiB or 1GiB");
	expect_error("listen: localhost\n",
		     "t.yaml:1:9: 'listen' must be an "
		     "address like 127.0.0.1:5916, [::1]:5916 or :5916");
	expect_error("color: purple\n",
		     "t.yaml:1:8: 'color' must be one of: red, green, blue");
	expect_error("color: Red\n",
		     "t.yaml:1:8: 'color' must be one of: red, green, blue");
	expect_error("heartbeat: 5\n",
		     "t.yaml:1:12: 'heartbeat' must be a mapping");
	expect_error("auth: [a]\n", "t.yaml:1:7: 'auth' must be a mapping");
	expect_error("services: [web]\n",
		     "t.yaml:1:11: 'services' must be a mapping");
	expect_error("hosts: {a: b}\n", "t.yaml:1:8: 'hosts' must be a string "
					"or a list of strings");
	expect_error("name: \"a\\0b\"\n",
		     "t.yaml:1:7: 'name' contains a NUL byte");
}

static void test_null_values(void **state)
{
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	expect_error("count:\n", "t.yaml:1:7: 'count' has no value");
	expect_error("name: ~\n", "t.yaml:1:7: 'name' has no value "
				  "(write \"\" for an empty string)");
	expect_error("listen: null\n", "t.yaml:1:9: 'listen' has no value");

	/* Quoted, it is a string; null collections are empty. */
	assert_int_equal(load("name: \"\"\nhosts:\nservices: ~\n", &c, err), 0);
	assert_string_equal(c.name, "");
	assert_int_equal(c.hosts.n, 0);
	assert_int_equal(c.services.n, 0);
	conf_release(cfg_keys, &c);
	assert_int_equal(load("name: 'null'\n", &c, err), 0);
	assert_string_equal(c.name, "null");
	conf_release(cfg_keys, &c);
}

static void test_bounds(void **state)
{
	(void)state;
	expect_error("count: 0\n",
		     "t.yaml:1:8: 'count' must be between 1 and 100");
	expect_error("count: 101\n",
		     "t.yaml:1:8: 'count' must be between 1 and 100");
	expect_error("count: -5\n",
		     "t.yaml:1:8: 'count' must be between 1 and 100");
	expect_error("count: 99999999999999999999\n",
		     "t.yaml:1:8: 'count' must be between 1 and 100");
	expect_error("total: 9223372036854775808\n",
		     "t.yaml:1:8: 'total' is out of range");
	expect_error("ratio: 1.5\n",
		     "t.yaml:1:8: 'ratio' must be between 0 and 1");
	expect_error("ratio: 1e999\n",
		     "t.yaml:1:8: 'ratio' must be between 0 and 1");
	expect_error("interval: 50ms\n",
		     "t.yaml:1:11: 'interval' must be between 100ms and 1h");
	expect_error("interval: 61m\n",
		     "t.yaml:1:11: 'interval' must be between 100ms and 1h");
	expect_error("interval: 99999999999999999999h\n",
		     "t.yaml:1:11: 'interval' must be between 100ms and 1h");
	expect_error("heartbeat:\n  timeout: 9999999999999999h\n",
		     "t.yaml:2:12: 'timeout' is out of range");
	expect_error("buffer: 512B\n",
		     "t.yaml:1:9: 'buffer' must be between 1KiB and 16MiB");
	expect_error("buffer: 17MiB\n",
		     "t.yaml:1:9: 'buffer' must be between 1KiB and 16MiB");
}

static void test_bound_edges_accepted(void **state)
{
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(load("count: 1\nratio: 0\ninterval: 100ms\n"
			      "buffer: 1024\n",
			      &c, err),
			 0);
	assert_int_equal(c.count, 1);
	assert_true(c.ratio == 0.0);
	assert_int_equal(c.interval_ms, 100);
	assert_int_equal(c.buffer, KIB);
	conf_release(cfg_keys, &c);
	assert_int_equal(load("count: +100\nratio: 1.0\ninterval: 1h\n"
			      "buffer: 16MiB\n",
			      &c, err),
			 0);
	assert_int_equal(c.count, 100);
	assert_true(c.ratio == 1.0);
	assert_int_equal(c.interval_ms, HOUR_MS);
	assert_int_equal(c.buffer, 16 * MIB);
	conf_release(cfg_keys, &c);
}

static void test_bools(void **state)
{
	static const struct {
		const char *text;
		bool value;
	} cases[] = {
		{ "true", true }, { "TRUE", true },   { "Yes", true },
		{ "on", true },   { "false", false }, { "No", false },
		{ "OFF", false },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg c = { 0 };
		char text[64], err[ERRLEN] = "";

		snprintf(text, sizeof(text), "enabled: %s\n", cases[i].text);
		assert_int_equal(load(text, &c, err), 0);
		assert_int_equal(c.enabled, cases[i].value);
		conf_release(cfg_keys, &c);
	}
	expect_error("enabled: 1\n", "t.yaml:1:10: 'enabled' must be true or "
				     "false (or yes/no, on/off)");
}

/* ---- sections, maps, lists --------------------------------------------- */

/* A section that also takes one word: "auth: none" or "auth: {...}". */
struct wordcfg {
	bool present;
	bool none;
	char *file;
};

static int parse_none(const char *s, void *field, char *err, size_t errlen)
{
	if (strcmp(s, "none") != 0) {
		snprintf(err, errlen, "must be a mapping or none");
		return -1;
	}
	*(bool *)field = true;
	return 0;
}

/* clang-format off */
static const struct conf_key word_sub[] = {
	{ .name = "file", .type = CONF_STRING,
	  .offset = offsetof(struct wordcfg, file) },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key word_keys[] = {
	{ .name = "auth", .type = CONF_SECTION, .sub = word_sub,
	  .present = offsetof(struct wordcfg, present),
	  .offset = offsetof(struct wordcfg, none), .parse = parse_none },
	{ .name = NULL },
};
/* clang-format on */

static void test_section_or_word(void **state)
{
	struct wordcfg c;
	char err[ERRLEN];

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(conf_load_string("auth: none\n", 11, "w.yaml",
					  word_keys, &c, err, sizeof(err)),
			 0);
	assert_true(c.none);
	assert_false(c.present);
	conf_release(word_keys, &c);
	memset(&c, 0, sizeof(c));
	assert_int_equal(conf_load_string("auth: {file: x}\n", 16, "w.yaml",
					  word_keys, &c, err, sizeof(err)),
			 0);
	assert_true(c.present);
	assert_false(c.none);
	assert_string_equal(c.file, "x");
	conf_release(word_keys, &c);
	memset(&c, 0, sizeof(c));
	assert_int_equal(conf_load_string("auth: maybe\n", 12, "w.yaml",
					  word_keys, &c, err, sizeof(err)),
			 -1);
	assert_string_equal(err,
			    "w.yaml:1:7: 'auth': must be a mapping or none");
	conf_release(word_keys, &c);
}

static void test_load_ignoring(void **state)
{
	static const char *const foreign[] = { "depends_on", "hooks", NULL };
	struct wordcfg c;
	char path[] = "/tmp/test_conf_XXXXXX", err[ERRLEN];
	int fd = mkstemp(path);
	static const char text[] =
		"auth: none\nhooks: {a: 1}\ndepends_on: [x]\n";

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1),
			 (int)sizeof(text) - 1);
	close(fd);
	memset(&c, 0, sizeof(c));
	assert_int_equal(conf_load_file_ignoring(path, word_keys, foreign, &c,
						 err, sizeof(err)),
			 0);
	assert_true(c.none);
	conf_release(word_keys, &c);
	memset(&c, 0, sizeof(c));
	assert_int_equal(conf_load_file_ignoring(path, word_keys, NULL, &c, err,
						 sizeof(err)),
			 -1);
	assert_non_null(strstr(err, ":2:1: unknown key 'hooks'"));
	conf_release(word_keys, &c);
	unlink(path);
}

static void test_section_present(void **state)
{
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(load("name: x\n", &c, err), 0);
	assert_false(c.auth_present);
	conf_release(cfg_keys, &c);

	assert_int_equal(load("auth:\n", &c, err), 0);
	assert_true(c.auth_present);
	assert_null(c.auth_secret);
	assert_int_equal(c.auth_ttl_ms, HOUR_MS);
	conf_release(cfg_keys, &c);

	memset(&c, 0, sizeof(c));
	assert_int_equal(load("auth: {}\nheartbeat: {}\n", &c, err), 0);
	assert_true(c.auth_present);
	assert_int_equal(c.hb_interval_ms, 1000);
	conf_release(cfg_keys, &c);
}

static void test_map(void **state)
{
	const char *text = "services:\n"
			   "  web:\n"
			   "    weight: 3\n"
			   "    label: front\n"
			   "    tags: [a, b]\n"
			   "    check: {interval: 2s}\n"
			   "  db: {}\n"
			   "  cache:\n";
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	const struct service *s;
	(void)state;

	assert_int_equal(load(text, &c, err), 0);
	assert_int_equal(c.services.n, 3);
	s = c.services.items;
	assert_string_equal(c.services.names[0], "web");
	assert_int_equal(s[0].weight, 3);
	assert_string_equal(s[0].label, "front");
	assert_int_equal(s[0].tags.n, 2);
	assert_string_equal(s[0].tags.v[1], "b");
	assert_true(s[0].check_present);
	assert_int_equal(s[0].check_interval_ms, 2000);
	assert_string_equal(c.services.names[1], "db");
	assert_int_equal(s[1].weight, 1);
	assert_null(s[1].label);
	assert_false(s[1].check_present);
	assert_int_equal(s[1].check_interval_ms, 5000);
	assert_string_equal(c.services.names[2], "cache");
	assert_int_equal(s[2].weight, 1);
	conf_release(cfg_keys, &c);
	assert_int_equal(c.services.n, 0);
	assert_null(c.services.names);
	assert_null(c.services.items);
}

static void test_map_errors(void **state)
{
	(void)state;
	expect_error("services:\n  web: {}\n  Web: {}\n",
		     "t.yaml:3:3: invalid name 'Web' in 'services'");
	expect_error("services:\n  \"\": {}\n",
		     "t.yaml:2:3: invalid name '' in 'services'");
	expect_error("services:\n  a: {}\n  b: {}\n  c: {}\n  b: {}\n  a: {}\n",
		     "t.yaml:5:3: duplicate key 'b' in 'services'");
	expect_error("services:\n  web: 5\n",
		     "t.yaml:2:8: 'services.web' must be a mapping");
	expect_error("services:\n  web: {weight: 11}\n",
		     "t.yaml:2:17: 'weight' must be between 1 and 10");
	expect_error("services:\n  web: {tags: [a, b, c]}\n",
		     "t.yaml:2:15: 'tags' has 3 entries; at most 2 are "
		     "allowed");
}

static void test_many_map_items(void **state)
{
	size_t n = 5000, size = n * 16 + 16, used;
	char *text = malloc(size);
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_non_null(text);
	used = (size_t)snprintf(text, size, "services:\n");
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(text + used, size - used,
					 "  s%zu: {}\n", i);
	assert_int_equal(conf_load_string(text, used, "t.yaml", cfg_keys, &c,
					  err, ERRLEN),
			 0);
	assert_int_equal(c.services.n, n);
	assert_string_equal(c.services.names[n - 1], "s4999");
	conf_release(cfg_keys, &c);
	free(text);
}

static void test_strlist(void **state)
{
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(load("hosts: one.example\n", &c, err), 0);
	assert_int_equal(c.hosts.n, 1);
	assert_string_equal(c.hosts.v[0], "one.example");
	conf_release(cfg_keys, &c);

	assert_int_equal(load("hosts:\n  - a\n  - 2\n  - \"\"\n", &c, err), 0);
	assert_int_equal(c.hosts.n, 3);
	assert_string_equal(c.hosts.v[1], "2");
	assert_string_equal(c.hosts.v[2], "");
	conf_release(cfg_keys, &c);

	assert_int_equal(load("hosts: []\n", &c, err), 0);
	assert_int_equal(c.hosts.n, 0);
	conf_release(cfg_keys, &c);

	expect_error("hosts: [a, b, c, d]\n", "t.yaml:1:8: 'hosts' has 4 "
					      "entries; at most 3 are allowed");
	expect_error("hosts:\n  - a\n  - {b: c}\n",
		     "t.yaml:3:5: entries of 'hosts' must be strings");
	expect_error("hosts: [a, ~]\n",
		     "t.yaml:1:12: entries of 'hosts' must be strings");
}

static void test_ignore(void **state)
{
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(load("other:\n  anything: [1, {a: b}]\n  x: ~\n"
			      "count: 3\n",
			      &c, err),
			 0);
	assert_int_equal(c.count, 3);
	conf_release(cfg_keys, &c);
	assert_int_equal(load("other: 5\n", &c, err), 0);
	conf_release(cfg_keys, &c);
}

static void test_custom(void **state)
{
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(load("hook: false\n", &c, err), 0);
	assert_false(c.hook.enabled);
	assert_null(c.hook.command);
	conf_release(cfg_keys, &c);

	assert_int_equal(load("hook: ./check.sh\n", &c, err), 0);
	assert_true(c.hook.enabled);
	assert_string_equal(c.hook.command, "./check.sh");
	conf_release(cfg_keys, &c);

	expect_error("hook: ''\n",
		     "t.yaml:1:7: 'hook': must be true, false or a command");
	expect_error("hook: [a]\n",
		     "t.yaml:1:7: 'hook' must be a single value");
}

static void test_required(void **state)
{
	struct req r = { 0 };
	char err[ERRLEN] = "";
	const char *ok = "token: t\ndb:\n  url: u\n";
	(void)state;

	assert_int_equal(conf_load_string(ok, strlen(ok), "t.yaml", req_keys,
					  &r, err, ERRLEN),
			 0);
	assert_string_equal(r.token, "t");
	assert_int_equal(r.max, 5); /* required, but it has a default */
	assert_false(r.tls_present);
	conf_release(req_keys, &r);

	expect_req_error("", "t.yaml: missing required key 'token'");
	expect_req_error("db:\n  url: u\n",
			 "t.yaml:1:1: missing required key 'token'");
	/* An always-on section that is absent still needs its keys... */
	expect_req_error("token: t\n",
			 "t.yaml:1:1: missing required key 'url' in 'db'");
	expect_req_error("token: t\ndb: {}\n",
			 "t.yaml:2:5: missing required key 'url' in 'db'");
	/* ...an optional one only when it appears. */
	expect_req_error("token: t\ndb: {url: u}\ntls:\n  key: k\n",
			 "t.yaml:4:3: missing required key 'cert' in 'tls'");
	expect_req_error("token: t\ndb: {url: u}\ntls: ~\n",
			 "t.yaml:3:6: missing required key 'cert' in 'tls'");
}

static void test_bad_default(void **state)
{
	static const struct conf_key bad_keys[] = {
		{ .name = "n", .type = CONF_INT, .offset = 0, .def = "ten" },
		{ .name = NULL },
	};
	int64_t n = 0;
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(conf_load_string("", 0, "t.yaml", bad_keys, &n, err,
					  ERRLEN),
			 -1);
	assert_string_equal(err, "t.yaml: bad default in key table: "
				 "'n' must be an integer");
}

/* A failure late in the file, after strings, lists and items were stored. */
static void test_free_after_failed_load(void **state)
{
	const char *text = "name: first\n"
			   "hosts: [a, b]\n"
			   "hook: ./run\n"
			   "auth: {secret: s}\n"
			   "services:\n"
			   "  web: {label: w, tags: [x]}\n"
			   "  db: {label: d, tags: [y], weight: 0}\n";
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_int_equal(load(text, &c, err), -1);
	assert_string_equal(err,
			    "t.yaml:7:37: 'weight' must be between 1 and 10");
	conf_release(cfg_keys, &c);
	assert_null(c.name);
	assert_null(c.hook.command);
	assert_null(c.auth_secret);
	assert_null(c.services.items);
	conf_release(cfg_keys, &c);
}

/* ---- scalar helpers ---------------------------------------------------- */

/* ---- files ------------------------------------------------------------- */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_document_gives_defaults),
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_null_values),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_bound_edges_accepted),
		cmocka_unit_test(test_bools),
		cmocka_unit_test(test_section_present),
		cmocka_unit_test(test_section_or_word),
		cmocka_unit_test(test_load_ignoring),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_map_errors),
		cmocka_unit_test(test_many_map_items),
		cmocka_unit_test(test_strlist),
		cmocka_unit_test(test_ignore),
		cmocka_unit_test(test_custom),
		cmocka_unit_test(test_required),
		cmocka_unit_test(test_bad_default),
		cmocka_unit_test(test_free_after_failed_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL) != 0;
}
