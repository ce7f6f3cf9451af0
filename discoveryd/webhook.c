/*
 * webhook: the delivery thread (webhook.h). Each turn of its loop takes
 * the events the hub left in the inbox into the ring, runs the API's
 * commands, walks every endpoint (a reset if it fell behind, its window
 * filled from its position, attempts started when due), lets libcurl work,
 * and settles what ended: a 2xx is acknowledged, and once every event
 * before it is too the cursor moves and is saved; a 410 disables the
 * endpoint; anything else is tried again after a backoff, until the
 * event has been retried for retry.max_age, which disables the endpoint
 * too (its cursor stays, so nothing is skipped: enable goes on from it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <libwebsockets.h>

#include "clock.h"
#include "log.h"
#include "webhook_int.h"

#define LOOP_MAX_WAIT_MS 1000 /* the longest poll: lazy saves, stop */
#define LAZY_SAVE_MS     1000 /* skipped events' cursor, at most this often */

/* ---- events --------------------------------------------------------- */

struct wh_event *wh_event_new(size_t len)
{
	struct wh_event *e = calloc(1, sizeof(*e) + len + 1);

	if (e)
		e->refs = 1;
	return e;
}

void wh_event_unref(struct wh_event *e)
{
	if (e && --e->refs == 0)
		free(e);
}

void webhook_offer(void *arg, const char *epoch, uint64_t seq,
		   const struct event *ev)
{
	struct webhook *w = arg;
	size_t len = ev ? ev->len : 0;
	struct wh_event *e, *head;

	/* The thread keeps `history` events; an inbox of twice that (the
	 * whole history replayed at a start or a resync, and as much again
	 * since) means it stalled, and the endpoints get a reset for the
	 * gap. Marks do not count: they carry no event. */
	/* No endpoint: note the seq a new one would start after, and copy
	 * nothing. Against a PUT that sets active and then reads idle_seq,
	 * the second look sees it set, or the PUT sees this seq (both
	 * seq_cst): the event is not lost between them. */
	if (ev && !atomic_load(&w->active)) {
		atomic_store(&w->idle_seq, seq);
		if (!atomic_load(&w->active))
			return;
	}
	if (ev && atomic_load(&w->inbox_n) >= 2 * w->cap) {
		atomic_fetch_add(&w->inbox_dropped, 1);
		return;
	}
	e = wh_event_new(len);
	if (!e) {
		atomic_fetch_add(&w->inbox_dropped, 1);
		return;
	}
	e->mark = !ev;
	e->seq = seq;
	snprintf(e->epoch, sizeof(e->epoch), "%s", epoch);
	if (ev) {
		e->kind = ev->kind;
		e->wall_ms = ev->created_wall_ms ? ev->created_wall_ms :
						   clock_wall_ms();
		snprintf(e->service, sizeof(e->service), "%s", ev->service);
		memcpy(e->body, ev->frame + LWS_PRE, len);
		e->len = len;
	}
	if (ev)
		atomic_fetch_add(&w->inbox_n, 1);
	head = atomic_load(&w->inbox);
	do
		e->next = head;
	while (!atomic_compare_exchange_weak(&w->inbox, &head, e));
	if (!head && w->multi)
		curl_multi_wakeup(w->multi);
}

/* ---- the ring ---------------------------------------------------------- */

static struct wh_event *ring_at(const struct webhook *w, size_t i)
{
	return w->ring[(w->head + i) % w->cap];
}

static void ring_clear(struct webhook *w)
{
	for (size_t i = 0; i < w->count; i++)
		wh_event_unref(ring_at(w, i));
	w->head = w->count = 0;
}

/* The oldest seq retained; latest + 1 when none is. */
uint64_t wh_ring_oldest(const struct webhook *w)
{
	return w->count ? ring_at(w, 0)->seq : w->latest + 1;
}

static void place_new(struct webhook *w);

