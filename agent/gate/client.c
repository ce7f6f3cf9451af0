/*
 * client: one worker's client connections (see client.h): the set, each
 * connection's phases (client_int.h), the answers the gate gives itself,
 * writing the answer out, the exchange with the app (upstream.h) and the
 * switch to a relay after a 101, and the deadlines. Reading a request, its
 * head and its body, is request.c's; this file decides what follows.
 *
 * Everything runs on the worker's thread: no locks. Bytes read wait in
 * `in` until they are parsed: the head as a whole, the body as the ring
 * it goes to has room, so a client that sends faster than the app reads
 * is simply not read.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_int.h"
#include "log.h"
#include "request.h"

#define WELL_KNOWN "/.well-known/discovery-gate"
#define IN_SLACK   (16 * 1024) /* read beyond a head: body, pipelining */
#define IN_FIRST   4096        /* what `in` starts with */
#define DISCARD_MAX                                                            \
	(64 * 1024) /* a body we answer ourselves is read                      \
		     * and dropped up to this; larger, the                     \
		     * connection closes after the answer */
#define LINGER_MS    2000
#define LINGER_BYTES (1024 * 1024)
#define OUT_MAX      (1024 * 1024 + 64 * 1024) /* the loading page, at most */

static const struct upstream_ops exchange_ops;
static void process(struct client *c);
static void flush_soon(struct client *c);

/* ---- the set ------------------------------------------------------------ */

static void list_add(struct clients *s, struct client *c)
{
	c->prev = s->last;
	c->next = NULL;
	if (s->last)
		s->last->next = c;
	else
		s->first = c;
	s->last = c;
	s->n++;
	atomic_fetch_add_explicit(&s->load, 1, memory_order_relaxed);
}

static void list_remove(struct clients *s, struct client *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		s->first = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		s->last = c->prev;
	c->prev = c->next = NULL;
	s->n--;
	atomic_fetch_sub_explicit(&s->load, 1, memory_order_relaxed);
}

void clients_init(struct clients *s, struct gate_env *env, struct loop *loop,
		  struct upstream_pool *pool)
{
	memset(s, 0, sizeof(*s));
	atomic_init(&s->load, 0);
	s->env = env;
	s->loop = loop;
	s->pool = pool;
}

/* ---- body rings --------------------------------------------------------- */

static int take_rings(struct client *c)
{
	struct clients *s = c->set;
	size_t cap = (size_t)s->env->conf->buffer;

	if (c->x.up.buf)
		return 0;
	if (s->n_spare) {
		s->n_spare--;
		c->x.up.buf = s->spare[s->n_spare][0];
		c->x.down.buf = s->spare[s->n_spare][1];
	} else {
		c->x.up.buf = malloc(cap);
		c->x.down.buf = malloc(cap);
	}
	c->x.up = (struct ring){ c->x.up.buf, cap, 0, 0 };
	c->x.down = (struct ring){ c->x.down.buf, cap, 0, 0 };
	return c->x.up.buf && c->x.down.buf ? 0 : -1;
}

/* Keep them for another request of the worker's. */
static void give_rings(struct client *c)
{
	struct clients *s = c->set;

	if (c->x.up.buf && c->x.down.buf && s->n_spare < SPARE_RINGS) {
		s->spare[s->n_spare][0] = c->x.up.buf;
		s->spare[s->n_spare][1] = c->x.down.buf;
		s->n_spare++;
	} else {
		free(c->x.up.buf);
		free(c->x.down.buf);
	}
	c->x.up = c->x.down = (struct ring){ 0 };
}

/* ---- closing ------------------------------------------------------------ */

static void client_release(struct watch *w)
{
	struct client *c = (struct client *)w;

	buf_release(&c->in);
	buf_release(&c->target);
	buf_release(&c->fields);
	buf_release(&c->out);
	buf_release(&c->x.out);
	buf_release(&c->x.head);
	free(c);
}

static void leave_request(struct client *c)
{
	if (c->in_request)
		atomic_fetch_sub(&c->set->env->busy, 1);
	c->in_request = false;
}

