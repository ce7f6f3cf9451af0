/*
 * link_watch: the services whose endpoints a link watches
 * (docs/protocol.md, "Endpoints"). Its welcome carries each one's set; each
 * set the hub publishes afterwards (hub_ep.c) goes to its watchers as what
 * changed since the set they hold, framed once for all of them: one
 * instance changing in a service of a thousand costs each watcher that
 * instance's bytes. A watcher that holds another set than the one before
 * (it was welcomed in between, say) gets the whole set instead.
 */
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "hub_int.h"
#include "log.h"

/* One send hub_watch_send decided on. */
struct watch_send {
	struct link *l;
	struct event *ev; /* NULL: no memory for it */
};

/* One (link, service) pair, in its service's list of watchers. */
struct watch {
	struct link *l;
	struct service *s;
	struct watch *prev, *next;
	uint64_t sent; /* the index of the set it holds; 0: none yet */
};

int link_watch_take(struct link *l, const struct proto_hello *hello)
{
	struct hub *h = l->hub;
	size_t n = hello->watch_deps ? hello->n_depends : hello->n_watch;
	struct link_aside *a;

	if (!n)
		return 0;
	if (!(a = link_aside(l)) || !(a->watch = calloc(n, sizeof(*a->watch))))
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *name = hello->watch_deps ? hello->depends_on[i] :
						       hello->watch[i];
		struct service *s = registry_get(&h->registry, name);
		struct watch *w = &a->watch[a->n_watch];

		if (!s)
			return -1;
		w->l = l;
		w->s = s;
		w->next = s->watchers;
		if (w->next)
			w->next->prev = w;
		s->watchers = w;
		s->n_watchers++;
		a->n_watch++;
	}
	return 0;
}

/* The link stops watching. A service nothing else holds is released at
 * the next flush (hub_ep.c), not here: the caller may be walking it. */
void link_watch_drop(struct link *l)
{
	struct link_aside *a = l->aside;

	if (!a)
		return;
	for (size_t i = 0; i < a->n_watch; i++) {
		struct watch *w = &a->watch[i];
		struct service *s = w->s;

		if (w->prev)
			w->prev->next = w->next;
		else
			s->watchers = w->next;
		if (w->next)
			w->next->prev = w->prev;
		if (--s->n_watchers == 0)
			hub_endpoints_moved(l->hub, s);
	}
	free(a->watch);
	a->watch = NULL;
	a->n_watch = 0;
}

/* set's endpoints as the link carries them, into a new array. */
static cJSON *set_json(const struct epset *set)
{
	cJSON *list = cJSON_CreateArray();

	for (size_t i = 0; list && set && i < set->n; i++)
		if (!cJSON_AddItemToArray(list,
					  endpoints_json(&set->ep[i], false)))
			return cJSON_Delete(list), NULL;
	return list;
}

/* s's set as the link carries it, printed once per set: a connect storm
 * of watchers costs one printing, not one per welcome. NULL: no memory. */
static const char *set_text(struct service *s)
{
	cJSON *list;
	char *text;

	if (!s->ep_set)
		return "[]";
	if (s->ep_text && s->ep_text_index == s->ep_set->index)
		return s->ep_text;
	list = set_json(s->ep_set);
	text = list ? cJSON_PrintUnformatted(list) : NULL;
	cJSON_Delete(list);
	if (!text)
		return NULL;
	free(s->ep_text);
	s->ep_text = text;
	s->ep_text_index = s->ep_set->index;
	return text;
}

static bool add_index(cJSON *o, const char *key, uint64_t index)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)index);
	return cJSON_AddRawToObject(o, key, buf) != NULL;
}

cJSON *link_watch_welcome(struct link *l)
{
	struct hub *h = l->hub;
	cJSON *all;

	if (!link_n_watch(l))
		return NULL;
	if (!(all = cJSON_CreateObject()))
		return NULL;
	for (size_t i = 0; i < l->aside->n_watch; i++) {
		struct watch *w = &l->aside->watch[i];
		cJSON *one = cJSON_AddObjectToObject(all, w->s->name);
		const char *text;

		hub_ep_fresh(h, w->s);
		w->sent = w->s->ep_set ? w->s->ep_set->index : h->ep_clock;
		text = set_text(w->s);
		if (!one || !add_index(one, "index", w->sent) || !text ||
		    !cJSON_AddRawToObject(one, "endpoints", text)) {
			cJSON_Delete(all);
			return NULL;
		}
	}
	return all;
}