static void ring_take(struct webhook *w, struct wh_event *e)
{
	if (strcmp(e->epoch, w->epoch) != 0) {
		ring_clear(w);
		snprintf(w->epoch, sizeof(w->epoch), "%s", e->epoch);
		w->latest = e->seq;
	}
	if (e->mark) {
		if (e->seq > w->latest)
			w->latest = e->seq;
		if (!w->start_epoch[0] && e->epoch[0]) {
			snprintf(w->start_epoch, sizeof(w->start_epoch), "%s",
				 e->epoch);
			w->start_seq = e->seq;
		}
		wh_event_unref(e);
		/* The first mark is where the log stood when the sink was
		 * set: endpoints new to this state_dir begin there, before
		 * any event that follows is taken. */
		if (!w->placed) {
			w->placed = true;
			place_new(w);
		}
		return;
	}
	/* Seqs in a row, always: a gap (the inbox overflowed) forgets what
	 * came before, and whoever needed it gets a reset. */
	if (w->count && e->seq != ring_at(w, w->count - 1)->seq + 1)
		ring_clear(w);
	if (w->count == w->cap) {
		wh_event_unref(ring_at(w, 0));
		w->head = (w->head + 1) % w->cap;
		w->count--;
	}
	w->ring[(w->head + w->count) % w->cap] = e;
	w->count++;
	if (e->seq > w->latest)
		w->latest = e->seq;
}

static void take_inbox(struct webhook *w)
{
	struct wh_event *e = atomic_exchange(&w->inbox, NULL), *prev = NULL;

	while (e) { /* newest first: turn it around */
		struct wh_event *next = e->next;

		e->next = prev;
		prev = e;
		e = next;
	}
	for (e = prev; e;) {
		struct wh_event *next = e->next;

		if (!e->mark)
			atomic_fetch_sub(&w->inbox_n, 1);
		ring_take(w, e);
		e = next;
	}
}

/* ---- an endpoint's window ---------------------------------------------- */

static bool wants(const struct wh_endpoint *ep, const struct wh_event *e)
{
	if (ep->conf.kinds_mask && !(ep->conf.kinds_mask & (1u << e->kind)))
		return false;
	/* An event for every agent (no service) passes any services filter. */
	if (!ep->n_services || !e->service[0])
		return true;
	for (size_t i = 0; i < ep->n_services; i++)
		if (strcmp(ep->services[i], e->service) == 0)
			return true;
	return false;
}

/* The i-th slot of ep's window, oldest first. */
static struct wh_slot *slot_at(const struct wh_endpoint *ep, size_t i)
{
	return &ep->window[(ep->win_head + i) % (size_t)ep->conf.max_in_flight];
}

static void slot_push(struct wh_endpoint *ep, struct wh_event *e, int64_t now)
{
	struct wh_slot *s = slot_at(ep, ep->n_window++);

	memset(s, 0, sizeof(*s));
	e->refs++;
	s->ev = e;
	s->ep = ep;
	s->first_ms = s->due_ms = now;
	snprintf(s->id, sizeof(s->id), "%s-%llu%s", e->epoch,
		 (unsigned long long)e->seq, e->reset ? "-reset" : "");
}

void wh_window_clear(struct webhook *w, struct wh_endpoint *ep)
{
	for (size_t i = 0; i < ep->n_window; i++) {
		wh_http_abort(w, slot_at(ep, i));
		wh_event_unref(slot_at(ep, i)->ev);
	}
	ep->n_window = ep->win_head = 0;
}

/* Back to the durable cursor: what is sent next is what follows it. */
static void rewind_to_cursor(struct webhook *w, struct wh_endpoint *ep)
{
	wh_window_clear(w, ep);
	snprintf(ep->epoch, sizeof(ep->epoch), "%s", ep->cursor.epoch);
	ep->scanned = ep->cursor.seq;
}

/* Record ep's cursor where it lives: its file, or the backend's. The
 * backend's goes back in its epoch only when back (a replay). */
static int store_cursor(struct webhook *w, struct wh_endpoint *ep, uint64_t seq,
			bool back)
{
	const struct webhook_backend *b = w->backend;

	if (!b)
		return webhook_cursor_save(&ep->cursor, ep->epoch, seq);
	if (b->save(b->arg, ep->name, ep->epoch, seq, back) != 0)
		return -1;
	snprintf(ep->cursor.epoch, sizeof(ep->cursor.epoch), "%s", ep->epoch);
	ep->cursor.seq = seq;
	ep->cursor.found = true;
	return 0;
}

