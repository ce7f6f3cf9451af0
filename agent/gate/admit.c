/*
 * admit: connection counts, in all and per address (see admit.h). The
 * per-address counts live in an open-addressing table with linear probing,
 * sized at twice the connection limit (an address is in it only while it
 * holds a connection, so it never fills), and backward-shift deletion, so
 * there are no tombstones to sweep.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"

struct slot {
	uint8_t key[16]; /* IPv4 as ::ffff:a.b.c.d; IPv6 by its /64 */
	uint32_t count;  /* 0: empty */
};

struct admit {
	pthread_mutex_t lock;
	size_t max, per_ip, held;
	size_t mask; /* slots - 1, a power of two minus one */
	struct slot *slots;
	unsigned long long refused_full,
		refused_per_ip; /* since the last line */
	long long logged_ms;
};

struct admit *admit_new(size_t max, size_t per_ip)
{
	struct admit *a = calloc(1, sizeof(*a));
	size_t n = 16;

	while (n < 2 * max)
		n *= 2;
	if (!a || !(a->slots = calloc(n, sizeof(*a->slots)))) {
		free(a);
		return NULL;
	}
	pthread_mutex_init(&a->lock, NULL);
	a->max = max;
	a->per_ip = per_ip;
	a->mask = n - 1;
	return a;
}

void admit_free(struct admit *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->lock);
	free(a->slots);
	free(a);
}

static void key_of(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr,
		       4);
		return;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *b =
			((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

		/* An IPv4 client on a dual-stack socket is that IPv4 address.
		 */
		memcpy(key, b, !memcmp(b, mapped, 12) ? 16 : 8);
	}
}

static size_t hash(const uint8_t key[16])
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29));
}

/* The slot holding key, or the empty one where it would go. */
static size_t find(const struct admit *a, const uint8_t key[16])
{
	size_t i = hash(key) & a->mask;

	while (a->slots[i].count && memcmp(a->slots[i].key, key, 16))
		i = (i + 1) & a->mask;
	return i;
}

/* Empty slot i, moving up any later entry of its probe run that would
 * no longer be found (backward-shift deletion). */
static void remove_at(struct admit *a, size_t i)
{
	size_t j = i;

	for (;;) {
		size_t home;

		a->slots[i].count = 0;
		do {
			j = (j + 1) & a->mask;
			if (!a->slots[j].count)
				return;
			home = hash(a->slots[j].key) & a->mask;
			/* j stays if its home lies cyclically in (i, j]. */
		} while (i <= j ? (i < home && home <= j) :
				  (i < home || home <= j));
		a->slots[i] = a->slots[j];
		i = j;
	}
}

enum admit_result admit_take(struct admit *a, const struct sockaddr *sa)
{
	enum admit_result rc = ADMIT_OK;
	uint8_t key[16];
	size_t i;

	key_of(sa, key);
	pthread_mutex_lock(&a->lock);
	i = find(a, key);
	if (a->per_ip && a->slots[i].count >= a->per_ip) {
		rc = ADMIT_PER_IP;
	} else if (a->held >= a->max) {
		rc = ADMIT_FULL;
	} else {
		if (!a->slots[i].count)
			memcpy(a->slots[i].key, key, 16);
		a->slots[i].count++;
		a->held++;
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void admit_put(struct admit *a, const struct sockaddr *sa)
{
	uint8_t key[16];
	size_t i;

	key_of(sa, key);
	pthread_mutex_lock(&a->lock);
	i = find(a, key);
	if (a->slots[i].count) {
		a->held--;
		if (!--a->slots[i].count)
			remove_at(a, i);
	}
	pthread_mutex_unlock(&a->lock);
}

size_t admit_count(struct admit *a)
{
	size_t n;

	pthread_mutex_lock(&a->lock);
	n = a->held;
	pthread_mutex_unlock(&a->lock);
	return n;
}

bool admit_refused(struct admit *a, enum admit_result why, long long now_ms,
		   unsigned long long *full, unsigned long long *per_ip)
{
	bool due;

	pthread_mutex_lock(&a->lock);
	if (why == ADMIT_FULL)
		a->refused_full++;
	else
		a->refused_per_ip++;
	due = !a->logged_ms || now_ms - a->logged_ms >= ADMIT_LOG_MS;
	if (due) {
		*full = a->refused_full;
		*per_ip = a->refused_per_ip;
		a->refused_full = a->refused_per_ip = 0;
		a->logged_ms = now_ms;
	}
	pthread_mutex_unlock(&a->lock);
	return due;
}
