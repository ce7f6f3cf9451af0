/*
 * link_index: the hub's instances by (service, instance id), so that a
 * newer link of an instance finds and replaces its zombie in O(1). A hash
 * table (htab.h, seeded: instance ids are the clients') through struct
 * link; hub thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "hub_int.h"

static uint64_t key_hash(const struct hub *h, const struct service *svc,
			 const char *instance)
{
	return htab_hash_more(htab_hash(&h->index, svc->name), instance);
}

struct link *link_index_find(const struct hub *h, const struct service *svc,
			     const char *instance)
{
	uint64_t hv = key_hash(h, svc, instance);

	for (struct hnode *n = htab_first(&h->index, hv); n;
	     n = htab_next(n, hv)) {
		struct link *o = htab_entry(n, struct link, index_node);

		if (o->svc == svc && strcmp(link_instance(o), instance) == 0)
			return o;
	}
	return NULL;
}

/* On no memory the link is not indexed: a newer link of the instance then
 * waits out the zombie's heartbeat instead of replacing it at once. */
void link_index_add(struct hub *h, struct link *l)
{
	l->indexed = htab_add(&h->index, &l->index_node,
			      key_hash(h, l->svc, link_instance(l))) == 0;
}

void link_index_remove(struct hub *h, struct link *l)
{
	if (l->indexed)
		htab_remove(&h->index, &l->index_node);
	l->indexed = false;
}
