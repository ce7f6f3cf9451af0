/*
 * fetch: the upstream side of a proxied request, an HTTP/1.1 exchange on
 * a keep-alive connection from the worker's pool, run on the worker's
 * epoll loop (see worker.h).
 *
 * The request head (built by proxy.c in r->out) and the body (the `up`
 * ring, framed as chunks when the client sent it chunked) leave with one
 * sendmsg when they can. The response is parsed by http-parser (nodejs):
 * its callbacks file the head's fields in r->head and the body bytes in
 * the `down` ring; nothing here parses HTTP by hand. Reads never take more
 * than the ring has room for, so a body cannot overrun it: when `down` is
 * full the connection stops reading until the client side drains it.
 *
 * A pooled connection can die between two requests (the app closed it as
 * we sent). A request that failed that way before any response byte, and
 * before any of its body left, is sent again on another connection; any
 * other failure before the response head is a 502 (504 past
 * timeouts.upstream), and one after it cuts the client's connection.
 *
 * Upgrades get a fresh connection that is never pooled: after the 101
 * head the parser stops, and the relay (relay.c) takes the socket.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "worker.h"

#define READ_MAX      (64 * 1024)  /* one recv at most */
#define RESOLVE_TTL   30000        /* ms a resolved upstream address is used */

static const http_parser_settings settings;

/* ---- connections ------------------------------------------------------- */

static void set_events(struct worker *w, struct uconn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->dead || c->events == events)
		return;
	if (epoll_ctl(w->epfd, !c->events ? EPOLL_CTL_ADD
			       : events ? EPOLL_CTL_MOD : EPOLL_CTL_DEL,
		      c->fd, &ev))
		log_warn("epoll_failed", "fd=%d error=%s", c->fd,
			 strerror(errno));
	c->events = events;
}

/* Closed now, freed after this batch of events (one may still name it). */
static void conn_close(struct worker *w, struct uconn *c)
{
	if (c->dead)
		return;
	if (c->r && c->r->uc == c)
		c->r->uc = NULL;
	c->r = NULL;
	close(c->fd);
	c->fd = -1;
	c->dead = true;
	c->next = w->dead;
	w->dead = c;
}

void fetch_reap(struct worker *w)
{
	while (w->dead) {
		struct uconn *c = w->dead;

		w->dead = c->next;
		free(c);
	}
}

static void pool_unlink(struct worker *w, struct uconn *c)
{
	for (struct uconn **p = &w->idle; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			w->n_idle--;
			return;
		}
}

/* The exchange on c is over and the connection can serve another. */
static void pool_put(struct worker *w, struct uconn *c)
{
	if (c->r)
		c->r->uc = NULL;
	c->r = NULL;
	if (w->n_idle >= (size_t)w->server->conf->upstream_idle) {
		conn_close(w, c);
		return;
	}
	c->reused = true;
	set_events(w, c, EPOLLIN); /* an event now means: the app closed it */
	c->next = w->idle;
	w->idle = c;
	w->n_idle++;
}

void fetch_close_pool(struct worker *w)
{
	while (w->idle) {
		struct uconn *c = w->idle;

		pool_unlink(w, c);
		conn_close(w, c);
	}
	fetch_reap(w);
}

/* The upstream's addresses, looked up again every RESOLVE_TTL. The lookup
 * blocks this thread; it is rare (connections are pooled), and a numeric
 * host costs nothing. */
static int resolve(struct worker *w, char *err, size_t errlen)
{
	const struct gconf *c = w->server->conf;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *res, *ai;
	int rc;

	if (w->n_addrs && worker_now_ms() < w->addrs_until)
		return 0;
	rc = getaddrinfo(c->upstream_host, c->upstream_port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "cannot resolve %s: %s", c->upstream_host,
			 gai_strerror(rc));
		return -1;
	}
	w->n_addrs = 0;
	for (ai = res; ai && w->n_addrs < ADDRS_MAX; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(w->addrs[0]))
			continue;
		memcpy(&w->addrs[w->n_addrs], ai->ai_addr, ai->ai_addrlen);
		w->addr_lens[w->n_addrs++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	w->addrs_until = worker_now_ms() + RESOLVE_TTL;
	if (!w->n_addrs) {
		snprintf(err, errlen, "no address for %s", c->upstream_host);
		return -1;
	}
	return 0;
}