static void client_close(struct client *c)
{
	struct clients *s = c->set;

	if (c->closed)
		return;
	c->closed = true;
	if (c->x.in_flight)
		upstream_abort(&c->x);
	if (c->phase == PH_RELAY && c->relay.running) {
		c->relay.running = false;
		loop_retire(s->loop, &c->relay.upstream); /* released first */
	}
	leave_request(c);
	give_rings(c);
	list_remove(s, c);
	admit_put(s->env->admit, (struct sockaddr *)&c->peer);
	loop_retire(s->loop, &c->watch);
}

/* The answer is out: shut our side, read what still comes, then close. */
static void linger(struct client *c)
{
	leave_request(c);
	give_rings(c);
	shutdown(c->watch.fd, SHUT_WR);
	c->phase = PH_LINGER;
	c->in.len = 0;
	c->deadline_ms = loop_now_ms() + LINGER_MS;
	loop_due(c->set->loop, c->deadline_ms);
	loop_set(c->set->loop, &c->watch, EPOLLIN);
}

/* ---- answers of our own -------------------------------------------------- */

/* Queue an answer: head (up to its Content-Length), the connection's
 * fate, the blank line, the body (not for HEAD). */
static void answer_raw(struct client *c, const char *head, size_t head_len,
		       const char *body, size_t body_len)
{
	struct buf *o = &c->out;
	int bad;

	if (c->set->draining)
		c->close_after = true;
	o->len = o->off = 0;
	bad = buf_add(o, head, head_len) | buf_str(o, forward_date_line());
	if (c->close_after)
		bad |= buf_str(o, "Connection: close\r\n");
	else if (c->http10)
		bad |= buf_str(o, "Connection: keep-alive\r\n");
	bad |= buf_str(o, "\r\n");
	if (!c->is_head)
		bad |= buf_add(o, body, body_len);
	if (bad) {
		client_close(c);
		return;
	}
	c->head_out = true;
	c->resp = (struct framing){ .mode = FRAME_LENGTH };
	c->resp_eof = true;
	flush_soon(c);
}

static void answer_view(struct client *c, const struct answer *a)
{
	answer_raw(c, a->head, a->head_len, a->body, a->body_len);
}

/* An error of ours: {"error":code,"message":...}, JSON-safe message. */
static void answer_error(struct client *c, unsigned status, const char *code,
			 const char *message)
{
	char body[700], head[256], clean[512];
	size_t k = 0;
	int n;

	for (const char *p = message; *p && k + 1 < sizeof(clean); p++)
		clean[k++] =
			(*p == '"' || *p == '\\' || (unsigned char)*p < 32) ?
				'\'' :
				*p;
	clean[k] = '\0';
	snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}\n",
		 code, clean);
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %u %s\r\nContent-Type: "
		     "application/json\r\nCache-Control: no-store\r\n"
		     "Content-Length: %zu\r\n",
		     status, forward_reason(status), strlen(body));
	answer_raw(c, head, (size_t)n, body, strlen(body));
}

/* The request is refused before its body could be framed: say why and
 * close. */
static void refuse(struct client *c, unsigned status, const char *code,
		   const char *message)
{
	char q[LOG_QUOTE_MAX];

	log_debug("bad_request", "client=%s status=%u why=%s", c->ip, status,
		  log_quote(q, sizeof(q), message));
	c->close_after = c->refused = true;
	c->body_done = true;
	c->phase = PH_OWN;
	c->progress_ms = loop_now_ms();
	answer_error(c, status, code, message);
}

/* Refused on reading it (request.h): the error code goes with the status. */
static void refuse_request(struct client *c, unsigned status, const char *why)
{
	refuse(c, status,
	       status == 505 ? "version_not_supported" :
	       status == 501 ? "not_implemented" :
	       status == 405 ? "method_not_allowed" :
	       status == 417 ? "expectation_failed" :
	       status == 431 ? "head_too_large" :
			       "bad_request",
	       why);
}

/* ---- writing ------------------------------------------------------------- */

