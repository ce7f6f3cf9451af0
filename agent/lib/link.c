/*
 * link: the agent's one libwebsockets client connection, on the agent
 * thread.
 *
 * States: idle (a retry is scheduled) -> attempting (connecting, then
 * upgraded) -> welcomed (session.c) -> closed, then idle again. Every way a
 * link ends (a refused connection, a failed handshake, the daemon's close,
 * our own close, a heartbeat timeout) funnels into lost(), which reports
 * UNLINKED once and schedules the next attempt: full-jitter backoff
 * (libcommon backoff.h), moving to the next URL after an attempt that never
 * got a welcome. libwebsockets has no reconnect of its own here.
 *
 * Writes happen only in the WRITEABLE callback, in priority order: our
 * close, the hello, a ping, our status. Other threads never call lws: they
 * set an atomic and lws_cancel_service(), and the EVENT_WAIT_CANCELLED
 * callback (wake) looks at what changed.
 *
 * Heartbeat: we ping every heartbeat_interval; anything heard (a frame, a
 * pong) proves the daemon alive. Silence for heartbeat_timeout kills the
 * connection without a close handshake (the peer is not answering anyway).
 * The same timeout bounds an attempt from its start to the welcome, so a
 * server that accepts the connection and never answers cannot hold the
 * agent forever.
 *
 * The wsi we hold is forgotten in lost(), which every end of a connection
 * reaches: CLIENT_CONNECTION_ERROR, CLIENT_CLOSED, CLOSED_CLIENT_HTTP (lws
 * reports a connection that dies before the upgrade, while it is still an
 * HTTP client, that way) and, as a last resort, WSI_DESTROY; so l->wsi
 * never points at a freed wsi.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_int.h"
#include "clock.h"
#include "log.h"

static void schedule_ms(struct agent *a, lws_sorted_usec_list_t *sul,
			sul_cb_t cb, int64_t ms)
{
	lws_sul_schedule(a->ctx, 0, sul, cb,
			 (lws_usec_t)(ms > 0 ? ms : 0) * LWS_US_PER_MS + 1);
}

/* ---- token ------------------------------------------------------------ */

static bool token_ok(const char *t)
{
	for (; *t; t++)
		if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
			return false;
	return true;
}

/* Read token_file into token_buf; keep the previous token on failure. */
static void load_token(struct agent *a)
{
	char buf[AGENT_TOKEN_MAX + 1], q[LOG_QUOTE_MAX];
	ssize_t n;
	size_t len;
	int fd;

	if (!a->token_file)
		return;
	fd = open(a->token_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		notify_log(a, AGENT_LOG_WARN,
			   "token_file_unreadable path=%s error=%s",
			   log_quote(q, sizeof(q), a->token_file),
			   log_quote(buf, sizeof(buf), strerror(errno)));
		return;
	}
	/* One byte short of buf: a file of AGENT_TOKEN_MAX bytes or more still
	 * leaves room for the NUL below, and reads as too long. */
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	len = n > 0 ? (size_t)n : 0;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
		       buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (n < 0 || len == 0 || len >= AGENT_TOKEN_MAX || !token_ok(buf)) {
		notify_log(a, AGENT_LOG_WARN,
			   "token_file_invalid path=%s reason=%s",
			   log_quote(q, sizeof(q), a->token_file),
			   n < 0                  ? "read-error" :
			   len == 0               ? "empty" :
			   len >= AGENT_TOKEN_MAX ? "too-long" :
						    "bad-character");
		return;
	}
	memcpy(a->token_buf, buf, len + 1);
}

/* ---- connecting and losing -------------------------------------------- */

static void connect_now(lws_sorted_usec_list_t *sul);
static void tick(lws_sorted_usec_list_t *sul);
static void lost(struct agent *a);

/*
 * Leave the service loop. lws runs due timers (sul) before it polls, within
 * the same lws_service call: when we finish from one (a killed connection,
 * the stop deadline), that poll would sleep until the next timer before the
 * loop saw `finished`. Waking our own poll makes it return at once.
 */