static void save_cursor(struct webhook *w, struct wh_endpoint *ep, uint64_t seq,
			int64_t now, bool back)
{
	ep->saved_ms = now;
	if (store_cursor(w, ep, seq, back) != 0) {
		ep->view.cursor_failures++;
		log_error("webhook cursor not saved",
			  "webhook=%s seq=%llu errno=%d", ep->name,
			  (unsigned long long)seq, errno);
	}
}

void wh_save_cursor(struct webhook *w, struct wh_endpoint *ep, uint64_t seq,
		    int64_t now)
{
	save_cursor(w, ep, seq, now, false);
}

void wh_rewind_cursor(struct webhook *w, struct wh_endpoint *ep, uint64_t seq,
		      int64_t now)
{
	save_cursor(w, ep, seq, now, true);
}

/* Record ep's disabled state (why; "" = enabled): it outlives a restart,
 * and in cluster mode it passes to the next holder. */
void wh_store_disabled(struct webhook *w, struct wh_endpoint *ep,
		       const char *why)
{
	const struct webhook_backend *b = w->backend;
	int rc = b ? b->disable(b->arg, ep->name, why) :
		     webhook_cursor_set_disabled(&ep->cursor, why);

	if (rc != 0)
		log_error("webhook state not saved",
			  "webhook=%s disabled=%s errno=%d", ep->name,
			  why[0] ? "true" : "false", errno);
}

static void disable(struct webhook *w, struct wh_endpoint *ep, const char *why)
{
	char q[200];

	wh_store_disabled(w, ep, why);
	ep->disabled = true;
	snprintf(ep->view.disabled_reason, sizeof(ep->view.disabled_reason),
		 "%s", why);
	log_warn("webhook disabled", "webhook=%s reason=%s cursor=%llu",
		 ep->name, log_quote(q, sizeof(q), why),
		 (unsigned long long)ep->cursor.seq);
	rewind_to_cursor(w, ep);
}

/* A reset notice: the events after the endpoint's position are gone. */
static struct wh_event *reset_event(const struct webhook *w,
				    const struct wh_endpoint *ep)
{
	char body[PROTO_EPOCH_MAX * 2 + 160];
	int n = snprintf(body, sizeof(body),
			 "{\"type\":\"reset\",\"epoch\":\"%s\",\"seq\":%llu,"
			 "\"from\":{\"epoch\":\"%s\",\"seq\":%llu}}",
			 w->epoch, (unsigned long long)w->latest, ep->epoch,
			 (unsigned long long)ep->scanned);
	struct wh_event *e = wh_event_new((size_t)n);

	if (!e)
		return NULL;
	e->reset = true;
	e->seq = w->latest;
	e->wall_ms = clock_wall_ms();
	snprintf(e->epoch, sizeof(e->epoch), "%s", w->epoch);
	memcpy(e->body, body, (size_t)n);
	e->len = (size_t)n;
	return e;
}

/* Is what follows ep's position still retained, in this epoch? */
static bool in_step(const struct webhook *w, const struct wh_endpoint *ep)
{
	return strcmp(ep->epoch, w->epoch) == 0 && ep->scanned <= w->latest &&
	       ep->scanned + 1 >= wh_ring_oldest(w);
}

static void fill(struct webhook *w, struct wh_endpoint *ep, int64_t now)
{
	if (!w->epoch[0])
		return;
	/* Cluster mode: the cursor another node left is ahead of this
	 * node's copy of the stream (taken over while catching up). The
	 * stream has those events: wait for it, not a reset. */
	if (w->backend && strcmp(ep->epoch, w->epoch) == 0 &&
	    ep->scanned > w->latest)
		return;
	if (!in_step(w, ep)) {
		struct wh_event *e;

		/* What is in the window still goes first. */
		if (ep->n_window || !(e = reset_event(w, ep)))
			return;
		log_warn("webhook reset",
			 "webhook=%s from_epoch=%s from_seq=%llu seq=%llu",
			 ep->name, ep->epoch, (unsigned long long)ep->scanned,
			 (unsigned long long)w->latest);
		ep->view.resets++;
		slot_push(ep, e, now);
		wh_event_unref(e);
		snprintf(ep->epoch, sizeof(ep->epoch), "%s", w->epoch);
		ep->scanned = w->latest;
		return;
	}
	while (ep->n_window < (size_t)ep->conf.max_in_flight &&
	       ep->scanned < w->latest) {
		size_t i = (size_t)(ep->scanned + 1 - wh_ring_oldest(w));
		struct wh_event *e;

		if (i >= w->count)
			break;
		e = ring_at(w, i);
		ep->scanned = e->seq;
		if (wants(ep, e))
			slot_push(ep, e, now);
	}
}

