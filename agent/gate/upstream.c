/*
 * upstream: the app's side of a proxied request (see upstream.h).
 *
 * The request head (built by the owner in x->out) and the body (the `up`
 * ring, framed as chunks when it goes chunked) leave with one sendmsg when
 * they can. Each response is parsed by http-parser, whose callbacks only
 * file the head's fields in x->head and the body in the `down` ring;
 * reads never take more than the ring has room for, so a body cannot
 * overrun it: when `down` is full the connection stops reading until the
 * owner drains it. The owner hears of what a read brought after the
 * parser returns.
 *
 * Connections are registered in the worker's epoll set for their whole
 * life, pooled or busy, so a request costs no epoll_ctl here; a pooled
 * connection that turns readable (the app closed it) is closed at once.
 * Upgrades get a fresh connection that is never pooled.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "upstream.h"

#define READ_MAX    (64 * 1024) /* one recv at most */
#define RESOLVE_TTL 30000       /* ms a resolved upstream address is used */

struct uconn {
	struct watch watch; /* first: the loop's events name it */
	struct upstream_pool *pool;
	bool connecting;    /* the non-blocking connect runs */
	bool reused;        /* it served a request before */
	size_t addr;        /* the address it connects to */
	struct exchange *x; /* NULL: pooled */
	struct uconn *next; /* the pool */
};

static const http_parser_settings settings;
static void on_event(struct watch *wt, uint32_t events);

/* ---- connections ------------------------------------------------------- */

static void uconn_release(struct watch *wt)
{
	free(wt);
}

static void conn_close(struct uconn *c)
{
	if (c->x && c->x->uc == c)
		c->x->uc = NULL;
	c->x = NULL;
	loop_retire(c->pool->loop, &c->watch);
}

static void pool_unlink(struct upstream_pool *p, struct uconn *c)
{
	for (struct uconn **pp = &p->idle; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			p->n_idle--;
			return;
		}
}

/* The exchange on c is over and the connection can serve another. */
static void pool_put(struct uconn *c)
{
	struct upstream_pool *p = c->pool;

	if (c->x)
		c->x->uc = NULL;
	c->x = NULL;
	if (p->n_idle >= (size_t)p->conf->upstream_idle)
		return conn_close(c);
	c->reused = true;
	loop_set(p->loop, &c->watch, EPOLLIN); /* now: the app closed it */
	c->next = p->idle;
	p->idle = c;
	p->n_idle++;
}

void upstream_pool_init(struct upstream_pool *p, struct loop *loop,
			const struct gconf *conf)
{
	memset(p, 0, sizeof(*p));
	p->loop = loop;
	p->conf = conf;
}

void upstream_pool_close(struct upstream_pool *p)
{
	while (p->idle) {
		struct uconn *c = p->idle;

		pool_unlink(p, c);
		conn_close(c);
	}
}

/* The upstream's addresses, looked up again every RESOLVE_TTL. The lookup
 * blocks this thread; it is rare (connections are pooled), and a numeric
 * host costs nothing. */
static int resolve(struct upstream_pool *p, char *err, size_t errlen)
{
	const struct gconf *c = p->conf;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *res, *ai;
	int rc;

	if (p->n_addrs && loop_now_ms() < p->addrs_until)
		return 0;
	rc = getaddrinfo(c->upstream_host, c->upstream_port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "cannot resolve %s: %s", c->upstream_host,
			 gai_strerror(rc));
		return -1;
	}
	p->n_addrs = 0;
	for (ai = res; ai && p->n_addrs < UPSTREAM_ADDRS_MAX;
	     ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(p->addrs[0]))
			continue;
		memcpy(&p->addrs[p->n_addrs], ai->ai_addr, ai->ai_addrlen);
		p->addr_lens[p->n_addrs++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	p->addrs_until = loop_now_ms() + RESOLVE_TTL;
	if (!p->n_addrs) {
		snprintf(err, errlen, "no address for %s", c->upstream_host);
		return -1;
	}
	return 0;
}

