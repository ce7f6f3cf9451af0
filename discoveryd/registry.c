/*
 * registry: services in a sorted array of pointers (listing order is by
 * name; lookups are a binary search). See registry.h.
 */
#include <stdlib.h>
#include <string.h>

#include "registry.h"

void registry_init(struct registry *r, size_t max_services)
{
	memset(r, 0, sizeof(*r));
	r->max = max_services;
}

void registry_release(struct registry *r)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->on_service)
			r->on_service(r->ctx, r->services[i], true);
		free(r->services[i]);
	}
	free(r->services);
	memset(r, 0, sizeof(*r));
}

/* Index of name, or where it would be inserted (with *found false). */
static size_t search(const struct registry *r, const char *name, bool *found)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(r->services[mid]->name, name);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

struct service *registry_find(const struct registry *r, const char *name)
{
	bool found;
	size_t i = search(r, name, &found);

	return found ? r->services[i] : NULL;
}

struct service *registry_get(struct registry *r, const char *name)
{
	bool found;
	size_t i = search(r, name, &found);
	struct service *s;

	if (found)
		return r->services[i];
	if (r->n >= r->max || strlen(name) > PROTO_NAME_MAX)
		return NULL;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct service **v = realloc(r->services, cap * sizeof(*v));

		if (!v)
			return NULL;
		r->services = v;
		r->cap = cap;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	strcpy(s->name, name);
	s->min_ready = 1;
	memmove(&r->services[i + 1], &r->services[i],
		(r->n - i) * sizeof(*r->services));
	r->services[i] = s;
	r->n++;
	if (r->on_service)
		r->on_service(r->ctx, s, false);
	return s;
}

void registry_release_service(struct registry *r, struct service *s)
{
	bool found;
	size_t i;

	/* Ready counts too: in cluster mode a service may be ready through
	 * other nodes' instances alone, and welcomes must say so. */
	if (s->instances || s->dependents || s->declared || s->configured ||
	    s->grace || s->ready || s->n_watchers || s->pins || s->ep_remote)
		return;
	i = search(r, s->name, &found);
	if (!found || r->services[i] != s)
		return;
	if (r->on_service)
		r->on_service(r->ctx, s, true);
	memmove(&r->services[i], &r->services[i + 1],
		(r->n - i - 1) * sizeof(*r->services));
	r->n--;
	free(s);
}

bool service_computed_ready(const struct service *s)
{
	switch (s->declared) {
	case DECL_READY: return true;
	case DECL_NOTREADY: return false;
	case DECL_NONE: break;
	}
	return s->ready_instances >= s->min_ready || s->grace;
}

const char *declaration_name(enum declaration d)
{
	switch (d) {
	case DECL_READY: return "ready";
	case DECL_NOTREADY: return "notready";
	case DECL_NONE: break;
	}
	return NULL;
}

size_t registry_expire(struct registry *r, int64_t now_ms)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++) {
		struct service *s = r->services[i];

		if (s->declared && s->expires_ms && s->expires_ms <= now_ms) {
			s->declared = DECL_NONE;
			s->expires_ms = 0;
			n++;
		}
	}
	return n;
}

int64_t registry_next_expiry(const struct registry *r)
{
	int64_t next = 0;

	for (size_t i = 0; i < r->n; i++) {
		int64_t e = r->services[i]->expires_ms;

		if (r->services[i]->declared && e && (!next || e < next))
			next = e;
	}
	return next;
}