/* A new connection for r, to the first address from `first` that takes a
 * non-blocking connect; -1 with the reason in err. */
static int conn_open(struct worker *w, struct preq *r, size_t first,
		     char *err, size_t errlen)
{
	const struct gconf *conf = w->server->conf;
	int fd = -1, one = 1, e = 0;
	size_t i;
	struct uconn *c;

	if (resolve(w, err, errlen))
		return -1;
	for (i = first; i < w->n_addrs; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&w->addrs[i];

		fd = socket(sa->sa_family,
			    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!connect(fd, sa, w->addr_lens[i]) || errno == EINPROGRESS)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	if (fd < 0 || !(c = calloc(1, sizeof(*c)))) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "connect to %s:%s: %s", conf->upstream_host,
			 conf->upstream_port, strerror(fd < 0 ? e : ENOMEM));
		return -1;
	}
	c->tag = TAG_CONN;
	c->fd = fd;
	c->addr = i;
	c->connecting = true;
	c->r = r;
	r->uc = c;
	set_events(w, c, EPOLLIN | EPOLLOUT);
	return 0;
}

/* ---- the end of a transfer -------------------------------------------- */

/* The transfer is over: the client side takes it from here. why: NULL on
 * success, else the failure (status: 502/503/504 if no head came). */
static void finish(struct worker *w, struct preq *r, unsigned status,
		   const char *why)
{
	bool client;

	if (r->uc)
		conn_close(w, r->uc);
	r->in_transfer = false;
	pthread_mutex_lock(&r->lock);
	r->done = true;
	r->failed = why != NULL;
	if (why) {
		if (!r->head_done)
			r->fail_status = status;
		snprintf(r->error, sizeof(r->error), "%s", why);
	}
	proxy_wake_client(r);
	client = r->conn != NULL;
	pthread_mutex_unlock(&r->lock);
	if (why && client) {
		char q[300], e[300];

		log_warn("upstream_failed", "uri=%s status=%u error=%s",
			 log_quote(q, sizeof(q), r->uri),
			 r->head_done ? 0 : r->fail_status,
			 log_quote(e, sizeof(e), why));
	}
	worker_release(w, r);
}

void fetch_fail(struct worker *w, struct preq *r, unsigned status,
		const char *why)
{
	if (r->in_transfer)
		finish(w, r, status, why);
}

void fetch_close(struct worker *w, struct preq *r)
{
	if (r->uc)
		conn_close(w, r->uc);
}

static void list_add(struct worker *w, struct preq *r)
{
	r->prev = NULL;
	r->next = w->active;
	if (w->active)
		w->active->prev = r;
	w->active = r;
}

static void send_some(struct worker *w, struct preq *r);

/* Begin again on another connection: the one it had died before any
 * answer, and nothing but the head has left (it is sent again). */
static void attach(struct worker *w, struct preq *r)
{
	char err[300];

	r->out.off = 0;
	r->sent = r->resp_started = false;
	http_parser_init(&r->parser, HTTP_RESPONSE);
	r->parser.data = r;
	if (!r->upgrade && w->idle) {
		struct uconn *c = w->idle;

		pool_unlink(w, c);
		c->r = r;
		r->uc = c;
		send_some(w, r);
		return;
	}
	if (conn_open(w, r, 0, err, sizeof(err)))
		return finish(w, r, 502, err);
	worker_check_by(w, worker_now_ms() +
			w->server->conf->connect_timeout_ms);
}

void fetch_start(struct worker *w, struct preq *r)
{
	const struct gconf *c = w->server->conf;
	bool gone;

	pthread_mutex_lock(&r->lock);
	gone = !r->conn;
	pthread_mutex_unlock(&r->lock);
	r->in_transfer = true;
	list_add(w, r);
	if (gone)
		return finish(w, r, 502, "the client went away");
	r->deadline_ms = worker_now_ms() + c->upstream_timeout_ms;
	worker_check_by(w, r->deadline_ms);
	attach(w, r);
}

