/*
 * link_send: what goes out on a link, on the hub thread. An event is
 * written at once when nothing waits before it (one write, no poll round
 * trip), else queued behind the others (a ring of references, up to
 * limits.send_queue bytes) until the socket is writable. Several waiting
 * are written together: their frames, each with its WebSocket head, in one
 * system call (lws_write's raw mode, which frames nothing and keeps what
 * the kernel did not take, as for any write).
 *
 * While the hub delivers a group commit's events (hub_cork), links queue
 * what they get instead of writing each at once, and hub_uncork writes
 * each link's share in one go: n events to a link cost one write, not n.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub_int.h"
#include "log.h"

/* Frames written together: at most this many bytes to a system call. */
#define FLUSH_MAX (64 * 1024)

/* From the trigger to the kernel's socket buffer, per link. */
static void observe(struct link *l, const struct event *ev)
{
	if (ev->kind <= EVENT_COMMAND)
		histogram_observe(&l->hub->stats.delivery,
				  (double)(clock_mono_us() - ev->created_us) /
					  1e6);
}

static int write_event(struct link *l, struct event *ev)
{
	int n = lws_write(l->wsi, ev->frame + LWS_PRE, ev->len, LWS_WRITE_TEXT);

	observe(l, ev);
	return n;
}

/*
 * The events waiting for a link's socket: a ring of references, oldest
 * first. Allocated when the first event has to wait, so an idle link holds
 * none; kept while the link keeps needing it (a queue that empties and
 * fills again with every event costs no malloc per event), freed by the
 * tick that finds it empty (link_queue_trim).
 */
struct link_queue {
	size_t head, count, cap;
	size_t bytes; /* capped by send_queue */
	struct event *ring[];
};

static size_t queue_count(const struct link *l)
{
	return l->queue ? l->queue->count : 0;
}

static size_t queue_bytes(const struct link *l)
{
	return l->queue ? l->queue->bytes : 0;
}

static int queue_push(struct link *l, struct event *ev)
{
	struct link_queue *q = l->queue;

	if (!q || q->count == q->cap) {
		size_t cap = q ? q->cap * 2 : 8;
		struct link_queue *grown =
			malloc(sizeof(*grown) + cap * sizeof(grown->ring[0]));

		if (!grown)
			return -1;
		grown->head = 0;
		grown->count = q ? q->count : 0;
		grown->cap = cap;
		grown->bytes = q ? q->bytes : 0;
		for (size_t i = 0; i < grown->count; i++)
			grown->ring[i] = q->ring[(q->head + i) % q->cap];
		free(q);
		l->queue = q = grown;
	}
	q->ring[(q->head + q->count) % q->cap] = event_ref(ev);
	q->count++;
	q->bytes += ev->len;
	return 0;
}

static struct event *queue_pop(struct link *l)
{
	struct link_queue *q = l->queue;
	struct event *ev;

	if (!q || !q->count)
		return NULL;
	ev = q->ring[q->head];
	q->head = (q->head + 1) % q->cap;
	q->count--;
	q->bytes -= ev->len;
	return ev;
}

void link_queue_clear(struct link *l)
{
	struct event *ev;

	while ((ev = queue_pop(l)))
		event_unref(ev);
	free(l->queue);
	l->queue = NULL;
}

void link_queue_trim(struct link *l)
{
	if (l->queue && !l->queue->count && !l->corked) {
		free(l->queue);
		l->queue = NULL;
	}
}

size_t link_queued(const struct link *l)
{
	return queue_count(l);
}

