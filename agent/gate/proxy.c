/*
 * proxy: the client side of a proxied request (see proxy.h). The request
 * head is written for the upstream into r->out (hop-by-hop headers out,
 * X-Forwarded-* and Via in); the body is fed from libmicrohttpd's upload
 * calls into the `up` ring; the response head, as http-parser split it
 * (fetch.c), becomes an MHD response whose content reader drains the
 * `down` ring. No HTTP is parsed here: MHD parses the client's side,
 * http-parser the upstream's.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "server.h"
#include "upstream.h"

#define HEADER_LINE_MAX 16384

/* ---- ring -------------------------------------------------------------- */

size_t ring_put(struct ring *r, const char *p, size_t n)
{
	size_t done = 0;

	if (n > ring_room(r))
		n = ring_room(r);
	while (done < n) {
		size_t tail = (r->head + r->len) % r->cap;
		size_t chunk = r->cap - tail;

		if (chunk > n - done)
			chunk = n - done;
		memcpy(r->buf + tail, p + done, chunk);
		r->len += chunk;
		done += chunk;
	}
	return n;
}

const char *ring_peek(const struct ring *r, size_t *n)
{
	size_t chunk = r->cap - r->head;

	*n = r->len < chunk ? r->len : chunk;
	return r->buf + r->head;
}

void ring_drop(struct ring *r, size_t n)
{
	r->head = (r->head + n) % r->cap;
	r->len -= n;
	if (!r->len)
		r->head = 0; /* keep the next writes contiguous */
}

size_t ring_take(struct ring *r, char *p, size_t n)
{
	size_t done = 0;

	while (done < n && r->len) {
		size_t chunk;
		const char *src = ring_peek(r, &chunk);

		if (chunk > n - done)
			chunk = n - done;
		memcpy(p + done, src, chunk);
		ring_drop(r, chunk);
		done += chunk;
	}
	return done;
}

int buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *q;

		while (cap < b->len + n)
			cap *= 2;
		if (cap > HEAD_MAX + 1024)
			cap = HEAD_MAX + 1024; /* room for chunk framing after it */
		if (b->len + n > cap || !(q = realloc(b->p, cap)))
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* ---- life -------------------------------------------------------------- */

struct preq *preq_new(struct gate_server *s, const char *uri)
{
	struct preq *r = calloc(1, sizeof(*r));

	if (!r || !(r->uri = strdup(uri))) {
		free(r);
		return NULL;
	}
	atomic_init(&r->refs, 1);
	pthread_mutex_init(&r->lock, NULL);
	r->server = s;
	r->client_fd = -1;
	r->resp_length = -1;
	return r;
}

void preq_ref(struct preq *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void preq_unref(struct preq *r)
{
	if (!r || atomic_fetch_sub_explicit(&r->refs, 1,
					    memory_order_acq_rel) != 1)
		return;
	if (r->worker)
		worker_recycle(r->worker, r);
	pthread_mutex_destroy(&r->lock);
	free(r->up.buf);
	free(r->down.buf);
	free(r->out.p);
	free(r->head.p);
	free(r->uri);
	free(r);
}

void proxy_wake_client(struct preq *r)
{
	if (r->suspended && r->conn) {
		r->suspended = false;
		MHD_resume_connection(r->conn);
		worker_kick(r->worker);
	}
}

static void suspend_client(struct preq *r)
{
	if (!r->suspended && r->conn) {
		r->suspended = true;
		MHD_suspend_connection(r->conn);
	}
}

/* ---- the request head -------------------------------------------------- */

struct head {
	struct preq *r;
	bool failed;
	bool chunked;
	long long length;            /* Content-Length, -1 if none */
	const char *connection;      /* the client's Connection header */
	const char *host, *xff, *xfp, *xfh, *via;
};

static bool hop_by_hop(const char *name)
{
	static const char *const names[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
		"Transfer-Encoding", "Upgrade", "Proxy-Authenticate",
		"Proxy-Authorization", NULL,
	};

	for (size_t i = 0; names[i]; i++)
		if (!strcasecmp(name, names[i]))
			return true;
	return false;
}

/* name is one of the comma-separated tokens of a Connection header. */
static bool listed(const char *connection, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = connection; p && *p;) {
		p += strspn(p, " \t,");
		size_t len = strcspn(p, " \t,");

		if (len == n && !strncasecmp(p, name, n))
			return true;
		p += len;
	}
	return false;
}

