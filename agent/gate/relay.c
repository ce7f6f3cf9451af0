/*
 * relay: the WebSocket byte relay of upgraded requests (see upstream.c for
 * how curl and MHD hand the two sockets over), run by the worker thread.
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
	for (int i = 0; i < 4; i++)
		if (r->upstream_fds[i] >= 0)
			return r->upstream_fds[i];
	return -1;
}

void relay_close(struct worker *w, struct preq *r, const char *why)
{
	if (!r->relaying)
		return;
	log_debug("relay_closed", "uri=%.200s why=%s", r->uri, why);
	r->relaying = false;
	if (r->easy_in_multi) {
		curl_multi_remove_handle(w->multi, r->easy);
		r->easy_in_multi = false;
	}
	pthread_mutex_lock(&r->lock);
	r->done = true;
	pthread_mutex_unlock(&r->lock);
	if (r->urh)
		MHD_upgrade_action(r->urh, MHD_UPGRADE_ACTION_CLOSE);
	worker_release(w, r);
}

/* Write what `ring` holds to fd; -1 on a dead socket. */
int relay_flush(struct preq *r, struct ring *ring, int fd)
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

/* Move what can move; close the relay when both ways are over. */
void relay_step(struct worker *w, struct preq *r, short client_ev)
{
	int up = upstream_fd(r);

	if (client_ev & POLLIN) {
		char buf[16384];
		size_t room = ring_room(&r->up) < sizeof(buf) ? ring_room(&r->up)
							      : sizeof(buf);
		ssize_t k = room ? recv(r->client_fd, buf, room, MSG_DONTWAIT) : 0;

		if (k > 0) {
			pthread_mutex_lock(&r->lock);
			ring_put(&r->up, buf, (size_t)k);
			pthread_mutex_unlock(&r->lock);
		} else if (room && (k == 0 || (errno != EAGAIN && errno != EINTR))) {
			r->client_eof = true;
		}
	}
	if (relay_flush(r, &r->down, r->client_fd))
		return relay_close(w, r, "client_error");
	if (ring_room(&r->down) >= r->down.cap / 2)
		worker_unpause(r, CURLPAUSE_RECV);
	if (up >= 0 && r->easy_in_multi && relay_flush(r, &r->up, up))
		return relay_close(w, r, "upstream_error");
	if (r->client_eof && !r->up.len && up >= 0 && !r->upstream_shut) {
		shutdown(up, SHUT_WR); /* the client finished sending */
		r->upstream_shut = true;
	}
	if (r->upstream_eof && !r->down.len)
		relay_close(w, r, "upstream_closed");
	else if (r->client_eof && !r->easy_in_multi)
		relay_close(w, r, "client_closed");
}

void relay_start(struct worker *w, struct preq *r)
{
	int fl = fcntl(r->client_fd, F_GETFL);

	if (fl >= 0)
		fcntl(r->client_fd, F_SETFL, fl | O_NONBLOCK);
	r->relaying = true;
	r->upstream_eof = r->done;
	log_debug("relay_started", "uri=%.200s", r->uri);
	relay_step(w, r, 0);
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

/* fds[0] is our epoll set; then every relay's client (and upstream, when
 * it must drain). Returns the count, 1 when there is no relay. */
size_t relay_fds(struct worker *w)
{
	size_t n = 1;

	if (!grow_fds(w, 1))
		return 0;
	w->fds[0] = (struct pollfd){ w->epfd, POLLIN, 0 };
	for (struct preq *r = w->active; r; r = r->next) {
		int up = upstream_fd(r);
		short ev = 0;

		if (!r->relaying || !grow_fds(w, n + 2))
			continue;
		if (!r->client_eof && ring_room(&r->up))
			ev |= POLLIN;
		if (r->down.len)
			ev |= POLLOUT;
		w->owners[n] = r;
		w->fds[n++] = (struct pollfd){ r->client_fd, ev, 0 };
		if (r->up.len && up >= 0 && r->easy_in_multi) {
			w->owners[n] = r;
			w->fds[n++] = (struct pollfd){ up, POLLOUT, 0 };
		}
	}
	return n;
}

void relay_service(struct worker *w, size_t n)
{
	for (size_t i = 1; i < n;) {
		struct preq *r = w->owners[i];
		short client_ev = 0, any = 0;

		/* A relay's entries are adjacent; step it once, then never
		 * touch it again (relay_step may release it). A hang-up or an
		 * error reads as "readable": recv then says which. */
		for (; i < n && w->owners[i] == r; i++) {
			any |= w->fds[i].revents;
			if (w->fds[i].fd == r->client_fd)
				client_ev |= w->fds[i].revents;
		}
		if (client_ev & (POLLHUP | POLLERR))
			client_ev |= POLLIN;
		if (any)
			relay_step(w, r, client_ev);
	}
}