/* Every event up to here is acknowledged (or not for ep). */
static uint64_t settled(const struct wh_endpoint *ep)
{
	return ep->n_window ? slot_at(ep, 0)->ev->seq - 1 : ep->scanned;
}

/* Pop the acknowledged prefix; save the cursor if it moved. */
static void advance(struct webhook *w, struct wh_endpoint *ep, int64_t now)
{
	size_t done = 0;

	while (ep->n_window && slot_at(ep, 0)->state == SLOT_DONE) {
		wh_event_unref(slot_at(ep, 0)->ev);
		ep->win_head =
			(ep->win_head + 1) % (size_t)ep->conf.max_in_flight;
		ep->n_window--;
		done++;
	}
	if (!done)
		return;
	wh_save_cursor(w, ep, settled(ep), now);
}

/* Exponential, with jitter over the upper half so delays still grow. */
static int64_t retry_delay(struct wh_endpoint *ep, unsigned attempts)
{
	int64_t ceiling = ep->conf.retry_initial_ms;

	for (unsigned i = 1; i < attempts && ceiling < ep->conf.retry_max_ms;
	     i++)
		ceiling *= 2;
	if (ceiling > ep->conf.retry_max_ms)
		ceiling = ep->conf.retry_max_ms;
	ep->rng ^= ep->rng << 13;
	ep->rng ^= ep->rng >> 7;
	ep->rng ^= ep->rng << 17;
	return ceiling / 2 + (int64_t)(ep->rng % (uint64_t)(ceiling / 2 + 1));
}

static void settle(struct webhook *w, struct wh_slot *s, CURLcode rc,
		   int64_t now)
{
	struct wh_endpoint *ep = s->ep;
	struct wh_result r;
	int64_t delay;

	if (s == &ep->test) {
		wh_test_done(w, ep, rc, 0);
		return;
	}
	wh_http_finish(w, s, rc, &r);
	ep->view.by_class[r.cls]++;
	ep->view.last_status = r.status;
	ep->view.last_attempt_wall_ms = clock_wall_ms();
	snprintf(ep->view.last_error, sizeof(ep->view.last_error), "%s",
		 r.error);
	if (r.cls == WH_2XX) {
		s->state = SLOT_DONE;
		ep->view.delivered++;
		ep->view.failures = 0;
		advance(w, ep, now);
		return;
	}
	ep->view.failures++;
	if (r.cls == WH_410) {
		disable(w, ep, "the receiver answered 410 Gone");
		return;
	}
	s->attempts++;
	delay = retry_delay(ep, s->attempts);
	if (r.retry_after_ms > delay)
		delay = r.retry_after_ms;
	if (now + delay - s->first_ms > ep->conf.retry_max_age_ms) {
		char why[240];

		snprintf(why, sizeof(why),
			 "seq %llu failed for retry.max_age (last: %s)",
			 (unsigned long long)s->ev->seq, r.error);
		disable(w, ep, why);
		return;
	}
	log_debug("webhook retry", "webhook=%s id=%s attempt=%u delay_ms=%lld",
		  ep->name, s->id, s->attempts, (long long)delay);
	ep->view.retries++;
	s->state = SLOT_WAITING;
	s->due_ms = now + delay;
}

/* Start what is due; the soonest wait left, in *wait_ms. */
/*
 * Cluster mode: does this node deliver ep? Taking the lease loads the
 * cursor the last holder saved; losing it drops the window (what was in
 * flight goes again from the new holder: at-least-once).
 */
/* Stop delivering ep: another node holds its lease, or may soon. */
static void stand_by(struct webhook *w, struct wh_endpoint *ep, const char *why)
{
	wh_window_clear(w, ep);
	ep->standby = true;
	log_info("webhook standby", "webhook=%s note=\"%s\"", ep->name, why);
}

