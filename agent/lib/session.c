/*
 * session: the discovery.v1 conversation above the link (docs/protocol.md).
 *
 *   agent  -> hello {service, instance, address, depends_on, meta,
 *                    resume{epoch, seq} once a welcome was seen}
 *   daemon -> welcome {node, epoch, seq, recovered, services{...}}
 *   daemon -> event {epoch, seq, kind, command, header, value} ...
 *
 * The session outlives links: (epoch, seq) is what the next hello resumes
 * from. The welcome's services snapshot sets every dependency flag. When the
 * daemon resumes us (recovered:true), the welcome's seq is its head and the
 * `replay` events that follow are replays of what we missed: they reach
 * on_event (marked replayed) but do not move the flags, which the snapshot
 * already brought up to date, so a flag never flickers through history.
 * Once the last replay is in, the agent is at the welcome's seq, even when
 * the last event addressed to it is older: seq only tells the daemon where
 * to resume, and resuming from an older seq would ask for a history the
 * daemon may no longer hold (a needless reset).
 *
 * Everything here runs on the agent thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_int.h"
#include "log.h"

static int name_cmp(const void *key, const void *elem)
{
	return strcmp((const char *)key, *(const char *const *)elem);
}

int deps_index(const struct agent *a, const char *name)
{
	char *const *hit;

	if (!name || !a->n_deps)
		return -1;
	hit = bsearch(name, a->dep_names, a->n_deps, sizeof(char *), name_cmp);
	return hit ? (int)(hit - a->dep_names) : -1;
}

/* Store a flag; tell the application when it changed. */
static void set_flag(struct agent *a, size_t i, bool ready)
{
	bool was = atomic_exchange_explicit(&a->flags[i], ready,
					    memory_order_acq_rel);

	if (was != ready)
		notify_readiness(a, a->dep_names[i], ready);
}

int session_hello(struct agent *a, char **buf, size_t *len)
{
	struct link *l = &a->link;

	a->hello.has_resume = l->have_session;
	if (l->have_session) {
		snprintf(a->hello.resume_epoch, sizeof(a->hello.resume_epoch),
			 "%s", l->epoch);
		a->hello.resume_seq = l->seq;
	}
	l->resumed = l->have_session;
	*buf = proto_encode_hello(&a->hello, LWS_PRE, len);
	return *buf ? 0 : AGENT_E_NOMEM;
}

static void publish_info(struct agent *a)
{
	struct link *l = &a->link;

	pthread_mutex_lock(&a->info_mu);
	snprintf(a->info.epoch, sizeof(a->info.epoch), "%s", l->epoch);
	snprintf(a->info.node, sizeof(a->info.node), "%s", l->node);
	a->info.seq = l->seq;
	a->info.linked = atomic_load(&a->linked);
	a->info.attempt = l->attempt;
	pthread_mutex_unlock(&a->info_mu);
}

static void on_welcome(struct agent *a, const struct proto_welcome *w)
{
	struct link *l = &a->link;
	struct agent_link_info info = { 0 };
	bool recovered;

	if (l->welcomed) {
		link_close(a, 1008, "second welcome");
		return;
	}
	recovered = l->resumed && w->recovered && !strcmp(w->epoch, l->epoch);
	l->replay_left = 0;
	if (recovered && w->replay) {
		/* Keep our seq until the replay that follows is in. */
		l->replay_left = w->replay;
		l->replay_seq = w->seq;
	} else {
		snprintf(l->epoch, sizeof(l->epoch), "%s", w->epoch);
		if (!recovered || w->seq > l->seq)
			l->seq = w->seq;
	}
	snprintf(l->node, sizeof(l->node), "%s", w->node);
	l->have_session = true;
	l->welcomed = true;
	atomic_store(&a->linked, true);
	backoff_reset(&a->backoff);

	info.url = a->urls[l->url_index].text;
	info.attempt = l->attempt;
	info.node = l->node;
	info.epoch = l->epoch;
	info.seq = l->seq;
	info.resumed = l->resumed;
	info.recovered = recovered;
	info.reset = !recovered;
	info.reason = "";
	l->attempt = 0;

	pthread_mutex_lock(&a->info_mu);
	a->info.links++;
	pthread_mutex_unlock(&a->info_mu);
	publish_info(a);

	notify_log(a, AGENT_LOG_INFO,
		   "linked url=%s node=%s epoch=%s seq=%llu recovered=%s",
		   info.url, l->node, l->epoch, (unsigned long long)l->seq,
		   info.recovered ? "true" : "false");
	notify_link(a, AGENT_LINK_LINKED, &info);

	for (size_t i = 0; i < a->n_deps; i++) {
		const cJSON *v =
			w->services ?
				cJSON_GetObjectItemCaseSensitive(w->services,
								 a->dep_names
									 [i]) :
				NULL;

		set_flag(a, i, cJSON_IsTrue(v));
	}
	if (w->endpoints)
		watch_welcome(a, w->endpoints);

	/* Our own readiness goes out again on every new link. */
	l->sent_gen = 0;
	link_want_write(a);
}

/* The string keys of an invalidation's value.keys; NULL when none. */
static const char **invalidate_keys(const cJSON *value, size_t *n)
{
	const cJSON *keys = cJSON_GetObjectItemCaseSensitive(value, "keys");
	const cJSON *k;
	const char **v;
	size_t count = 0;

	*n = 0;
	if (!cJSON_IsArray(keys))
		return NULL;
	cJSON_ArrayForEach (k, keys)
		count += cJSON_IsString(k) ? 1 : 0;
	if (!count)
		return NULL;
	v = calloc(count, sizeof(*v));
	if (!v)
		return NULL;
	cJSON_ArrayForEach (k, keys) {
		if (cJSON_IsString(k))
			v[(*n)++] = k->valuestring;
	}
	return v;
}