static void finish(struct agent *a)
{
	a->link.finished = true;
	lws_cancel_service(a->ctx);
}

static void set_info_url(struct agent *a, const char *url)
{
	pthread_mutex_lock(&a->info_mu);
	snprintf(a->info.url, sizeof(a->info.url), "%s", url);
	a->info.attempt = a->link.attempt;
	pthread_mutex_unlock(&a->info_mu);
}

static void reset_link(struct link *l)
{
	l->wsi = NULL;
	l->attempting = false;
	l->established = false;
	l->welcomed = false;
	l->need_hello = false;
	l->ping_due = false;
	l->rx_paused = false;
	l->sent_gen = 0;
	l->close_code = 0;
	l->close_reason[0] = '\0';
	l->end_code = 0;
	l->end_reason[0] = '\0';
	l->http_status = 0;
	l->rx_len = 0;
}

static void connect_now(lws_sorted_usec_list_t *sul)
{
	struct agent *a = lws_container_of(sul, struct agent, link.retry_sul);
	struct link *l = &a->link;
	const struct url *u = &a->urls[l->url_index];
	struct lws_client_connect_info ci;
	struct agent_link_info info = { 0 };
	struct lws *wsi;

	if (l->stopping)
		return;
	reset_link(l);
	l->attempt++;
	l->attempt_ms = clock_mono_ms();
	load_token(a);
	set_info_url(a, u->text);

	info.url = u->text;
	info.attempt = l->attempt;
	info.reason = "";
	notify_log(a, AGENT_LOG_DEBUG, "connecting url=%s attempt=%u", u->text,
		   l->attempt);
	notify_link(a, AGENT_LINK_CONNECTING, &info);

	memset(&ci, 0, sizeof(ci));
	ci.context = a->ctx;
	ci.address = u->host;
	ci.port = u->port;
	ci.path = u->path;
	ci.host = u->host_header;
	ci.protocol = PROTO_SUBPROTOCOL;
	ci.local_protocol_name = PROTO_SUBPROTOCOL;
	ci.ietf_version_or_minus_one = -1;
	ci.ssl_connection = u->tls ? LCCSCF_USE_SSL : 0;

	l->attempting = true;
	wsi = lws_client_connect_via_info(&ci);
	if (!wsi) {
		/* Failed at once; no callback will come for it. */
		if (l->attempting) {
			l->end_code = 1006;
			snprintf(l->end_reason, sizeof(l->end_reason),
				 "cannot connect");
			lost(a);
		}
		return;
	}
	if (l->attempting && !l->wsi)
		l->wsi = wsi;
	if (l->attempting)
		schedule_ms(a, &l->tick_sul, tick,
			    a->heartbeat_interval_ms < a->heartbeat_timeout_ms ?
				    a->heartbeat_interval_ms :
				    a->heartbeat_timeout_ms);
}

/*
 * The connection (or attempt) is over: report it once, apply on_disconnect,
 * and schedule the next attempt unless we are stopping. An attempt that got
 * no welcome moves on to the next URL; so does a link the daemon closed
 * because its node is draining (1012 with the drain hint, proto.h), after a
 * delay uniform over the hint's spread, so that a drained node's agents
 * reach the others spread out rather than at once.
 */
