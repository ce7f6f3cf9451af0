/*
 * watch: the endpoints of the services an agent watches (agent.h,
 * "endpoints"; docs/protocol.md, "Endpoints").
 *
 * The agent thread builds each new set whole (one allocation, never
 * changed after) from the one before and what the daemon says changed,
 * and publishes it in its service's slot. Readers on any thread take it
 * without a lock:
 *
 *	cur = load(slot.current)           which buffer, and its generation
 *	refs[buf(cur)] += 1
 *	if load(slot.current) == cur       still the one published: use it
 *	else refs -= 1, start over
 *
 * The writer only reuses (frees) a buffer that is not the current one and
 * has no reference; a reader that counted itself on a buffer the writer
 * then reused sees `current` moved on (the generation makes a reused
 * buffer look different) and drops it without reading it. So a set is
 * never freed under a reader and never torn. When every other buffer is
 * held, the newest set waits (pending) and is published at the next
 * change or heartbeat tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_int.h"
#include "log.h"

#define BUF_BITS 3
#define NONE     UINT32_MAX

/* A published set: the public view first, then where it lives. */
struct epview {
	struct agent_endpoints pub;
	unsigned buf;   /* in its slot */
	uint64_t total; /* sum of the ready endpoints' weights */
	uint64_t *cum;  /* running sums of it, by ready endpoint */
	const struct agent_endpoint **ready; /* n_ready */
	/* then the endpoints, tag pointers and strings */
};

static struct epview *view_of(const struct agent_endpoints *set)
{
	return (struct epview *)(void *)set;
}

/* ---- configuration --------------------------------------------------------
 */

static int name_cmp(const void *x, const void *y)
{
	return strcmp(((const struct watch_slot *)x)->name,
		      ((const struct watch_slot *)y)->name);
}