static void put(struct head *h, const char *p, size_t n)
{
	if (buf_add(&h->r->out, p, n))
		h->failed = true;
}

static void puts_(struct head *h, const char *p)
{
	put(h, p, strlen(p));
}

static void add_header(struct head *h, const char *name, const char *value)
{
	puts_(h, name);
	put(h, ": ", 2);
	puts_(h, value);
	put(h, "\r\n", 2);
	if (h->r->out.len > HEAD_MAX)
		h->failed = true;
}

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind,
			       const char *name, const char *value)
{
	struct head *h = cls;

	(void)kind;
	value = value ? value : "";
	if (!strcasecmp(name, "Connection"))
		h->connection = value;
	else if (!strcasecmp(name, "Transfer-Encoding"))
		h->chunked = h->r->has_body = true;
	else if (!strcasecmp(name, "Content-Length")) {
		h->length = strtoll(value, NULL, 10);
		h->r->has_body = true;
	} else if (!strcasecmp(name, "Host"))
		h->host = value;
	else if (!strcasecmp(name, "X-Forwarded-For"))
		h->xff = value;
	else if (!strcasecmp(name, "X-Forwarded-Proto"))
		h->xfp = value;
	else if (!strcasecmp(name, "X-Forwarded-Host"))
		h->xfh = value;
	else if (!strcasecmp(name, "Via"))
		h->via = value;
	return MHD_YES;
}

static enum MHD_Result forward(void *cls, enum MHD_ValueKind kind,
			       const char *name, const char *value)
{
	struct head *h = cls;

	(void)kind;
	if (!strcasecmp(name, "Upgrade") && h->r->upgrade) {
		add_header(h, name, value ? value : "");
		return MHD_YES;
	}
	if (hop_by_hop(name) || listed(h->connection, name) ||
	    !strcasecmp(name, "Content-Length") || !strcasecmp(name, "Expect") ||
	    !strncasecmp(name, "X-Forwarded-", 12) || !strcasecmp(name, "Via"))
		return MHD_YES;
	add_header(h, name, value ? value : "");
	return MHD_YES;
}

static void client_ip(struct MHD_Connection *conn, char *ip, size_t size)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	const void *addr = !sa ? NULL
			   : sa->sa_family == AF_INET6
				? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
			   : sa->sa_family == AF_INET
				? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
				: NULL;

	if (!addr || !inet_ntop(sa->sa_family, addr, ip, (socklen_t)size))
		snprintf(ip, size, "unknown");
}

/* X-Forwarded-*, Via, the body's framing, the end of the head. */
static void add_proxy_headers(struct head *h, struct MHD_Connection *conn)
{
	const struct gate_server *s = h->r->server;
	bool trust = s->conf->trust_forwarded;
	char ip[80], value[HEADER_LINE_MAX / 2];

	client_ip(conn, ip, sizeof(ip));
	if (trust && h->xff)
		snprintf(value, sizeof(value), "%s, %s", h->xff, ip);
	else
		snprintf(value, sizeof(value), "%s", ip);
	add_header(h, "X-Forwarded-For", value);
	add_header(h, "X-Forwarded-Proto", trust && h->xfp ? h->xfp : "http");
	if ((trust && h->xfh) || h->host)
		add_header(h, "X-Forwarded-Host", trust && h->xfh ? h->xfh : h->host);
	if (h->via)
		snprintf(value, sizeof(value), "%s, %s", h->via, s->via);
	else
		snprintf(value, sizeof(value), "%s", s->via);
	add_header(h, "Via", value);
	if (!h->host) /* HTTP/1.0 clients may send none; HTTP/1.1 needs one */
		add_header(h, "Host", s->conf->upstream_authority);
	if (h->r->upgrade)
		add_header(h, "Connection", "Upgrade");
	if (h->r->has_body && h->chunked) {
		add_header(h, "Transfer-Encoding", "chunked");
	} else if (h->r->has_body) {
		snprintf(value, sizeof(value), "%lld", h->length);
		add_header(h, "Content-Length", value);
	}
	put(h, "\r\n", 2);
}