/* kind "readiness": value {"service": ..., "ready": ...}. */
static void apply_readiness(struct agent *a, const cJSON *value,
			    struct agent_event *ev)
{
	const cJSON *svc = cJSON_GetObjectItemCaseSensitive(value, "service");
	const cJSON *rdy = cJSON_GetObjectItemCaseSensitive(value, "ready");
	int i;

	if (!cJSON_IsString(svc) || !cJSON_IsBool(rdy))
		return;
	ev->service = svc->valuestring;
	ev->ready = cJSON_IsTrue(rdy);
	i = deps_index(a, svc->valuestring);
	if (i >= 0 && !ev->replayed)
		set_flag(a, (size_t)i, ev->ready);
}

/*
 * Is e new? Moves (epoch, seq) forward when it is, and says in *replayed
 * whether it is one of the welcome's replays.
 */
static bool accept_seq(struct agent *a, const struct proto_event *e,
		       bool *replayed)
{
	struct link *l = &a->link;

	*replayed = false;
	if (!strcmp(e->epoch, l->epoch) && e->seq <= l->seq) {
		notify_log(a, AGENT_LOG_DEBUG,
			   "duplicate_event seq=%llu last=%llu",
			   (unsigned long long)e->seq,
			   (unsigned long long)l->seq);
		return false;
	}
	if (strcmp(e->epoch, l->epoch)) {
		/* History was lost under us mid-link; follow the daemon. */
		notify_log(a, AGENT_LOG_WARN, "epoch_changed seq=%llu",
			   (unsigned long long)e->seq);
		snprintf(l->epoch, sizeof(l->epoch), "%s", e->epoch);
		l->replay_left = 0;
	}
	l->seq = e->seq;
	if (l->replay_left && e->seq <= l->replay_seq) {
		*replayed = true;
		if (--l->replay_left == 0 && l->replay_seq > l->seq)
			l->seq = l->replay_seq; /* caught up with the welcome */
	} else if (l->replay_left) {
		/* Past the welcome's head: the replay is over, whatever the
		 * count said. */
		l->replay_left = 0;
	}
	/* Before any callback, so agent_info inside one shows this event. */
	pthread_mutex_lock(&a->info_mu);
	a->info.events++;
	a->info.seq = l->seq;
	snprintf(a->info.epoch, sizeof(a->info.epoch), "%s", l->epoch);
	pthread_mutex_unlock(&a->info_mu);
	return true;
}

static void on_event(struct agent *a, const struct proto_event *e,
		     const char *frame, size_t frame_len)
{
	struct link *l = &a->link;
	struct agent_event ev = { 0 };
	char *header, *value;
	const char **keys = NULL;

	if (!l->welcomed) {
		link_close(a, 1008, "event before welcome");
		return;
	}
	if (!accept_seq(a, e, &ev.replayed))
		return;

	ev.kind = e->kind;
	ev.epoch = l->epoch;
	ev.seq = e->seq;
	ev.command = e->command;
	ev.json = frame;
	ev.json_len = frame_len;
	header = e->header ? cJSON_PrintUnformatted(e->header) : NULL;
	value = e->value ? cJSON_PrintUnformatted(e->value) : NULL;
	ev.header = header ? header : "null";
	ev.value = value ? value : "null";
	if (!strcmp(e->kind, "readiness")) {
		apply_readiness(a, e->value, &ev);
	} else if (!strcmp(e->kind, "invalidate")) {
		keys = invalidate_keys(e->value, &ev.n_keys);
		ev.keys = keys;
	}

	notify_log(a, AGENT_LOG_DEBUG, "event kind=%s seq=%llu%s", e->kind,
		   (unsigned long long)e->seq,
		   ev.replayed ? " replayed=true" : "");
	notify_event(a, &ev);
	free(keys);
	cJSON_free(header);
	cJSON_free(value);
}

void session_frame(struct agent *a, const char *buf, size_t len)
{
	struct proto_msg msg;
	char err[128];
	int rc;

	rc = proto_decode(buf, len, a->max_message, &msg, err, sizeof(err));
	if (rc) {
		char q[160];

		notify_log(a, AGENT_LOG_WARN, "bad_frame error=%s",
			   log_quote(q, sizeof(q), err));
		link_close(a, proto_close_code(rc), err);
		return;
	}
	switch (msg.type) {
	case PROTO_WELCOME: on_welcome(a, &msg.u.welcome); break;
	case PROTO_EVENT: on_event(a, &msg.u.event, buf, len); break;
	case PROTO_ENDPOINTS:
		if (a->link.welcomed)
			watch_message(a, &msg.u.endpoints);
		else
			link_close(a, 1008, "endpoints before welcome");
		break;
	default: link_close(a, 1008, "unexpected message type"); break;
	}
	proto_msg_release(&msg);
}

/* The link is gone: flags follow on_disconnect. */
void session_unlinked(struct agent *a)
{
	atomic_store(&a->linked, false);
	publish_info(a);
	if (a->on_disconnect != AGENT_LOCK)
		return;
	for (size_t i = 0; i < a->n_deps; i++)
		set_flag(a, i, false);
}
