/*
 * fanout: where every event ends, from either backend (store.h): once the
 * log holds it, it goes to each link it is addressed to (link_send: one
 * frame, built once, a reference or a direct write per link), to each
 * SSE stream and to the sink that follows the log (webhooks, hub.h).
 * Hub thread only.
 */
#include <stdio.h>

#include "hub_int.h"

/*
 * Hand ev to every linked instance it is addressed to. Returns how many
 * links it went to.
 */
size_t hub_fanout(struct hub *h, struct event *ev)
{
	size_t delivered = 0;

	for (size_t i = 0; i < h->n_links; i++) {
		struct link *l = h->links[i];

		if (l->state != LINK_ACTIVE ||
		    !event_addressed_to(ev, l->svc->name, l->instance,
					l->dep_names, l->n_deps))
			continue;
		link_send(l, ev);
		delivered++;
	}
	return delivered;
}

size_t hub_deliver(struct hub *h, struct event *ev)
{
	size_t delivered;

	if (ev->kind <= EVENT_COMMAND)
		h->stats.events[ev->kind]++;
	delivered = hub_fanout(h, ev);
	hub_sse_event(h, ev);
	if (h->sink && ev->kind <= EVENT_COMMAND)
		h->sink(h->sink_arg, h->log.epoch, ev->seq, ev);
	return delivered;
}

/* ---- SSE ---------------------------------------------------------------- */

#define SSE_KEEPALIVE_MS 15000

void hub_sse_push(struct sse *s, const struct event *ev)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "id: %llu\nevent: event\ndata: ",
			 (unsigned long long)ev->seq);

	/* One frame is one line of JSON: data needs no splitting. */
	sse_push(s, head, (size_t)n);
	sse_push(s, (const char *)ev->frame + LWS_PRE, ev->len);
	sse_push(s, "\n\n", 2);
}

void hub_sse_event(struct hub *h, const struct event *ev)
{
	for (struct sse *s = h->streams; s; s = *sse_next(s))
		hub_sse_push(s, ev);
}

void hub_sse_change(struct hub *h, const char *service)
{
	char text[128];
	int n;

	if (!h->streams)
		return;
	n = snprintf(text, sizeof(text),
		     "event: change\ndata: {\"service\":\"%s\"}\n\n", service);
	for (struct sse *s = h->streams; s; s = *sse_next(s))
		sse_push(s, text, (size_t)n);
}

void hub_sse_keepalive(struct hub *h, int64_t now_ms)
{
	for (struct sse *s = h->streams; s; s = *sse_next(s))
		if (now_ms - sse_last_push_ms(s) >= SSE_KEEPALIVE_MS)
			sse_push(s, ": keep-alive\n\n", 14);
}
