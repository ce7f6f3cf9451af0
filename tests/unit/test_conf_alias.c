/*
 * test_conf_alias: a conf_key row's alias (libcommon/conf.c), a second
 * name of its key: either name loads the same field, a required key is
 * present under either, both in one mapping are refused like a duplicate,
 * and messages about the value say the name the file used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"

#define ERRLEN 512

struct cfg {
	struct conf_strlist hosts;
	char *token;
	int64_t interval_ms;
};

#define F(field) offsetof(struct cfg, field)

/* clang-format off */
static const struct conf_key timer_keys[] = {
	{ .name = "interval", .alias = "every", .type = CONF_DURATION,
	  .offset = F(interval_ms), .min = 100, .max = 60000, .def = "1s" },
	{ .name = NULL },
};
/* clang-format on */

/* clang-format off */
static const struct conf_key keys[] = {
	{ .name = "hosts", .alias = "servers", .type = CONF_STRLIST,
	  .offset = F(hosts), .max = 3 },
	{ .name = "token", .alias = "api_token", .type = CONF_STRING,
	  .offset = F(token), .flags = CONF_REQUIRED },
	{ .name = "timer", .type = CONF_SECTION, .sub = timer_keys,
	  .present = CONF_NO_FIELD },
	{ .name = NULL },
};
/* clang-format on */

static int load(const char *text, struct cfg *c, char *err)
{
	memset(c, 0, sizeof(*c));
	return conf_load_string(text, strlen(text), "t.yaml", keys, c, err,
				ERRLEN);
}

static void expect_error(const char *text, const char *want)
{
	struct cfg c;
	char err[ERRLEN] = "";

	assert_int_equal(load(text, &c, err), -1);
	assert_string_equal(err, want);
	conf_release(keys, &c);
}

static void test_either_name(void **state)
{
	struct cfg c;
	char err[ERRLEN] = "";

	(void)state;
	assert_int_equal(load("servers: [a, b]\napi_token: t\n"
			      "timer: {every: 250ms}\n",
			      &c, err),
			 0);
	assert_int_equal(c.hosts.n, 2);
	assert_string_equal(c.hosts.v[1], "b");
	assert_string_equal(c.token, "t");
	assert_int_equal(c.interval_ms, 250);
	conf_release(keys, &c);
	assert_int_equal(load("hosts: [a]\ntoken: t\n", &c, err), 0);
	assert_int_equal(c.hosts.n, 1);
	assert_int_equal(c.interval_ms, 1000);
	conf_release(keys, &c);
}

static void test_both_names(void **state)
{
	(void)state;
	expect_error("token: t\nhosts: [a]\nservers: [b]\n",
		     "t.yaml:3:1: 'hosts' and 'servers' are the same key; "
		     "keep one");
	expect_error("servers: [a]\ntoken: t\nhosts: [b]\n",
		     "t.yaml:3:1: 'hosts' and 'servers' are the same key; "
		     "keep one");
	expect_error("token: t\ntimer:\n  every: 1s\n  interval: 2s\n",
		     "t.yaml:4:3: 'interval' and 'every' are the same key; "
		     "keep one in 'timer'");
	/* The same name twice is the plain duplicate. */
	expect_error("token: t\nservers: [a]\nservers: [b]\n",
		     "t.yaml:3:1: duplicate key 'servers'");
	expect_error("servers: [a]\n",
		     "t.yaml:1:1: missing required key 'token'");
}

static void test_messages_say_the_name_used(void **state)
{
	(void)state;
	expect_error("token: t\nservers: {a: b}\n",
		     "t.yaml:2:10: 'servers' must be a string or a list of "
		     "strings");
	expect_error("token: t\nservers:\n  - a\n  - [b]\n",
		     "t.yaml:4:5: entries of 'servers' must be strings");
	expect_error("token: t\nservers: [a, b, c, d]\n",
		     "t.yaml:2:10: 'servers' has 4 entries; at most 3 are "
		     "allowed");
	expect_error("api_token: ~\n",
		     "t.yaml:1:12: 'api_token' has no value (write \"\" for "
		     "an empty string)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_either_name),
		cmocka_unit_test(test_both_names),
		cmocka_unit_test(test_messages_say_the_name_used),
	};

	return cmocka_run_group_tests(tests, NULL, NULL) != 0;
}
