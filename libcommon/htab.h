/*
 * htab: a small intrusive hash table keyed by strings. An entry embeds a
 * struct hnode and is found by its hash; the table never looks at keys,
 * so the caller compares its own (one string, or several hashed in turn
 * with htab_hash_more) while walking a chain:
 *
 *	uint64_t hv = htab_hash(&t, name);
 *	for (struct hnode *n = htab_first(&t, hv); n; n = htab_next(n, hv))
 *		if (strcmp(container_of(n)->name, name) == 0) ...
 *
 * Chains are kept short by doubling the buckets once entries outnumber
 * them; entries never move in memory, so pointers to them stay good. A
 * table made with htab_init(t, true) mixes a random seed into every hash,
 * so that a client choosing keys (addresses, instance ids) cannot aim
 * them all at one chain. One owner, no lock.
 */
#ifndef DISCOVERY_HTAB_H
#define DISCOVERY_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hnode {
	struct hnode *next; /* in its bucket */
	uint64_t hash;
};

struct htab {
	struct hnode **buckets;
	size_t size; /* a power of two; 0 until the first add */
	size_t count;
	uint64_t seed;
};

void htab_init(struct htab *t, bool seeded);
/* Frees the buckets, not the entries (they are the caller's). */
void htab_release(struct htab *t);

uint64_t htab_hash(const struct htab *t, const char *s);
/* Go on hashing another part of a key (after a separator). */
uint64_t htab_hash_more(uint64_t h, const char *s);

/* Add n under hash hv. -1 only when the very first buckets cannot be
 * allocated; past that a failed growth leaves chains longer. */
int htab_add(struct htab *t, struct hnode *n, uint64_t hv);
void htab_remove(struct htab *t, struct hnode *n);
/* The first (next) entry of hv's chain whose hash is hv, or NULL. */
struct hnode *htab_first(const struct htab *t, uint64_t hv);
struct hnode *htab_next(const struct hnode *n, uint64_t hv);
/* Forget every entry at once (they are the caller's); the buckets stay. */
void htab_clear(struct htab *t);
/* Take any entry out (NULL: empty): to free every entry at the end. */
struct hnode *htab_pop(struct htab *t);

/* The entry of type that holds node n as member. */
#define htab_entry(n, type, member)                                            \
	((type *)(void *)((char *)(n)-offsetof(type, member)))

#endif
