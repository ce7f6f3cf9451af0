/*
 * Unit tests for the idempotency key table: lookup, expiry by age,
 * eviction of the oldest at max_keys (never one in flight), growth, the
 * journal records and their restore, and what a key may be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../discoveryd/idem.h"

static const unsigned char fp_a[IDEM_FP_LEN] = { 1 };
static const unsigned char fp_b[IDEM_FP_LEN] = { 2 };

static void answered(struct idem *t, const char *key, int64_t at)
{
	struct idem_entry *e = idem_add(t, key, fp_a, at);

	assert_non_null(e);
	assert_int_equal(idem_answer(e, 202, "{\"seq\":1}"), 0);
}

static void test_find_and_expire(void **state)
{
	struct idem t;

	(void)state;
	assert_int_equal(idem_init(&t, 10, 1000), 0);
	answered(&t, "\na", 100);
	answered(&t, "\nb", 600);
	assert_non_null(idem_find(&t, "\na", 1099));
	assert_null(idem_find(&t, "\nc", 1099));
	assert_null(idem_find(&t, "\na", 1100)); /* its retention is up */
	assert_non_null(idem_find(&t, "\nb", 1100));
	assert_int_equal(t.count, 1);
	idem_release(&t);
}

static void test_oldest_goes_first_never_in_flight(void **state)
{
	struct idem t;
	struct idem_entry *busy;

	(void)state;
	assert_int_equal(idem_init(&t, 3, 100000), 0);
	busy = idem_add(&t, "\nbusy", fp_a, 1); /* in flight: status 0 */
	answered(&t, "\nm1", 2);
	answered(&t, "\nm2", 3);
	answered(&t, "\nm3", 4);
	assert_int_equal(t.count, 3);
	assert_int_equal(t.evicted, 1);
	assert_ptr_equal(idem_find(&t, "\nbusy", 5), busy);
	assert_null(idem_find(&t, "\nm1", 5));
	idem_configure(&t, 1, 100000, 5);
	assert_int_equal(t.count, 1); /* only busy is left */
	assert_ptr_equal(idem_find(&t, "\nbusy", 5), busy);
	idem_release(&t);
}

static void test_many_keys_grow(void **state)
{
	struct idem t;
	char key[32];

	(void)state;
	assert_int_equal(idem_init(&t, 5000, 100000), 0);
	for (int i = 0; i < 6000; i++) {
		snprintf(key, sizeof(key), "\nk%d", i);
		answered(&t, key, i + 1);
	}
	assert_int_equal(t.count, 5000);
	assert_true(t.tab.size >= 4096);
	assert_null(idem_find(&t, "\nk999", 6001));
	assert_non_null(idem_find(&t, "\nk1000", 6001));
	assert_non_null(idem_find(&t, "\nk5999", 6001));
	idem_release(&t);
}

static void test_records_restore(void **state)
{
	struct idem t, u;
	struct idem_entry *e;
	cJSON *tag, *rec;

	(void)state;
	assert_int_equal(idem_init(&t, 10, 100000), 0);
	assert_int_equal(idem_init(&u, 10, 100000), 0);
	e = idem_add(&t, "sub:alice\nk", fp_b, 1000);
	assert_non_null(e);
	/* A tag alone (the daemon died before the answer): status, no body. */
	tag = idem_tag(e, 200);
	idem_restore(&u, tag, 7, 2000);
	e = idem_find(&u, "sub:alice\nk", 2000);
	assert_non_null(e);
	assert_int_equal(e->status, 200);
	assert_null(e->body);
	assert_int_equal(e->seq, 7);
	assert_memory_equal(e->fp, fp_b, IDEM_FP_LEN);
	/* Its answer completes it. */
	e = idem_find(&t, "sub:alice\nk", 2000);
	assert_int_equal(idem_answer(e, 200, "{\"x\":1}"), 0);
	e->seq = 7;
	rec = idem_record(e);
	idem_restore(&u, rec, 0, 2000);
	e = idem_find(&u, "sub:alice\nk", 2000);
	assert_string_equal(e->body, "{\"x\":1}");
	assert_int_equal(u.count, 1);
	/* Past its retention, or not a success: not restored. */
	idem_release(&u);
	assert_int_equal(idem_init(&u, 10, 500), 0);
	idem_restore(&u, rec, 0, 2000);
	assert_int_equal(u.count, 0);
	cJSON_ReplaceItemInObject(rec, "st", cJSON_CreateNumber(503));
	idem_restore(&u, rec, 0, 1001);
	assert_int_equal(u.count, 0);
	cJSON_Delete(tag);
	cJSON_Delete(rec);
	idem_release(&t);
	idem_release(&u);
}

static void test_valid_keys_and_fingerprints(void **state)
{
	unsigned char a[IDEM_FP_LEN], b[IDEM_FP_LEN];
	char long_key[300];

	(void)state;
	assert_true(idem_valid_key("8e03978e-40d5-43e8-bc93-6894a57f9324"));
	assert_false(idem_valid_key(""));
	assert_false(idem_valid_key("a b"));
	assert_false(idem_valid_key("caf\xc3\xa9"));
	memset(long_key, 'x', 255);
	long_key[255] = '\0';
	assert_true(idem_valid_key(long_key));
	long_key[255] = 'x';
	long_key[256] = '\0';
	assert_false(idem_valid_key(long_key));
	idem_fingerprint("POST", "/a", "{}", 2, a);
	idem_fingerprint("POST", "/a", "{} ", 3, b);
	assert_memory_not_equal(a, b, IDEM_FP_LEN);
	/* The parts do not run into each other. */
	idem_fingerprint("POS", "T/a", "{}", 2, b);
	assert_memory_not_equal(a, b, IDEM_FP_LEN);
	idem_fingerprint("POST", "/a", "{}", 2, b);
	assert_memory_equal(a, b, IDEM_FP_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_and_expire),
		cmocka_unit_test(test_oldest_goes_first_never_in_flight),
		cmocka_unit_test(test_many_keys_grow),
		cmocka_unit_test(test_records_restore),
		cmocka_unit_test(test_valid_keys_and_fingerprints),
	};

	return cmocka_run_group_tests_name("idem", tests, NULL, NULL);
}
