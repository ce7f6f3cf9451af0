/*
 * trigger.c: the call that makes the server broadcast. Over HTTP: a fresh
 * connection per call (Connection: close), t0 taken just before the
 * request is written, the whole answer read; the status and the "seq" of
 * the answer's body (the event the links must get) are kept. For the raw
 * TCP dialects: a publish on one connection kept for the whole run
 * (pub.c), the seq the one put in the event, the answer the peer's
 * acknowledgement.
 */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ANSWER_MAX 8192 /* bytes of the answer kept */

static int http_connect(const struct opts *o)
{
	struct timeval tv = { .tv_sec = 30 };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)&o->http_sa,
		    sizeof(o->http_sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read the whole answer (the request said Connection: close). */
static int http_answer(int fd, struct trigger *t)
{
	char buf[ANSWER_MAX];
	size_t len = 0;
	ssize_t r;
	const char *body;

	while (len < sizeof(buf) - 1 &&
	       (r = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		len += (size_t)r;
	}
	t->http_ms = (double)(mono_ns() - t->t0) / 1e6;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &t->status) != 1)
		return -1;
	body = strstr(buf, "\r\n\r\n");
	t->seq = body ? dialect_find_seq(body, strlen(body)) : 0;
	return 0;
}

/* -F: one status line to the instance's agent_probe, in turn. The seq
 * is not known: the links' updates are taken as they come. */
static int fifo_call(const struct opts *o, struct trigger *t)
{
	struct opts *mut = (struct opts *)o;
	char line[16];
	int n;

	if (o->fifo_fd <= 0 &&
	    (mut->fifo_fd = open(o->fifo, O_WRONLY | O_CLOEXEC)) < 0)
		return -1;
	n = snprintf(line, sizeof(line), "ready %d\n",
		     (int)(mut->fifo_rounds++ % 2));
	t->t0 = mono_ns();
	if (write_full(o->fifo_fd, line, (size_t)n) != 0)
		return -1;
	t->status = 200;
	return 0;
}

/* Read until one answer that is not a greeting; answer NATS's pings. */
static int publish_answer(const struct opts *o, int fd, struct answer *a)
{
	static char buf[PUB_BUF + 1];
	static size_t len;

	for (;;) {
		ssize_t used = pub_answer(o, buf, len, a), r;

		if (used < 0)
			return -1;
		if (used > 0) {
			memmove(buf, buf + used, len - (size_t)used);
			len -= (size_t)used;
			if (a->ping && write_full(fd, "PONG\r\n", 6) != 0)
				return -1;
			if (!a->ping && !a->ignore)
				return 0;
			continue;
		}
		if (len == PUB_BUF)
			return -1;
		r = read(fd, buf + len, PUB_BUF - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = '\0';
	}
}

static int publish_call(const struct opts *o, struct trigger *t)
{
	static int fd = -1;
	char req[PUB_BUF];
	struct answer a;
	uint64_t seq = pub_next_seq();
	int n = pub_request(o, seq, req, sizeof(req));

	if (fd < 0) {
		char hello[128];
		int hl = pub_hello(o, -1, hello, sizeof(hello));
		struct timeval tv = { .tv_sec = 30 };

		fd = pub_connect(o, 0);
		if (fd < 0)
			return -1;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (hl < 0 || (hl && write_full(fd, hello, (size_t)hl) != 0))
			goto fail;
	}
	if (n < 0)
		goto fail;
	t->t0 = mono_ns();
	if (write_full(fd, req, (size_t)n) != 0 ||
	    publish_answer(o, fd, &a) != 0)
		goto fail;
	t->http_ms = (double)(mono_ns() - t->t0) / 1e6;
	t->status = a.status;
	t->seq = seq;
	return 0;
fail:
	close(fd);
	fd = -1;
	return -1;
}

int trigger_call(const struct opts *o, struct trigger *t)
{
	size_t blen = o->body ? strlen(o->body) : 0, cap = blen + 1024;
	char *req = malloc(cap);
	int n, fd, rc = -1;

	memset(t, 0, sizeof(*t));
	if (o->fifo || DIALECT_TCP(o->dialect)) {
		free(req);
		return o->fifo ? fifo_call(o, t) : publish_call(o, t);
	}
	if (!req)
		return -1;
	n = snprintf(req, cap,
		     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
		     "%sContent-Length: %zu\r\n\r\n%s",
		     o->method, o->trigger_path, o->http,
		     blen ? "Content-Type: application/json\r\n" : "", blen,
		     blen ? o->body : "");
	fd = http_connect(o);
	if (fd >= 0 && n > 0 && (size_t)n < cap) {
		t->t0 = mono_ns();
		rc = write_full(fd, req, (size_t)n) == 0 ? http_answer(fd, t) :
							   -1;
	}
	if (fd >= 0)
		close(fd);
	free(req);
	return rc;
}
