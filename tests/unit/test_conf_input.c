/*
 * test_conf_input: what libcommon/conf.c takes as a document, before any
 * key is looked at: a mapping at the top, YAML that parses, one document,
 * no aliases (no "billion laughs"), at most 32 levels, at most 1 MiB from
 * a string or a file, and errors that name the file, line and column.
 * The keys and their types are test_conf.c's.
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

#define ERRLEN 512

struct cfg {
	char *name;
	int64_t count;
	struct conf_strlist hosts;
	char *auth_secret;
};

#define F(field) offsetof(struct cfg, field)

/* clang-format off */
static const struct conf_key auth_keys[] = {
	{ .name = "secret", .type = CONF_STRING, .offset = F(auth_secret) },
	{ .name = NULL },
};

static const struct conf_key cfg_keys[] = {
	{ .name = "name", .type = CONF_STRING, .offset = F(name) },
	{ .name = "count", .type = CONF_INT, .offset = F(count),
	  .min = 0, .max = 100 },
	{ .name = "hosts", .type = CONF_STRLIST, .offset = F(hosts), .max = 3 },
	{ .name = "auth", .type = CONF_SECTION, .sub = auth_keys,
	  .present = CONF_NO_FIELD },
	{ .name = "other", .type = CONF_IGNORE },
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

static void test_root_must_be_mapping(void **state)
{
	(void)state;
	expect_error("- a\n- b\n",
		     "t.yaml:1:1: the top level must be a mapping of keys");
	expect_error("just words\n",
		     "t.yaml:1:1: the top level must be a mapping of keys");
}

static void test_yaml_syntax_error(void **state)
{
	(void)state;
	expect_error("name: x\nhosts: [a, b\n",
		     "t.yaml:3:1: did not find expected ',' or ']' "
		     "(while parsing a flow sequence at line 2)");
	expect_error("name: x\n  count: 3\n",
		     "t.yaml:2:8: mapping values are not allowed in this "
		     "context");
	expect_error("name: \"x\xff\"\n",
		     "t.yaml:1:9: invalid leading UTF-8 octet");
	/* Columns count characters, as libyaml's own marks do. */
	expect_error("count: 1\nname: \"\xc3\xa9t\xc3\xa9\xff\"\n",
		     "t.yaml:2:11: invalid leading UTF-8 octet");
}

static void test_one_document_only(void **state)
{
	(void)state;
	expect_error("count: 1\n---\ncount: 2\n",
		     "t.yaml:2:1: only one YAML document is allowed");
}

static void test_aliases_refused(void **state)
{
	(void)state;
	expect_error("name: &n x\nauth:\n  secret: *n\n",
		     "t.yaml:3:11: aliases (*n) are not supported");
	/* The start of a "billion laughs": refused at the first alias. */
	expect_error("other:\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
		     "  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
		     "t.yaml:3:10: aliases (*a) are not supported");
}

static void test_nesting_limit(void **state)
{
	char text[256], want[ERRLEN];
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	int n;
	(void)state;

	/* The root mapping is level 1, so 31 brackets reach level 32. */
	n = snprintf(text, sizeof(text), "other: %.31s%.31s\n",
		     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
	assert_true(n > 0 && (size_t)n < sizeof(text));
	assert_int_equal(load(text, &c, err), 0);
	conf_release(cfg_keys, &c);

	snprintf(text, sizeof(text), "other: %.32s%.32s\n",
		 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
	snprintf(want, sizeof(want),
		 "t.yaml:1:%d: nested deeper than 32 levels", 7 + 32);
	expect_error(text, want);
}

static void test_oversize_input(void **state)
{
	size_t limit = 1024 * 1024;
	char *text = malloc(limit + 2);
	struct cfg c = { 0 };
	char err[ERRLEN] = "";
	(void)state;

	assert_non_null(text);
	/* Exactly 1 MiB of comment lines is accepted... */
	memset(text, '#', limit);
	for (size_t i = 99; i < limit; i += 100)
		text[i] = '\n';
	text[limit - 1] = '\n';
	assert_int_equal(conf_load_string(text, limit, "t.yaml", cfg_keys, &c,
					  err, ERRLEN),
			 0);
	conf_release(cfg_keys, &c);
	/* ...one byte more is not. */
	text[limit] = '\n';
	assert_int_equal(conf_load_string(text, limit + 1, "t.yaml", cfg_keys,
					  &c, err, ERRLEN),
			 -1);
	assert_string_equal(err, "t.yaml: larger than 1048576 bytes (1 MiB), "
				 "the limit for a config file");
	conf_release(cfg_keys, &c);
	free(text);
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/test_conf_XXXXXX", want[ERRLEN], err[ERRLEN] = "";
	const char *text = "count: 7\nbogus: 1\n";
	struct cfg c = { 0 };
	int fd = mkstemp(path);
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
	close(fd);
	assert_int_equal(conf_load_file(path, cfg_keys, &c, err, ERRLEN), -1);
	snprintf(want, sizeof(want), "%s:2:1: unknown key 'bogus'", path);
	assert_string_equal(err, want);
	assert_int_equal(c.count, 7);
	conf_release(cfg_keys, &c);
	unlink(path);

	assert_int_equal(conf_load_file(path, cfg_keys, &c, err, ERRLEN), -1);
	snprintf(want, sizeof(want),
		 "%s: cannot open: No such file or "
		 "directory",
		 path);
	assert_string_equal(err, want);
	conf_release(cfg_keys, &c);
}

static void test_load_big_file(void **state)
{
	char path[] = "/tmp/test_conf_XXXXXX", want[ERRLEN], err[ERRLEN] = "";
	size_t size = 1024 * 1024 + 1;
	char *text = malloc(size);
	struct cfg c = { 0 };
	int fd = mkstemp(path);
	(void)state;

	assert_non_null(text);
	assert_true(fd >= 0);
	memset(text, '\n', size);
	assert_true(write(fd, text, size) == (ssize_t)size);
	close(fd);
	assert_int_equal(conf_load_file(path, cfg_keys, &c, err, ERRLEN), -1);
	snprintf(want, sizeof(want),
		 "%s: larger than 1048576 bytes (1 MiB), "
		 "the limit for a config file",
		 path);
	assert_string_equal(err, want);
	conf_release(cfg_keys, &c);
	unlink(path);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_must_be_mapping),
		cmocka_unit_test(test_yaml_syntax_error),
		cmocka_unit_test(test_one_document_only),
		cmocka_unit_test(test_aliases_refused),
		cmocka_unit_test(test_nesting_limit),
		cmocka_unit_test(test_oversize_input),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_load_big_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
