/*
 * epboard: see epboard.h. One mutex guards the table of services and
 * their waiter lists; it is held for a lookup and a reference, or for a
 * swap and the wake-ups of one service's waiters, never while a set is
 * built or read. A waiter hangs off its service's slot, so a publish
 * wakes only the waiters of that service.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epboard.h"
#include "htab.h"

struct epwaiter {
	struct epwaiter *prev, *next; /* in its slot; unlinked once fired */
	struct slot *slot;            /* NULL once fired */
	uint64_t index;
	void (*fn)(void *arg);
	void *arg;
};

struct slot {
	struct hnode node;
	struct epset *set; /* NULL: forgotten (kept while waiters hang on) */
	struct epwaiter *waiters;
	char name[PROTO_NAME_MAX + 1];
};

struct epboard {
	pthread_mutex_t mu;
	struct htab slots; /* struct slot by service name */
	size_t n_waiters;
};

struct epboard *epboard_new(void)
{
	struct epboard *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	pthread_mutex_init(&b->mu, NULL);
	htab_init(&b->slots, true);
	return b;
}

void epboard_free(struct epboard *b)
{
	struct hnode *n;

	if (!b)
		return;
	while ((n = htab_pop(&b->slots))) {
		struct slot *s = htab_entry(n, struct slot, node);

		epset_put(s->set);
		free(s);
	}
	htab_release(&b->slots);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

void epset_hold(struct epset *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void epset_put(struct epset *s)
{
	if (s &&
	    atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		free(s); /* one allocation: the set, its ep and strings */
}

static size_t strings_of(const struct ep *e)
{
	size_t n = strlen(e->instance) + strlen(e->address) +
		   strlen(e->node ? e->node : "") +
		   strlen(e->meta ? e->meta : "{}") + 4 + strlen(e->address) +
		   1; /* host: shorter */

	for (size_t i = 0; i < e->n_tags; i++)
		n += strlen(e->tags[i]) + 1;
	return n;
}

/* Copy s into the storage at *at, moving past it. */
static const char *put(char **at, const char *s)
{
	size_t n = strlen(s) + 1;
	char *to = memcpy(*at, s, n);

	*at += n;
	return to;
}

static void derive(struct ep *e, char *host, size_t hostlen)
{
	struct in6_addr a6;
	struct in_addr a4;

	e->family = 0;
	if (proto_split_address(e->address, host, hostlen, &e->port) != 0) {
		host[0] = '\0';
		e->port = 0;
	} else if (inet_pton(AF_INET, host, &a4) == 1) {
		e->family = AF_INET;
		memcpy(e->ip, &a4, sizeof(a4));
	} else if (inet_pton(AF_INET6, host, &a6) == 1) {
		e->family = AF_INET6;
		memcpy(e->ip, &a6, sizeof(a6));
	}
	e->host = host;
}

static int by_node_instance(const void *a, const void *b)
{
	const struct ep *x = a, *y = b;
	int c = strcmp(x->node, y->node);

	return c ? c : strcmp(x->instance, y->instance);
}

struct epset *epset_new(const char *service, uint64_t index,
			const struct ep *src, size_t n)
{
	size_t size = sizeof(struct epset) + n * sizeof(struct ep), tags = 0;
	struct epset *set;
	const char **tagv;
	char *at;

	for (size_t i = 0; i < n; i++) {
		size += strings_of(&src[i]);
		tags += src[i].n_tags;
	}
	size += tags * sizeof(char *);
	if (!(set = calloc(1, size)))
		return NULL;
	atomic_init(&set->refs, 1);
	set->index = index;
	set->n = n;
	set->ep = (struct ep *)(set + 1);
	tagv = (const char **)(set->ep + n);
	at = (char *)(tagv + tags);
	snprintf(set->service, sizeof(set->service), "%s", service);
	for (size_t i = 0; i < n; i++) {
		struct ep *e = &set->ep[i];

		*e = src[i];
		e->instance = put(&at, src[i].instance);
		e->address = put(&at, src[i].address);
		e->node = put(&at, src[i].node ? src[i].node : "");
		e->meta = put(&at, src[i].meta ? src[i].meta : "{}");
		e->tags = tagv;
		for (size_t t = 0; t < e->n_tags; t++)
			*tagv++ = put(&at, src[i].tags[t]);
		derive(e, at, strlen(e->address) + 1);
		at += strlen(at) + 1;
		if (e->state == PROTO_STATE_READY)
			set->n_ready++;
	}
	qsort(set->ep, n, sizeof(*set->ep), by_node_instance);
	return set;
}

/* Under mu. */
static struct slot *find(struct epboard *b, const char *service)
{
	uint64_t hv = htab_hash(&b->slots, service);

	for (struct hnode *n = htab_first(&b->slots, hv); n;
	     n = htab_next(n, hv)) {
		struct slot *s = htab_entry(n, struct slot, node);

		if (strcmp(s->name, service) == 0)
			return s;
	}
	return NULL;
}

static struct slot *find_or_add(struct epboard *b, const char *service)
{
	struct slot *s = find(b, service);

	if (s)
		return s;
	if (!(s = calloc(1, sizeof(*s))))
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", service);
	if (htab_add(&b->slots, &s->node, htab_hash(&b->slots, service)) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static void unlink_waiter(struct epwaiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->slot->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	w->slot = NULL;
}

/* Under mu: wake s's waiters that index (or its going: all) passes. */
static void wake(struct epboard *b, struct slot *s, uint64_t index, bool all)
{
	struct epwaiter *w = s->waiters, *next;

	for (; w; w = next) {
		next = w->next;
		if (!all && index <= w->index)
			continue;
		unlink_waiter(w);
		b->n_waiters--;
		w->fn(w->arg);
	}
}

/* Under mu: drop a slot nothing needs any more. */
static void maybe_drop(struct epboard *b, struct slot *s)
{
	if (s->set || s->waiters)
		return;
	htab_remove(&b->slots, &s->node);
	free(s);
}

void epboard_publish(struct epboard *b, struct epset *set)
{
	struct slot *s;
	struct epset *old = NULL;

	pthread_mutex_lock(&b->mu);
	if ((s = find_or_add(b, set->service))) {
		old = s->set;
		s->set = set;
		wake(b, s, set->index, false);
	} else {
		old = set; /* no memory for its slot: readers keep none */
	}
	pthread_mutex_unlock(&b->mu);
	epset_put(old);
}

void epboard_forget(struct epboard *b, const char *service)
{
	struct slot *s;
	struct epset *old = NULL;

	pthread_mutex_lock(&b->mu);
	if ((s = find(b, service))) {
		old = s->set;
		s->set = NULL;
		wake(b, s, 0, true);
		maybe_drop(b, s);
	}
	pthread_mutex_unlock(&b->mu);
	epset_put(old);
}

struct epset *epboard_get(struct epboard *b, const char *service)
{
	struct slot *s;
	struct epset *set = NULL;

	pthread_mutex_lock(&b->mu);
	if ((s = find(b, service)) && (set = s->set))
		epset_hold(set);
	pthread_mutex_unlock(&b->mu);
	return set;
}

static int by_service(const void *a, const void *b)
{
	const struct epset *x = *(const struct epset *const *)a,
			   *y = *(const struct epset *const *)b;

	return strcmp(x->service, y->service);
}

long epboard_all(struct epboard *b, struct epset ***sets)
{
	size_t n = 0;

	pthread_mutex_lock(&b->mu);
	/* Slots without a set (waiters only) are counted but not taken. */
	*sets = malloc((b->slots.count ? b->slots.count : 1) * sizeof(**sets));
	for (size_t i = 0; *sets && i < b->slots.size; i++)
		for (struct hnode *h = b->slots.buckets[i]; h; h = h->next) {
			struct slot *s = htab_entry(h, struct slot, node);

			if (s->set) {
				epset_hold(s->set);
				(*sets)[n++] = s->set;
			}
		}
	pthread_mutex_unlock(&b->mu);
	if (!*sets)
		return -1;
	qsort(*sets, n, sizeof(**sets), by_service);
	return (long)n;
}

struct epwaiter *epboard_wait(struct epboard *b, const char *service,
			      uint64_t index, void (*fn)(void *arg), void *arg,
			      int *err)
{
	struct epwaiter *w = calloc(1, sizeof(*w));
	struct slot *s;

	*err = 0;
	if (!w) {
		*err = -1;
		return NULL;
	}
	pthread_mutex_lock(&b->mu);
	s = find_or_add(b, service);
	if (s && s->set && s->set->index > index) {
		maybe_drop(b, s);
		pthread_mutex_unlock(&b->mu);
		free(w);
		fn(arg);
		return NULL;
	}
	if (!s) {
		pthread_mutex_unlock(&b->mu);
		free(w);
		*err = -1;
		return NULL;
	}
	w->slot = s;
	w->index = index;
	w->fn = fn;
	w->arg = arg;
	w->next = s->waiters;
	if (w->next)
		w->next->prev = w;
	s->waiters = w;
	b->n_waiters++;
	pthread_mutex_unlock(&b->mu);
	return w;
}

void epboard_cancel(struct epboard *b, struct epwaiter *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&b->mu);
	if (w->slot) {
		struct slot *s = w->slot;

		unlink_waiter(w);
		b->n_waiters--;
		maybe_drop(b, s);
	}
	pthread_mutex_unlock(&b->mu);
	free(w);
}

size_t epboard_waiters(struct epboard *b)
{
	size_t n;

	pthread_mutex_lock(&b->mu);
	n = b->n_waiters;
	pthread_mutex_unlock(&b->mu);
	return n;
}
