/*
 * backoff: exponential backoff with full jitter ("Exponential Backoff And
 * Jitter", AWS architecture blog): the n-th delay is uniform in
 * [0, min(max, initial * multiplier^n)]. Full jitter spreads a thousand agents
 * that lost the same daemon over the whole window instead of synchronising
 * their retries.
 *
 * No state beyond the struct; the random source is the caller's (a seed in
 * the struct, advanced with a xorshift), so tests are repeatable.
 */
#ifndef DISCOVERY_BACKOFF_H
#define DISCOVERY_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint32_t initial_ms; /* cap of the first delay, > 0 */
	uint32_t max_ms;     /* no delay exceeds this, >= initial_ms */
	double multiplier;   /* growth per attempt, >= 1.0 */
	uint32_t attempt;    /* attempts since the last reset */
	uint64_t rng;        /* xorshift state, never 0 */
};

/* Fill b; seed 0 picks one from the clock and the address of b. */
void backoff_init(struct backoff *b, uint32_t initial_ms, uint32_t max_ms,
		  double multiplier, uint64_t seed);
/* The ceiling for the current attempt: min(max, initial * multiplier^attempt).
 */
uint32_t backoff_ceiling(const struct backoff *b);
/* The next delay in ms (uniform in [0, ceiling]) and advance the attempt. */
uint32_t backoff_next(struct backoff *b);
/* After a success: start again from the initial ceiling. */
void backoff_reset(struct backoff *b);
/* A delay uniform in [0, max_ms] from the same source; the attempt count
 * is left alone (a drain hint's spread, which is not a failure). */
uint32_t backoff_jitter(struct backoff *b, uint32_t max_ms);

#endif