static void lost(struct agent *a)
{
	struct link *l = &a->link;
	struct agent_link_info info = { 0 };
	char q[200], status[32] = "";
	bool was_linked = l->welcomed;
	uint32_t spread = 0;
	bool drained = !l->close_code && l->end_code &&
		       proto_drain_hint(l->end_reason, &spread);

	if (!l->attempting)
		return;
	lws_sul_cancel(&l->tick_sul);

	info.url = a->urls[l->url_index].text;
	info.attempt = l->attempt;
	info.was_linked = was_linked;
	info.http_status = l->http_status;
	if (l->close_code) {
		info.close_code = l->close_code;
		info.reason = l->close_reason;
	} else if (l->end_code) {
		info.close_code = l->end_code;
		info.reason = l->end_reason;
	} else {
		info.close_code = 1006;
		info.reason = "connection lost";
	}

	l->attempting = false;
	l->wsi = NULL;
	l->established = false;
	l->welcomed = false;
	if (was_linked)
		atomic_store(&a->linked, false);

	if (l->stopping) {
		finish(a);
	} else {
		if (!was_linked || drained)
			l->url_index = (l->url_index + 1) % a->n_urls;
		info.retry_ms = drained ? backoff_jitter(&a->backoff, spread) :
					  backoff_next(&a->backoff);
		schedule_ms(a, &l->retry_sul, connect_now, info.retry_ms);
	}

	if (info.http_status)
		snprintf(status, sizeof(status), " http_status=%d",
			 info.http_status);
	notify_log(a,
		   was_linked && !l->stopping ? AGENT_LOG_WARN : AGENT_LOG_INFO,
		   "%s url=%s code=%d reason=%s%s retry_ms=%u",
		   was_linked ? "unlinked" : "connect_failed", info.url,
		   info.close_code, log_quote(q, sizeof(q), info.reason),
		   status, info.retry_ms);
	notify_link(a, AGENT_LINK_UNLINKED, &info);
	if (was_linked)
		session_unlinked(
			a); /* on_disconnect: after on_link reported it */
	l->end_reason[0] = '\0';
}

/* ---- closing and stopping --------------------------------------------- */

void link_want_write(struct agent *a)
{
	if (a->link.wsi && a->link.established)
		lws_callback_on_writable(a->link.wsi);
}

/*
 * End the connection: with a close frame (code, reason) once upgraded, else
 * (and for 1006) at once. The kill is synchronous: an asynchronous one is a
 * wsi timeout, which lws replaces with its own as a connection attempt
 * moves on (the handshake's 20 s wait for the server), so a stop or a
 * welcome timeout could be lost. lost() then runs inside this call, so a
 * caller must not use l->wsi after it. Never called from inside a callback
 * for the wsi being killed (only from timers and the wake-up).
 */
void link_close(struct agent *a, int code, const char *reason)
{
	struct link *l = &a->link;

	if (!l->wsi || l->close_code)
		return;
	l->close_code = code;
	l->close_ms = clock_mono_ms();
	snprintf(l->close_reason, sizeof(l->close_reason), "%s", reason);
	if (l->established && code != 1006) {
		/* The frame goes out from WRITEABLE; tick() drops the
		 * connection should that never come (a dead peer). */
		lws_callback_on_writable(l->wsi);
		schedule_ms(a, &l->tick_sul, tick, CLOSE_GRACE_MS);
	} else {
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
				LWS_TO_KILL_SYNC);
	}
}

static void stop_deadline(lws_sorted_usec_list_t *sul)
{
	struct agent *a = lws_container_of(sul, struct agent, link.stop_sul);

	finish(a);
}

static void begin_stop(struct agent *a)
{
	struct link *l = &a->link;

	l->stopping = true;
	lws_sul_cancel(&l->retry_sul);
	if (!l->attempting || !l->wsi) {
		finish(a);
		return;
	}
	link_close(a, 1000, "agent stopping");
	schedule_ms(a, &l->stop_sul, stop_deadline, STOP_GRACE_MS);
}

void link_begin(struct agent *a)
{
	backoff_init(&a->backoff, a->backoff_initial_ms, a->backoff_max_ms,
		     a->backoff_multiplier, 0);
	a->link.sent_gen = 0;
	schedule_ms(a, &a->link.retry_sul, connect_now, 0);
}

/* The service loop is over: report a link the stop deadline cut short. */
void link_end(struct agent *a)
{
	struct link *l = &a->link;

	if (l->attempting) {
		if (!l->close_code) {
			l->close_code = 1000;
			snprintf(l->close_reason, sizeof(l->close_reason),
				 "agent stopping");
		}
		lost(a);
	}
	lws_sul_cancel(&l->retry_sul);
	lws_sul_cancel(&l->tick_sul);
	lws_sul_cancel(&l->stop_sul);
	l->destroying = true;
}

