/*
 * Unit tests for a webhook's cursor journal: a new file holds none, the
 * last save is what a reopen reads (past the rewrite at a few hundred
 * records too), a torn last record falls back to the one before, and a
 * seq past 2^53 reads back exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../discoveryd/webhook_cursor.h"

static char dir[] = "/tmp/test_webhook_cursor.XXXXXX";

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/test_webhook_cursor.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char path[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/webhook-a", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/webhook-a.tmp", dir);
	unlink(path);
	return rmdir(dir);
}

static void reopen(struct webhook_cursor *c)
{
	char err[256];

	webhook_cursor_close(c);
	assert_int_equal(webhook_cursor_open(c, dir, "a", err, sizeof(err)), 0);
}

static void test_new_then_saved(void **state)
{
	struct webhook_cursor c;
	char err[256];

	(void)state;
	assert_int_equal(webhook_cursor_open(&c, dir, "a", err, sizeof(err)),
			 0);
	assert_false(c.found);
	assert_int_equal(webhook_cursor_save(&c, "e1", 7), 0);
	assert_int_equal(webhook_cursor_save(&c, "e1", 9), 0);
	reopen(&c);
	assert_true(c.found);
	assert_string_equal(c.epoch, "e1");
	assert_int_equal(c.seq, 9);
	webhook_cursor_close(&c);
}

static void test_rewrite_keeps_the_last(void **state)
{
	struct webhook_cursor c;
	char err[256];

	(void)state;
	assert_int_equal(webhook_cursor_open(&c, dir, "a", err, sizeof(err)),
			 0);
	for (uint64_t i = 1; i <= 1300; i++)
		assert_int_equal(webhook_cursor_save(&c, "e2", i), 0);
	assert_true(c.journal.records < 600);
	reopen(&c);
	assert_string_equal(c.epoch, "e2");
	assert_int_equal(c.seq, 1300);
	/* Past a double's exact integers. */
	assert_int_equal(webhook_cursor_save(&c, "e2",
					     UINT64_C(9007199254740993)),
			 0);
	reopen(&c);
	assert_true(c.seq == UINT64_C(9007199254740993));
	webhook_cursor_close(&c);
}

static void test_torn_tail_falls_back(void **state)
{
	struct webhook_cursor c;
	char err[256], path[256];
	struct stat st;

	(void)state;
	assert_int_equal(webhook_cursor_open(&c, dir, "a", err, sizeof(err)),
			 0);
	assert_int_equal(webhook_cursor_save(&c, "e3", 41), 0);
	assert_int_equal(webhook_cursor_save(&c, "e3", 42), 0);
	webhook_cursor_close(&c);
	snprintf(path, sizeof(path), "%s/webhook-a", dir);
	assert_int_equal(stat(path, &st), 0);
	/* A crash in the middle of the last write. */
	assert_int_equal(truncate(path, st.st_size - 3), 0);
	assert_int_equal(webhook_cursor_open(&c, dir, "a", err, sizeof(err)),
			 0);
	assert_int_equal(c.seq, 41);
	webhook_cursor_remove(&c);
	assert_int_not_equal(access(path, F_OK), 0);
}

static void test_disabled_is_recorded(void **state)
{
	struct webhook_cursor c;
	char err[256];

	(void)state;
	assert_int_equal(webhook_cursor_open(&c, dir, "a", err, sizeof(err)),
			 0);
	assert_int_equal(webhook_cursor_save(&c, "e4", 5), 0);
	assert_int_equal(webhook_cursor_set_disabled(&c, "HTTP 410 \"gone\""),
			 0);
	reopen(&c);
	assert_string_equal(c.disabled, "HTTP 410 \"gone\"");
	assert_int_equal(c.seq, 5);
	/* Saves keep it; enabling clears it. */
	assert_int_equal(webhook_cursor_save(&c, "e4", 6), 0);
	reopen(&c);
	assert_string_equal(c.disabled, "HTTP 410 \"gone\"");
	assert_int_equal(webhook_cursor_set_disabled(&c, ""), 0);
	reopen(&c);
	assert_string_equal(c.disabled, "");
	assert_int_equal(c.seq, 6);
	webhook_cursor_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_then_saved, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rewrite_keeps_the_last,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_falls_back,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_disabled_is_recorded,
						setup, teardown),
	};

	return cmocka_run_group_tests_name("webhook_cursor", tests, NULL, NULL);
}