/* A failure on r's connection (err: an errno, 0 for an early close). */
static void conn_failed(struct worker *w, struct preq *r, int err)
{
	struct uconn *c = r->uc;
	char why[300];

	if (c && c->reused && !r->resp_started && !r->body_started &&
	    !r->head_done) {
		log_debug("upstream_retry", "uri=%.200s error=%s", r->uri,
			  err ? strerror(err) : "closed");
		conn_close(w, c);
		return attach(w, r);
	}
	snprintf(why, sizeof(why), "%s", !err ? "the upstream closed the "
		 "connection" : strerror(err));
	finish(w, r, 502, why);
}

/* ---- sending ------------------------------------------------------------ */

static int frame(struct preq *r, const char *text)
{
	return buf_add(&r->out, text, strlen(text));
}

/* Chunk framing for what `up` holds (under r->lock); the body bytes that
 * may follow r->out in this write. */
static size_t body_ready(struct preq *r)
{
	char size[24];

	if (!r->has_body || r->sent)
		return 0;
	if (!r->chunked) {
		if (r->body_left > 0 && r->up.len)
			r->body_started = true;
		return r->body_left < (long long)r->up.len ? (size_t)r->body_left
							    : r->up.len;
	}
	if (!r->chunk_left && r->up.len) {
		snprintf(size, sizeof(size), "%zx\r\n", r->up.len);
		if (frame(r, size))
			return 0;
		r->chunk_left = r->up.len;
		r->body_started = true;
	} else if (!r->chunk_left && r->up_eof && !r->body_end) {
		if (!frame(r, "0\r\n\r\n"))
			r->body_end = r->body_started = true;
	}
	return r->chunk_left;
}

/* The head, the framing and the body bytes at hand, in one sendmsg each
 * time; false once the connection failed (r is then finished). */
static bool write_out(struct worker *w, struct preq *r, bool *blocked)
{
	struct uconn *c = r->uc;

	for (;;) {
		struct iovec iov[3];
		struct msghdr msg = { .msg_iov = iov };
		size_t body, n0 = 0, n1 = 0, k;
		const char *p0, *p1 = NULL;
		ssize_t sent;

		pthread_mutex_lock(&r->lock);
		body = body_ready(r);
		if (r->out.off < r->out.len)
			iov[msg.msg_iovlen++] = (struct iovec){
				r->out.p + r->out.off, r->out.len - r->out.off };
		if (body) {
			p0 = ring_peek(&r->up, &n0);
			n0 = n0 < body ? n0 : body;
			iov[msg.msg_iovlen++] = (struct iovec){ (void *)p0, n0 };
			if (n0 < body) {
				n1 = body - n0;
				p1 = r->up.buf; /* the wrapped part */
				iov[msg.msg_iovlen++] = (struct iovec){ (void *)p1, n1 };
			}
		}
		pthread_mutex_unlock(&r->lock);
		if (!msg.msg_iovlen)
			return true;
		sent = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (sent < 0 && errno == EINTR)
			continue;
		if (sent < 0 && errno == EAGAIN) {
			*blocked = true;
			return true;
		}
		if (sent < 0) {
			conn_failed(w, r, errno);
			return false;
		}
		k = (size_t)sent;
		if (!r->head_done) /* the head is due timeouts.upstream after
				    * the request's last byte left */
			r->deadline_ms = worker_now_ms() +
					 w->server->conf->upstream_timeout_ms;
		pthread_mutex_lock(&r->lock);
		if (r->out.off < r->out.len) {
			size_t n = r->out.len - r->out.off < k ? r->out.len - r->out.off
							       : k;

			r->out.off += n;
			k -= n;
			/* Past the head, the buffer holds framing only. */
			if (r->out.off == r->out.len && r->body_started)
				r->out.off = r->out.len = 0;
		}
		if (k) {
			ring_drop(&r->up, k);
			if (r->chunked) {
				r->chunk_left -= k;
				if (!r->chunk_left)
					frame(r, "\r\n");
			} else {
				r->body_left -= (long long)k;
			}
			if (ring_room(&r->up) >= r->up.cap / 2)
				proxy_wake_client(r);
		}
		pthread_mutex_unlock(&r->lock);
	}
}

/* Send what can go; then wait for the socket, the client's body, or the
 * answer. */