static bool holds(struct webhook *w, struct wh_endpoint *ep, int64_t now,
		  int64_t *wait_ms)
{
	const struct webhook_backend *b = w->backend;
	int64_t sent, sure_ms;
	int held, found;

	if (!b)
		return true;
	/* A holder that cannot renew stops while its lease still runs (it
	 * was set for node_ttl, 3 renewals, after held_ms): by the time
	 * another node can take it, nothing of this one's is on the wire. */
	sure_ms = ep->held_ms + 2 * b->renew_ms;
	if (!ep->standby && now >= sure_ms)
		stand_by(w, ep, "its lease could not be renewed");
	if (now < ep->lease_ms) {
		if (ep->lease_ms - now < *wait_ms)
			*wait_ms = ep->lease_ms - now;
		if (!ep->standby && sure_ms - now < *wait_ms)
			*wait_ms = sure_ms - now;
		return !ep->standby;
	}
	/* Until the stream is read there is no position to start from:
	 * look again soon. */
	ep->lease_ms = now + (w->epoch[0] ? b->renew_ms : 100);
	if (ep->lease_ms - now < *wait_ms)
		*wait_ms = ep->lease_ms - now;
	sent = clock_mono_ms();
	held = w->epoch[0] ? b->lease(b->arg, ep->name, ep->runtime) : 0;
	if (held == -2) { /* deleted on another node */
		wh_defs_gone(w, ep);
		return false;
	}
	if (held >= 1)
		ep->held_ms = sent;
	else if (!ep->standby && clock_mono_ms() >= sure_ms)
		stand_by(w, ep, "its lease could not be renewed");
	/* Taken anew while this node thought it held it (Redis was away,
	 * and another node may have had it since): start again from the
	 * cursor in Redis, never from this node's older one. */
	if (held == 2 && !ep->standby)
		stand_by(w, ep, "its lease was taken anew");
	if (held >= 1 && ep->standby) {
		found = b->load(b->arg, ep->name, ep->cursor.epoch,
				sizeof(ep->cursor.epoch), &ep->cursor.seq,
				ep->cursor.disabled,
				sizeof(ep->cursor.disabled));
		if (found < 0)
			return false; /* again at the next renewal */
		ep->standby = false;
		ep->disabled = found && ep->cursor.disabled[0];
		snprintf(ep->view.disabled_reason,
			 sizeof(ep->view.disabled_reason), "%s",
			 ep->disabled ? ep->cursor.disabled : "");
		if (!found) { /* new: from where this node began */
			snprintf(ep->cursor.epoch, sizeof(ep->cursor.epoch),
				 "%s", w->start_epoch);
			ep->cursor.seq = w->start_seq;
		}
		rewind_to_cursor(w, ep);
		if (!found)
			wh_save_cursor(w, ep, ep->scanned, now);
		log_info("webhook delivering", "webhook=%s cursor=%llu",
			 ep->name, (unsigned long long)ep->cursor.seq);
	} else if (held == 0) {
		if (!ep->standby)
			stand_by(w, ep, "another node holds its lease");
		/* Who, for the list and for the 409 of what only it does. */
		if (b->holder && b->holder(b->arg, ep->name, ep->view.holder,
					   sizeof(ep->view.holder)) != 0)
			ep->view.holder[0] = '\0';
	}
	if (!ep->standby)
		ep->view.holder[0] = '\0';
	/* -1 (Redis away): a holder goes on until sure_ms; saves fail
	 * until Redis is back. */
	if (!ep->standby && ep->held_ms + 2 * b->renew_ms - now < *wait_ms)
		*wait_ms = ep->held_ms + 2 * b->renew_ms - now;
	return !ep->standby;
}

