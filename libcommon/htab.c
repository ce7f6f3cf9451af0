/*
 * htab: the string-keyed intrusive hash table (see htab.h). FNV-1a, with
 * the seed folded into the offset basis and a final mix so that the low
 * bits (the bucket) depend on every byte.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "htab.h"

#define FNV_BASIS  1469598103934665603ULL
#define FNV_PRIME  1099511628211ULL
#define FIRST_SIZE 64

void htab_init(struct htab *t, bool seeded)
{
	memset(t, 0, sizeof(*t));
	if (seeded && getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) !=
			      (ssize_t)sizeof(t->seed))
		t->seed = (uint64_t)(uintptr_t)t ^ (uint64_t)clock_mono_us();
}

void htab_release(struct htab *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->size = t->count = 0;
}

static uint64_t fnv(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * FNV_PRIME;
	return h;
}

uint64_t htab_hash(const struct htab *t, const char *s)
{
	return fnv(FNV_BASIS ^ t->seed, s);
}

uint64_t htab_hash_more(uint64_t h, const char *s)
{
	return fnv((h ^ 0xff) * FNV_PRIME, s);
}

static size_t bucket(const struct htab *t, uint64_t hv)
{
	return (size_t)(hv ^ (hv >> 29)) & (t->size - 1);
}

/* Double the buckets; on no memory keep the old ones. */
static int grow(struct htab *t)
{
	size_t size = t->size ? t->size * 2 : FIRST_SIZE, old = t->size;
	struct hnode **b = calloc(size, sizeof(*b)), **from = t->buckets;

	if (!b)
		return -1;
	t->buckets = b;
	t->size = size;
	for (size_t i = 0; i < old; i++) {
		struct hnode *n = from[i], *next;

		for (; n; n = next) {
			struct hnode **slot = &b[bucket(t, n->hash)];

			next = n->next;
			n->next = *slot;
			*slot = n;
		}
	}
	free(from);
	return 0;
}

int htab_add(struct htab *t, struct hnode *n, uint64_t hv)
{
	struct hnode **slot;

	if (t->count >= t->size && grow(t) != 0 && !t->size)
		return -1;
	n->hash = hv;
	slot = &t->buckets[bucket(t, hv)];
	n->next = *slot;
	*slot = n;
	t->count++;
	return 0;
}

void htab_remove(struct htab *t, struct hnode *n)
{
	struct hnode **p;

	if (!t->size)
		return;
	for (p = &t->buckets[bucket(t, n->hash)]; *p; p = &(*p)->next)
		if (*p == n) {
			*p = n->next;
			n->next = NULL;
			t->count--;
			return;
		}
}

static struct hnode *same(struct hnode *n, uint64_t hv)
{
	while (n && n->hash != hv)
		n = n->next;
	return n;
}

struct hnode *htab_first(const struct htab *t, uint64_t hv)
{
	return t->size ? same(t->buckets[bucket(t, hv)], hv) : NULL;
}

struct hnode *htab_next(const struct hnode *n, uint64_t hv)
{
	return same(n->next, hv);
}

struct hnode *htab_pop(struct htab *t)
{
	for (size_t i = 0; i < t->size; i++)
		if (t->buckets[i]) {
			struct hnode *n = t->buckets[i];

			t->buckets[i] = n->next;
			n->next = NULL;
			t->count--;
			return n;
		}
	return NULL;
}

void htab_clear(struct htab *t)
{
	if (t->size)
		memset(t->buckets, 0, t->size * sizeof(*t->buckets));
	t->count = 0;
}
