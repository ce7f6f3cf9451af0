/*
 * relay: the byte tunnel of an upgraded request (see relay.h). Both
 * sockets are in the worker's epoll set; each side is read only while the
 * ring it fills has room, and written while the ring it drains has bytes.
 */
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

#include "log.h"
#include "relay.h"

#define RELAY_READ_MAX 16384

void relay_close(struct relay *r, const char *why)
{
	if (!r->running)
		return;
	log_debug("relay_closed", "uri=%.200s why=%s", r->uri, why);
	r->running = false;
	loop_retire(r->loop, &r->upstream);
	r->over(r);
}

/* Write what `ring` holds to fd; -1 on a dead socket. */
static int flush(struct ring *ring, int fd)
{
	while (ring->len) {
		size_t n;
		const char *p = ring_peek(ring, &n);
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		ring_drop(ring, (size_t)k);
	}
	return 0;
}

/* Read what fd has into `ring`, as much as fits; true at its end. */
static bool fill(struct ring *ring, int fd)
{
	char buf[RELAY_READ_MAX];
	size_t room = ring_room(ring) < sizeof(buf) ? ring_room(ring) :
						      sizeof(buf);
	ssize_t k = room ? recv(fd, buf, room, MSG_DONTWAIT) : 0;

	if (k > 0) {
		ring_put(ring, buf, (size_t)k);
		return false;
	}
	return room && (k == 0 || (errno != EAGAIN && errno != EINTR));
}

/* Interest follows the rings: read into room, write what is held. */
static void interest(struct relay *r)
{
	loop_set(r->loop, r->client,
		 (!r->client_eof && ring_room(r->up) ? EPOLLIN : 0u) |
			 (r->down->len ? EPOLLOUT : 0u));
	loop_set(r->loop, &r->upstream,
		 (!r->upstream_eof && ring_room(r->down) ? EPOLLIN : 0u) |
			 (r->up->len ? EPOLLOUT : 0u));
}

/* Move what can move; end the relay when both ways are over. */
static void step(struct relay *r, uint32_t client_ev, uint32_t upstream_ev)
{
	const uint32_t readable = EPOLLIN | EPOLLHUP | EPOLLERR;
	size_t up = r->up->len, down = r->down->len;
	bool moved;

	if ((client_ev & readable) && !r->client_eof)
		r->client_eof = fill(r->up, r->client->fd);
	if ((upstream_ev & readable) && !r->upstream_eof)
		r->upstream_eof = fill(r->down, r->upstream.fd);
	moved = r->up->len != up || r->down->len != down;
	up = r->up->len;
	down = r->down->len;
	if (flush(r->down, r->client->fd))
		return relay_close(r, "client_error");
	if (flush(r->up, r->upstream.fd))
		return relay_close(r, "upstream_error");
	/* The owner closes a tunnel in which nothing moved for a while. */
	if (moved || r->up->len != up || r->down->len != down)
		r->moved_ms = loop_now_ms();
	if (r->client_eof && !r->up->len && !r->upstream_shut) {
		shutdown(r->upstream.fd, SHUT_WR); /* the client is done */
		r->upstream_shut = true;
	}
	if (r->upstream_eof && !r->down->len)
		return relay_close(r, "upstream_closed");
	interest(r);
}

static void on_upstream(struct watch *w, uint32_t events)
{
	struct relay *r =
		(struct relay *)((char *)w - offsetof(struct relay, upstream));

	step(r, 0, events);
}

void relay_client_event(struct relay *r, uint32_t events)
{
	if (r->running)
		step(r, events, 0);
}

void relay_start(struct relay *r, int upstream_fd)
{
	r->upstream = (struct watch){ .fd = upstream_fd, .fn = on_upstream };
	r->client_eof = r->upstream_eof = r->upstream_shut = false;
	r->running = true;
	r->moved_ms = loop_now_ms();
	log_debug("relay_started", "uri=%.200s", r->uri);
	/* Bytes that came with the heads may wait in the rings already. */
	step(r, 0, 0);
}