/* A new connection for x, to the first address from `first` that takes a
 * non-blocking connect; -1 with the reason in err. */
static int conn_open(struct upstream_pool *p, struct exchange *x, size_t first,
		     char *err, size_t errlen)
{
	int fd = -1, one = 1, e = 0;
	size_t i;
	struct uconn *c;

	if (resolve(p, err, errlen))
		return -1;
	for (i = first; i < p->n_addrs; i++) {
		const struct sockaddr *sa =
			(const struct sockaddr *)&p->addrs[i];

		fd = socket(sa->sa_family,
			    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!connect(fd, sa, p->addr_lens[i]) || errno == EINPROGRESS)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	if (fd < 0 || !(c = calloc(1, sizeof(*c)))) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "connect to %s:%s: %s",
			 p->conf->upstream_host, p->conf->upstream_port,
			 strerror(fd < 0 ? e : ENOMEM));
		return -1;
	}
	c->watch = (struct watch){ .fd = fd,
				   .fn = on_event,
				   .release = uconn_release };
	c->pool = p;
	c->addr = i;
	c->connecting = true;
	c->x = x;
	x->uc = c;
	loop_set(p->loop, &c->watch, EPOLLIN | EPOLLOUT);
	return 0;
}

/* ---- the end of an exchange ------------------------------------------- */