/* The deadline that fits the phase. */
static void rearm(struct client *c)
{
	const struct gconf *conf = c->set->env->conf;

	switch (c->phase) {
	case PH_IDLE:
		c->deadline_ms = c->since_ms + conf->idle_timeout_ms;
		break;
	case PH_HEAD:
		c->deadline_ms = c->since_ms + conf->header_timeout_ms;
		break;
	case PH_OWN:
	case PH_PROXY:
		/* Waiting on the client (its body, or taking the answer), it
		 * must move something in time; waiting on the app, the
		 * exchange has its own timeouts. */
		c->deadline_ms =
			!c->blocked && c->body_done ?
				-1 :
				c->progress_ms +
					(c->refused ? LINGER_MS :
						      conf->client_timeout_ms);
		break;
	case PH_RELAY: c->deadline_ms = -1; break;
	case PH_LINGER: return; /* fixed when it began */
	}
	if (c->deadline_ms >= 0)
		loop_due(c->set->loop, c->deadline_ms);
}

static void set_interest(struct client *c)
{
	uint32_t ev = 0;

	if (c->closed || c->phase == PH_RELAY)
		return;
	if (!c->peer_eof && c->in.len < c->in.max)
		ev |= EPOLLIN;
	/* writable at once: the loop comes back for a pipelined request */
	if (c->blocked || c->ready)
		ev |= EPOLLOUT;
	loop_set(c->set->loop, &c->watch, ev);
	rearm(c);
}

/* The request and its answer are over. */
static void end_request(struct client *c)
{
	c->head_out = false;
	if (c->close_after || !c->keep_alive || c->set->draining || c->peer_eof)
		return linger(c);
	leave_request(c);
	give_rings(c);
	c->phase = PH_IDLE;
	c->since_ms = loop_now_ms();
	/* A pipelined request is taken on the next pass of the loop, not
	 * from here: a client cannot make the stack grow with requests. */
	c->ready = c->in.len > 0;
	set_interest(c);
}

/* Send what is ready; end the request when all of it is out. */
static void flush(struct client *c)
{
	size_t moved, pending = c->out.len - c->out.off + c->x.down.len;

	if (c->closed || !c->head_out)
		return;
	if (ring_send(c->watch.fd, &c->out, &c->x.down, &c->resp, c->resp_eof,
		      &c->blocked, &moved))
		return client_close(c);
	if (pending != c->out.len - c->out.off + c->x.down.len)
		c->progress_ms = loop_now_ms();
	if (moved && c->x.in_flight)
		upstream_recv(&c->x);
	if (c->resp_eof && framing_done(&c->resp, &c->out, &c->x.down, true)) {
		/* Answered before the whole body came: a small body of ours
		 * is still read and dropped; otherwise the rest is not read,
		 * and the connection closes. */
		if (!c->body_done && (c->phase != PH_OWN || c->close_after))
			c->close_after = true;
		else if (c->body_done)
			return end_request(c);
		if (c->close_after)
			return end_request(c);
	}
	set_interest(c);
}

static void flush_later(struct soon *s)
{
	struct client *c = (struct client *)((char *)s - offsetof(struct client,
								  send_soon));

	flush(c);
}

/* What is ready goes out at the end of the pass (loop.h). */
static void flush_soon(struct client *c)
{
	if (!c->closed && c->head_out)
		loop_soon(c->set->loop, &c->send_soon);
}

/* ---- reading the body ---------------------------------------------------- */

/* Feed the parser what fits where the body goes. */
static void feed_body(struct client *c)
{
	bool proxying = c->phase == PH_PROXY && c->x.in_flight && !c->discard;
	size_t before = c->x.up.len, n;
	const char *why;

	if (c->body_done || !c->in.len || c->closed)
		return;
	n = c->in.len;
	if (proxying && n > ring_room(&c->x.up))
		n = ring_room(
			&c->x.up); /* decoded bytes never exceed raw ones */
	if (!n)
		return;
	if ((why = request_body(c, n))) {
		if (c->x.in_flight)
			upstream_abort(&c->x);
		if (c->head_out) /* an answer has begun: it cannot be whole */
			return client_close(c);
		c->discard = true;
		return refuse(c, 400, "bad_request", why);
	}
	if (proxying) {
		c->x.up_eof = c->body_done;
		if (c->x.up.len > before || c->body_done)
			upstream_send(&c->x);
	}
}