static void send_some(struct worker *w, struct preq *r)
{
	struct uconn *c = r->uc;
	bool blocked = false;

	if (!c || c->connecting || r->sent || r->parser.upgrade)
		return;
	if (!write_out(w, r, &blocked))
		return;
	pthread_mutex_lock(&r->lock);
	if (!r->has_body || (!r->chunked && r->body_left <= 0) || r->body_end)
		r->sent = r->out.off == r->out.len;
	else if (r->up_eof && !r->chunked && !r->up.len)
		r->sent = true; /* the client's body ended short: so be it */
	r->send_paused = !r->sent && !blocked && !r->up.len;
	pthread_mutex_unlock(&r->lock);
	if (r->uc == c)
		set_events(w, c, (r->recv_paused ? 0u : EPOLLIN) |
				 (blocked ? EPOLLOUT : 0u));
}

void fetch_send(struct worker *w, struct preq *r)
{
	/* Also after an early answer: the rest of the body may still go. */
	if (r->in_transfer && r->uc)
		send_some(w, r);
}

/* ---- receiving ---------------------------------------------------------- */

static void stall_deadline(struct worker *w, struct preq *r)
{
	long long stall = w->server->conf->stall_timeout_ms;

	r->deadline_ms = stall && !r->recv_paused ? worker_now_ms() + stall : -1;
	if (r->deadline_ms >= 0)
		worker_check_by(w, r->deadline_ms);
}

/* The response ended: keep the connection for another if it can. */
static void complete(struct worker *w, struct preq *r, bool clean)
{
	struct uconn *c = r->uc;

	if (c && clean && r->sent && !r->upgrade &&
	    http_should_keep_alive(&r->parser))
		pool_put(w, c);
	finish(w, r, 0, NULL);
}

/* The 101 came: the relay takes the socket once the client's is there. */
static void switched(struct worker *w, struct preq *r, const char *rest,
		     size_t n)
{
	pthread_mutex_lock(&r->lock);
	ring_put(&r->down, rest, n); /* it fits: the ring was empty */
	pthread_mutex_unlock(&r->lock);
	set_events(w, r->uc, 0);
	r->deadline_ms = -1;
}

static void read_some(struct worker *w, struct preq *r)
{
	char buf[READ_MAX];
	size_t room, parsed;
	ssize_t k;
	enum http_errno e;

	pthread_mutex_lock(&r->lock);
	room = ring_room(&r->down);
	r->recv_paused = !room;
	pthread_mutex_unlock(&r->lock);
	if (!room) {
		r->deadline_ms = -1; /* the client is slow, not the upstream */
		return set_events(w, r->uc, r->uc->events & ~(uint32_t)EPOLLIN);
	}
	k = recv(r->uc->fd, buf, room < sizeof(buf) ? room : sizeof(buf), 0);
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k < 0)
		return conn_failed(w, r, errno);
	if (k > 0)
		r->resp_started = true;
	if (r->head_done)
		stall_deadline(w, r);
	parsed = http_parser_execute(&r->parser, &settings, buf, (size_t)k);
	e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->complete)
		return complete(w, r, parsed == (size_t)k);
	if (r->parser.upgrade && r->head_done && e == HPE_OK)
		return switched(w, r, buf + parsed, (size_t)k - parsed);
	if (!k && e == HPE_OK)
		return conn_failed(w, r, 0);
	if (e != HPE_OK) {
		char why[200];

		snprintf(why, sizeof(why), "%s", e == HPE_CB_header_field ||
			 e == HPE_CB_header_value ? "the response head is too big"
			 : e == HPE_CB_headers_complete ? "a switch of protocols "
			 "nobody asked for" : http_errno_description(e));
		finish(w, r, 502, why);
	}
}

void fetch_recv(struct worker *w, struct preq *r)
{
	if (!r->in_transfer || !r->uc || !r->head_done || r->relaying ||
	    r->parser.upgrade)
		return;
	set_events(w, r->uc, r->uc->events | EPOLLIN);
	stall_deadline(w, r);
}

/* The non-blocking connect is over: sent, or the next address. */
static void connected(struct worker *w, struct uconn *c)
{
	struct preq *r = c->r;
	int err = 0;
	socklen_t len = sizeof(err);
	char why[300];

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len))
		err = errno;
	if (!err) {
		c->connecting = false;
		return send_some(w, r);
	}
	conn_close(w, c);
	if (c->addr + 1 < w->n_addrs &&
	    !conn_open(w, r, c->addr + 1, why, sizeof(why)))
		return;
	snprintf(why, sizeof(why), "connect to %s:%s: %s",
		 w->server->conf->upstream_host, w->server->conf->upstream_port,
		 strerror(err));
	finish(w, r, 502, why);
}

