/*
 * test_htab: the intrusive string-keyed hash table (libcommon/htab.c).
 *
 * Entries are found by key after any number of growths and never move;
 * removal unlinks exactly the entry given, even among entries of the same
 * key; a seeded table hashes differently from an unseeded one; pop takes
 * every entry out once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "htab.h"

struct item {
	struct hnode node;
	char key[16];
	int value;
};

static struct item *find(const struct htab *t, const char *key)
{
	uint64_t hv = htab_hash(t, key);

	for (struct hnode *n = htab_first(t, hv); n; n = htab_next(n, hv)) {
		struct item *it = htab_entry(n, struct item, node);

		if (strcmp(it->key, key) == 0)
			return it;
	}
	return NULL;
}

static struct item items[5000];

static void fill(struct htab *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(items[i].key, sizeof(items[i].key), "k%zu", i);
		items[i].value = (int)i;
		assert_int_equal(htab_add(t, &items[i].node,
					  htab_hash(t, items[i].key)),
				 0);
	}
}

static void test_found_after_growth(void **state)
{
	struct htab t;

	(void)state;
	htab_init(&t, true);
	assert_null(find(&t, "k1")); /* empty, no buckets yet */
	fill(&t, 5000);
	assert_int_equal(t.count, 5000);
	assert_true(t.size >= 4096); /* about one per bucket */
	for (size_t i = 0; i < 5000; i++) {
		char key[16];

		snprintf(key, sizeof(key), "k%zu", i);
		assert_ptr_equal(find(&t, key), &items[i]);
	}
	assert_null(find(&t, "k5000"));
	htab_release(&t);
}

static void test_remove_takes_that_entry(void **state)
{
	struct item a = { .key = "same", .value = 1 };
	struct item b = { .key = "same", .value = 2 };
	struct htab t;

	(void)state;
	htab_init(&t, false);
	htab_add(&t, &a.node, htab_hash(&t, a.key));
	htab_add(&t, &b.node, htab_hash(&t, b.key));
	assert_int_equal(find(&t, "same")->value, 2); /* newest first */
	htab_remove(&t, &b.node);
	assert_int_equal(find(&t, "same")->value, 1);
	htab_remove(&t, &b.node); /* not there: no-op */
	assert_int_equal(t.count, 1);
	htab_remove(&t, &a.node);
	assert_null(find(&t, "same"));
	assert_int_equal(t.count, 0);
	htab_release(&t);
}

static void test_keys_in_parts(void **state)
{
	struct htab t;

	(void)state;
	htab_init(&t, false);
	/* ("ab", "c") and ("a", "bc") are different keys. */
	assert_true(htab_hash_more(htab_hash(&t, "ab"), "c") !=
		    htab_hash_more(htab_hash(&t, "a"), "bc"));
	htab_release(&t);
}

static void test_seed_changes_hashes(void **state)
{
	struct htab plain, seeded;

	(void)state;
	htab_init(&plain, false);
	htab_init(&seeded, true);
	assert_true(seeded.seed != 0);
	assert_true(htab_hash(&plain, "10.0.0.1") !=
		    htab_hash(&seeded, "10.0.0.1"));
	htab_release(&plain);
	htab_release(&seeded);
}

static void test_pop_empties(void **state)
{
	struct htab t;
	size_t n = 0;
	int seen[300] = { 0 };
	struct hnode *node;

	(void)state;
	htab_init(&t, true);
	fill(&t, 300);
	while ((node = htab_pop(&t))) {
		seen[htab_entry(node, struct item, node)->value]++;
		n++;
	}
	assert_int_equal(n, 300);
	assert_int_equal(t.count, 0);
	for (size_t i = 0; i < 300; i++)
		assert_int_equal(seen[i], 1);
	assert_null(htab_pop(&t));
	htab_release(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_found_after_growth),
		cmocka_unit_test(test_remove_takes_that_entry),
		cmocka_unit_test(test_keys_in_parts),
		cmocka_unit_test(test_seed_changes_hashes),
		cmocka_unit_test(test_pop_empties),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