static void list_remove(struct exchange *x)
{
	struct upstream_pool *p = x->pool;

	if (x->prev)
		x->prev->next = x->next;
	else if (p->active == x)
		p->active = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

/* Out of flight: its connection closed (unless already given back). */
static void leave(struct exchange *x)
{
	if (x->uc)
		conn_close(x->uc);
	if (x->in_flight)
		list_remove(x);
	x->in_flight = false;
}

/* The exchange is over; the owner hears it last. why: NULL on success. */
static void finish(struct exchange *x, unsigned status, const char *why)
{
	const struct upstream_ops *ops = x->ops;

	leave(x);
	if (why) {
		char q[LOG_QUOTE_MAX], e[LOG_QUOTE_MAX];

		log_warn("upstream_failed", "uri=%s status=%u error=%s",
			 log_quote(q, sizeof(q), x->uri),
			 x->head_done ? 0 : status,
			 log_quote(e, sizeof(e), why));
	}
	ops->done(x, status, why);
}

void upstream_abort(struct exchange *x)
{
	leave(x);
}

int upstream_detach(struct exchange *x)
{
	struct uconn *c = x->uc;
	int fd;

	if (!c)
		return -1;
	loop_set(c->pool->loop, &c->watch, 0);
	fd = c->watch.fd;
	c->watch.fd = -1; /* the owner's now: retiring does not close it */
	conn_close(c);
	if (x->in_flight)
		list_remove(x);
	x->in_flight = false;
	return fd;
}

static void send_some(struct exchange *x);
static void send_soon(struct exchange *x);
static void send_later(struct soon *s);

/* Begin again on another connection: the one it had died before any
 * answer, and nothing but the head has left (it is sent again). */
static void attach(struct exchange *x)
{
	struct upstream_pool *p = x->pool;
	char err[300];

	x->out.off = 0;
	x->sent = x->resp_started = false;
	http_parser_init(&x->parser, HTTP_RESPONSE);
	x->parser.data = x;
	if (!x->upgrade && p->idle) {
		struct uconn *c = p->idle;

		pool_unlink(p, c);
		c->x = x;
		x->uc = c;
		return send_soon(x);
	}
	if (conn_open(p, x, 0, err, sizeof(err)))
		return finish(x, 502, err);
	loop_due(p->loop, loop_now_ms() + p->conf->connect_timeout_ms);
}

void upstream_start(struct upstream_pool *p, struct exchange *x)
{
	x->pool = p;
	x->send_soon.fn = send_later;
	x->in_flight = true;
	x->head.len = 0;
	x->head_done = x->complete = x->switched = x->interim = false;
	x->bad_byte = false;
	x->recv_paused = false;
	x->framing.keep_out = true; /* sent again on a retry */
	x->status = 0;
	x->resp_length = -1;
	x->prev = NULL;
	x->next = p->active;
	if (p->active)
		p->active->prev = x;
	p->active = x;
	x->deadline_ms = loop_now_ms() + p->conf->upstream_timeout_ms;
	loop_due(p->loop, x->deadline_ms);
	attach(x);
}

/* A failure on x's connection (err: an errno, 0 for an early close). */
static void conn_failed(struct exchange *x, int err)
{
	struct uconn *c = x->uc;
	char why[300];

	/* The app may have read the request and acted on it before it
	 * closed: only a request that means the same sent twice goes again. */
	if (c && c->reused && x->idempotent && !x->resp_started &&
	    !x->framing.started && !x->head_done) {
		log_debug("upstream_retry", "uri=%.200s error=%s", x->uri,
			  err ? strerror(err) : "closed");
		conn_close(c);
		return attach(x);
	}
	snprintf(why, sizeof(why), "%s",
		 !err ? "the upstream closed the "
			"connection" :
			strerror(err));
	finish(x, 502, why);
}

/* ---- sending ------------------------------------------------------------ */

/* Send what can go; then wait for the socket, the body, or the answer. */
static void send_some(struct exchange *x)
{
	struct uconn *c = x->uc;
	bool blocked, half = ring_room(&x->up) < x->up.cap / 2, room;
	size_t moved;

	if (!c || c->connecting || x->sent || x->switched)
		return;
	if (ring_send(c->watch.fd, &x->out, &x->up, &x->framing, x->up_eof,
		      &blocked, &moved))
		return conn_failed(x, errno);
	if (!x->head_done) /* the head is due timeouts.upstream after the
			    * request's last byte left */
		x->deadline_ms =
			loop_now_ms() + x->pool->conf->upstream_timeout_ms;
	room = half && ring_room(&x->up) >= x->up.cap / 2;
	x->sent = framing_done(&x->framing, &x->out, &x->up, x->up_eof);
	(void)moved;
	loop_set(x->pool->loop, &c->watch,
		 (x->recv_paused ? 0u : EPOLLIN) | (blocked ? EPOLLOUT : 0u));
	if (room && !x->sent)
		x->ops->room(x);
}

static void send_later(struct soon *s)
{
	struct exchange *x =
		(struct exchange *)((char *)s -
				    offsetof(struct exchange, send_soon));

	if (x->in_flight)
		send_some(x);
}

/* What is ready goes at the end of the pass (loop.h). */
static void send_soon(struct exchange *x)
{
	loop_soon(x->pool->loop, &x->send_soon);
}

void upstream_send(struct exchange *x)
{
	/* Also after an early answer: the rest of the body may still go. */
	if (x->in_flight && x->uc)
		send_soon(x);
}

/* ---- receiving ---------------------------------------------------------- */

static void stall_deadline(struct exchange *x)
{
	long long stall = x->pool->conf->stall_timeout_ms;

	x->deadline_ms = stall && !x->recv_paused ? loop_now_ms() + stall : -1;
	if (x->deadline_ms >= 0)
		loop_due(x->pool->loop, x->deadline_ms);
}

/* The response ended: keep the connection for another if it can. */
static void complete(struct exchange *x, bool clean)
{
	struct uconn *c = x->uc;

	/* A request whose body did not wholly leave leaves the app waiting
	 * for the rest: that connection is never used again. */
	if (c && clean && x->sent && !x->upgrade &&
	    http_should_keep_alive(&x->parser))
		pool_put(c);
	finish(x, 0, NULL);
}

/* Tell the owner what the bytes just parsed brought; false once x is no
 * longer in flight (the owner may have given it up). */
static bool report(struct exchange *x, size_t before)
{
	if (x->head_new) {
		x->head_new = false;
		x->ops->head(x);
		if (!x->in_flight)
			return false;
	}
	if (x->down.len > before || (x->down.len && x->complete)) {
		x->ops->body(x);
		if (!x->in_flight)
			return false;
	}
	return true;
}

static void read_some(struct exchange *x)
{
	char buf[READ_MAX];
	size_t room = ring_room(&x->down), parsed, before = x->down.len;
	ssize_t k;
	enum http_errno e;

	x->recv_paused = !room;
	if (!room) {
		x->deadline_ms = -1; /* the client is slow, not the upstream */
		return loop_set(x->pool->loop, &x->uc->watch,
				x->uc->watch.events & ~(uint32_t)EPOLLIN);
	}
	k = recv(x->uc->watch.fd, buf, room < sizeof(buf) ? room : sizeof(buf),
		 0);
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k < 0)
		return conn_failed(x, errno);
	if (k > 0)
		x->resp_started = true;
	if (x->head_done)
		stall_deadline(x);
	parsed = http_parser_execute(&x->parser, &settings, buf, (size_t)k);
	e = HTTP_PARSER_ERRNO(&x->parser);
	if (x->switched && x->parser.upgrade && e == HPE_OK) {
		ring_put(&x->down, buf + parsed, (size_t)k - parsed);
		x->deadline_ms = -1;
		loop_set(x->pool->loop, &x->uc->watch, 0);
		x->head_new = false;
		x->ops->head(x); /* the owner detaches the socket */
		return;
	}
	if (!report(x, before))
		return;
	if (x->complete)
		return complete(x, parsed == (size_t)k);
	if (!k && e == HPE_OK)
		return conn_failed(x, 0);
	if (e != HPE_OK) {
		char why[200];

		snprintf(why, sizeof(why), "%s",
			 x->bad_byte ? "a control byte "
				       "in the response head" :
			 e == HPE_CB_header_field || e == HPE_CB_header_value ?
				       "the response head is too big" :
			 e == HPE_CB_headers_complete ?
				       "a switch of protocols "
				       "nobody asked for" :
				       http_errno_description(e));
		finish(x, 502, why);
	}
}

