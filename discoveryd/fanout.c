/*
 * fanout: where every event ends, from either backend (store.h): once the
 * log holds it, it goes to each link it is addressed to (link_send: one
 * frame, built once, a reference or a direct write per link), to each
 * SSE stream and to the sink that follows the log (webhooks, hub.h).
 * Hub thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hub_int.h"
#include "log.h"

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
		    !event_addressed_to(ev, l->svc->name, link_instance(l),
					l->deps, l->n_deps))
			continue;
		link_send(l, ev);
		delivered++;
	}
	return delivered;
}

static size_t deliver(struct hub *h, struct event *ev)
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

/* The links ev will go to (hub_fanout's choice, without the sends). */
static size_t count_targets(const struct hub *h, const struct event *ev)
{
	size_t n = 0;

	for (size_t i = 0; i < h->n_links; i++) {
		const struct link *l = h->links[i];

		n += l->state == LINK_ACTIVE &&
		     event_addressed_to(ev, l->svc->name, link_instance(l),
					l->deps, l->n_deps);
	}
	return n;
}

/*
 * In a group commit (hub_hold_begin) an event waits, in order, until its
 * record is durable (hub_hold_end); the count is of the links it will go
 * to. Without memory to hold it, the commit is made at once.
 */
size_t hub_deliver(struct hub *h, struct event *ev)
{
	struct event **grown;

	if (!h->holding)
		return deliver(h, ev);
	if (h->n_held == h->cap_held) {
		size_t cap = h->cap_held ? 2 * h->cap_held : 64;

		if (!(grown = realloc(h->held, cap * sizeof(*grown)))) {
			if (h->delivering) /* its record is durable: out of
					      order, rather than never */
				return deliver(h, ev);
			hub_hold_end(h);
			hub_hold_begin(h);
			return deliver(h, ev);
		}
		h->held = grown;
		h->cap_held = cap;
	}
	h->held[h->n_held++] = event_ref(ev);
	return count_targets(h, ev);
}

void hub_hold_begin(struct hub *h)
{
	if (h->log.mirror || h->log.journal.fd < 0)
		return;
	journal_batch_begin(&h->log.journal);
	h->holding = true;
}

void hub_hold_end(struct hub *h)
{
	size_t calls = h->n_held;

	if (!h->holding)
		return;
	if (journal_commit(&h->log.journal) != 0) {
		/* What the kernel kept is unknown, and a retry would be told
		 * it is fine: stop, and let the restart read what is durable
		 * (journal_commit cut the records back). Nothing held was
		 * delivered, and no call of it answered. */
		log_error("journal fdatasync failed",
			  "errno=%d events=%zu note=\"exiting: a restart "
			  "replays what is durable\"",
			  errno, calls);
		_exit(EXIT_FAILURE);
	}
	/* Still holding while they go: a delivery that closes a link (its
	 * queue full) announces the service, and that event, durable at
	 * once but later in seq, must follow these, not overtake them.
	 * The list may grow (and move) meanwhile. */
	h->delivering = true;
	for (size_t i = 0; i < h->n_held;) {
		/* Each link's share in one write; the writes (uncork) may
		 * close links, whose announcements join the list. */
		if (h->n_held - i > 1)
			hub_cork(h);
		for (; i < h->n_held; i++) {
			struct event *ev = h->held[i];

			deliver(h, ev);
			event_unref(ev);
		}
		if (h->corked)
			hub_uncork(h);
	}
	h->n_held = 0;
	h->delivering = h->holding = false;
	for (size_t i = 0; i < h->n_changes; i++) {
		hub_sse_change(h, h->changes[i]);
		free(h->changes[i]);
	}
	h->n_changes = 0;
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

static int hold_change(struct hub *h, const char *service)
{
	char **grown;

	if (h->n_changes == h->cap_changes) {
		size_t cap = h->cap_changes ? 2 * h->cap_changes : 16;

		if (!(grown = realloc(h->changes, cap * sizeof(*grown))))
			return -1;
		h->changes = grown;
		h->cap_changes = cap;
	}
	if (!(h->changes[h->n_changes] = strdup(service)))
		return -1;
	h->n_changes++;
	return 0;
}

void hub_sse_change(struct hub *h, const char *service)
{
	char text[128];
	int n;

	if (!h->streams)
		return;
	/* In a commit the note waits for it, after its events (without
	 * memory to keep it, it goes now). */
	if (h->holding && hold_change(h, service) == 0)
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