/* ---- the request: answer, or proxy --------------------------------------- */

static bool path_is(const char *target, const char *path)
{
	size_t n = strlen(path);

	return !strncmp(target, path, n) &&
	       (target[n] == '\0' || target[n] == '?');
}

static bool wants_html(const struct client *c)
{
	const char *accept = fields_get(&c->fields, "Accept", NULL);

	return accept && strstr(accept, "text/html");
}

/* An answer of the gate's own; the body, if any, is read and dropped when
 * small, else the connection closes after the answer. */
static void answer_own(struct client *c, const struct answer *a)
{
	c->phase = PH_OWN;
	c->progress_ms = loop_now_ms();
	c->discard = true;
	if (!c->body_done && (c->expect || (c->parser.flags & F_CHUNKED) ||
			      c->parser.content_length > DISCARD_MAX))
		c->close_after = true;
	answer_view(c, a);
	if (!c->closed && c->phase == PH_OWN)
		feed_body(c);
}

/* RFC 9110 9.2.2: a request that may go to the app twice. */
static bool idempotent(enum http_method m)
{
	return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS ||
	       m == HTTP_TRACE || m == HTTP_PUT || m == HTTP_DELETE;
}

static void start_proxy(struct client *c, bool upgrade)
{
	struct gate_env *env = c->set->env;
	struct exchange *x = &c->x;
	struct forward_request q = {
		.method = http_method_str((enum http_method)c->parser.method),
		.target = c->target.p,
		.fields = &c->fields,
		.peer_ip = c->ip,
		.body = request_has_body(c),
		.chunked = c->parser.flags & F_CHUNKED,
		.length = c->parser.content_length,
		.upgrade = upgrade,
	};

	c->phase = PH_PROXY;
	c->progress_ms = loop_now_ms();
	if (take_rings(c))
		return refuse(c, 500, "internal", "out of memory");
	x->out.max = 2 * (size_t)env->conf->head_max + 4096;
	if (forward_request_head(&x->out, &q, &env->fwd))
		return refuse(c, 431, "head_too_large",
			      "the request head grows past the gate's limit "
			      "with the proxy's headers");
	x->ops = &exchange_ops;
	x->owner = c;
	x->uri = c->target.p;
	x->upgrade = upgrade;
	x->is_head = c->is_head;
	x->idempotent = idempotent((enum http_method)c->parser.method);
	x->up_eof = c->body_done;
	x->framing = (struct framing){
		.mode = q.body && q.chunked ? FRAME_CHUNKED : FRAME_LENGTH,
		.left = q.body && !q.chunked ? q.length : 0,
	};
	x->head.max = BUF_MAX;
	if (c->expect) {
		/* Asked to wait for a go-ahead: the gate gives it itself. */
		static const char go[] = "HTTP/1.1 100 Continue\r\n\r\n";

		if (send(c->watch.fd, go, sizeof(go) - 1,
			 MSG_NOSIGNAL | MSG_DONTWAIT) !=
		    (ssize_t)sizeof(go) - 1)
			return client_close(c);
	}
	upstream_start(c->set->pool, x);
	if (!c->closed && c->phase == PH_PROXY)
		feed_body(c);
	if (!c->closed && c->phase == PH_PROXY)
		set_interest(c);
}

/* The head is whole, parsed and checked: answer, or proxy. */
static void decide(struct client *c)
{
	const struct gate_view *v = gstate_view(c->set->env->state);
	bool upgrade;

	/* An upgrade with a body is proxied as a plain request. */
	upgrade = c->parser.upgrade && !request_has_body(c) && !c->http10;
	if (path_is(c->target.p, WELL_KNOWN))
		return answer_own(c, &v->state_json);
	if (path_is(c->target.p, WELL_KNOWN "/check"))
		return answer_own(c, &v->check);
	/* Locked, a pass path reaches the app only as a plain request: a
	 * tunnel would reach every path. */
	if (v->open || (!upgrade && gstate_passes(v, c->target.p)))
		return start_proxy(c, upgrade);
	answer_own(c, wants_html(c) ? &v->locked_html : &v->locked_json);
}