static void pump(struct webhook *w, struct wh_endpoint *ep, int64_t now,
		 int64_t *wait_ms)
{
	if (ep->removed || ep->broken || !holds(w, ep, now, wait_ms) ||
	    ep->disabled)
		return;
	fill(w, ep, now);
	for (size_t i = 0; i < ep->n_window; i++) {
		struct wh_slot *s = slot_at(ep, i);

		if (s->state != SLOT_WAITING)
			continue;
		if (s->due_ms <= now && wh_http_start(w, s) != 0)
			s->due_ms = now + 100; /* no memory: soon again */
		if (s->state == SLOT_WAITING && s->due_ms - now < *wait_ms)
			*wait_ms = s->due_ms - now;
	}
	/* Events skipped by the filter move the cursor too, lazily: a
	 * restart would only walk them again. */
	if (!ep->n_window &&
	    (ep->scanned != ep->cursor.seq ||
	     strcmp(ep->epoch, ep->cursor.epoch) != 0) &&
	    now - ep->saved_ms >= LAZY_SAVE_MS)
		wh_save_cursor(w, ep, ep->scanned, now);
}

/* ---- the thread -------------------------------------------------------- */

void wh_publish(struct webhook *w)
{
	int64_t wall = clock_wall_ms();

	for (size_t i = 0; i < w->n_eps; i++) {
		struct wh_endpoint *ep = &w->eps[i];
		struct wh_view *v = &ep->view;

		snprintf(v->epoch, sizeof(v->epoch), "%s", ep->cursor.epoch);
		v->cursor = ep->cursor.seq;
		v->disabled = ep->disabled || ep->broken;
		v->standby = ep->standby;
		v->lag_events = strcmp(ep->epoch, w->epoch) == 0 &&
						w->latest > settled(ep) ?
					w->latest - settled(ep) :
					0;
		if (ep->disabled && strcmp(ep->cursor.epoch, w->epoch) == 0)
			v->lag_events = w->latest > ep->cursor.seq ?
						w->latest - ep->cursor.seq :
						0;
		v->lag_ms = ep->n_window ? wall - slot_at(ep, 0)->ev->wall_ms :
					   0;
		if (v->lag_ms < 0)
			v->lag_ms = 0;
	}
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n_eps; i++) {
		w->views[i] = w->eps[i].view;
		w->removed[i] = w->eps[i].removed;
	}
	pthread_mutex_unlock(&w->mu);
}

/* Settle every transfer that ended; how many did. */
static size_t settle_done(struct webhook *w, int64_t now)
{
	CURLMsg *m;
	size_t n = 0;
	int left;

	while ((m = curl_multi_info_read(w->multi, &left))) {
		struct wh_slot *s = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
				  (char **)&s);
		if (s) {
			settle(w, s, m->data.result, now);
			n++;
		}
	}
	return n;
}

/* Endpoints new to this state_dir begin at the log's current seq. */
static void place_new(struct webhook *w)
{
	int64_t now = clock_mono_ms();

	if (w->backend)
		return; /* placed when a lease is taken (holds) */
	for (size_t i = 0; i < w->n_eps; i++) {
		struct wh_endpoint *ep = &w->eps[i];

		if (ep->removed || ep->cursor.found)
			continue;
		snprintf(ep->epoch, sizeof(ep->epoch), "%s", w->epoch);
		ep->scanned = w->latest;
		wh_save_cursor(w, ep, ep->scanned, now);
	}
}

static void *run(void *arg)
{
	struct webhook *w = arg;

	while (!atomic_load(&w->stop)) {
		int64_t now, wait_ms = LOOP_MAX_WAIT_MS;
		int running;

		take_inbox(w);
		now = clock_mono_ms();
		wh_run_cmds(w, now);
		wh_defs_sync(w, now);
		for (size_t i = 0; i < w->n_eps; i++)
			pump(w, &w->eps[i], now, &wait_ms);
		/* A request sent may be answered before the poll (loopback):
		 * settle until nothing more ends, what settled letting the
		 * next ones go at once. Left to the poll, which has no socket
		 * of the finished transfer to wait on, it would sleep. */
		for (;;) {
			curl_multi_perform(w->multi, &running);
			if (!settle_done(w, clock_mono_ms()))
				break;
			for (size_t i = 0; i < w->n_eps; i++)
				pump(w, &w->eps[i], clock_mono_ms(), &wait_ms);
		}
		wh_publish(w);
		if (wait_ms < 0)
			wait_ms = 0;
		curl_multi_poll(w->multi, NULL, 0, (int)wait_ms, NULL);
	}
	pthread_mutex_lock(&w->mu);
	w->running = false;
	pthread_mutex_unlock(&w->mu);
	wh_run_cmds(w, clock_mono_ms()); /* any that came in before */
	for (size_t i = 0; i < w->n_eps; i++)
		wh_test_done(w, &w->eps[i], CURLE_OK, 503);
	if (w->backend && w->backend->release)
		w->backend->release(w->backend->arg);
	return NULL;
}

