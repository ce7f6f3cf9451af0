/*
 * link: one agent's WebSocket link, on the hub thread (docs/protocol.md).
 * Frames in: reassembled up to max_message, decoded by proto, then hello
 * (the link becomes an instance) or status (its readiness). Frames out:
 * references to events already framed once, written at once when the socket
 * takes them and queued otherwise, up to send_queue bytes.
 *
 * Close codes: 1007 invalid JSON or message, 1008 policy (hello missing,
 * late or repeated, message out of order, replaced by a newer link, a token
 * expired or its secret dropped), 1009 frame over max_message, 1003 binary
 * frame, 1012 the node is draining (with the drain hint; cluster mode also:
 * the history was reset), 1013 try again later (max_agents reached, send
 * queue overflow, service table full, the node draining), 1001 daemon
 * stopping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub_int.h"
#include "log.h"

/* A close frame's payload is at most 125 bytes: the code, then this. */
#define CLOSE_REASON_MAX 123

/* Every idle link pays for each byte (docs/bench.md, "Idle memory per
 * link"): a field that every link does not need goes in link_aside. */
_Static_assert(sizeof(struct link) <= 152, "struct link grew");

static void unlink_instance(struct link *l);

/* For the log: the instance, or "-" before the hello. */
static const char *instance_or_dash(const struct link *l)
{
	return l->deps ? link_instance(l) : "-";
}

struct link_aside *link_aside(struct link *l)
{
	if (!l->aside)
		l->aside = calloc(1, sizeof(*l->aside));
	return l->aside;
}

static int links_add(struct hub *h, struct link *l)
{
	if (h->n_links == h->cap_links) {
		size_t cap = h->cap_links ? h->cap_links * 2 : 256;
		struct link **v = realloc(h->links, cap * sizeof(*v));

		if (!v)
			return -1;
		h->links = v;
		h->cap_links = cap;
	}
	l->index = (uint32_t)h->n_links;
	h->links[h->n_links++] = l;
	return 0;
}

static void links_remove(struct hub *h, struct link *l)
{
	struct link *last = h->links[--h->n_links];

	h->links[l->index] = last;
	last->index = l->index;
}

/* What a close means, from its code and (our own, fixed) reason text. */
static enum close_kind classify(int code, const char *reason)
{
	switch (code) {
	case 1001: return CLOSE_STOPPING;
	case 1003:
	case 1007: return CLOSE_INVALID;
	case 1009: return CLOSE_TOO_BIG;
	case 1011: return CLOSE_INTERNAL;
	case 1012: {
		uint32_t spread;

		return proto_drain_hint(reason, &spread) ? CLOSE_DRAIN :
							   CLOSE_POLICY;
	}
	case 1008:
		if (strcmp(reason, "no hello in time") == 0)
			return CLOSE_HELLO_TIMEOUT;
		if (strcmp(reason, "replaced by a newer link") == 0)
			return CLOSE_REPLACED;
		if (strncmp(reason, "token ", 6) == 0)
			return CLOSE_TOKEN;
		return CLOSE_POLICY;
	case 1013:
		return strcmp(reason, "send queue full") == 0 ?
			       CLOSE_SEND_QUEUE :
			       CLOSE_LIMIT;
	}
	return CLOSE_POLICY;
}

static void set_close_kind(struct link *l, enum close_kind kind)
{
	if (!l->close_kind_set) {
		l->close_kind = kind;
		l->close_kind_set = true;
	}
}