/* A request's head is whole in `in` (len bytes): it begins. */
static void begin_request(struct client *c, size_t len)
{
	const char *why;
	unsigned status;

	c->discard = c->close_after = c->refused = false;
	c->in_request = true;
	atomic_fetch_add(&c->set->env->busy, 1);
	if ((why = request_parse(c, len, &status)))
		return refuse_request(c, status, why);
	decide(c);
}

/* Do what the bytes in `in` allow. */
static void process(struct client *c)
{
	const char *why;
	unsigned status;
	size_t len;

	switch (c->phase) {
	case PH_IDLE:
		if (!c->in.len)
			break;
		c->phase = PH_HEAD;
		c->since_ms = loop_now_ms();
		/* fall through */
	case PH_HEAD:
		switch (request_scan(c, &len, &status, &why)) {
		case 1: begin_request(c, len); return;
		case -1: refuse_request(c, status, why); return;
		}
		break;
	case PH_OWN:
	case PH_PROXY:
		feed_body(c);
		if (c->closed)
			return;
		if (c->phase == PH_OWN && c->body_done && c->resp_eof &&
		    framing_done(&c->resp, &c->out, &c->x.down, true))
			return end_request(
				c); /* the dropped body was the last */
		break;
	case PH_LINGER:
		c->lingered += c->in.len;
		c->in.len = 0;
		if (c->lingered > LINGER_BYTES)
			return client_close(c);
		break;
	case PH_RELAY: return;
	}
	set_interest(c);
}

/* ---- events ------------------------------------------------------------- */

static void on_readable(struct client *c)
{
	ssize_t k;

	if (c->in.len == c->in.cap && c->in.cap < c->in.max) {
		size_t want = c->in.cap * 2 < c->in.max ? c->in.cap * 2 :
							  c->in.max;
		char *p = realloc(c->in.p, want);

		if (!p)
			return client_close(c);
		c->in.p = p;
		c->in.cap = want;
	}
	if (c->in.len == c->in.cap)
		return set_interest(c); /* full: read again once parsed */
	k = recv(c->watch.fd, c->in.p + c->in.len, c->in.cap - c->in.len,
		 MSG_DONTWAIT);
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k <= 0) {
		c->peer_eof = true;
		/* Before a request, or in its middle, there is nobody left
		 * to answer; after it, the answer still goes out. */
		if (c->phase == PH_IDLE || c->phase == PH_HEAD ||
		    c->phase == PH_LINGER || k < 0 || !c->body_done)
			return client_close(c);
		return set_interest(c);
	}
	c->in.len += (size_t)k;
	c->progress_ms = loop_now_ms();
	process(c);
}