/* The request head for the upstream, in r->out: the method and the raw
 * target (after the upstream's prefix) as sent, then the headers. */
static int make_head(struct preq *r, struct MHD_Connection *conn,
		     const char *method, struct head *h)
{
	const struct gconf *c = r->server->conf;

	r->is_head = !strcmp(method, "HEAD");
	r->out.len = r->out.off = 0;
	puts_(h, method);
	put(h, " ", 1);
	puts_(h, c->upstream_prefix);
	puts_(h, r->uri);
	put(h, " HTTP/1.1\r\n", 11);
	MHD_get_connection_values(conn, MHD_HEADER_KIND, collect, h);
	if (h->r->has_body && !h->chunked && h->length < 0)
		h->r->has_body = false; /* a Content-Length MHD took as none */
	r->chunked = h->chunked;
	r->body_left = h->length;
	MHD_get_connection_values(conn, MHD_HEADER_KIND, forward, h);
	add_proxy_headers(h, conn);
	return h->failed ? -1 : 0;
}

/* ---- answers of our own ------------------------------------------------ */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status,
			      const char *code, const char *message)
{
	char body[1024];
	struct MHD_Response *resp;
	enum MHD_Result rc;

	snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}\n",
		 code, message);
	resp = MHD_create_response_from_buffer(strlen(body), body,
					       MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				"application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* The transfer failed before a response head: 502 or 504, said plainly. */
static enum MHD_Result answer_failure(struct preq *r,
				      struct MHD_Connection *conn)
{
	char msg[600], clean[sizeof(r->error)];
	size_t k = 0;

	/* The reason, without quotes or backslashes, for the JSON. */
	for (const char *p = r->error[0] ? r->error : "unknown";
	     *p && k + 1 < sizeof(clean); p++)
		clean[k++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 32)
				     ? '\'' : *p;
	clean[k] = '\0';
	if (r->fail_status == MHD_HTTP_GATEWAY_TIMEOUT) {
		snprintf(msg, sizeof(msg), "the upstream %s sent no response "
			 "within %lld ms", r->server->conf->upstream,
			 (long long)r->server->conf->upstream_timeout_ms);
		return answer(conn, MHD_HTTP_GATEWAY_TIMEOUT, "upstream_timeout",
			      msg);
	}
	snprintf(msg, sizeof(msg), "the upstream %s failed: %s",
		 r->server->conf->upstream, clean);
	return answer(conn, MHD_HTTP_BAD_GATEWAY, "bad_gateway", msg);
}

/* ---- the MHD side ------------------------------------------------------ */

static struct MHD_Response *make_response(struct preq *r);

enum MHD_Result proxy_begin(struct preq *r, struct MHD_Connection *conn,
			    const char *method, const char *version)
{
	struct gate_server *s = r->server;
	struct head h = { .r = r, .length = -1 };
	size_t cap = (size_t)s->conf->buffer;
	const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     "Upgrade");

	if (r->uri[0] != '/')
		return answer(conn, MHD_HTTP_BAD_REQUEST, "bad_request",
			      "the request target must be a path");
	r->upgrade = up && *up && !strcmp(version, MHD_HTTP_VERSION_1_1);
	r->conn = conn;
	r->worker = server_pick_worker(s);
	if (worker_take_parts(r->worker, r, cap) ||
	    make_head(r, conn, method, &h)) {
		return answer(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
			      "the gate could not set up the request");
	}
	r->up_eof = !r->has_body;
	preq_ref(r); /* the worker's, until the transfer is gone */
	if (worker_post(r->worker, r, OP_START)) {
		preq_unref(r);
		return answer(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
			      "the gate is shutting down");
	}
	return MHD_YES;
}

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct preq *r = cls;
	ssize_t n = 0;
	bool wake = false;

	(void)pos;
	pthread_mutex_lock(&r->lock);
	if (r->down.len) {
		n = (ssize_t)ring_take(&r->down, buf, max);
		wake = r->recv_paused && ring_room(&r->down) >= r->down.cap / 2;
		if (wake)
			r->recv_paused = false;
	} else if (r->done) {
		n = !r->failed ? MHD_CONTENT_READER_END_OF_STREAM
			       : MHD_CONTENT_READER_END_WITH_ERROR;
	} else if (!r->conn) {
		n = MHD_CONTENT_READER_END_WITH_ERROR;
	} else {
		suspend_client(r); /* the worker resumes it with data */
	}
	pthread_mutex_unlock(&r->lock);
	if (wake)
		worker_post(r->worker, r, OP_RECV);
	return n;
}

