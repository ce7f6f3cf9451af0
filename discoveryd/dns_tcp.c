/*
 * dns_tcp: DNS over TCP (RFC 7766), on a thread of its own with poll(2)
 * over non-blocking sockets. Each message has a two-byte length in front.
 *
 * Limits, each in one place (docs/dns.md):
 *   - at most max_conns connections; past that a new one is closed at once;
 *   - a query longer than DNS_QUERY_MAX (or of length 0) closes its
 *     connection: nothing we answer needs one;
 *   - the timeout runs from the accept, and again from each answer sent in
 *     full: a client that sends a query a byte at a time, or reads its
 *     answer that way, is closed when it runs out, as is an idle one;
 *   - one answer in flight per connection: the next query is read once it
 *     is sent, so a client that does not read holds one answer, at most
 *     64 KiB;
 *   - a source over its rate is closed (TCP sources are not spoofed, and
 *     a closed connection tells it plainly).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "dns_int.h"
#include "log.h"

struct conn {
	int fd; /* -1: free */
	int64_t deadline_ms;
	struct sockaddr_storage peer;
	size_t in_len;
	uint8_t in[2 + DNS_QUERY_MAX];
	uint8_t *out; /* the length prefix and the answer */
	size_t out_len, out_sent;
};

struct dns_tcp {
	int listen_fd, wake_fd;
	const struct dns_zone *zone;
	struct epboard *board;
	struct dns_stats *stats;
	struct dns_rate rate;
	unsigned max_conns;
	int64_t timeout_ms;
	uint64_t rotate;
	struct dns_cache *cache;
	struct conn *conns;
	struct pollfd *pfd;
	pthread_t thread;
};

static void conn_close(struct dns_tcp *t, struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
	c->in_len = c->out_len = c->out_sent = 0;
	atomic_fetch_sub(&t->stats->tcp_open, 1);
}

static void count(atomic_uint_least64_t *v)
{
	atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

static void accept_all(struct dns_tcp *t)
{
	for (;;) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(t->listen_fd, (struct sockaddr *)&peer, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		unsigned i = 0;

		if (fd < 0)
			return;
		while (i < t->max_conns && t->conns[i].fd >= 0)
			i++;
		if (i == t->max_conns) {
			close(fd);
			count(&t->stats->tcp_refused);
			continue;
		}
		t->conns[i].fd = fd;
		t->conns[i].peer = peer;
		t->conns[i].deadline_ms = clock_mono_ms() + t->timeout_ms;
		atomic_fetch_add(&t->stats->tcp_open, 1);
	}
}

/* The whole query is in: answer it, queue the answer. -1: close. */
static int answer(struct dns_tcp *t, struct conn *c, size_t qlen)
{
	struct dns_outcome o;
	uint8_t *wire;
	size_t len;

	if (!dns_rate_take(&t->rate, (struct sockaddr *)&c->peer,
			   clock_mono_us())) {
		count(&t->stats->rate_limited);
		return -1;
	}
	if (dns_answer(t->zone, t->board, t->cache, c->in + 2, qlen, true,
		       t->rotate++, &wire, &len, &o) != 0) {
		o = (struct dns_outcome){ .rcode = LDNS_RCODE_SERVFAIL };
		dns_count(t->stats, true, &o);
		return -1;
	}
	dns_count(t->stats, true, &o);
	memmove(c->in, c->in + 2 + qlen, c->in_len - 2 - qlen);
	c->in_len -= 2 + qlen;
	if (!wire)
		return 0; /* a response sent to us: nothing to say */
	c->out = malloc(len + 2);
	if (!c->out) {
		free(wire);
		return -1;
	}
	c->out[0] = (uint8_t)(len >> 8);
	c->out[1] = (uint8_t)len;
	memcpy(c->out + 2, wire, len);
	free(wire);
	c->out_len = len + 2;
	c->out_sent = 0;
	return 0;
}

/* A query complete in the buffer: its length, 0 for none yet, -1 bad. */
static long complete_query(const struct conn *c)
{
	size_t n;

	if (c->in_len < 2)
		return 0;
	n = (size_t)c->in[0] << 8 | c->in[1];
	if (n == 0 || n > DNS_QUERY_MAX)
		return -1;
	return c->in_len >= n + 2 ? (long)n : 0;
}

/* Answer the queries read whole, until one has an answer to send. */
static int answer_queries(struct dns_tcp *t, struct conn *c)
{
	while (!c->out) {
		long q = complete_query(c);

		if (q < 0)
			count(&t->stats->tcp_errors);
		if (q <= 0)
			return (int)q;
		if (answer(t, c, (size_t)q) != 0)
			return -1;
	}
	return 0;
}

/* Read what there is (the buffer never fills: it holds a whole query of
 * the largest size, which is answered before more is read). -1: close. */
static int on_readable(struct dns_tcp *t, struct conn *c)
{
	ssize_t n =
		recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);

	if (n == 0)
		return -1;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	c->in_len += (size_t)n;
	return answer_queries(t, c);
}

