/*
 * hub_ep: a service's endpoints, kept and published (docs/design.md,
 * "Endpoints"). Every change to an endpoint (a link with an address came,
 * went, or reported) marks its service dirty; a flush builds the service's
 * set from its links, compares it with the set it published last, and,
 * when they differ, gives it the next index and publishes it on the board
 * (epboard.h) for the threads that read it, and to the links that watch
 * the service (link_watch.c). The first change after a quiet spell is
 * flushed on the loop's next pass; later ones wait for the end of the
 * window (endpoints.coalesce), so a burst of changes costs each watcher a
 * bounded number of messages.
 */
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "hub_int.h"
#include "log.h"

/* ---- the dirty list ------------------------------------------------------ */

static void on_flush(lws_sorted_usec_list_t *sul);

static void arm(struct hub *h)
{
	int64_t now = clock_mono_ms(), at;

	if (h->ep_armed)
		return;
	at = h->ep_flushed_ms + h->ep_window_ms;
	h->ep_armed = true;
	lws_sul_schedule(h->ctx, 0, &h->ep_sul, on_flush,
			 at > now ? (at - now) * LWS_US_PER_MS : 0);
}

void hub_endpoints_moved(struct hub *h, struct service *s)
{
	if (!s->ep_dirty) {
		s->ep_dirty = true;
		s->dirty_prev = NULL;
		s->dirty_next = h->ep_dirty;
		if (s->dirty_next)
			s->dirty_next->dirty_prev = s;
		h->ep_dirty = s;
	}
	if (h->ctx)
		arm(h);
}

static void undirty(struct hub *h, struct service *s)
{
	if (!s->ep_dirty)
		return;
	if (s->dirty_prev)
		s->dirty_prev->dirty_next = s->dirty_next;
	else
		h->ep_dirty = s->dirty_next;
	if (s->dirty_next)
		s->dirty_next->dirty_prev = s->dirty_prev;
	s->dirty_prev = s->dirty_next = NULL;
	s->ep_dirty = false;
}

/* The registry's hook (registry.h): a new service gets a set, so that it
 * is known; a service going takes its set with it. */
static void on_service(void *ctx, struct service *s, bool gone)
{
	struct hub *h = ctx;

	if (!gone) {
		hub_endpoints_moved(h, s);
		return;
	}
	undirty(h, s);
	if (s->ep_set)
		epboard_forget(h->board, s->name);
	epset_put(s->ep_set);
	epset_put(s->ep_remote);
	s->ep_set = s->ep_remote = NULL;
	free(s->ep_text);
	s->ep_text = NULL;
}

void hub_ep_init(struct hub *h)
{
	h->registry.on_service = on_service;
	h->registry.ctx = h;
}

void hub_ep_start(struct hub *h)
{
	if (h->ep_dirty)
		arm(h);
}

/* ---- a service's links ------------------------------------------------ */

void hub_ep_add(struct hub *h, struct link *l)
{
	struct service *s = l->svc;

	if (!link_address(l)[0])
		return;
	l->ep_prev = NULL;
	l->ep_next = s->ep_links;
	if (l->ep_next)
		l->ep_next->ep_prev = l;
	s->ep_links = l;
	l->ep_listed = true;
	hub_endpoints_moved(h, s);
}

void hub_ep_remove(struct hub *h, struct link *l)
{
	struct service *s = l->svc;

	if (!l->ep_listed)
		return;
	if (l->ep_prev)
		l->ep_prev->ep_next = l->ep_next;
	else
		s->ep_links = l->ep_next;
	if (l->ep_next)
		l->ep_next->ep_prev = l->ep_prev;
	l->ep_prev = l->ep_next = NULL;
	l->ep_listed = false;
	hub_endpoints_moved(h, s);
}

/* ---- building a set ---------------------------------------------------- */

/* Scratch for one build: the links' endpoints, pointing into the links
 * (meta printed, tags split), copied by epset_new. */
struct build {
	struct ep *ep;
	const char **tags;
	char **metas;
	size_t n, n_tags;
};

static void build_free(struct build *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->metas[i]);
	free(b->ep);
	free(b->tags);
	free(b->metas);
}

/* The other nodes' endpoints, but those of an instance listed already
 * (one that moved here from a node not yet swept: its live link wins; or
 * listed by two other nodes: the first node's). */
static void build_remote(const struct hub *h, const struct service *s,
			 struct build *b)
{
	const struct epset *r = s->ep_remote;

	for (size_t i = 0; r && i < r->n; i++) {
		const struct ep *e = &r->ep[i];
		bool dup = link_index_find(h, s, e->instance) != NULL;

		for (size_t j = 0; !dup && j < b->n; j++)
			dup = strcmp(b->ep[j].instance, e->instance) == 0;
		if (!dup)
			b->ep[b->n++] = *e;
	}
}