/* Body bytes from the client into `up`; what does not fit waits. */
static void feed(struct preq *r, const char *data, size_t *size)
{
	bool wake;

	pthread_mutex_lock(&r->lock);
	if (r->done) {
		*size = 0; /* the upstream has answered: the rest is not needed */
		pthread_mutex_unlock(&r->lock);
		return;
	}
	*size -= ring_put(&r->up, data, *size);
	wake = r->send_paused;
	if (wake)
		r->send_paused = false;
	if (*size)
		suspend_client(r); /* the worker resumes it as it sends */
	pthread_mutex_unlock(&r->lock);
	if (wake)
		worker_post(r->worker, r, OP_SEND);
}

enum MHD_Result proxy_continue(struct preq *r, struct MHD_Connection *conn,
			       const char *upload, size_t *upload_size)
{
	struct MHD_Response *resp = NULL;
	enum MHD_Result rc = MHD_YES;
	unsigned status = 0;
	bool wake = false, failed = false;

	if (*upload_size) {
		feed(r, upload, upload_size);
		return MHD_YES;
	}
	pthread_mutex_lock(&r->lock);
	if (!r->up_eof) {
		r->up_eof = true;
		wake = r->send_paused;
		r->send_paused = false;
	}
	if (r->queued) {
		/* nothing: MHD does not call again once it has a response */
	} else if (r->head_ready) {
		resp = make_response(r);
		status = r->status;
		failed = !resp;
		r->queued = true;
	} else if (r->done) {
		failed = r->queued = true;
	} else {
		suspend_client(r); /* until the head arrives or it fails */
	}
	pthread_mutex_unlock(&r->lock);
	if (wake)
		worker_post(r->worker, r, OP_SEND);
	if (resp) {
		rc = MHD_queue_response(conn, status, resp);
		MHD_destroy_response(resp);
	} else if (failed) {
		rc = answer_failure(r, conn);
	}
	return rc;
}

void proxy_end(struct preq *r)
{
	bool worker;

	pthread_mutex_lock(&r->lock);
	r->conn = NULL;
	r->suspended = false;
	/* A relay outlives its request: it ends when a side closes. */
	worker = r->worker && !r->done && !r->urh;
	pthread_mutex_unlock(&r->lock);
	if (worker)
		worker_post(r->worker, r, OP_ABORT);
	preq_unref(r);
}

/* ---- the response head -------------------------------------------------- */

/* The next "name\0value\0" pair of the upstream's head after *pos. */
static bool next_field(const struct buf *head, size_t *pos, const char **name,
		       const char **value)
{
	if (*pos >= head->len)
		return false;
	*name = head->p + *pos;
	*pos += strlen(*name) + 1;
	*value = head->p + *pos;
	*pos += strlen(*value) + 1;
	return true;
}

/* The upstream's header `name`, or NULL. */
static const char *field(const struct buf *head, const char *name)
{
	const char *n, *v;
	size_t pos = 0;

	while (next_field(head, &pos, &n, &v))
		if (!strcasecmp(n, name))
			return v;
	return NULL;
}

static bool copy_headers(struct preq *r, struct MHD_Response *resp)
{
	const char *connection = field(&r->head, "Connection");
	const char *name, *value, *via = NULL;
	char line[HEADER_LINE_MAX];
	size_t pos = 0;

	while (next_field(&r->head, &pos, &name, &value)) {
		bool keep = r->upgrade && !strcasecmp(name, "Upgrade");

		if (!keep && (!strcasecmp(name, "Content-Length") ||
			      hop_by_hop(name) || listed(connection, name)))
			continue;
		if (!strcasecmp(name, "Via")) {
			via = value;
			continue;
		}
		/* libmicrohttpd refuses an empty value (and the names it
		 * sets itself): such a header is left out, not the answer. */
		MHD_add_response_header(resp, name, value);
	}
	snprintf(line, sizeof(line), "%s%s%s", via ? via : "", via ? ", " : "",
		 r->server->via);
	return MHD_add_response_header(resp, "Via", line) == MHD_YES;
}