/* ---- life -------------------------------------------------------------- */

static void free_services(char **services, size_t n)
{
	for (size_t k = 0; k < n; k++)
		free(services[k]);
	free(services);
}

int wh_endpoint_set_conf(struct wh_endpoint *ep,
			 const struct dconf_webhook *def)
{
	char *url = strdup(def->url);
	char *ca_file = def->ca_file ? strdup(def->ca_file) : NULL;
	struct wh_slot *window =
		calloc((size_t)def->max_in_flight, sizeof(*window));
	char **services = calloc(def->services.n + 1, sizeof(*services));
	size_t n = 0;
	bool ok = url && (!def->ca_file || ca_file) && window && services;

	for (; ok && n < def->services.n; n++)
		ok = (services[n] = strdup(def->services.v[n])) != NULL;
	if (!ok) {
		free(url);
		free(ca_file);
		free(window);
		free_services(services, n);
		return -1;
	}
	free_services(ep->services, ep->n_services);
	free(ep->window);
	free(ep->conf.url);
	free(ep->conf.ca_file);
	explicit_bzero(ep->conf.keys, sizeof(ep->conf.keys));
	ep->conf = *def;
	ep->conf.url = url;
	ep->conf.ca_file = ca_file;
	ep->conf.secret_file = NULL;
	memset(&ep->conf.kinds, 0, sizeof(ep->conf.kinds));
	memset(&ep->conf.services, 0, sizeof(ep->conf.services));
	ep->window = window;
	ep->win_head = ep->n_window = 0;
	ep->services = services;
	ep->n_services = def->services.n;
	return 0;
}

int wh_endpoint_init(struct wh_endpoint *ep, const char *name,
		     const struct dconf_webhook *def, const char *state_dir,
		     bool files, char *err, size_t errlen)
{
	char why[300];

	snprintf(ep->name, sizeof(ep->name), "%s", name);
	ep->cursor.journal.fd = ep->cursor.journal.dir_fd = -1;
	if (wh_endpoint_set_conf(ep, def) != 0) {
		snprintf(err, errlen, "webhooks.%s: out of memory", name);
		return -1;
	}
	ep->rng = (uint64_t)clock_mono_us() ^ (uint64_t)(uintptr_t)ep;
	if (!ep->rng)
		ep->rng = 1;
	/* With a backend the cursor is its (loaded with the lease). */
	ep->standby = !files;
	if (files && webhook_cursor_open(&ep->cursor, state_dir, name, why,
					 sizeof(why)) != 0) {
		snprintf(err, errlen, "webhooks.%s: cursor: %s", name, why);
		return -1;
	}
	snprintf(ep->epoch, sizeof(ep->epoch), "%s", ep->cursor.epoch);
	ep->scanned = ep->cursor.seq;
	/* Disabled before the restart: still, until enabled. */
	ep->disabled = ep->cursor.disabled[0] != '\0';
	snprintf(ep->view.disabled_reason, sizeof(ep->view.disabled_reason),
		 "%s", ep->cursor.disabled);
	return 0;
}

/* What ep holds; its cursor is closed unless deleted (closed then). */
void wh_endpoint_release(struct webhook *w, struct wh_endpoint *ep)
{
	if (ep->window)
		wh_window_clear(w, ep);
	if (!ep->removed)
		webhook_cursor_close(&ep->cursor);
	free_services(ep->services, ep->n_services);
	free(ep->window);
	free(ep->conf.url);
	free(ep->conf.ca_file);
	explicit_bzero(ep->conf.keys, sizeof(ep->conf.keys));
	memset(ep, 0, sizeof(*ep));
	ep->cursor.journal.fd = ep->cursor.journal.dir_fd = -1;
	ep->removed = true;
}

void wh_activate(struct webhook *w)
{
	uint64_t idle;

	if (atomic_load(&w->active))
		return;
	atomic_store(&w->active, true);
	/* The events the hub only noted meanwhile are not retained: the
	 * log stands past them (a new endpoint starts there). */
	idle = atomic_load(&w->idle_seq);
	if (w->epoch[0] && idle > w->latest) {
		ring_clear(w);
		w->latest = idle;
	}
}