void fetch_event(struct worker *w, struct uconn *c, uint32_t events)
{
	struct preq *r = c->r;

	if (c->dead)
		return;
	if (!r) { /* pooled: the app closed it, or sent what nobody asked */
		pool_unlink(w, c);
		return conn_close(w, c);
	}
	if (c->connecting)
		return connected(w, c);
	if (events & EPOLLOUT) {
		send_some(w, r);
		if (r->uc != c)
			return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		read_some(w, r);
}

/* ---- deadlines ---------------------------------------------------------- */

long long fetch_deadlines(struct worker *w, long long now)
{
	const struct gconf *conf = w->server->conf;
	long long next = -1;

	for (struct preq *r = w->active, *after; r; r = after) {
		struct uconn *c = r->uc;
		long long due = r->deadline_ms, conn_due = -1;
		char why[400];

		after = r->next;
		if (!r->in_transfer)
			continue;
		if (c && c->connecting)
			conn_due = r->deadline_ms - conf->upstream_timeout_ms +
				   conf->connect_timeout_ms;
		if (conn_due >= 0 && now >= conn_due && conn_due < due) {
			snprintf(why, sizeof(why), "connect to %s:%s: timed out "
				 "after %lld ms", conf->upstream_host,
				 conf->upstream_port,
				 (long long)conf->connect_timeout_ms);
			finish(w, r, 502, why);
		} else if (due >= 0 && now >= due) {
			finish(w, r, 504, r->head_done
				       ? "the upstream stalled mid-body"
				       : "no response head in time");
		} else {
			if (conn_due >= 0 && conn_due < due)
				due = conn_due;
			if (due >= 0 && (next < 0 || due < next))
				next = due;
		}
	}
	return next;
}

/* ---- http-parser's callbacks ---------------------------------------------- */

static int on_message_begin(http_parser *p)
{
	struct preq *r = p->data;

	r->head.len = 0;
	r->field_state = 0;
	return 0;
}

/* The head's fields as "name\0value\0" pairs; a field or value may come
 * in pieces, across reads. */
static int on_field(http_parser *p, const char *at, size_t n)
{
	struct preq *r = p->data;

	if (r->field_state == 2 && buf_add(&r->head, "", 1))
		return -1; /* ends the value before */
	r->field_state = 1;
	return buf_add(&r->head, at, n);
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	struct preq *r = p->data;

	if (r->field_state == 1 && buf_add(&r->head, "", 1))
		return -1; /* ends the name */
	r->field_state = 2;
	return buf_add(&r->head, at, n);
}

static int on_headers_complete(http_parser *p)
{
	struct preq *r = p->data;
	unsigned status = p->status_code;
	struct worker *w = r->worker;

	if ((r->field_state == 1 && buf_add(&r->head, "\0", 2)) ||
	    (r->field_state == 2 && buf_add(&r->head, "", 1)))
		return -1;
	r->field_state = 0;
	if (status == 101 && !r->upgrade)
		return -1;
	if (status < 200 && status != 101) {
		r->interim = true; /* 100 Continue, 103 Early Hints: skipped */
		return 0;
	}
	r->resp_length = (p->flags & F_CHUNKED) || p->content_length == ULLONG_MAX
				 ? -1 : (long long)p->content_length;
	r->head_done = true;
	proxy_head_done(r, status);
	if (status != 101)
		stall_deadline(w, r);
	return status == 101 ? 2 : r->is_head ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct preq *r = p->data;
	bool fits;

	pthread_mutex_lock(&r->lock);
	fits = ring_room(&r->down) >= n;
	if (fits) {
		ring_put(&r->down, at, n);
		proxy_wake_client(r);
	}
	pthread_mutex_unlock(&r->lock);
	return fits ? 0 : -1; /* reads are sized to fit: cannot happen */
}

static int on_message_complete(http_parser *p)
{
	struct preq *r = p->data;

	if (r->interim) {
		r->interim = false;
		return 0;
	}
	if (p->upgrade && r->upgrade)
		return 0; /* the 101: what follows is the relay's */
	r->complete = true;
	http_parser_pause(p, 1); /* anything after it is not ours */
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