static int build_local(struct hub *h, const struct service *s, struct build *b)
{
	size_t n = s->ep_remote ? s->ep_remote->n : 0, tags = 0;

	for (const struct link *l = s->ep_links; l; l = l->ep_next) {
		n++;
		tags += l->n_tags;
	}
	b->ep = calloc(n ? n : 1, sizeof(*b->ep));
	b->metas = calloc(n ? n : 1, sizeof(*b->metas));
	b->tags = calloc(tags ? tags : 1, sizeof(*b->tags));
	if (!b->ep || !b->metas || !b->tags)
		return -1;
	for (const struct link *l = s->ep_links; l; l = l->ep_next) {
		struct ep *e = &b->ep[b->n];
		const char *t = link_tags(l);

		e->instance = link_instance(l);
		e->address = link_address(l);
		e->node = h->node;
		if (link_meta(l) &&
		    !(e->meta = b->metas[b->n] =
			      cJSON_PrintUnformatted(link_meta(l))))
			return -1;
		b->n++;
		e->tags = b->tags + b->n_tags;
		e->n_tags = l->n_tags;
		for (unsigned i = 0; i < e->n_tags; i++, t += strlen(t) + 1)
			b->tags[b->n_tags++] = t;
		e->state = (enum proto_state)l->status;
		e->weight = l->weight;
		e->load = l->load == LINK_LOAD_NONE ? -1 : (int)l->load;
	}
	build_remote(h, s, b);
	return 0;
}

bool hub_ep_same(const struct ep *a, const struct ep *b)
{
	if (strcmp(a->instance, b->instance) != 0 ||
	    strcmp(a->address, b->address) != 0 ||
	    strcmp(a->node, b->node) != 0 || a->state != b->state ||
	    a->weight != b->weight || a->load != b->load ||
	    a->n_tags != b->n_tags || strcmp(a->meta, b->meta) != 0)
		return false;
	for (size_t i = 0; i < a->n_tags; i++)
		if (strcmp(a->tags[i], b->tags[i]) != 0)
			return false;
	return true;
}

static bool same_set(const struct epset *a, const struct epset *b)
{
	if (!a || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!hub_ep_same(&a->ep[i], &b->ep[i]))
			return false;
	return true;
}

/* Flush s now: publish its set if it moved. -1 when out of memory: s is
 * marked again, the set stays as it was. */
int hub_ep_flush(struct hub *h, struct service *s)
{
	struct build b = { 0 };
	struct epset *set = NULL, *old = s->ep_set;

	undirty(h, s);
	if (build_local(h, s, &b) == 0)
		set = epset_new(s->name, h->ep_clock + 1, b.ep, b.n);
	build_free(&b);
	if (!set) {
		log_warn("endpoints",
			 "service=%s note=\"no memory to publish "
			 "its endpoints; trying again\"",
			 s->name);
		hub_endpoints_moved(h, s);
		return -1;
	}
	if (same_set(old, set)) {
		epset_put(set);
		return 0;
	}
	set->index = ++h->ep_clock;
	s->ep_index = set->index;
	epset_hold(set);
	s->ep_set = set;
	epboard_publish(h->board, set); /* takes one reference */
	hub_watch_send(h, s, old);
	epset_put(old);
	return 0;
}

/* Services are taken off the list one at a time: what a flush sends may
 * close links, and so mark (or free) other services on it. */
static void on_flush(lws_sorted_usec_list_t *sul)
{
	struct hub *h = lws_container_of(sul, struct hub, ep_sul);
	struct service *s;

	h->ep_armed = false;
	h->ep_flushed_ms = clock_mono_ms();
	while ((s = h->ep_dirty)) {
		int rc = hub_ep_flush(h, s);

		/* A service nothing holds any more (its last watcher went,
		 * say) goes now that no one walks it. */
		registry_release_service(&h->registry, s);
		if (rc != 0)
			break; /* it is back on the list, for the next window */
	}
}

/* ---- the answer -------------------------------------------------------- */

/*
 * A reader (a welcome, the HTTP answer) about to read s: a change waiting
 * is flushed now if its window has passed anyway (what the timer would do
 * on the next pass), else the reader gets the set published last and the
 * change follows at the window's end. So readers never add flushes: a
 * burst of hellos from watchers still costs each one message per window.
 */
void hub_ep_fresh(struct hub *h, struct service *s)
{
	int64_t now = clock_mono_ms();

	/* A service with no set yet (just made) gets its first at once:
	 * nobody holds an older one to be spared a message. */
	if (!s->ep_dirty ||
	    (s->ep_set && now - h->ep_flushed_ms < h->ep_window_ms))
		return;
	h->ep_flushed_ms = now;
	hub_ep_flush(h, s);
}

cJSON *hub_ep_answer(struct hub *h, const char *service,
		     const struct endpoints_filter *f, uint64_t *index)
{
	struct service *s = registry_find(&h->registry, service);
	cJSON *list = cJSON_CreateArray();

	if (s)
		hub_ep_fresh(h, s);
	*index = s && s->ep_set ? s->ep_set->index : h->ep_clock;
	if (list && s && s->ep_set)
		endpoints_list(list, s->ep_set, f);
	return list;
}