static struct event *frame(cJSON *o)
{
	size_t len;
	unsigned char *f = o ? (unsigned char *)proto_print(o, LWS_PRE, &len) :
			       NULL;

	cJSON_Delete(o);
	return f ? event_new_frame(EVENT_ENDPOINTS, f, len) : NULL;
}

static cJSON *head(const struct epset *set)
{
	cJSON *o = cJSON_CreateObject();

	if (o && (!cJSON_AddStringToObject(o, "type", "endpoints") ||
		  !cJSON_AddStringToObject(o, "service", set->service) ||
		  !add_index(o, "index", set->index)))
		return cJSON_Delete(o), NULL;
	return o;
}

static struct event *full_message(struct service *s)
{
	cJSON *o = head(s->ep_set);
	const char *text = set_text(s);

	if (!o || !text || !cJSON_AddRawToObject(o, "endpoints", text)) {
		cJSON_Delete(o);
		return NULL;
	}
	return frame(o);
}

static int by_node_instance(const struct ep *a, const struct ep *b)
{
	int c = strcmp(a->node, b->node);

	return c ? c : strcmp(a->instance, b->instance);
}

/* What changed from old to set (both sorted alike): a merge walk. */
static struct event *delta_message(const struct epset *old,
				   const struct epset *set)
{
	cJSON *o = head(set), *changed = cJSON_CreateArray(),
	      *gone = cJSON_CreateArray();
	size_t i = 0, j = 0;
	bool ok = o && changed && gone && add_index(o, "since", old->index);

	while (ok && (i < old->n || j < set->n)) {
		int c = i == old->n ?
				1 :
			j == set->n ?
				-1 :
				by_node_instance(&old->ep[i], &set->ep[j]);

		if (c < 0) {
			ok = cJSON_AddItemToArray(gone,
						  cJSON_CreateString(
							  old->ep[i++]
								  .instance));
		} else if (c > 0 || !hub_ep_same(&old->ep[i], &set->ep[j])) {
			ok = cJSON_AddItemToArray(changed,
						  endpoints_json(&set->ep[j],
								 false));
			i += c == 0;
			j++;
		} else {
			i++;
			j++;
		}
	}
	if (!ok || !cJSON_AddItemToObject(o, "set", changed)) {
		cJSON_Delete(changed);
		cJSON_Delete(gone);
		cJSON_Delete(o);
		return NULL;
	}
	if (!cJSON_AddItemToObject(o, "gone", gone)) {
		cJSON_Delete(gone);
		cJSON_Delete(o);
		return NULL;
	}
	return frame(o);
}

/*
 * s's new set went out: to each watcher, what changed since old if it
 * holds old, else the whole set. Each message is framed once, the first
 * time a watcher needs it. In two passes: the first decides, per watcher,
 * what it gets, and touches nothing else; the second sends. A send that
 * fails closes its link, which may close others in turn (its service
 * announced, their queues full), freeing their watch entries; the links
 * themselves live until lws reports them closed, later. s is pinned
 * meanwhile, since a link closing may let go of it.
 */
void hub_watch_send(struct hub *h, struct service *s, const struct epset *old)
{
	struct event *delta = NULL, *full = NULL;
	const struct epset *set = s->ep_set;
	struct watch_send *sends;
	size_t n = 0;

	if (!s->watchers)
		return;
	/* Its own: a close in the second pass never reaches another walk
	 * (closes only mark services dirty), but nothing here relies on it. */
	if (!(sends = malloc(s->n_watchers * sizeof(*sends)))) {
		/* They hold what they held: the next set goes to them whole. */
		log_error("endpoints",
			  "service=%s note=\"no memory to send "
			  "its set; watchers get the next whole\"",
			  s->name);
		return;
	}
	for (struct watch *w = s->watchers; w; w = w->next) {
		bool d = old && w->sent == old->index;

		if (!w->sent)
			continue; /* its welcome is being built */
		if (d && !delta)
			delta = delta_message(old, set);
		if (!d && !full)
			full = full_message(s);
		sends[n].l = w->l;
		sends[n++].ev = d ? delta : full;
		w->sent = set->index;
	}
	s->pins++;
	for (size_t i = 0; i < n; i++) {
		if (!sends[i].ev)
			link_close(sends[i].l, 1011, "out of memory");
		else
			link_send(sends[i].l, sends[i].ev);
	}
	free(sends);
	if (delta)
		event_unref(delta);
	if (full)
		event_unref(full);
	/* No one watches it now: released at the next flush, if free. */
	if (--s->pins == 0 && !s->n_watchers)
		hub_endpoints_moved(h, s);
}
