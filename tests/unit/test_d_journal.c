/*
 * Unit tests for the journal's background compaction (journal.h): what is
 * appended while the new file is written follows its snapshot in it, the
 * old file stays whole until the switch (and when the journal closes
 * first), a second start while one runs is refused, and a group commit
 * left open across the switch is made durable in the new file.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../discoveryd/journal.h"

static char dir[] = "/tmp/test_journal.XXXXXX";

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/test_journal.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char path[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/journal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/.journal.tmp", dir);
	unlink(path);
	return rmdir(dir);
}

static void open_journal(struct journal *j, cJSON **records)
{
	struct journal_damage damage;
	char err[256];

	assert_int_equal(journal_open(j, dir, records, &damage, err,
				      sizeof(err)),
			 0);
	assert_false(damage.torn || damage.corrupt);
}

static void append(struct journal *j, const char *json)
{
	assert_int_equal(journal_append(j, json, strlen(json)), 0);
}

/* The records ({"n":N}) a reopen reads, as one string of their Ns. */
static void expect_records(struct journal *j, const char *want)
{
	char got[512] = "";
	cJSON *records, *r;

	journal_close(j);
	open_journal(j, &records);
	cJSON_ArrayForEach (r, records) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "n");

		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%d",
			 got[0] ? " " : "", n ? n->valueint : -1);
	}
	cJSON_Delete(records);
	assert_string_equal(got, want);
}

static int wait_switch(struct journal *j)
{
	int rc;

	while ((rc = journal_rewrite_poll(j)) == 0)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	return rc;
}

static void test_appends_meanwhile_follow_the_snapshot(void **state)
{
	char one[] = "{\"n\":1}", two[] = "{\"n\":2}";
	char *const snapshot[] = { one, two };
	struct journal j;
	cJSON *records;

	(void)state;
	open_journal(&j, &records);
	cJSON_Delete(records);
	append(&j, "{\"n\":10}");
	append(&j, "{\"n\":11}");
	assert_int_equal(journal_rewrite_start(&j, snapshot, 2), 0);
	append(&j, "{\"n\":12}");
	/* One at a time. */
	assert_int_equal(journal_rewrite_start(&j, snapshot, 2), -1);
	assert_int_equal(errno, EBUSY);
	append(&j, "{\"n\":13}");
	assert_int_equal(wait_switch(&j), 1);
	assert_int_equal(journal_rewrite_poll(&j), 0); /* none runs now */
	append(&j, "{\"n\":14}");
	assert_int_equal(j.records, 5);
	expect_records(&j, "1 2 12 13 14");
	journal_close(&j);
}

static void test_closed_before_the_switch_keeps_the_old_file(void **state)
{
	char one[] = "{\"n\":1}";
	char *const snapshot[] = { one };
	char tmp[256];
	struct journal j;
	cJSON *records;

	(void)state;
	open_journal(&j, &records);
	cJSON_Delete(records);
	append(&j, "{\"n\":10}");
	assert_int_equal(journal_rewrite_start(&j, snapshot, 1), 0);
	append(&j, "{\"n\":11}");
	expect_records(&j, "10 11"); /* closes first: no switch */
	snprintf(tmp, sizeof(tmp), "%s/.journal.tmp", dir);
	assert_int_equal(access(tmp, F_OK), -1);
	journal_close(&j);
}

static void test_an_open_group_commit_crosses_the_switch(void **state)
{
	char one[] = "{\"n\":1}";
	char *const snapshot[] = { one };
	struct journal j;
	cJSON *records;

	(void)state;
	open_journal(&j, &records);
	cJSON_Delete(records);
	assert_int_equal(journal_rewrite_start(&j, snapshot, 1), 0);
	journal_batch_begin(&j);
	append(&j, "{\"n\":20}");
	append(&j, "{\"n\":21}");
	assert_int_equal(wait_switch(&j), 1);
	append(&j, "{\"n\":22}");
	assert_int_equal(journal_commit(&j), 0);
	assert_int_equal(j.synced, j.size);
	expect_records(&j, "1 20 21 22");
	journal_close(&j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_appends_meanwhile_follow_the_snapshot, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_closed_before_the_switch_keeps_the_old_file, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_an_open_group_commit_crosses_the_switch, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