/* The head of an unmasked final text frame of len bytes; its length. */
static size_t frame_head(unsigned char *p, size_t len)
{
	p[0] = 0x81;
	if (len < 126) {
		p[1] = (unsigned char)len;
		return 2;
	}
	if (len <= 0xffff) {
		p[1] = 126;
		p[2] = (unsigned char)(len >> 8);
		p[3] = (unsigned char)len;
		return 4;
	}
	p[1] = 127;
	for (int i = 0; i < 8; i++)
		p[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

/*
 * The queue's first events, framed one after another into buf (at most
 * FLUSH_MAX bytes): how many, and their bytes in *total. Fewer than two is
 * not worth the copy.
 */
static size_t frame_batch(const struct link_queue *q, unsigned char *buf,
			  size_t *total)
{
	size_t k = 0, n = 0;

	for (; k < q->count; k++) {
		const struct event *ev = q->ring[(q->head + k) % q->cap];

		if (n + 10 + ev->len > FLUSH_MAX)
			break;
		n += frame_head(buf + n, ev->len);
		memcpy(buf + n, ev->frame + LWS_PRE, ev->len);
		n += ev->len;
	}
	*total = n;
	return k;
}

int link_flush(struct link *l)
{
	static unsigned char buf[LWS_PRE + FLUSH_MAX]; /* the hub thread's */

	/* Write until the kernel pushes back; lws holds any remainder. */
	while (!lws_partial_buffered(l->wsi) && queue_count(l)) {
		size_t total, k = frame_batch(l->queue, buf + LWS_PRE, &total);
		struct event *ev;
		int n;

		if (k < 2) {
			ev = queue_pop(l);
			n = write_event(l, ev);
			event_unref(ev);
			if (n < 0)
				return -1;
			continue;
		}
		n = lws_write(l->wsi, buf + LWS_PRE, total, LWS_WRITE_RAW);
		while (k--) {
			ev = queue_pop(l);
			observe(l, ev);
			event_unref(ev);
		}
		if (n < 0)
			return -1;
	}
	if (queue_count(l))
		lws_callback_on_writable(l->wsi);
	return 0;
}

/* Corked, l's next write waits for hub_uncork; -1 without memory. */
static int cork(struct hub *h, struct link *l)
{
	if (l->corked)
		return 0;
	if (h->n_corked == h->cap_corked) {
		size_t cap = h->cap_corked ? 2 * h->cap_corked : 256;
		struct link **grown =
			realloc(h->corked_links, cap * sizeof(*grown));

		if (!grown)
			return -1;
		h->corked_links = grown;
		h->cap_corked = cap;
	}
	h->corked_links[h->n_corked++] = l;
	l->corked = true;
	return 0;
}

void hub_cork(struct hub *h)
{
	h->corked = true;
}

void hub_uncork(struct hub *h)
{
	h->corked = false;
	/* A link closed meanwhile has let go of its queue (link_close);
	 * none is freed before lws reports it closed, later. */
	for (size_t i = 0; i < h->n_corked; i++) {
		struct link *l = h->corked_links[i];

		l->corked = false;
		if (l->state == LINK_CLOSING)
			continue;
		if (link_flush(l) < 0)
			link_kill(l, "write failed");
		/* The cap counts what the socket did not take, as when each
		 * event was written as it came. */
		else if (queue_bytes(l) > h->send_queue)
			link_close(l, 1013, "send queue full");
	}
	h->n_corked = 0;
}

/*
 * Deliver ev: straight onto the socket when nothing is waiting before it
 * and the hub is not corked, else behind the queue.
 */
void link_send(struct link *l, struct event *ev)
{
	struct hub *h = l->hub;

	if (l->state == LINK_CLOSING)
		return;
	if (!h->corked && queue_count(l) == 0 &&
	    !lws_partial_buffered(l->wsi)) {
		if (write_event(l, ev) < 0)
			link_kill(l, "write failed");
		return;
	}
	/* Corked, the socket has had no chance yet: hub_uncork checks. */
	if (!h->corked && queue_bytes(l) + ev->len > h->send_queue) {
		link_close(l, 1013, "send queue full");
		return;
	}
	if (queue_push(l, ev) != 0) {
		link_close(l, 1011, "out of memory");
		return;
	}
	if (!h->corked || cork(h, l) != 0)
		lws_callback_on_writable(l->wsi);
}