/* Send what is queued; once all is, the next query may be answered. */
static int on_writable(struct dns_tcp *t, struct conn *c)
{
	ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
			 MSG_NOSIGNAL);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	c->out_sent += (size_t)n;
	if (c->out_sent < c->out_len)
		return 0;
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_sent = 0;
	c->deadline_ms = clock_mono_ms() + t->timeout_ms;
	return answer_queries(t, c); /* pipelined: read already */
}

static int poll_timeout(const struct dns_tcp *t, int64_t now)
{
	int64_t next = now + 1000;

	for (unsigned i = 0; i < t->max_conns; i++)
		if (t->conns[i].fd >= 0 && t->conns[i].deadline_ms < next)
			next = t->conns[i].deadline_ms;
	return next > now ? (int)(next - now) : 0;
}

static void serve(struct dns_tcp *t, const unsigned *slot, unsigned n)
{
	int64_t now = clock_mono_ms();

	for (unsigned k = 0; k < n; k++) {
		struct conn *c = &t->conns[slot[k]];
		short ev = t->pfd[2 + k].revents;
		int rc = 0;

		if (ev & (POLLERR | POLLHUP | POLLNVAL) && !(ev & POLLIN))
			rc = -1;
		else if (c->out && ev & POLLOUT)
			rc = on_writable(t, c);
		else if (!c->out && ev & (POLLIN | POLLHUP))
			rc = on_readable(t, c);
		if (rc == 0 && c->fd >= 0 && now >= c->deadline_ms) {
			count(&t->stats->tcp_timeouts);
			rc = -1;
		}
		if (rc != 0)
			conn_close(t, c);
	}
}

static void *tcp_main(void *arg)
{
	struct dns_tcp *t = arg;
	unsigned *slot = calloc(t->max_conns, sizeof(*slot));

	if (!slot)
		return NULL;
	for (;;) {
		unsigned n = 0;

		t->pfd[0] =
			(struct pollfd){ .fd = t->wake_fd, .events = POLLIN };
		t->pfd[1] =
			(struct pollfd){ .fd = t->listen_fd, .events = POLLIN };
		for (unsigned i = 0; i < t->max_conns; i++) {
			struct conn *c = &t->conns[i];

			if (c->fd < 0)
				continue;
			t->pfd[2 + n] = (struct pollfd){
				.fd = c->fd, .events = c->out ? POLLOUT : POLLIN
			};
			slot[n++] = i;
		}
		if (poll(t->pfd, 2 + n, poll_timeout(t, clock_mono_ms())) < 0 &&
		    errno != EINTR)
			break;
		if (t->pfd[0].revents)
			break;
		serve(t, slot, n);
		if (t->pfd[1].revents)
			accept_all(t);
	}
	free(slot);
	return NULL;
}

static void tcp_free(struct dns_tcp *t)
{
	for (unsigned i = 0; t->conns && i < t->max_conns; i++)
		if (t->conns[i].fd >= 0)
			conn_close(t, &t->conns[i]);
	if (t->listen_fd >= 0)
		close(t->listen_fd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	dns_cache_free(t->cache);
	free(t->conns);
	free(t->pfd);
	free(t);
}

struct dns_tcp *dns_tcp_start(int fd, const struct dns_zone *z,
			      struct epboard *board, struct dns_stats *stats,
			      double rate, double burst, unsigned max_conns,
			      int64_t timeout_ms)
{
	struct dns_tcp *t = calloc(1, sizeof(*t));

	if (!t) {
		close(fd);
		return NULL;
	}
	t->listen_fd = fd;
	t->zone = z;
	t->board = board;
	t->stats = stats;
	t->max_conns = max_conns;
	t->timeout_ms = timeout_ms;
	dns_rate_init(&t->rate, rate, burst);
	t->conns = calloc(max_conns, sizeof(*t->conns));
	for (unsigned i = 0; t->conns && i < max_conns; i++)
		t->conns[i].fd = -1;
	t->pfd = calloc(max_conns + 2, sizeof(*t->pfd));
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	t->cache = dns_cache_new();
	if (!t->conns || !t->pfd || t->wake_fd < 0 || !t->cache) {
		tcp_free(t);
		return NULL;
	}
	if (pthread_create(&t->thread, NULL, tcp_main, t) != 0) {
		tcp_free(t);
		return NULL;
	}
	return t;
}

void dns_tcp_stop(struct dns_tcp *t)
{
	uint64_t one = 1;

	if (!t)
		return;
	if (write(t->wake_fd, &one, sizeof(one)) < 0)
		log_error("dns", "error=\"cannot wake the TCP thread\"");
	pthread_join(t->thread, NULL);
	tcp_free(t);
}