void upstream_recv(struct exchange *x)
{
	struct uconn *c = x->uc;

	if (!x->in_flight || !c || !x->head_done || x->switched)
		return;
	if (!x->recv_paused)
		return;
	x->recv_paused = false;
	loop_set(x->pool->loop, &c->watch, c->watch.events | EPOLLIN);
	stall_deadline(x);
}

/* The non-blocking connect is over: send, or try the next address. */
static void connected(struct uconn *c)
{
	struct upstream_pool *p = c->pool;
	struct exchange *x = c->x;
	int err = 0;
	socklen_t len = sizeof(err);
	char why[300];

	if (getsockopt(c->watch.fd, SOL_SOCKET, SO_ERROR, &err, &len))
		err = errno;
	if (!err) {
		c->connecting = false;
		return send_some(x);
	}
	conn_close(c);
	if (c->addr + 1 < p->n_addrs &&
	    !conn_open(p, x, c->addr + 1, why, sizeof(why)))
		return;
	snprintf(why, sizeof(why), "connect to %s:%s: %s",
		 p->conf->upstream_host, p->conf->upstream_port, strerror(err));
	finish(x, 502, why);
}

static void on_event(struct watch *wt, uint32_t events)
{
	struct uconn *c = (struct uconn *)wt;
	struct exchange *x = c->x;

	if (!x) { /* pooled: the app closed it, or sent what nobody asked */
		pool_unlink(c->pool, c);
		return conn_close(c);
	}
	if (c->connecting)
		return connected(c);
	if (events & EPOLLOUT) {
		send_some(x);
		if (x->uc != c || !x->in_flight)
			return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		read_some(x);
}

/* ---- deadlines ---------------------------------------------------------- */

long long upstream_deadlines(struct upstream_pool *p, long long now)
{
	const struct gconf *conf = p->conf;
	long long next = -1;

	for (struct exchange *x = p->active, *after; x; x = after) {
		struct uconn *c = x->uc;
		long long due = x->deadline_ms, conn_due = -1;
		char why[400];

		after = x->next;
		if (c && c->connecting)
			conn_due = x->deadline_ms - conf->upstream_timeout_ms +
				   conf->connect_timeout_ms;
		if (conn_due >= 0 && now >= conn_due && conn_due < due) {
			snprintf(why, sizeof(why),
				 "connect to %s:%s: timed out "
				 "after %lld ms",
				 conf->upstream_host, conf->upstream_port,
				 (long long)conf->connect_timeout_ms);
			finish(x, 502, why);
		} else if (due >= 0 && now >= due) {
			finish(x, 504,
			       x->head_done ? "the upstream stalled mid-body" :
					      "no response head in time");
		} else {
			if (conn_due >= 0 && conn_due < due)
				due = conn_due;
			if (due >= 0 && (next < 0 || due < next))
				next = due;
		}
	}
	return next;
}

/* ---- http-parser's callbacks --------------------------------------------- */

static int on_message_begin(http_parser *hp)
{
	struct exchange *x = hp->data;

	x->head.len = 0;
	x->field_state = 0;
	return 0;
}

/* A control byte (but HT) in a field: http-parser does not look at a
 * value's first byte, and a NUL would split the pairs below. */
static bool has_control(struct exchange *x, const char *at, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)at[i] < 0x20 && at[i] != '\t') ||
		    at[i] == 0x7f)
			return x->bad_byte = true;
	return false;
}

