/*
 * backoff: exponential backoff with full jitter; the contract is in
 * backoff.h.
 *
 * The ceiling is computed from the attempt count alone (no running value to
 * overflow), by binary exponentiation with an early cap, so it costs at most
 * 32 multiplications for any attempt and needs no libm. The random source
 * is xorshift64* (Vigna, "An experimental exploration of Marsaglia's
 * xorshift generators"): small, fast, good enough to spread retries, and
 * repeatable from a seed.
 */
#include <stdint.h>
#include <time.h>

#include "backoff.h"

/* A multiplier this close to 1 could not double a ceiling in a billion
 * attempts; treating it as exactly 1 also keeps the ceiling monotone, since
 * the rounding of the exponentiation (~1e-14 relative) stays far below the
 * growth from one attempt to the next. */
#define MIN_GROWTH 1e-9

/* SplitMix64 (Steele, Lea, Flood): spreads a seed's bits over the word so
 * that small or similar seeds still start xorshift far apart. */
static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15u;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
	return x ^ (x >> 31);
}

static uint64_t next_random(struct backoff *b)
{
	uint64_t x = b->rng;

	if (x == 0) /* a zeroed struct: xorshift would stay at 0 */
		x = mix(0);
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	b->rng = x;
	return x * 0x2545F4914F6CDD1Du;
}

static uint64_t clock_seed(const struct backoff *b)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
	       (uint64_t)(uintptr_t)b;
}

void backoff_init(struct backoff *b, uint32_t initial_ms, uint32_t max_ms,
		  double multiplier, uint64_t seed)
{
	/* Out-of-contract values are clamped, not trusted: a library never
	 * aborts, and a zero initial or NaN multiplier would stall retries. */
	b->initial_ms = initial_ms > 0 ? initial_ms : 1;
	b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
	b->multiplier = multiplier >= 1.0 + MIN_GROWTH ? multiplier : 1.0;
	b->attempt = 0;
	b->rng = mix(seed ? seed : clock_seed(b));
	if (b->rng == 0)
		b->rng = mix(1);
}

uint32_t backoff_ceiling(const struct backoff *b)
{
	double ceiling = b->initial_ms, factor = b->multiplier;
	uint32_t n = b->attempt;

	/* Read the fields as found: they are public and may have been set
	 * by hand. The comparisons are written to be false for NaN. */
	if (b->max_ms <= b->initial_ms || !(factor >= 1.0 + MIN_GROWTH))
		return b->initial_ms < b->max_ms ? b->initial_ms : b->max_ms;
	for (; n > 0; n >>= 1) {
		if (n & 1) {
			ceiling *= factor;
			if (!(ceiling < b->max_ms))
				return b->max_ms;
		}
		factor *= factor; /* may reach +inf: then the cap holds */
	}
	return (uint32_t)ceiling;
}

uint32_t backoff_next(struct backoff *b)
{
	uint64_t span = (uint64_t)backoff_ceiling(b) + 1; /* <= 2^32 */
	uint64_t r = next_random(b) >> 32;

	/* Lemire's multiply-shift maps 32 random bits onto [0, span). */
	if (b->attempt < UINT32_MAX)
		b->attempt++;
	return (uint32_t)((r * span) >> 32);
}

void backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}

uint32_t backoff_jitter(struct backoff *b, uint32_t max_ms)
{
	uint64_t r = next_random(b) >> 32;

	return (uint32_t)((r * ((uint64_t)max_ms + 1)) >> 32);
}
