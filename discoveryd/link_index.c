/*
 * link_index: the hub's instances by (service, instance id), so that a
 * newer link of an instance finds and replaces its zombie in O(1). A hash
 * table of chains through struct link, grown to about one instance per
 * bucket; hub thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "hub_int.h"

static size_t index_slot(const struct hub *h, const struct service *svc,
			 const char *instance)
{
	uint64_t x = 1469598103934665603ULL;    /* FNV-1a */

	for (const char *p = svc->name; *p; p++)
		x = (x ^ (unsigned char)*p) * 1099511628211ULL;
	x = (x ^ 0xff) * 1099511628211ULL;
	for (const char *p = instance; *p; p++)
		x = (x ^ (unsigned char)*p) * 1099511628211ULL;
	return (size_t)x & (h->index_size - 1);
}

struct link *link_index_find(const struct hub *h, const struct service *svc,
			    const char *instance)
{
	struct link *o;

	if (!h->index_size)
		return NULL;
	for (o = h->index[index_slot(h, svc, instance)]; o; o = o->index_next)
		if (o->svc == svc && strcmp(o->instance, instance) == 0)
			return o;
	return NULL;
}

/* Keep about one instance per bucket; on allocation failure keep the old
 * table (chains just get longer). */
static void index_grow(struct hub *h)
{
	size_t size = h->index_size ? h->index_size * 2 : 1024;
	struct link **old = h->index, **fresh = calloc(size, sizeof(*fresh));
	size_t old_size = h->index_size;

	if (!fresh)
		return;
	h->index = fresh;
	h->index_size = size;
	for (size_t i = 0; i < old_size; i++) {
		struct link *o = old[i], *next;

		for (; o; o = next) {
			size_t slot = index_slot(h, o->svc, o->instance);

			next = o->index_next;
			o->index_next = fresh[slot];
			fresh[slot] = o;
		}
	}
	free(old);
}

void link_index_add(struct hub *h, struct link *l)
{
	size_t slot;

	if (h->n_instances >= h->index_size)
		index_grow(h);
	if (!h->index_size)
		return;
	slot = index_slot(h, l->svc, l->instance);
	l->index_next = h->index[slot];
	h->index[slot] = l;
}

void link_index_remove(struct hub *h, struct link *l)
{
	struct link **p;

	if (!h->index_size)
		return;
	for (p = &h->index[index_slot(h, l->svc, l->instance)]; *p;
	     p = &(*p)->index_next)
		if (*p == l) {
			*p = l->index_next;
			l->index_next = NULL;
			return;
		}
}