static void on_upgraded(void *cls, struct MHD_Connection *conn,
			void *req_cls, const char *extra_in,
			size_t extra_in_size, MHD_socket sock,
			struct MHD_UpgradeResponseHandle *urh);

/* MHD allocates (and zeroes) the block with every response: no bigger
 * than the body. A chunked body is framed in the connection's own buffer;
 * the block serves a close-delimited one (an HTTP/1.0 client). */
static size_t block_size(uint64_t size)
{
	if (size == MHD_SIZE_UNKNOWN)
		return 16 * 1024;
	return size < 64 * 1024 ? (size ? (size_t)size : 1) : 64 * 1024;
}

/* The whole body is in `down` (the transfer is over): one buffer, which
 * MHD sends with the head in one write. */
static struct MHD_Response *whole_body(struct preq *r)
{
	size_t n, len = r->down.len;
	const char *p = ring_peek(&r->down, &n);
	struct MHD_Response *resp;
	char *copy;

	if (n == len)
		resp = MHD_create_response_from_buffer(len, (void *)p,
						       MHD_RESPMEM_MUST_COPY);
	else if ((copy = malloc(len))) {
		ring_take(&r->down, copy, len);
		resp = MHD_create_response_from_buffer(len, copy,
						       MHD_RESPMEM_MUST_FREE);
		if (!resp)
			free(copy);
	} else
		resp = NULL;
	if (resp)
		r->down.len = r->down.head = 0;
	return resp;
}

/* The MHD response for the upstream's head (under r->lock). */
static struct MHD_Response *make_response(struct preq *r)
{
	struct MHD_Response *resp;
	unsigned code = r->status;
	uint64_t size = r->resp_length >= 0 ? (uint64_t)r->resp_length
					     : MHD_SIZE_UNKNOWN;

	if (code == 204 || code == 304 || (code < 200 && code != 101))
		size = 0;
	if (code == 101)
		resp = MHD_create_response_for_upgrade(on_upgraded, r);
	else if (size == 0 && !r->is_head)
		resp = MHD_create_response_from_buffer(0, NULL,
						       MHD_RESPMEM_PERSISTENT);
	else if (r->done && !r->failed && !r->is_head)
		resp = whole_body(r);
	else
		resp = MHD_create_response_from_callback(size, block_size(size),
							 read_body, r, NULL);
	if (resp && !copy_headers(r, resp)) {
		MHD_destroy_response(resp);
		resp = NULL;
	}
	if (!resp) {
		r->fail_status = MHD_HTTP_BAD_GATEWAY;
		snprintf(r->error, sizeof(r->error), "%s",
			 "the gate could not build the response");
	}
	return resp;
}

/* The upstream's head is complete. The response is built when the client
 * side runs next: by then a small body has arrived whole. */
void proxy_head_done(struct preq *r, unsigned status)
{
	pthread_mutex_lock(&r->lock);
	r->status = status;
	r->head_ready = true;
	proxy_wake_client(r);
	pthread_mutex_unlock(&r->lock);
}

/* MHD switched the client to the relay: hand its socket to the worker. */
static void on_upgraded(void *cls, struct MHD_Connection *conn,
			void *req_cls, const char *extra_in,
			size_t extra_in_size, MHD_socket sock,
			struct MHD_UpgradeResponseHandle *urh)
{
	struct preq *r = cls;

	(void)conn;
	(void)req_cls;
	pthread_mutex_lock(&r->lock);
	r->client_fd = sock;
	r->urh = urh;
	if (extra_in_size > ring_room(&r->up))
		extra_in_size = ring_room(&r->up); /* cannot happen: MHD's
						    * buffer is smaller */
	ring_put(&r->up, extra_in, extra_in_size);
	pthread_mutex_unlock(&r->lock);
	if (worker_post(r->worker, r, OP_UPGRADED))
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}