/* The head's fields as "name\0value\0" pairs; a field or value may come
 * in pieces, across reads. */
static int on_field(http_parser *hp, const char *at, size_t n)
{
	struct exchange *x = hp->data;

	if (has_control(x, at, n))
		return -1;
	if (x->field_state == 2 && buf_add(&x->head, "", 1))
		return -1; /* ends the value before */
	x->field_state = 1;
	return buf_add(&x->head, at, n);
}

static int on_value(http_parser *hp, const char *at, size_t n)
{
	struct exchange *x = hp->data;

	if (has_control(x, at, n))
		return -1;
	if (x->field_state == 1 && buf_add(&x->head, "", 1))
		return -1; /* ends the name */
	x->field_state = 2;
	return buf_add(&x->head, at, n);
}

static int on_headers_complete(http_parser *hp)
{
	struct exchange *x = hp->data;
	unsigned status = hp->status_code;

	if ((x->field_state == 1 && buf_add(&x->head, "\0", 2)) ||
	    (x->field_state == 2 && buf_add(&x->head, "", 1)))
		return -1;
	x->field_state = 0;
	if (status == 101 && !x->upgrade)
		return -1;
	if (status < 200 && status != 101) {
		/* 100 Continue, 103 Early Hints: skipped. 1: a 1xx has no
		 * body whatever its head says (RFC 9110 15.2); what follows
		 * is the final response, not bytes of this one. */
		x->interim = true;
		return 1;
	}
	x->resp_length = (hp->flags & F_CHUNKED) ||
					 hp->content_length == ULLONG_MAX ?
				 -1 :
				 (long long)hp->content_length;
	x->status = status;
	x->head_done = x->head_new = true;
	if (status == 101) {
		/* 2: no body, and what follows the head is the relay's (the
		 * parser stops right after it). */
		x->switched = true;
		return 2;
	}
	stall_deadline(x);
	/* 1: no body, whatever the head says (RFC 9110 6.4.1). */
	return x->is_head || status == 204 || status == 304 ? 1 : 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
	struct exchange *x = hp->data;

	/* reads are sized to fit: a body cannot overrun the ring */
	return ring_put(&x->down, at, n) == n ? 0 : -1;
}

static int on_message_complete(http_parser *hp)
{
	struct exchange *x = hp->data;

	if (x->interim) {
		x->interim = false;
		return 0;
	}
	if (x->switched)
		return 0; /* the 101 */
	x->complete = true;
	http_parser_pause(hp, 1); /* anything after it is not ours */
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};