void link_release(struct agent *a)
{
	free(a->link.rx);
	a->link.rx = NULL;
	a->link.rx_cap = a->link.rx_len = 0;
}

/* ---- heartbeat -------------------------------------------------------- */

/* Closing: our close frame never went out (or never got the connection
 * closed) within the grace: drop the connection. */
static void tick_closing(struct agent *a, int64_t now)
{
	struct link *l = &a->link;

	if (now - l->close_ms >= CLOSE_GRACE_MS)
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK,
				LWS_TO_KILL_SYNC);
	else
		schedule_ms(a, &l->tick_sul, tick,
			    CLOSE_GRACE_MS - (now - l->close_ms));
}

/*
 * Every heartbeat_interval from the start of an attempt: no welcome within
 * heartbeat_timeout of the start ends the attempt (a server that accepts and
 * never answers); once upgraded, a ping, and silence for heartbeat_timeout
 * ends the link.
 */
static void tick(lws_sorted_usec_list_t *sul)
{
	struct agent *a = lws_container_of(sul, struct agent, link.tick_sul);
	struct link *l = &a->link;
	int64_t now = clock_mono_ms(), timeout = a->heartbeat_timeout_ms;
	int64_t next = a->heartbeat_interval_ms, left;

	watch_tick(a); /* a set held back by readers, if any */
	if (!l->attempting || !l->wsi)
		return;
	if (l->close_code) {
		tick_closing(a, now);
		return;
	}
	if (!l->welcomed && now - l->attempt_ms >= timeout) {
		notify_log(a, AGENT_LOG_WARN,
			   "welcome_timeout url=%s waited_ms=%lld",
			   a->urls[l->url_index].text,
			   (long long)(now - l->attempt_ms));
		link_close(a, l->established ? 1008 : 1006,
			   "no welcome in time");
		return;
	}
	left = l->welcomed ? timeout : timeout - (now - l->attempt_ms);
	if (l->established) {
		/* Paused by us (the host's queue is full): silence proves
		 * nothing. */
		if (l->rx_paused)
			l->last_rx_ms = now;
		if (now - l->last_rx_ms >= timeout) {
			notify_log(a, AGENT_LOG_WARN,
				   "heartbeat_timeout url=%s silent_ms=%lld",
				   a->urls[l->url_index].text,
				   (long long)(now - l->last_rx_ms));
			link_close(a, 1006, "heartbeat timeout");
			return;
		}
		if (timeout - (now - l->last_rx_ms) < left)
			left = timeout - (now - l->last_rx_ms);
		l->ping_due = true;
		lws_callback_on_writable(l->wsi);
	}
	if (left < next)
		next = left;
	schedule_ms(a, &l->tick_sul, tick, next < 10 ? 10 : next);
}

/* ---- frames ------------------------------------------------------------ */

static int send_frame(struct lws *wsi, char *buf, size_t len,
		      enum lws_write_protocol type)
{
	int n = lws_write(wsi, (unsigned char *)buf + LWS_PRE, len, type);

	free(buf);
	return n < (int)len ? -1 : 0;
}

static bool status_wanted(struct agent *a)
{
	unsigned gen = atomic_load(&a->status_gen);

	/* Nothing before the app has said it is ready or draining: a stand-in
	 * link keeps its zombie's readiness until then (no flap). */
	return a->link.welcomed && gen && a->link.sent_gen != gen &&
	       (atomic_load(&a->own_ready_set) ||
		atomic_load(&a->own_draining));
}

/* What the status says now; gen: the generation it is of (read first, so
 * a change while it is built is sent again). */
static struct proto_status own_status(struct agent *a, unsigned *gen)
{
	struct proto_status st = { 0 };
	unsigned load;
	bool draining;

