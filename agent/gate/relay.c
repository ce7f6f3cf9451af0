/*
 * relay: the WebSocket byte relay of upgraded requests, run by the worker
 * thread. fetch.c sent the request on a connection of its own and read
 * the 101 head (what came after it waits in `down`); MHD sent the 101 on
 * and handed over the client's socket (what the client sent early waits
 * in `up`). From then on bytes move both ways through the two rings until
 * the upstream closes, or either side fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "log.h"
#include "upstream.h"
#include "worker.h"

static int upstream_fd(const struct preq *r)
{
	return r->uc ? r->uc->fd : -1;
}

void relay_close(struct worker *w, struct preq *r, const char *why)
{
	if (!r->relaying)
		return;
	log_debug("relay_closed", "uri=%.200s why=%s", r->uri, why);
	r->relaying = false;
	w->n_relays--;
	fetch_close(w, r);
	pthread_mutex_lock(&r->lock);
	r->done = true;
	pthread_mutex_unlock(&r->lock);
	if (r->urh)
		MHD_upgrade_action(r->urh, MHD_UPGRADE_ACTION_CLOSE);
	worker_release(w, r);
}

/* Write what `ring` holds to fd; -1 on a dead socket. */
static int flush(struct preq *r, struct ring *ring, int fd)
{
	pthread_mutex_lock(&r->lock);
	while (ring->len) {
		size_t n;
		const char *p = ring_peek(ring, &n);
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k < 0) {
			pthread_mutex_unlock(&r->lock);
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		}
		ring_drop(ring, (size_t)k);
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* Read what fd has into `ring`, as much as fits; true at its end. */
static bool fill(struct preq *r, struct ring *ring, int fd)
{
	char buf[16384];
	size_t room = ring_room(ring) < sizeof(buf) ? ring_room(ring)
						    : sizeof(buf);
	ssize_t k = room ? recv(fd, buf, room, MSG_DONTWAIT) : 0;

	if (k > 0) {
		pthread_mutex_lock(&r->lock);
		ring_put(ring, buf, (size_t)k);
		pthread_mutex_unlock(&r->lock);
		return false;
	}
	return room && (k == 0 || (errno != EAGAIN && errno != EINTR));
}

/* Move what can move; close the relay when both ways are over. */
void relay_step(struct worker *w, struct preq *r, short client_ev,
		short upstream_ev)
{
	int up = upstream_fd(r);

	if ((client_ev & POLLIN) && !r->client_eof)
		r->client_eof = fill(r, &r->up, r->client_fd);
	if ((upstream_ev & POLLIN) && up >= 0 && !r->upstream_eof)
		r->upstream_eof = fill(r, &r->down, up);
	if (flush(r, &r->down, r->client_fd))
		return relay_close(w, r, "client_error");
	if (up >= 0 && flush(r, &r->up, up))
		return relay_close(w, r, "upstream_error");
	if (r->client_eof && !r->up.len && up >= 0 && !r->upstream_shut) {
		shutdown(up, SHUT_WR); /* the client finished sending */
		r->upstream_shut = true;
	}
	if (up < 0 || (r->upstream_eof && !r->down.len))
		relay_close(w, r, "upstream_closed");
}

void relay_start(struct worker *w, struct preq *r)
{
	int fl = fcntl(r->client_fd, F_GETFL);

	if (!r->in_transfer || !r->uc) { /* it failed since the 101 */
		MHD_upgrade_action(r->urh, MHD_UPGRADE_ACTION_CLOSE);
		return;
	}
	if (fl >= 0)
		fcntl(r->client_fd, F_SETFL, fl | O_NONBLOCK);
	/* The connection is the relay's now; the transfer is over. */
	r->in_transfer = false;
	r->relaying = true;
	w->n_relays++;
	log_debug("relay_started", "uri=%.200s", r->uri);
	relay_step(w, r, 0, 0);
}

static bool grow_fds(struct worker *w, size_t need)
{
	size_t cap = w->fds_cap ? w->fds_cap : 64;
	struct pollfd *fds;
	struct preq **owners;

	if (need <= w->fds_cap)
		return true;
	while (cap < need)
		cap *= 2;
	fds = realloc(w->fds, cap * sizeof(*fds));
	if (fds)
		w->fds = fds;
	owners = realloc(w->owners, cap * sizeof(*owners));
	if (owners)
		w->owners = owners;
	if (!fds || !owners)
		return false;
	w->fds_cap = cap;
	return true;
}

/* fds[0] is our epoll set; then every relay's client and upstream
 * sockets. Returns the count, 1 when there is no relay. */
size_t relay_fds(struct worker *w)
{
	size_t n = 1;

	if (!grow_fds(w, 1))
		return 0;
	w->fds[0] = (struct pollfd){ w->epfd, POLLIN, 0 };
	for (struct preq *r = w->n_relays ? w->active : NULL; r; r = r->next) {
		short client = 0, upstream = 0;

		if (!r->relaying || !grow_fds(w, n + 2))
			continue;
		if (!r->client_eof && ring_room(&r->up))
			client |= POLLIN;
		if (r->down.len)
			client |= POLLOUT;
		if (!r->upstream_eof && ring_room(&r->down))
			upstream |= POLLIN;
		if (r->up.len)
			upstream |= POLLOUT;
		/* A side that is over and has nothing to take is left out
		 * (a negative fd): its hang-up would wake poll() for ever. */
		w->owners[n] = r;
		w->fds[n++] = (struct pollfd){ client ? r->client_fd : -1,
					       client, 0 };
		w->owners[n] = r;
		w->fds[n++] = (struct pollfd){ upstream ? upstream_fd(r) : -1,
					       upstream, 0 };
	}
	return n;
}

void relay_service(struct worker *w, size_t n)
{
	/* A relay's two entries are adjacent; step it once, then never
	 * touch it again (relay_step may release it). A hang-up or an
	 * error reads as "readable": recv then says which. */
	for (size_t i = 1; i + 1 < n; i += 2) {
		struct preq *r = w->owners[i];
		short client = w->fds[i].revents, upstream = w->fds[i + 1].revents;

		if (client & (POLLHUP | POLLERR))
			client |= POLLIN;
		if (upstream & (POLLHUP | POLLERR))
			upstream |= POLLIN;
		if (client || upstream)
			relay_step(w, r, client, upstream);
	}
}