static void on_event(struct watch *w, uint32_t events)
{
	struct client *c = (struct client *)w;

	if (c->phase == PH_RELAY)
		return relay_client_event(&c->relay, events);
	if (c->ready) {
		c->ready = false;
		process(c);
		if (c->closed || c->phase == PH_RELAY)
			return;
	}
	if (events & EPOLLOUT) {
		flush(c);
		if (c->closed)
			return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		on_readable(c);
}

void clients_add(struct clients *s, int fd, const struct sockaddr *sa,
		 socklen_t len)
{
	struct client *c = calloc(1, sizeof(*c));
	const void *addr;
	int one = 1;

	if (!c) {
		admit_put(s->env->admit, sa);
		close(fd);
		return;
	}
	/* What the gate sends leaves at once: an answer that goes out in
	 * two writes (an app that sends its head, then its body) would
	 * otherwise wait for the client's delayed ACK, 40 ms each (Nagle).
	 * The answers are whole writes already; this only removes the wait. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->watch = (struct watch){ .fd = fd,
				   .fn = on_event,
				   .release = client_release };
	c->send_soon.fn = flush_later;
	c->set = s;
	memcpy(&c->peer, sa, len < sizeof(c->peer) ? len : sizeof(c->peer));
	addr = sa->sa_family == AF_INET6 ?
		       (const void *)&((const struct sockaddr_in6 *)sa)
			       ->sin6_addr :
		       (const void *)&((const struct sockaddr_in *)sa)
			       ->sin_addr;
	if (!inet_ntop(sa->sa_family, addr, c->ip, sizeof(c->ip)))
		snprintf(c->ip, sizeof(c->ip), "unknown");
	c->in.max = (size_t)s->env->conf->head_max + IN_SLACK;
	c->in.cap = IN_FIRST < c->in.max ? IN_FIRST : c->in.max;
	c->in.p = malloc(c->in.cap);
	c->target.max = (size_t)s->env->conf->head_max + 1;
	c->fields.max = (size_t)s->env->conf->head_max + 1024;
	c->out.max = OUT_MAX;
	/* A new connection must send its first request as soon as a head
	 * would be due, not as late as an idle keep-alive one. */
	c->phase = PH_HEAD;
	c->since_ms = c->progress_ms = loop_now_ms();
	c->relay.loop = s->loop;
	list_add(s, c);
	if (!c->in.p)
		return client_close(c);
	set_interest(c);
}

/* ---- the exchange's callbacks ------------------------------------------- */

static void relay_over(struct relay *r)
{
	struct client *c =
		(struct client *)((char *)r - offsetof(struct client, relay));

	client_close(c);
}

/* The 101 and what followed it go to the client through the relay. */
static void switch_to_relay(struct client *c)
{
	struct exchange *x = &c->x;
	bool chunked, close = false;
	struct forward_response s = {
		.status = 101, .fields = &x->head, .length = -1, .upgrade = true
	};
	size_t rest = x->down.len;
	char *after = rest ? malloc(rest) : NULL;
	int fd;

	if ((rest && !after) ||
	    forward_response_head(&c->out, &s, &c->set->env->fwd, &chunked,
				  &close) ||
	    c->out.len + rest > x->down.cap) {
		free(after);
		return client_close(c);
	}
	ring_take(&x->down, after, rest);
	ring_put(&x->down, c->out.p, c->out.len);
	ring_put(&x->down, after, rest);
	free(after);
	c->out.len = c->out.off = 0;
	/* What the client sent after its head is the new protocol's. */
	c->in.len -= ring_put(&x->up, c->in.p, c->in.len);
	fd = upstream_detach(x);
	if (fd < 0 || c->in.len)
		return client_close(c);
	leave_request(c);
	c->phase = PH_RELAY;
	/* Checked against the relay's last move when due (see
	 * clients_deadlines): a tunnel idle for timeouts.idle is closed. */
	c->deadline_ms = loop_now_ms() + c->set->env->conf->idle_timeout_ms;
	loop_due(c->set->loop, c->deadline_ms);
	c->relay.client = &c->watch;
	c->relay.up = &x->up;
	c->relay.down = &x->down;
	c->relay.uri = c->target.p;
	c->relay.over = relay_over;
	relay_start(&c->relay, fd);
}

static void on_head(struct exchange *x)
{
	struct client *c = x->owner;
	bool chunked;
	struct forward_response s = {
		.status = x->status,
		.fields = &x->head,
		.length = x->resp_length,
		.head_request = c->is_head,
		.http10 = c->http10,
	};

	if (x->status == 101)
		return switch_to_relay(c);
	if (c->set->draining || !c->keep_alive || c->peer_eof)
		c->close_after = true;
	if (forward_response_head(&c->out, &s, &c->set->env->fwd, &chunked,
				  &c->close_after)) {
		upstream_abort(x);
		return refuse(c, 502, "bad_gateway",
			      "the upstream's response "
			      "head is too big");
	}
	c->head_out = true;
	c->resp_eof = false;
	if (c->is_head || x->status == 204 || x->status == 304)
		c->resp = (struct framing){ .mode = FRAME_LENGTH };
	else if (chunked)
		c->resp = (struct framing){ .mode = FRAME_CHUNKED };
	else if (x->resp_length >= 0)
		c->resp = (struct framing){
			.mode = FRAME_LENGTH,
			.left = (unsigned long long)x->resp_length
		};
	else
		c->resp = (struct framing){ .mode = FRAME_RAW };
	flush_soon(c);
}

static void on_body(struct exchange *x)
{
	flush_soon(x->owner);
}

static void on_room(struct exchange *x)
{
	struct client *c = x->owner;

	process(c);
}

static void on_done(struct exchange *x, unsigned status, const char *why)
{
	struct client *c = x->owner;
	char msg[600];
	const struct gconf *conf = c->set->env->conf;

	if (!why) {
		c->resp_eof = true;
		return flush_soon(c);
	}
	if (c->head_out)
		return client_close(
			c); /* cut: a short body never looks whole */
	if (!c->body_done)
		c->close_after = true;
	c->discard = true;
	if (status == 504) {
		snprintf(msg, sizeof(msg),
			 "the upstream %s sent no response "
			 "within %lld ms",
			 conf->upstream, (long long)conf->upstream_timeout_ms);
		return answer_error(c, 504, "upstream_timeout", msg);
	}
	snprintf(msg, sizeof(msg), "the upstream %s failed: %s", conf->upstream,
		 why);
	answer_error(c, status ? status : 502,
		     status == 503 ? "stopping" : "bad_gateway", msg);
}

static const struct upstream_ops exchange_ops = {
	.head = on_head,
	.body = on_body,
	.room = on_room,
	.done = on_done,
};

/* ---- the set's upkeep ---------------------------------------------------- */

bool clients_evict(struct clients *s)
{
	struct client *best = NULL;

	for (struct client *c = s->first; c; c = c->next) {
		bool head = c->phase == PH_HEAD, idle = c->phase == PH_IDLE;

		if (!head && !idle && c->phase != PH_LINGER)
			continue;
		/* A lingering close first, then a head still arriving, then
		 * an idle connection; the oldest of each. */
		if (!best || c->phase > best->phase ||
		    (c->phase == best->phase && c->since_ms < best->since_ms))
			best = c;
	}
	if (!best)
		return false;
	log_debug("evicted", "client=%s phase=%d", best->ip, (int)best->phase);
	client_close(best);
	return true;
}

long long clients_deadlines(struct clients *s, long long now)
{
	long long next = -1;

	for (struct client *c = s->first, *after; c; c = after) {
		after = c->next;
		if (c->deadline_ms < 0)
			continue;
		if (c->phase == PH_RELAY && c->relay.running &&
		    now < c->relay.moved_ms +
				    c->set->env->conf->idle_timeout_ms)
			c->deadline_ms = c->relay.moved_ms +
					 c->set->env->conf->idle_timeout_ms;
		if (now < c->deadline_ms) {
			if (next < 0 || c->deadline_ms < next)
				next = c->deadline_ms;
			continue;
		}
		if (c->phase == PH_HEAD && c->in.len) {
			/* The answer gets its moment, then the connection goes.
			 */
			refuse(c, 408, "request_timeout",
			       "the request head did not "
			       "arrive within timeouts.header");
			if (!c->closed && (next < 0 || c->deadline_ms < next))
				next = c->deadline_ms;
		} else {
			client_close(c);
		}
	}
	return next;
}

void clients_drain(struct clients *s)
{
	s->draining = true;
	for (struct client *c = s->first, *after; c; c = after) {
		after = c->next;
		if (c->phase == PH_IDLE || c->phase == PH_HEAD)
			client_close(c);
		else
			c->close_after = true;
	}
}

void clients_close_all(struct clients *s)
{
	while (s->first)
		client_close(s->first);
	while (s->n_spare--) {
		free(s->spare[s->n_spare][0]);
		free(s->spare[s->n_spare][1]);
	}
	s->n_spare = 0;
}