	*gen = atomic_load(&a->status_gen);
	draining = atomic_load(&a->own_draining);
	st.ready = atomic_load(&a->own_ready) && !draining;
	st.state = draining ? PROTO_STATE_DRAINING :
		   st.ready ? PROTO_STATE_READY :
			      PROTO_STATE_NOTREADY;
	load = atomic_load(&a->own_load);
	st.has_load = load != LOAD_NONE;
	st.load = st.has_load ? (double)load / AGENT_LOAD_SCALE : 0;
	return st;
}

static int writable(struct agent *a, struct lws *wsi)
{
	struct link *l = &a->link;
	char *buf;
	size_t len;

	if (l->close_code == 1006)
		return -1;
	if (l->close_code) {
		lws_close_reason(wsi, (enum lws_close_status)l->close_code,
				 (unsigned char *)l->close_reason,
				 strlen(l->close_reason));
		return -1;
	}
	if (l->need_hello) {
		if (session_hello(a, &buf, &len))
			return -1;
		l->need_hello = false;
		if (send_frame(wsi, buf, len, LWS_WRITE_TEXT))
			return -1;
	} else if (l->ping_due) {
		l->ping_due = false;
		buf = calloc(1, LWS_PRE + 1);
		if (!buf || send_frame(wsi, buf, 0, LWS_WRITE_PING))
			return -1;
	} else if (status_wanted(a)) {
		unsigned gen;
		struct proto_status st = own_status(a, &gen);

		buf = proto_encode_status(&st, LWS_PRE, &len);
		if (!buf || send_frame(wsi, buf, len, LWS_WRITE_TEXT))
			return -1;
		l->sent_gen = gen;
		notify_log(a, AGENT_LOG_DEBUG, "status state=%s",
			   proto_state_name(st.state));
	}
	if (l->ping_due || status_wanted(a))
		lws_callback_on_writable(wsi);
	return 0;
}

static void receive(struct agent *a, struct lws *wsi, const char *in,
		    size_t len)
{
	struct link *l = &a->link;

	if (l->close_code)
		return;
	if (lws_frame_is_binary(wsi)) {
		link_close(a, 1003, "binary frames are not accepted");
		return;
	}
	if (lws_is_first_fragment(wsi))
		l->rx_len = 0;
	if (len > a->max_message - l->rx_len) {
		notify_log(a, AGENT_LOG_WARN, "message_too_big max=%zu",
			   a->max_message);
		link_close(a, 1009, "message too big");
		return;
	}
	if (l->rx_len + len + 1 > l->rx_cap) {
		size_t cap = l->rx_cap ? l->rx_cap : RX_CHUNK * 4;
		char *p;

		while (cap < l->rx_len + len + 1)
			cap *= 2;
		if (cap > a->max_message + 1) /* the check above: enough */
			cap = a->max_message + 1;
		p = realloc(l->rx, cap);
		if (!p) {
			link_close(a, 1011, "out of memory");
			return;
		}
		l->rx = p;
		l->rx_cap = cap;
	}
	memcpy(l->rx + l->rx_len, in, len);
	l->rx_len += len;
	if (!lws_is_final_fragment(wsi))
		return;
	l->rx[l->rx_len] = '\0';
	session_frame(a, l->rx, l->rx_len);
	l->rx_len = 0;
	if (l->rx_cap > RX_KEEP) {
		/* A rare big message: do not hold its buffer for good. */
		free(l->rx);
		l->rx = NULL;
		l->rx_cap = 0;
	}
	if (l->wsi && !l->rx_paused && notify_queue_full(a)) {
		notify_log(a, AGENT_LOG_DEBUG, "rx_paused queue_max=%zu",
			   a->queue_max);
		l->rx_paused = true;
		lws_rx_flow_control(wsi, 0);
	}
}

/* EVENT_WAIT_CANCELLED: another thread changed something. */
static void wake(struct agent *a)
{
	struct link *l = &a->link;

	if (atomic_load(&a->stop) && !l->stopping)
		begin_stop(a);
	if (status_wanted(a))
		link_want_write(a);
	if (l->rx_paused && atomic_exchange(&a->rx_resume, false) &&
	    !notify_queue_full(a) && l->wsi) {
		l->rx_paused = false;
		lws_rx_flow_control(l->wsi, 1);
	}
}