int watch_init(struct agent *a, const struct agent_config *c, char *err,
	       size_t errlen)
{
	const char *const *names = c->watch_depends_on ? c->depends_on :
							 c->watch;
	size_t n = c->watch_depends_on ? c->n_depends_on : c->n_watch;

	if (n > PROTO_DEPENDS_MAX) {
		snprintf(err, errlen, "watch: more than %d services",
			 PROTO_DEPENDS_MAX);
		return -1;
	}
	if (n && !names) {
		snprintf(err, errlen, "watch: NULL list");
		return -1;
	}
	if (!n)
		return 0;
	if (!(a->watch = calloc(n, sizeof(*a->watch)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct watch_slot *s = &a->watch[i];

		if (!names[i] || !proto_valid_name(names[i])) {
			snprintf(err, errlen,
				 "watch: \"%.64s\" is not a valid service name",
				 names[i] ? names[i] : "(null)");
			return -1;
		}
		snprintf(s->name, sizeof(s->name), "%s", names[i]);
		atomic_init(&s->current, NONE);
		atomic_init(&s->queued, false);
		for (size_t b = 0; b < WATCH_BUFS; b++)
			atomic_init(&s->bufs[b].refs, 0);
		a->n_watch++;
	}
	qsort(a->watch, n, sizeof(*a->watch), name_cmp);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(a->watch[i].name, a->watch[i - 1].name)) {
			snprintf(err, errlen, "watch: \"%s\" twice",
				 a->watch[i].name);
			return -1;
		}
	/* The hello names them: as depends_on if that is what they are. */
	a->hello.watch_deps = c->watch_depends_on && n;
	for (size_t i = 0; !a->hello.watch_deps && i < n; i++)
		snprintf(a->hello.watch[i], sizeof(a->hello.watch[i]), "%s",
			 a->watch[i].name);
	a->hello.n_watch = a->hello.watch_deps ? 0 : n;
	return 0;
}

void watch_free(struct agent *a)
{
	for (size_t i = 0; i < a->n_watch; i++) {
		struct watch_slot *s = &a->watch[i];

		for (size_t b = 0; b < WATCH_BUFS; b++)
			free(s->bufs[b].set);
		free(s->pending);
	}
	free(a->watch);
	a->watch = NULL;
	a->n_watch = 0;
}

static struct watch_slot *slot_of(const struct agent *a, const char *service)
{
	size_t lo = 0, hi = a->n_watch;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(service, a->watch[mid].name);

		if (!c)
			return &a->watch[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* ---- building a set -------------------------------------------------------
 */

/* Where one endpoint of a new set comes from: the daemon's JSON, or the
 * set before (unchanged). */
struct src {
	const cJSON *json;
	const struct agent_endpoint *old;
};

static const char *jstr(const cJSON *o, const char *key)
{
	const char *s =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s ? s : "";
}

static const char *src_instance(const struct src *s)
{
	return s->json ? jstr(s->json, "instance") : s->old->instance;
}

static size_t src_size(const struct src *s)
{
	const cJSON *t;
	size_t n = 0;

	if (!s->json) {
		n = strlen(s->old->instance) + strlen(s->old->address) +
		    strlen(s->old->node) + 3;
		for (size_t i = 0; i < s->old->n_tags; i++)
			n += strlen(s->old->tags[i]) + 1 + sizeof(char *);
		return n;
	}
	n = strlen(jstr(s->json, "instance")) +
	    strlen(jstr(s->json, "address")) + strlen(jstr(s->json, "node")) +
	    3;
	cJSON_ArrayForEach (t,
			    cJSON_GetObjectItemCaseSensitive(s->json, "tags"))
		n += strlen(t->valuestring) + 1 + sizeof(char *);
	return n;
}

static char *put(char **at, const char *s)
{
	size_t n = strlen(s) + 1;
	char *to = memcpy(*at, s, n);

	*at += n;
	return to;
}

/* Fill e from s; tag pointers go to *tagv, strings to *at. */
static void src_fill(const struct src *s, struct agent_endpoint *e,
		     const char ***tagv, char **at)
{
	const char **tags = *tagv;
	const cJSON *w, *load, *t;

	if (!s->json) {
		*e = *s->old;
		for (size_t i = 0; i < e->n_tags; i++)
			(*tagv)[i] = s->old->tags[i];
	} else {
		memset(e, 0, sizeof(*e));
		e->instance = jstr(s->json, "instance");
		e->address = jstr(s->json, "address");
		e->node = jstr(s->json, "node");
		e->state = (enum agent_endpoint_state)proto_state_parse(
			jstr(s->json, "state"));
		w = cJSON_GetObjectItemCaseSensitive(s->json, "weight");
		e->weight = cJSON_IsNumber(w) ? (uint32_t)w->valuedouble :
						PROTO_WEIGHT_DEFAULT;
		load = cJSON_GetObjectItemCaseSensitive(s->json, "load");
		e->load = cJSON_IsNumber(load) ? load->valuedouble : -1;
		cJSON_ArrayForEach (t, cJSON_GetObjectItemCaseSensitive(s->json,
									"tags"))
			(*tagv)[e->n_tags++] = t->valuestring;
	}
	/* Copy the strings in: the sources go when the call returns. */
	e->instance = put(at, e->instance);
	e->address = put(at, e->address);
	e->node = put(at, e->node);
	for (size_t i = 0; i < e->n_tags; i++)
		tags[i] = put(at, tags[i]);
	e->tags = e->n_tags ? tags : NULL;
	*tagv += e->n_tags;
}

static int by_instance(const void *x, const void *y)
{
	return strcmp(src_instance(x), src_instance(y));
}

/* A set from n sources (sorted here). NULL when out of memory. */
static struct epview *build(const char *service, uint64_t index,
			    struct src *src, size_t n)
{
	size_t size = sizeof(struct epview) + strlen(service) + 1, n_ready = 0;
	struct agent_endpoint *ep;
	struct epview *v;
	const char **tagv;
	char *at;

	qsort(src, n, sizeof(*src), by_instance);
	size += n * (sizeof(*ep) + sizeof(uint64_t) + sizeof(void *));
	for (size_t i = 0; i < n; i++)
		size += src_size(&src[i]);
	if (!(v = calloc(1, size)))
		return NULL;
	ep = (struct agent_endpoint *)(v + 1);
	v->cum = (uint64_t *)(ep + n);
	v->ready = (const struct agent_endpoint **)(v->cum + n);
	tagv = (const char **)(v->ready + n);
	for (size_t i = 0; i < n; i++)
		tagv += src[i].json ? cJSON_GetArraySize(
					      cJSON_GetObjectItemCaseSensitive(
						      src[i].json, "tags")) :
				      (int)src[i].old->n_tags;
	at = (char *)tagv;
	tagv = (const char **)(v->ready + n);
	v->pub.service = put(&at, service);
	v->pub.index = index;
	v->pub.n = n;
	v->pub.ep = ep;
	for (size_t i = 0; i < n; i++) {
		src_fill(&src[i], &ep[i], &tagv, &at);
		if (ep[i].state == AGENT_ENDPOINT_READY) {
			v->total += ep[i].weight;
			v->cum[n_ready] = v->total;
			v->ready[n_ready++] = &ep[i];
		}
	}
	v->pub.n_ready = n_ready;
	return v;
}

/* ---- publishing -----------------------------------------------------------
 */

/* Agent thread: make s->pending current if a buffer is free. */
static void publish_pending(struct watch_slot *s)
{
	uint32_t cur = atomic_load(&s->current);
	unsigned now = cur == NONE ? WATCH_BUFS : cur & (WATCH_BUFS - 1);

	if (!s->pending)
		return;
	for (unsigned b = 0; b < WATCH_BUFS; b++) {
		if (b == now || atomic_load(&s->bufs[b].refs) != 0)
			continue;
		free(s->bufs[b].set);
		s->bufs[b].set = s->pending;
		s->pending->buf = b;
		s->pending = NULL;
		do /* a generation in the high bits; never NONE */
			s->gen++;
		while (((s->gen << BUF_BITS) | b) == NONE);
		atomic_store(&s->current, (s->gen << BUF_BITS) | b);
		return;
	}
}

static void publish(struct agent *a, struct watch_slot *s, struct epview *v)
{
	free(s->pending); /* never published: no reader has it */
	s->pending = v;
	s->latest = v;
	publish_pending(s);
	if (s->pending)
		notify_log(a, AGENT_LOG_WARN,
			   "endpoints_held service=%s note=\"every buffer is "
			   "held by a reader; the newest set waits\"",
			   s->name);
	notify_endpoints(a, s);
}

void watch_tick(struct agent *a)
{
	for (size_t i = 0; i < a->n_watch; i++) {
		struct watch_slot *s = &a->watch[i];

		if (!s->pending)
			continue;
		publish_pending(s);
		/* A host's callback reads the published set: the one held
		 * back is news to it now (the agent thread's was given it). */
		if (!s->pending && a->dispatch == AGENT_DISPATCH_HOST)
			notify_endpoints(a, s);
	}
}

/* A whole set (a welcome's, or a full message). */
static int take_full(struct agent *a, struct watch_slot *s, uint64_t index,
		     const cJSON *list)
{
	size_t n = (size_t)cJSON_GetArraySize(list), i = 0;
	struct src *src = calloc(n ? n : 1, sizeof(*src));
	const cJSON *e;
	struct epview *v;

	if (!src)
		return AGENT_E_NOMEM;
	cJSON_ArrayForEach (e, list)
		src[i++].json = e;
	v = build(s->name, index, src, n);
	free(src);
	if (!v)
		return AGENT_E_NOMEM;
	publish(a, s, v);
	return 0;
}

static bool listed(const cJSON *list, const char *instance, bool objects)
{
	const cJSON *e;

	cJSON_ArrayForEach (e, list)
		if (!strcmp(objects ? jstr(e, "instance") : e->valuestring,
			    instance))
			return true;
	return false;
}

/* What changed: the set before, less gone and what set replaces, plus set.
 * (Linear in the set times the change: changes are small, and a big one
 * comes once per coalescing window.) */
static int take_delta(struct agent *a, struct watch_slot *s,
		      const struct proto_endpoints *m)
{
	const struct agent_endpoints *old = &s->latest->pub;
	size_t n_set = (size_t)cJSON_GetArraySize(m->set), n = 0;
	struct src *src = calloc(old->n + n_set + 1, sizeof(*src));
	const cJSON *e;
	struct epview *v;

	if (!src)
		return AGENT_E_NOMEM;
	for (size_t i = 0; i < old->n; i++)
		if (!listed(m->gone, old->ep[i].instance, false) &&
		    !listed(m->set, old->ep[i].instance, true))
			src[n++].old = &old->ep[i];
	cJSON_ArrayForEach (e, m->set)
		src[n++].json = e;
	v = build(s->name, m->index, src, n);
	free(src);
	if (!v)
		return AGENT_E_NOMEM;
	publish(a, s, v);
	return 0;
}

void watch_welcome(struct agent *a, const cJSON *endpoints)
{
	const cJSON *one;

	cJSON_ArrayForEach (one, endpoints) {
		struct watch_slot *s = slot_of(a, one->string);
		const cJSON *idx =
			cJSON_GetObjectItemCaseSensitive(one, "index");

		if (!s)
			continue;
		if (take_full(a, s, (uint64_t)idx->valuedouble,
			      cJSON_GetObjectItemCaseSensitive(one,
							       "endpoints")))
			link_close(a, 1011, "out of memory");
	}
}

void watch_message(struct agent *a, const struct proto_endpoints *m)
{
	struct watch_slot *s = slot_of(a, m->service);
	int rc;

	if (!s) {
		notify_log(a, AGENT_LOG_DEBUG, "endpoints_unwatched service=%s",
			   m->service);
		return;
	}
	if (m->full) {
		rc = take_full(a, s, m->index, m->set);
	} else if (!s->latest || s->latest->pub.index != m->since) {
		/* Out of step: the welcome of a new link has the set. */
		notify_log(a, AGENT_LOG_WARN,
			   "endpoints_gap service=%s since=%llu held=%llu",
			   s->name, (unsigned long long)m->since,
			   (unsigned long long)(s->latest ?
							s->latest->pub.index :
							0));
		link_close(a, 1008, "endpoints out of step");
		return;
	} else {
		rc = take_delta(a, s, m);
	}
	if (rc)
		link_close(a, 1011, "out of memory");
}

/* ---- readers (any thread) -------------------------------------------------
 */

size_t agent_watch_count(const agent_t *a)
{
	return a ? a->n_watch : 0;
}

const char *agent_watch_name(const agent_t *a, size_t i)
{
	return a && i < a->n_watch ? a->watch[i].name : NULL;
}

const struct agent_endpoints *agent_endpoints(agent_t *a, const char *service)
{
	struct watch_slot *s;

	if (!a || !service || !(s = slot_of(a, service)))
		return NULL;
	for (;;) {
		uint32_t cur = atomic_load(&s->current);
		struct watch_buf *b;

		if (cur == NONE)
			return NULL;
		b = &s->bufs[cur & (WATCH_BUFS - 1)];
		atomic_fetch_add(&b->refs, 1);
		if (atomic_load(&s->current) == cur)
			return &b->set->pub;
		atomic_fetch_sub(&b->refs, 1);
	}
}

void agent_endpoints_release(agent_t *a, const struct agent_endpoints *set)
{
	struct watch_slot *s;

	if (!a || !set || !(s = slot_of(a, set->service)))
		return;
	atomic_fetch_sub(&s->bufs[view_of(set)->buf].refs, 1);
}

/* xorshift64*, one state per thread, seeded from the clock and the
 * state's own address (two threads never start alike). */
static uint64_t next_random(void)
{
	static _Thread_local uint64_t x;

	if (!x) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		    (uint64_t)(uintptr_t)&x;
		x |= 1;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return x * 2685821657736338717ull;
}

/* A ready endpoint drawn in proportion to its weight. */
static const struct agent_endpoint *draw(const struct epview *v)
{
	uint64_t r = next_random() % v->total;
	size_t lo = 0, hi = v->pub.n_ready - 1;

	while (lo < hi) { /* the first running sum past r */
		size_t mid = (lo + hi) / 2;

		if (v->cum[mid] > r)
			hi = mid;
		else
			lo = mid + 1;
	}
	return v->ready[lo];
}

static double load_of(const struct agent_endpoint *e)
{
	return e->load < 0 ? 0.5 : e->load;
}

int agent_pick(agent_t *a, const char *service, char *addr, size_t addrlen)
{
	const struct agent_endpoints *set;
	const struct agent_endpoint *x, *y;
	int rc = 0;

	if (!a || !service || !addr || !addrlen)
		return AGENT_E_INVALID;
	addr[0] = '\0';
	if (!(set = agent_endpoints(a, service)))
		return AGENT_E_NOENT;
	if (!set->n_ready) {
		agent_endpoints_release(a, set);
		return AGENT_E_NOENT;
	}
	x = draw(view_of(set));
	y = draw(view_of(set));
	if (load_of(y) < load_of(x))
		x = y;
	if (strlen(x->address) >= addrlen)
		rc = AGENT_E_RANGE;
	else
		memcpy(addr, x->address, strlen(x->address) + 1);
	agent_endpoints_release(a, set);
	return rc;
}
