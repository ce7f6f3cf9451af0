/*
 * test_agent_load: an agent from a YAML file (agent/lib/load.c), through
 * the public API only: the extra keys a program keeps in the same file,
 * and the aliases under which it may spell libagent's keys (the gate's
 * `requires` for depends_on), with the positions of every error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <discovery/agent.h>

#define BASE "discovery: [ws://127.0.0.1:1]\nservice: web\n"

static const char *const gate_keys[] = { "upstream", "requires", NULL };
/* clang-format off */
static const struct agent_key_alias requires_alias[] = {
	{ "requires", "depends_on" },
	{ NULL, NULL },
};
/* clang-format on */

static char path[64];

static int setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/test_agent_load.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void put(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static agent_t *load(const char *text, const struct agent_key_alias *al,
		     char *err, size_t errlen)
{
	put(text);
	return agent_load_aliased(path, gate_keys, al, err, errlen);
}

/* The load fails with err = path + want. */
static void expect_error(const char *text, const struct agent_key_alias *al,
			 const char *want)
{
	char err[512] = "", full[600];

	assert_null(load(text, al, err, sizeof(err)));
	snprintf(full, sizeof(full), "%s%s", path, want);
	assert_string_equal(err, full);
}

static void test_alias_is_the_key(void **state)
{
	char err[512] = "";
	agent_t *a;

	(void)state;
	a = load(BASE "upstream: x\nrequires: [cache, api]\n", requires_alias,
		 err, sizeof(err));
	assert_non_null(a);
	assert_int_equal(agent_dependency_count(a), 2);
	assert_string_equal(agent_dependency_name(a, 0), "api");
	assert_string_equal(agent_dependency_name(a, 1), "cache");
	agent_destroy(a);
	/* The key's own name still works. */
	a = load(BASE "depends_on: [cache]\n", requires_alias, err,
		 sizeof(err));
	assert_non_null(a);
	assert_int_equal(agent_dependency_count(a), 1);
	agent_destroy(a);
}

static void test_without_the_alias(void **state)
{
	char err[512] = "";
	agent_t *a;

	(void)state;
	/* Listed as an extra key only, `requires` is the program's and
	 * skipped. */
	a = load(BASE "requires: [cache]\n", NULL, err, sizeof(err));
	assert_non_null(a);
	assert_int_equal(agent_dependency_count(a), 0);
	agent_destroy(a);
	put(BASE "requires: [cache]\n");
	assert_null(agent_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, ":3:1: unknown key 'requires'"));
}

/* The watched services read back, sorted: watch, or depends_on's. */
static void test_watch_names(void **state)
{
	char err[512] = "";
	agent_t *a;

	(void)state;
	a = load(BASE "watch: [db, api]\n", NULL, err, sizeof(err));
	assert_non_null(a);
	assert_int_equal(agent_watch_count(a), 2);
	assert_string_equal(agent_watch_name(a, 0), "api");
	assert_string_equal(agent_watch_name(a, 1), "db");
	assert_null(agent_watch_name(a, 2));
	agent_destroy(a);
	a = load(BASE "depends_on: [cache]\nwatch_depends_on: true\n", NULL,
		 err, sizeof(err));
	assert_non_null(a);
	assert_int_equal(agent_watch_count(a), 1);
	assert_string_equal(agent_watch_name(a, 0), "cache");
	agent_destroy(a);
	a = load(BASE, NULL, err, sizeof(err));
	assert_non_null(a);
	assert_int_equal(agent_watch_count(a), 0);
	assert_null(agent_watch_name(a, 0));
	agent_destroy(a);
}

static void test_alias_errors_name_the_file(void **state)
{
	(void)state;
	expect_error(BASE "requires: [a]\ndepends_on: [b]\n", requires_alias,
		     ":4:1: 'depends_on' and 'requires' are the same key; "
		     "keep one");
	expect_error(BASE "depends_on: [a]\nupstream: x\nrequires: [b]\n",
		     requires_alias,
		     ":5:1: 'depends_on' and 'requires' are the same key; "
		     "keep one");
	expect_error(BASE "requires: {a: b}\n", requires_alias,
		     ":3:11: 'requires' must be a string or a list of "
		     "strings");
	expect_error(BASE "requires:\n  - a\n  - [b]\n", requires_alias,
		     ":5:5: entries of 'requires' must be strings");
	expect_error(BASE "requires: [Bad Name]\n", requires_alias,
		     ": depends_on: \"Bad Name\" is not a valid service name");
}

static void test_bad_alias_tables(void **state)
{
	static const struct agent_key_alias no_key[] = {
		{ "requires", "needs" }, { NULL, NULL }
	};
	static const struct agent_key_alias taken[] = {
		{ "service", "depends_on" }, { NULL, NULL }
	};
	static const struct agent_key_alias twice[] = {
		{ "requires", "depends_on" },
		{ "needs", "depends_on" },
		{ NULL, NULL }
	};
	static const struct agent_key_alias meta[] = { { "labels", "meta" },
						       { NULL, NULL } };
	char err[512] = "";
	agent_t *a;

	(void)state;
	expect_error(BASE, no_key,
		     ": aliases: requires for needs: need one "
		     "new name per key of libagent");
	expect_error(BASE, taken,
		     ": aliases: service for depends_on: need "
		     "one new name per key of libagent");
	expect_error(BASE, twice,
		     ": aliases: needs for depends_on: need one "
		     "new name per key of libagent");
	/* meta, which libagent reads on its own, follows its alias too. */
	a = load(BASE "labels: {zone: eu-1}\n", meta, err, sizeof(err));
	assert_non_null(a);
	agent_destroy(a);
	expect_error(BASE "labels: [x]\n", meta,
		     ":3:9: meta: need a mapping of names to strings");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alias_is_the_key),
		cmocka_unit_test(test_without_the_alias),
		cmocka_unit_test(test_alias_errors_name_the_file),
		cmocka_unit_test(test_watch_names),
		cmocka_unit_test(test_bad_alias_tables),
	};

	return cmocka_run_group_tests(tests, setup, teardown) != 0;
}