static void peer_close(struct agent *a, const unsigned char *in, size_t len)
{
	struct link *l = &a->link;
	uint32_t spread;
	size_t n;

	if (len < 2) {
		l->end_code = 1005; /* no status */
		return;
	}
	l->end_code = (in[0] << 8) | in[1];
	n = len - 2 < sizeof(l->end_reason) - 1 ? len - 2 :
						  sizeof(l->end_reason) - 1;
	memcpy(l->end_reason, in + 2, n);
	l->end_reason[n] = '\0';
	/* libwebsockets 4.1's client turns the codes it does not know, 1012
	 * and 1013 among them, into 1002 before we see them; the reason
	 * survives, and the drain hint comes only with 1012. */
	if (l->end_code == 1002 && proto_drain_hint(l->end_reason, &spread))
		l->end_code = 1012;
}

static void connection_error(struct agent *a, struct lws *wsi, const char *in,
			     size_t len)
{
	struct link *l = &a->link;
	size_t n = in ? strnlen(in, len ? len : sizeof(l->end_reason)) : 0;

	l->http_status = (int)lws_http_client_http_response(wsi);
	l->end_code = 1006;
	if (n >= sizeof(l->end_reason))
		n = sizeof(l->end_reason) - 1;
	if (n)
		memcpy(l->end_reason, in, n);
	l->end_reason[n] = '\0';
	if (!n)
		snprintf(l->end_reason, sizeof(l->end_reason),
			 "connection failed");
}

static int add_auth_header(struct agent *a, struct lws *wsi, void *in,
			   size_t len)
{
	unsigned char **p = in, *end = *p + len;
	char value[AGENT_TOKEN_MAX + 8];
	int n;

	if (!a->token_buf[0])
		return 0;
	n = snprintf(value, sizeof(value), "Bearer %s", a->token_buf);
	return lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
					    (unsigned char *)value, n, p, end) ?
		       -1 :
		       0;
}

static bool current(struct agent *a, struct lws *wsi)
{
	return a->link.attempting && (!a->link.wsi || a->link.wsi == wsi);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
		    void *user, void *in, size_t len)
{
	struct agent *a = lws_context_user(lws_get_context(wsi));
	struct link *l = &a->link;

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		return current(a, wsi) ? add_auth_header(a, wsi, in, len) : 0;

	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (!current(a, wsi))
			return -1;
		l->wsi = wsi;
		l->established = true;
		l->last_rx_ms = clock_mono_ms();
		l->need_hello = true;
		lws_callback_on_writable(wsi);
		notify_log(a, AGENT_LOG_DEBUG, "established url=%s",
			   a->urls[l->url_index].text);
		break;

	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (current(a, wsi)) {
			l->last_rx_ms = clock_mono_ms();
			receive(a, wsi, in, len);
		}
		break;

	case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
		if (current(a, wsi))
			l->last_rx_ms = clock_mono_ms();
		break;

	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (!current(a, wsi))
			return -1;
		return writable(a, wsi);

	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (current(a, wsi))
			peer_close(a, in, len);
		break;

	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (current(a, wsi)) {
			connection_error(a, wsi, in, len);
			lost(a);
		}
		break;

	case LWS_CALLBACK_CLIENT_CLOSED:
	case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
		/* The second: the connection died before the upgrade (a
		 * server that accepted and went silent, lws' own timeout). */
		if (current(a, wsi))
			lost(a);
		break;

	case LWS_CALLBACK_WSI_DESTROY:
		/* Whatever way lws ended our wsi, never keep pointing at it. */
		if (a->link.attempting && a->link.wsi == wsi)
			lost(a);
		break;

	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (!l->destroying)
			wake(a);
		break;

	default: break;
	}
	return 0;
}

/* clang-format off */
const struct lws_protocols link_protocols[] = {
	{ PROTO_SUBPROTOCOL, callback, 0, RX_CHUNK, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};
/* clang-format on */