/* Close with a code and reason, sent when the socket is next writable. */
void link_close(struct link *l, int code, const char *reason)
{
	char q[160];

	if (l->state == LINK_CLOSING)
		return;
	log_info("closing", "peer=%s service=%s instance=%s code=%d reason=%s",
		 l->peer, l->svc ? l->svc->name : "-", instance_or_dash(l),
		 code, log_quote(q, sizeof(q), reason));
	set_close_kind(l, classify(code, reason));
	unlink_instance(l);
	l->close_code = (uint16_t)code;
	/* Out of memory: the close goes out with its code alone. */
	if (link_aside(l))
		l->aside->close_reason = strndup(reason, CLOSE_REASON_MAX);
	link_queue_clear(l);
	lws_callback_on_writable(l->wsi);
	/* A peer that never reads would hold the close forever. */
	lws_set_timeout(l->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
}

/* Drop the link without a close handshake: the peer is gone or stuck. */
void link_kill(struct link *l, const char *why)
{
	if (l->state != LINK_CLOSING)
		log_info("dropping", "peer=%s service=%s instance=%s reason=%s",
			 l->peer, l->svc ? l->svc->name : "-",
			 instance_or_dash(l), why);
	set_close_kind(l, strcmp(why, "heartbeat timeout") == 0 ?
				  CLOSE_HEARTBEAT :
				  CLOSE_WRITE_FAILED);
	unlink_instance(l);
	link_queue_clear(l);
	lws_set_timeout(l->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/*
 * Pings carry a payload (the send time, in ASCII: lws checks control frames
 * for valid UTF-8 too): lws reports a pong to us only when it has a payload,
 * and a pong is what keeps an idle link alive.
 */
static int write_ping(struct link *l)
{
	unsigned char buf[LWS_PRE + 24];
	int n = snprintf((char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE, "%lld",
			 (long long)l->last_ping_ms);

	return lws_write(l->wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_PING);
}

void link_ping(struct link *l)
{
	l->last_ping_ms = clock_mono_ms();
	if (!link_queued(l) && !lws_partial_buffered(l->wsi)) {
		if (write_ping(l) < 0)
			link_kill(l, "write failed");
		return;
	}
	l->ping_due = true;
	lws_callback_on_writable(l->wsi);
}

static int on_writable(struct link *l)
{
	if (l->close_code) {
		const char *reason = l->aside && l->aside->close_reason ?
					     l->aside->close_reason :
					     "";

		lws_close_reason(l->wsi, (enum lws_close_status)l->close_code,
				 (unsigned char *)reason, strlen(reason));
		return -1;
	}
	if (l->ping_due) {
		l->ping_due = false;
		if (write_ping(l) < 0)
			return -1;
	}
	return link_flush(l);
}

/* ---- the instance ------------------------------------------------------- */

/*
 * Stop depending on l's dependencies and release those nothing else uses,
 * except keep (the link's own service, which a link may also depend on):
 * the caller still needs it and releases it last.
 */
static void drop_deps(struct link *l, const struct service *keep)
{
	struct registry *reg = &l->hub->registry;

	for (size_t i = 0; i < l->n_deps; i++) {
		struct service *d = l->deps[i];

		if (!d)
			continue;
		d->dependents--;
		if (d != keep)
			registry_release_service(reg, d);
		l->deps[i] = NULL;
	}
}

/*
 * The link is going: it stops being an instance (counts, dependents,
 * readiness) and receives nothing more, not even the readiness change its
 * own leaving may cause.
 */
static void unlink_instance(struct link *l)
{
	struct hub *h = l->hub;
	struct service *s = l->svc;

	if (l->state != LINK_ACTIVE) {
		l->state = LINK_CLOSING;
		return;
	}
	l->state = LINK_CLOSING;
	link_index_remove(h, l);
	h->n_instances--;
	if (l->close_kind_set && l->close_kind == CLOSE_DRAIN) {
		/* Its agent moves to another node: until this one stops, the
		 * instance keeps counting here (its counts stay, as do its
		 * service and dependencies), so its leaving announces nothing.
		 */
		store_instance(h->store, l, INSTANCE_MOVED);
		hub_ep_remove(h, l);
		link_watch_drop(l);
		memset(l->deps, 0, l->n_deps * sizeof(l->deps[0]));
		hub_sse_change(h, s->name);
		l->svc = NULL;
		return;
	}
	s->instances--;
	if (l->ready)
		s->ready_instances--;
	store_instance(h->store, l, INSTANCE_GONE);
	hub_ep_remove(h, l);
	link_watch_drop(l);
	drop_deps(l, s);
	hub_sse_change(h, s->name);
	l->svc = NULL;
	registry_release_service(&h->registry, s);
}

/* The hello's dependencies, counted as l's (in l->deps, made by
 * take_hello). */
static int take_deps(struct link *l, const struct proto_hello *hello)
{
	struct hub *h = l->hub;

	for (size_t i = 0; i < l->n_deps; i++) {
		struct service *d =
			registry_get(&h->registry, hello->depends_on[i]);

		if (!d)
			return -1;
		d->dependents++;
		l->deps[i] = d;
	}
	return 0;
}

/* A hello that failed half-way: let go of its service, dependencies and
 * watches. */
static void forget_service(struct link *l)
{
	link_watch_drop(l);
	drop_deps(l, l->svc);
	if (l->svc)
		registry_release_service(&l->hub->registry, l->svc);
	l->svc = NULL;
	free(l->deps);
	l->deps = NULL;
	l->n_deps = l->n_tags = 0;
}

/*
 * What the hello names, in one allocation: room for its dependencies
 * (take_deps finds them), then its instance, address and tags as text
 * (link_instance).
 */
static int take_hello(struct link *l, const struct proto_hello *hello)
{
	size_t n = hello->n_depends, text = strlen(hello->instance) + 1;
	char *p;

	text += strlen(hello->address) + 1;
	for (size_t i = 0; i < hello->n_tags; i++)
		text += strlen(hello->tags[i]) + 1;
	if (!(l->deps = calloc(1, n * sizeof(l->deps[0]) + text)))
		return -1;
	l->n_deps = (uint8_t)n;
	l->n_tags = (uint8_t)hello->n_tags;
	p = (char *)(l->deps + n);
	p = stpcpy(p, hello->instance) + 1;
	p = stpcpy(p, hello->address) + 1;
	for (size_t i = 0; i < hello->n_tags; i++)
		p = stpcpy(p, hello->tags[i]) + 1;
	l->weight = (uint16_t)hello->weight;
	return 0;
}

/* The hello's meta, kept aside (most hellos have none). */
static int take_meta(struct link *l, struct proto_hello *hello)
{
	if (!hello->meta)
		return 0;
	if (!link_aside(l))
		return -1;
	l->aside->meta = hello->meta;
	hello->meta = NULL;
	return 0;
}

static struct event *make_welcome(struct link *l, bool recovered, size_t replay)
{
	struct hub *h = l->hub;
	struct proto_welcome w;
	unsigned char *frame;
	size_t len;

	memset(&w, 0, sizeof(w));
	snprintf(w.node, sizeof(w.node), "%s", h->node);
	snprintf(w.epoch, sizeof(w.epoch), "%s", h->log.epoch);
	w.seq = h->log.seq;
	w.recovered = recovered;
	w.replay = replay;
	w.services = cJSON_CreateObject();
	if (!w.services)
		return NULL;
	for (size_t i = 0; i < l->n_deps; i++)
		cJSON_AddBoolToObject(w.services, l->deps[i]->name,
				      l->deps[i]->ready);
	w.endpoints = link_watch_welcome(l);
	if (link_n_watch(l) && !w.endpoints) {
		cJSON_Delete(w.services);
		return NULL;
	}
	frame = (unsigned char *)proto_encode_welcome(&w, LWS_PRE, &len);
	cJSON_Delete(w.services);
	cJSON_Delete(w.endpoints);
	return frame ? event_new_frame(EVENT_WELCOME, frame, len) : NULL;
}

/* After welcome with recovered:true: the missed events addressed to l. */
static size_t replay_missed(struct link *l, uint64_t after, bool send)
{
	struct evlog *log = &l->hub->log;
	size_t n = 0;

	for (size_t i = evlog_find_after(log, after); i < log->count; i++) {
		struct event *ev = evlog_at(log, i);

		if (!event_addressed_to(ev, l->svc->name, link_instance(l),
					l->deps, l->n_deps))
			continue;
		n++;
		if (send)
			link_send(l, ev);
	}
	return n;
}

static void on_hello(struct link *l, struct proto_hello *hello)
{
	struct hub *h = l->hub;
	struct event *welcome;
	struct link *zombie;
	const char *not_yet;
	bool recovered;
	size_t replay = 0;
	char sub[160];

	if (l->state != LINK_OPEN) {
		link_close(l, 1008, "duplicate hello");
		return;
	}
	if (hub_drain_state(h) != HUB_SERVING) {
		/* Its agent goes to the next node of its list. */
		link_close(l, 1013, "node draining");
		return;
	}
	if ((not_yet = store_not_yet(h->store))) {
		/* A welcome now would carry a wrong snapshot. */
		link_close(l, 1013, not_yet);
		return;
	}
	if (l->token && l->token->svc &&
	    strcmp(l->token->svc, hello->service) != 0) {
		link_close(l, 1008, "the token is for another service");
		return;
	}
	l->svc = registry_get(&h->registry, hello->service);
	if (l->svc && (take_hello(l, hello) != 0 || take_meta(l, hello) != 0)) {
		forget_service(l);
		link_close(l, 1011, "out of memory");
		return;
	}
	if (!l->svc || take_deps(l, hello) != 0 ||
	    link_watch_take(l, hello) != 0) {
		forget_service(l);
		link_close(l, 1013, "service table full");
		return;
	}
	/* Count this instance first: closing the zombie below must not see
	 * the service unused and release it. */
	l->svc->instances++;
	/* An older link of the same instance is a zombie: this one replaces
	 * it, so a reconnecting agent never waits out its own timeout. It
	 * stands in for the zombie until it reports its own readiness (or
	 * for heartbeat.timeout at most, as long as the zombie would have
	 * lingered): the handover moves no count and announces nothing, so
	 * dependents never see the service flap. */
	zombie = link_index_find(h, l->svc, link_instance(l));
	if (zombie) {
		l->ready = zombie->ready;
		l->status = zombie->status;
		l->load = zombie->load;
		l->inherited = true;
		if (l->ready)
			l->svc->ready_instances++;
		link_close(zombie, 1008, "replaced by a newer link");
	}
	l->state = LINK_ACTIVE;
	link_index_add(h, l);
	h->n_instances++;

	recovered =
		hello->has_resume &&
		evlog_covers(&h->log, hello->resume_epoch, hello->resume_seq);
	if (recovered)
		replay = replay_missed(l, hello->resume_seq, false);
	/* Listed before the welcome, which may publish its service: a
	 * replacement then stands where its zombie stood (no gone, then
	 * back). */
	hub_ep_add(h, l);
	welcome = make_welcome(l, recovered, replay);
	if (!welcome) {
		link_close(l, 1011, "out of memory");
		return;
	}
	link_send(l, welcome);
	event_unref(welcome);
	if (recovered)
		replay_missed(l, hello->resume_seq, true);
	store_instance(h->store, l, INSTANCE_LINKED);
	hub_sse_change(h, l->svc->name);
	log_info("linked",
		 "peer=%s service=%s instance=%s deps=%zu recovered=%s "
		 "replay=%zu sub=%s",
		 l->peer, l->svc->name, link_instance(l), (size_t)l->n_deps,
		 recovered ? "true" : "false", replay,
		 log_quote(sub, sizeof(sub),
			   l->token && l->token->sub ? l->token->sub : "-"));
}

/*
 * The instance says what it is, and how loaded (or is taken to be not
 * ready, when its stand-in time is over): count it, tell the store what
 * moved. Only ready counts toward its service's readiness; draining and
 * load change the endpoint alone.
 */
void link_set_status(struct link *l, enum proto_state state, uint16_t load)
{
	bool ready = state == PROTO_STATE_READY;

	l->inherited = false;
	if (state == l->status && load == l->load)
		return;
	if (ready != l->ready) {
		if (ready)
			l->svc->ready_instances++;
		else
			l->svc->ready_instances--;
	}
	l->ready = ready;
	l->status = (uint8_t)state;
	l->load = load;
	log_debug("status", "service=%s instance=%s state=%s load=%u",
		  l->svc->name, link_instance(l), proto_state_name(state),
		  (unsigned)load);
	store_instance(l->hub->store, l, INSTANCE_CHANGED);
	if (l->ep_listed)
		hub_endpoints_moved(l->hub, l->svc);
	hub_sse_change(l->hub, l->svc->name);
}

static void on_status(struct link *l, const struct proto_status *st)
{
	if (l->state != LINK_ACTIVE) {
		link_close(l, 1008, "hello first");
		return;
	}
	link_set_status(l, st->state,
			st->has_load ?
				(uint16_t)(st->load * LINK_LOAD_SCALE + 0.5) :
				l->load);
}

/* ---- hellos that wait for the log ------------------------------------------
 */

struct link_parked {
	uint64_t seq; /* the agent's position */
	int64_t deadline_ms;
	size_t len;
	char text[]; /* the hello as it came */
};

/*
 * A log that mirrors another's (store.h, catch_up_ms; in cluster mode): an
 * agent failing over from a node that had read the stream further than
 * this one resumes from a seq this node has not applied yet. Its hello
 * waits (at most catch_up_ms) until this node has caught up, so that the
 * welcome's snapshot is as new as what the agent holds and the replay
 * starts right after it. True when parked.
 */
static bool park_hello(struct link *l, const struct proto_hello *hello,
		       const char *buf, size_t len)
{
	struct hub *h = l->hub;
	struct link_parked *p;

	if (!h->store->catch_up_ms || l->parked_once ||
	    (l->aside && l->aside->parked) || !hello->has_resume ||
	    strcmp(hello->resume_epoch, h->log.epoch) != 0 ||
	    hello->resume_seq <= h->log.seq)
		return false;
	if (!link_aside(l) || !(p = malloc(sizeof(*p) + len)))
		return false;
	p->seq = hello->resume_seq;
	p->deadline_ms = clock_mono_ms() + h->store->catch_up_ms;
	p->len = len;
	memcpy(p->text, buf, len);
	l->aside->parked = p;
	l->parked_once = true;
	h->n_parked++;
	log_debug("hello parked", "peer=%s seq=%llu have=%llu", l->peer,
		  (unsigned long long)p->seq, (unsigned long long)h->log.seq);
	return true;
}

static void drop_parked(struct link *l)
{
	if (!l->aside || !l->aside->parked)
		return;
	free(l->aside->parked);
	l->aside->parked = NULL;
	l->hub->n_parked--;
}

static void on_message(struct link *l, const char *buf, size_t len);

/*
 * Run the parked hellos whose seq this node has reached, or whose wait is
 * over (all: every one). One still ahead after its wait is answered as
 * any hello this node cannot resume: recovered:false and a snapshot.
 */
static void unpark(struct link *l)
{
	struct link_parked *p = l->aside->parked;

	l->aside->parked = NULL;
	l->hub->n_parked--;
	if (l->state == LINK_OPEN)
		on_message(l, p->text, p->len);
	free(p);
}

void link_unpark(struct hub *h, bool all)
{
	int64_t now = clock_mono_ms();

	for (size_t i = 0; i < h->n_links && h->n_parked; i++) {
		struct link *l = h->links[i];
		const struct link_parked *p = l->aside ? l->aside->parked :
							 NULL;

		if (p && (all || p->seq <= h->log.seq || now >= p->deadline_ms))
			unpark(l);
	}
}

static void on_message(struct link *l, const char *buf, size_t len)
{
	struct proto_msg msg;
	char err[128];
	int rc;

	/* A message behind a parked hello: the hello goes first, now. */
	if (l->aside && l->aside->parked)
		unpark(l);
	rc = proto_decode(buf, len, l->hub->max_message, &msg, err,
			  sizeof(err));

	if (rc != PROTO_OK) {
		link_close(l, proto_close_code(rc), err);
		return;
	}
	switch (msg.type) {
	case PROTO_HELLO:
		if (l->state == LINK_OPEN &&
		    park_hello(l, &msg.u.hello, buf, len))
			break;
		on_hello(l, &msg.u.hello);
		break;
	case PROTO_STATUS: on_status(l, &msg.u.status); break;
	default: link_close(l, 1008, "unexpected message type"); break;
	}
	proto_msg_release(&msg);
}

/*
 * A message arriving in pieces: in fragments, or in one frame longer than
 * rx_buffer_size, which lws hands over that many bytes at a time.
 */
struct link_rx {
	size_t len, cap;
	char data[];
};

/*
 * Add a piece of a message (the caller keeps it within max_message). Room
 * for the rest of its frame, which the frame's header announced, is made at
 * once, up to max_message; fragments grow it by doubling.
 */
static int rx_append(struct link *l, const char *in, size_t len)
{
	struct link_rx *rx = l->aside ? l->aside->rx : NULL;
	size_t max = l->hub->max_message;
	size_t used = rx ? rx->len : 0;
	size_t rest = lws_remaining_packet_payload(l->wsi);

	if (!rx || used + len > rx->cap) {
		size_t cap = rest < max - used - len ? used + len + rest : max;
		struct link_rx *grown;

		if (rx && cap < 2 * rx->cap)
			cap = 2 * rx->cap < max ? 2 * rx->cap : max;
		if (!link_aside(l) ||
		    !(grown = realloc(rx, sizeof(*grown) + cap)))
			return -1;
		grown->len = used;
		grown->cap = cap;
		l->aside->rx = rx = grown;
	}
	memcpy(rx->data + rx->len, in, len);
	rx->len += len;
	return 0;
}

/*
 * A piece of a text message: lws's is_final_fragment is true only for the
 * last piece of the last frame. Whole messages go to on_message without a
 * copy; the rest are gathered, never past max_message.
 */
static void on_receive(struct link *l, const char *in, size_t len)
{
	bool first = lws_is_first_fragment(l->wsi);
	bool final = lws_is_final_fragment(l->wsi);
	struct link_rx *rx = l->aside ? l->aside->rx : NULL;

	l->last_rx_ms = clock_mono_ms();
	if (l->state == LINK_CLOSING)
		return;
	if (lws_frame_is_binary(l->wsi)) {
		link_close(l, 1003, "binary frames are not accepted");
		return;
	}
	if (first && final && !rx) {
		on_message(l, in, len);
		return;
	}
	if ((rx ? rx->len : 0) + len > l->hub->max_message) {
		link_close(l, 1009, "message over max_message");
		return;
	}
	if (rx_append(l, in, len) != 0) {
		link_close(l, 1011, "out of memory");
		return;
	}
	if (!final)
		return;
	rx = l->aside->rx;
	l->aside->rx = NULL;
	on_message(l, rx->data, rx->len);
	free(rx);
}

/* ---- the lws protocol --------------------------------------------------- */

/*
 * A new link. It is ours (on_closed undoes it) only once l->hub is set:
 * lws reports LWS_CALLBACK_CLOSED even when this fails, so a failure frees
 * what it took and leaves l->hub NULL (and the connection's count to
 * link_admit_destroyed).
 */
static int on_established(struct link *l, struct lws *wsi)
{
	struct hub *h = lws_context_user(lws_get_context(wsi));
	struct peer *peer;

	memset(l, 0, sizeof(*l));
	if (link_auth_take(h, wsi, l) != 0)
		return -1;
	if (links_add(h, l) != 0) {
		link_auth_forget(l);
		return -1;
	}
	peer = link_admit_upgraded(h, wsi);
	if (!peer) {
		links_remove(h, l);
		link_auth_forget(l);
		return -1;
	}
	l->wsi = wsi;
	l->hub = h;
	l->peer = peers_addr(peer);
	l->state = LINK_OPEN;
	l->load = LINK_LOAD_NONE; /* unknown until it reports */
	l->connected_ms = l->last_rx_ms = clock_mono_ms();
	/* Its first ping comes at a random point of the interval: links
	 * that came in a storm are pinged spread over it, not together in
	 * the one tick (a burst that would stall a fan-out). */
	l->last_ping_ms =
		l->connected_ms -
		(int64_t)backoff_jitter(&h->ping_phase,
					(uint32_t)h->heartbeat_interval_ms);
	l->connected_wall_ms = clock_wall_ms();
	h->stats.links_opened++;
	if (h->stopping)
		link_close(l, 1001, "daemon stopping");
	else if (h->n_links > h->max_agents)
		link_close(l, 1013, "max_agents reached");
	return 0;
}

static void on_closed(struct link *l)
{
	if (!l->hub)
		return;
	if (l->state != LINK_CLOSING)
		log_info("unlinked", "peer=%s service=%s instance=%s", l->peer,
			 l->svc ? l->svc->name : "-", instance_or_dash(l));
	unlink_instance(l);
	link_queue_clear(l);
	drop_parked(l);
	l->hub->stats.closed[l->close_kind_set ? l->close_kind : CLOSE_GONE]++;
	links_remove(l->hub, l);
	peers_put(l->hub, peer_of_addr(l->peer));
	free(l->deps);
	link_auth_forget(l);
	if (l->aside) {
		cJSON_Delete(l->aside->meta);
		free(l->aside->close_reason);
		free(l->aside->rx);
		free(l->aside);
	}
	l->hub = NULL;
}

static int link_callback(struct lws *wsi, enum lws_callback_reasons reason,
			 void *user, void *in, size_t len)
{
	struct link *l = user;
	struct hub *h;

	switch (reason) {
	case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
		/* A new TCP connection, before any byte is read; user is the
		 * lws_filter_network_conn_args, not ours. */
		h = lws_context_user(lws_get_context(wsi));
		return h ? link_admit_filter(h, user) : 0;
	case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
		h = lws_context_user(lws_get_context(wsi));
		return h ? link_admit_adopt(h, wsi) : 0;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		/* Before the upgrade: a bad token gets 401/403, no link. */
		h = lws_context_user(lws_get_context(wsi));
		return h ? link_auth_confirm(h, wsi) : 0;
	case LWS_CALLBACK_WSI_DESTROY:
		h = lws_context_user(lws_get_context(wsi));
		if (h)
			link_admit_destroyed(h, wsi);
		return 0;
	case LWS_CALLBACK_ESTABLISHED: return on_established(l, wsi);
	case LWS_CALLBACK_RECEIVE: on_receive(l, in, len); return 0;
	case LWS_CALLBACK_RECEIVE_PONG:
		l->last_rx_ms = clock_mono_ms();
		l->last_pong_wall_ms = clock_wall_ms();
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE: return on_writable(l);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (l->state != LINK_CLOSING) {
			int code = len >= 2 ? ((unsigned char *)in)[0] << 8 |
						      ((unsigned char *)in)[1] :
					      1005;

			log_info("peer closing",
				 "peer=%s service=%s instance=%s code=%d",
				 l->peer, l->svc ? l->svc->name : "-",
				 instance_or_dash(l), code);
			set_close_kind(l, CLOSE_PEER);
			unlink_instance(l);
		}
		return 0;
	case LWS_CALLBACK_CLOSED: on_closed(l); return 0;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		h = lws_context_user(lws_get_context(wsi));
		if (h)
			hub_drain_requests(h);
		return 0;
	default: break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* clang-format off */
const struct lws_protocols link_protocols[] = {
	{
		.name = PROTO_SUBPROTOCOL,
		.callback = link_callback,
		.per_session_data_size = sizeof(struct link),
		/* Every link holds this buffer, idle or not, so it is as
		 * small as lws allows: a control frame (payload at most 125
		 * bytes) must fit whole. Agents send little; longer messages
		 * come in pieces of this size and on_receive gathers them. */
		.rx_buffer_size = 128,
		.tx_packet_size = 256 * 1024,
	},
	{ .name = NULL },
};
/* clang-format on */