void wh_update_active(struct webhook *w)
{
	bool any = false;

	for (size_t i = 0; i < w->n_eps && !any; i++)
		any = !w->eps[i].removed;
	if (any)
		wh_activate(w);
	else
		atomic_store(&w->active, false);
}

struct webhook *webhook_new(const struct dconf *conf,
			    const struct webhook_backend *backend, char *err,
			    size_t errlen)
{
	const struct dconf_webhook *items = conf->webhooks.items;
	struct webhook *w = calloc(1, sizeof(*w));

	if (!w || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(w);
		snprintf(err, errlen, "webhooks: cannot initialise libcurl");
		return NULL;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->defs_journal.fd = w->defs_journal.dir_fd = -1;
	w->defs_rev = -1;
	w->cap = (size_t)conf->history;
	w->n_eps = conf->webhooks.n;
	w->ring = calloc(w->cap, sizeof(*w->ring));
	w->eps = calloc(DCONF_WEBHOOKS_MAX, sizeof(*w->eps));
	w->views = calloc(DCONF_WEBHOOKS_MAX, sizeof(*w->views));
	w->removed = calloc(DCONF_WEBHOOKS_MAX, sizeof(*w->removed));
	w->state_dir = strdup(conf->state_dir);
	w->multi = curl_multi_init();
	if (!w->ring || !w->eps || !w->views || !w->removed || !w->multi ||
	    !w->state_dir) {
		snprintf(err, errlen, "webhooks: out of memory");
		webhook_free(w);
		return NULL;
	}
	w->backend = backend;
	w->config_names.v = calloc(w->n_eps + 1, sizeof(char *));
	for (size_t i = 0; w->config_names.v && i < w->n_eps; i++)
		if ((w->config_names.v[i] = strdup(conf->webhooks.names[i])))
			w->config_names.n++;
	if (w->config_names.n != w->n_eps) {
		snprintf(err, errlen, "webhooks: out of memory");
		webhook_free(w);
		return NULL;
	}
	/* No file open yet: what webhook_free closes is only what opened. */
	for (size_t i = 0; i < DCONF_WEBHOOKS_MAX; i++)
		w->eps[i].cursor.journal.fd = w->eps[i].cursor.journal.dir_fd =
			-1;
	for (size_t i = 0; i < w->n_eps; i++)
		if (wh_endpoint_init(&w->eps[i], conf->webhooks.names[i],
				     &items[i], conf->state_dir, !backend, err,
				     errlen) != 0) {
			webhook_free(w);
			return NULL;
		}
	if (wh_defs_load(w, conf, err, errlen) != 0) {
		webhook_free(w);
		return NULL;
	}
	atomic_store(&w->active, w->n_eps > 0);
	/* A list before the thread's first turn shows what was loaded (a
	 * disabled endpoint disabled). */
	wh_publish(w);
	w->running = true;
	return w;
}

int webhook_start(struct webhook *w)
{
	if (pthread_create(&w->thread, NULL, run, w) != 0)
		return -1;
	w->started = true;
	return 0;
}

void webhook_stop(struct webhook *w)
{
	if (!w || !w->started)
		return;
	atomic_store(&w->stop, true);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thread, NULL);
	w->started = false;
}

void webhook_free(struct webhook *w)
{
	struct wh_event *e;

	if (!w)
		return;
	webhook_stop(w);
	for (size_t i = 0; w->eps && i < w->n_eps; i++)
		wh_endpoint_release(w, &w->eps[i]);
	if (w->ring)
		ring_clear(w);
	e = atomic_exchange(&w->inbox, NULL);
	while (e) {
		struct wh_event *next = e->next;

		free(e);
		e = next;
	}
	if (w->multi)
		curl_multi_cleanup(w->multi);
	curl_global_cleanup();
	cJSON_Delete(w->defs);
	conf_strlist_release(&w->config_names);
	journal_close(&w->defs_journal);
	free(w->state_dir);
	free(w->ring);
	free(w->eps);
	free(w->views);
	free(w->removed);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}
