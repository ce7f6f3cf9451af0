/*
 * webhook_cmd: what other threads ask of the delivery thread (webhook.h's
 * webhook_call): enable, replay, delete, and a test notice. A caller
 * queues its command under the mutex, wakes the thread (curl_multi_wakeup)
 * and waits; the thread runs the queue at the top of each turn, publishes
 * what changed, then lets the callers go. A test is answered only when its
 * request ends.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "webhook_int.h"

/* Answer a deferred command (a test) and let its caller go. */
static void finish_cmd(struct webhook *w, struct wh_cmd *c, int status,
		       const char *msg)
{
	pthread_mutex_lock(&w->mu);
	c->status = status;
	snprintf(c->msg, c->msglen, "%s", msg);
	c->done = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* The test request of ep ended (rc), or is dropped (status != 0). */
void wh_test_done(struct webhook *w, struct wh_endpoint *ep, CURLcode rc,
		  int status)
{
	struct wh_result r;
	char msg[200];

	if (!ep->test_cmd)
		return;
	if (status) {
		wh_http_abort(w, &ep->test);
		snprintf(msg, sizeof(msg), "the test was dropped");
	} else {
		wh_http_finish(w, &ep->test, rc, &r);
		status = r.cls == WH_2XX ? 200 : 502;
		if (r.cls == WH_2XX)
			snprintf(msg, sizeof(msg), "HTTP %d", r.status);
		else
			snprintf(msg, sizeof(msg), "%s", r.error);
	}
	wh_event_unref(ep->test.ev);
	ep->test.ev = NULL;
	finish_cmd(w, ep->test_cmd, status, msg);
	ep->test_cmd = NULL;
}

/* ---- commands from other threads -------------------------------------- */

static struct wh_endpoint *find(struct webhook *w, const char *name)
{
	for (size_t i = 0; i < w->n_eps; i++)
		if (!w->eps[i].removed && strcmp(w->eps[i].name, name) == 0)
			return &w->eps[i];
	return NULL;
}

/* A test notice, sent at once whatever the endpoint's state; its answer
 * answers c. */
static void start_test(struct webhook *w, struct wh_endpoint *ep,
		       struct wh_cmd *c)
{
	char body[PROTO_EPOCH_MAX + PROTO_NAME_MAX + 96];
	int n = snprintf(body, sizeof(body),
			 "{\"type\":\"test\",\"webhook\":\"%s\",\"epoch\":"
			 "\"%s\",\"seq\":%llu}",
			 ep->name, w->epoch, (unsigned long long)w->latest);
	struct wh_event *e;

	if (ep->test_cmd) {
		c->status = 409;
		snprintf(c->msg, c->msglen, "a test of %s is running",
			 ep->name);
		return;
	}
	e = wh_event_new((size_t)n);
	if (!e) {
		c->status = 503;
		snprintf(c->msg, c->msglen, "out of memory");
		return;
	}
	memcpy(e->body, body, (size_t)n);
	e->len = (size_t)n;
	memset(&ep->test, 0, sizeof(ep->test));
	ep->test.ev = e;
	ep->test.ep = ep;
	snprintf(ep->test.id, sizeof(ep->test.id), "%s-test-%lld", w->epoch,
		 (long long)clock_wall_ms());
	if (wh_http_start(w, &ep->test) != 0) {
		wh_event_unref(e);
		ep->test.ev = NULL;
		c->status = 503;
		snprintf(c->msg, c->msglen, "out of memory");
		return;
	}
	c->deferred = true;
	ep->test_cmd = c;
}

static void run_cmd(struct webhook *w, struct wh_cmd *c, int64_t now)
{
	struct wh_endpoint *ep;

	if (c->op == WEBHOOK_PUT) {
		wh_defs_put(w, c, now);
		return;
	}
	if (c->op == WEBHOOK_RELOAD) {
		wh_defs_reload_secrets(w, c->conf);
		c->status = 200;
		return;
	}
	ep = find(w, c->name);
	c->status = 200;
	if (!ep) {
		c->status = 404;
		snprintf(c->msg, c->msglen, "no webhook named %s", c->name);
		return;
	}
	/* A run-time endpoint leaves the cluster from any node: its
	 * definition and keys go from Redis at once, and the node that
	 * delivers it can no longer renew its lease (webhook_def.c). */
	if (c->op == WEBHOOK_DELETE && ep->runtime)
		goto run;
	if (ep->standby && c->op != WEBHOOK_TEST) {
		c->status = 409;
		if (ep->view.holder[0])
			snprintf(c->msg, c->msglen,
				 "node %s delivers %s: ask it", ep->view.holder,
				 ep->name);
		else
			snprintf(c->msg, c->msglen,
				 "another node delivers %s: ask the node whose "
				 "list shows it delivering",
				 ep->name);
		return;
	}
	/* The other nodes keep it in their config and would take its lease
	 * (and begin it anew) once this one let go: in cluster mode an
	 * endpoint leaves with its entry in every node's config. */
	if (c->op == WEBHOOK_DELETE && w->backend) {
		c->status = 409;
		snprintf(c->msg, c->msglen,
			 "in cluster mode %s leaves when its entry leaves "
			 "every node's webhooks: (and a restart); disable "
			 "it at the receiver (410) meanwhile",
			 ep->name);
		return;
	}
run:
	if ((c->op == WEBHOOK_ENABLE || c->op == WEBHOOK_TEST) && ep->broken) {
		c->status = 409;
		snprintf(c->msg, c->msglen,
			 "%s's definition does not pass (%s): PUT it again, "
			 "or fix it and send SIGHUP",
			 ep->name, ep->view.disabled_reason);
		return;
	}
	switch (c->op) {
	case WEBHOOK_ENABLE:
		if (ep->disabled)
			log_info("webhook enabled", "webhook=%s cursor=%llu",
				 ep->name, (unsigned long long)ep->cursor.seq);
		if (ep->disabled)
			wh_store_disabled(w, ep, "");
		ep->disabled = false;
		ep->view.disabled_reason[0] = '\0';
		ep->view.failures = 0;
		snprintf(c->msg, c->msglen, "enabled");
		break;
	case WEBHOOK_REPLAY:
		if (!w->epoch[0] || c->from < wh_ring_oldest(w) ||
		    c->from > w->latest + 1) {
			c->status = 422;
			snprintf(c->msg, c->msglen,
				 "seq %llu is not retained: from must be "
				 "%llu to %llu",
				 (unsigned long long)c->from,
				 (unsigned long long)wh_ring_oldest(w),
				 (unsigned long long)w->latest + 1);
			return;
		}
		wh_window_clear(w, ep);
		snprintf(ep->epoch, sizeof(ep->epoch), "%s", w->epoch);
		ep->scanned = c->from - 1;
		wh_rewind_cursor(w, ep, ep->scanned, now);
		log_info("webhook replay", "webhook=%s from=%llu", ep->name,
			 (unsigned long long)c->from);
		snprintf(c->msg, c->msglen, "replaying from %llu",
			 (unsigned long long)c->from);
		break;
	case WEBHOOK_TEST: start_test(w, ep, c); break;
	case WEBHOOK_PUT:
	case WEBHOOK_RELOAD: break; /* run above */
	case WEBHOOK_DELETE:
		/* Gone for good: its definition first, so that a crash
		 * after leaves no endpoint coming back without a cursor. */
		if (ep->runtime && wh_defs_remove(w, ep->name) != 0) {
			c->status = 500;
			snprintf(c->msg, c->msglen,
				 "%s not written (%s): %s is kept",
				 w->backend ? "Redis" : "webhooks-api",
				 strerror(errno), ep->name);
			return;
		}
		wh_test_done(w, ep, CURLE_OK, 409);
		wh_window_clear(w, ep);
		if (w->backend)
			w->backend->remove(w->backend->arg, ep->name);
		webhook_cursor_remove(&ep->cursor);
		ep->removed = true;
		wh_update_active(w);
		log_info("webhook deleted", "webhook=%s", ep->name);
		snprintf(c->msg, c->msglen, "deleted");
		break;
	}
}

void wh_run_cmds(struct webhook *w, int64_t now)
{
	struct wh_cmd *list;

	pthread_mutex_lock(&w->mu);
	list = w->cmds;
	w->cmds = NULL;
	pthread_mutex_unlock(&w->mu);
	if (!list)
		return;
	for (struct wh_cmd *c = list; c; c = c->next)
		run_cmd(w, c, now);
	/* A caller that reads the list next sees what it changed. */
	wh_publish(w);
	pthread_mutex_lock(&w->mu);
	for (struct wh_cmd *c = list; c;) {
		struct wh_cmd *next = c->next;

		if (!c->deferred)
			c->done = true; /* c may go as soon as this is seen */
		c = next;
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static int call(struct webhook *w, struct wh_cmd *cmd)
{
	struct wh_cmd c = *cmd;
	char *msg = c.msg;
	size_t msglen = c.msglen;

	pthread_mutex_lock(&w->mu);
	if (!w->running) {
		pthread_mutex_unlock(&w->mu);
		snprintf(msg, msglen, "webhooks are stopping");
		return 503;
	}
	c.next = w->cmds;
	w->cmds = &c;
	pthread_mutex_unlock(&w->mu);
	curl_multi_wakeup(w->multi);
	pthread_mutex_lock(&w->mu);
	while (!c.done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	return c.status;
}

int webhook_call(struct webhook *w, enum webhook_op op, const char *name,
		 uint64_t from, char *msg, size_t msglen)
{
	struct wh_cmd c = { .op = op,
			    .name = name,
			    .from = from,
			    .msg = msg,
			    .msglen = msglen };

	return call(w, &c);
}

int webhook_put(struct webhook *w, const char *name,
		const struct dconf_webhook *def, const char *json, bool fresh,
		char *msg, size_t msglen)
{
	struct wh_cmd c = { .op = WEBHOOK_PUT,
			    .name = name,
			    .def = def,
			    .json = json,
			    .fresh = fresh,
			    .msg = msg,
			    .msglen = msglen };

	return call(w, &c);
}

void webhook_reload_secrets(struct webhook *w, const struct dconf *conf)
{
	char msg[64];
	struct wh_cmd c = { .op = WEBHOOK_RELOAD,
			    .name = "",
			    .conf = conf,
			    .msg = msg,
			    .msglen = sizeof(msg) };

	call(w, &c);
}
