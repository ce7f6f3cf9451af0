/*
 * test_backoff: exponential backoff with full jitter (libcommon/backoff.c).
 *
 * Delays stay within [0, ceiling], the ceiling grows by the multiplier and
 * stops at the cap, never overflows however many attempts fail, and the
 * delays are spread evenly over the window (the point of full jitter).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "backoff.h"

static void test_ceiling_grows_and_caps(void **state)
{
	static const uint32_t want[] = { 100,  200,  400,   800,   1600,
					 3200, 6400, 10000, 10000, 10000 };
	struct backoff b;

	(void)state;
	backoff_init(&b, 100, 10000, 2.0, 42);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(backoff_ceiling(&b), want[i]);
		assert_int_equal(b.attempt, i);
		assert_true(backoff_next(&b) <= want[i]);
	}
}

static void test_delays_within_bounds(void **state)
{
	struct backoff b;
	uint32_t previous = 0;

	(void)state;
	backoff_init(&b, 50, 30000, 1.5, 7);
	for (int i = 0; i < 10000; i++) {
		uint32_t ceiling = backoff_ceiling(&b);

		assert_true(ceiling >= previous); /* monotone */
		assert_true(ceiling >= 50 && ceiling <= 30000);
		assert_true(backoff_next(&b) <= ceiling);
		previous = ceiling;
	}
	assert_int_equal(backoff_ceiling(&b), 30000);
}

static void test_reset(void **state)
{
	struct backoff b;

	(void)state;
	backoff_init(&b, 100, 5000, 2.0, 1);
	for (int i = 0; i < 20; i++)
		backoff_next(&b);
	assert_int_equal(backoff_ceiling(&b), 5000);
	backoff_reset(&b);
	assert_int_equal(b.attempt, 0);
	assert_int_equal(backoff_ceiling(&b), 100);
	assert_true(backoff_next(&b) <= 100);
	assert_int_equal(backoff_ceiling(&b), 200);
}

static void test_no_overflow(void **state)
{
	struct backoff b;

	(void)state;
	backoff_init(&b, 1000, UINT32_MAX, 10.0, 3);
	b.attempt = 1000;
	assert_int_equal(backoff_ceiling(&b), UINT32_MAX);
	assert_true(backoff_next(&b) <= UINT32_MAX);
	b.attempt = UINT32_MAX;
	assert_int_equal(backoff_ceiling(&b), UINT32_MAX);
	backoff_next(&b);
	assert_int_equal(b.attempt, UINT32_MAX); /* saturates */

	/* The largest window there is: [0, 2^32 - 1]. */
	backoff_init(&b, UINT32_MAX, UINT32_MAX, 2.0, 5);
	for (int i = 0; i < 1000; i++)
		backoff_next(&b);
	assert_int_equal(backoff_ceiling(&b), UINT32_MAX);

	/* A multiplier so large its square is infinite. */
	backoff_init(&b, 1, 60000, 1e200, 9);
	b.attempt = 3;
	assert_int_equal(backoff_ceiling(&b), 60000);
}

static void test_out_of_contract_values(void **state)
{
	struct backoff b;

	(void)state;
	backoff_init(&b, 0, 0, 0.5, 11); /* all clamped */
	assert_int_equal(b.initial_ms, 1);
	assert_int_equal(b.max_ms, 1);
	assert_true(b.multiplier == 1.0);
	assert_int_equal(backoff_ceiling(&b), 1);

	backoff_init(&b, 100, 1000, 1.0, 11); /* no growth */
	b.attempt = 500;
	assert_int_equal(backoff_ceiling(&b), 100);

	backoff_init(&b, 100, 1000, 2.0, 11); /* fields set by hand */
	b.max_ms = 50;
	assert_int_equal(backoff_ceiling(&b), 50);
	b.max_ms = 1000;
	b.multiplier = NAN;
	b.attempt = 5;
	assert_int_equal(backoff_ceiling(&b), 100);
	b.rng = 0; /* a zeroed state recovers */
	b.multiplier = 2.0;
	assert_true(backoff_next(&b) <= 1000);
	assert_true(b.rng != 0);
}

static void test_seeds(void **state)
{
	struct backoff a, b, c;
	int same_seed = 0, other_seed = 0;

	(void)state;
	backoff_init(&a, 1000, 1000, 2.0, 99);
	backoff_init(&b, 1000, 1000, 2.0, 99);
	backoff_init(&c, 1000, 1000, 2.0, 100);
	for (int i = 0; i < 100; i++) {
		uint32_t x = backoff_next(&a);

		same_seed += x == backoff_next(&b);
		other_seed += x == backoff_next(&c);
	}
	assert_int_equal(same_seed, 100); /* repeatable */
	assert_true(other_seed < 10);

	backoff_init(&a, 1000, 1000, 2.0, 0); /* seeded from the clock */
	assert_true(a.rng != 0);
}

/* Full jitter: uniform over [0, ceiling], both ends reachable. */
static void test_distribution(void **state)
{
	enum { SAMPLES = 200000, BUCKETS = 10 };
	unsigned count[BUCKETS] = { 0 };
	struct backoff b;
	double sum = 0;
	uint32_t lowest = UINT32_MAX, highest = 0;

	(void)state;
	backoff_init(&b, 999, 999, 2.0, 12345);
	for (int i = 0; i < SAMPLES; i++) {
		uint32_t d = backoff_next(&b);

		assert_true(d <= 999);
		count[d / 100]++;
		sum += d;
		lowest = d < lowest ? d : lowest;
		highest = d > highest ? d : highest;
	}
	for (int i = 0; i < BUCKETS; i++) /* expected 20000 each */
		assert_in_range(count[i], 19000, 21000);
	assert_true(sum / SAMPLES > 489.5 && sum / SAMPLES < 509.5);
	assert_int_equal(lowest, 0);
	assert_int_equal(highest, 999);
}

/* A jitter draw stays in [0, max], reaches both ends, and leaves the
 * attempt count (the backoff's growth) alone. */
static void test_jitter(void **state)
{
	struct backoff b;
	uint32_t lowest = UINT32_MAX, highest = 0;

	(void)state;
	backoff_init(&b, 100, 1000, 2.0, 42);
	for (int i = 0; i < 100000; i++) {
		uint32_t d = backoff_jitter(&b, 50);

		lowest = d < lowest ? d : lowest;
		highest = d > highest ? d : highest;
	}
	assert_int_equal(lowest, 0);
	assert_int_equal(highest, 50);
	assert_int_equal(b.attempt, 0);
	assert_int_equal(backoff_jitter(&b, 0), 0);
	assert_true(backoff_jitter(&b, UINT32_MAX) <= UINT32_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ceiling_grows_and_caps),
		cmocka_unit_test(test_delays_within_bounds),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_no_overflow),
		cmocka_unit_test(test_out_of_contract_values),
		cmocka_unit_test(test_seeds),
		cmocka_unit_test(test_distribution),
		cmocka_unit_test(test_jitter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
