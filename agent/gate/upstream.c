/*
 * upstream: the workers (see upstream.h). A worker's loop takes the ops
 * client threads posted, drives its curl multi handle, reaps finished
 * transfers, fails those whose response head is overdue (504), and moves
 * the bytes of its WebSocket relays; curl_multi_poll waits on curl's
 * sockets and the relays' client sockets at once.
 *
 * A relay is an upgraded request: curl sent the request head and parsed
 * the upstream's 101 head (so nothing here parses HTTP), and it keeps
 * reading the upstream's bytes as a body of unknown length, which the
 * write callback passes to the client socket. The other way, the worker
 * reads the client socket and writes the upstream socket that curl opened
 * for this transfer alone (curl never writes to it again once the request
 * is sent).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "upstream.h"

#define POLL_IDLE_MS  1000  /* nothing due: look at the clock this often */
#define POLL_HEAD_MS  50    /* a response head is awaited: finer */

struct worker {
	struct gate_server *server;
	int index;
	CURLM *multi;
	pthread_t thread;
	pthread_mutex_t qlock;
	struct preq *q_head, *q_tail;   /* under qlock */
	bool stopping;                  /* under qlock */
	struct preq *active;            /* transfers and relays */
	struct curl_waitfd *fds;        /* relay sockets for curl_multi_poll */
	struct preq **owners;           /* the relay of each fds[i] */
	size_t fds_cap;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int worker_post(struct worker *w, struct preq *r, unsigned ops)
{
	pthread_mutex_lock(&w->qlock);
	if (w->stopping) {
		pthread_mutex_unlock(&w->qlock);
		return -1;
	}
	r->ops |= ops;
	if (!r->in_queue) {
		r->in_queue = true;
		r->q_next = NULL;
		preq_ref(r);
		if (w->q_tail)
			w->q_tail->q_next = r;
		else
			w->q_head = r;
		w->q_tail = r;
	}
	pthread_mutex_unlock(&w->qlock);
	curl_multi_wakeup(w->multi);
	return 0;
}

/* ---- the list of transfers and relays ---------------------------------- */

static void list_add(struct worker *w, struct preq *r)
{
	r->prev = NULL;
	r->next = w->active;
	if (w->active)
		w->active->prev = r;
	w->active = r;
}

/* Drop r from the worker once neither its transfer nor its relay lives. */
static void maybe_release(struct worker *w, struct preq *r)
{
	if (r->easy_in_multi || r->relaying)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else if (w->active == r)
		w->active = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	preq_unref(r); /* the worker's */
}

/* ---- relays ------------------------------------------------------------ */

static int upstream_fd(const struct preq *r)
{
	for (int i = 0; i < 4; i++)
		if (r->upstream_fds[i] >= 0)
			return r->upstream_fds[i];
	return -1;
}

static void relay_close(struct worker *w, struct preq *r, const char *why)
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
	maybe_release(w, r);
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

static void unpause(struct preq *r, int bit)
{
	if (r->easy_in_multi && (r->pause_mask & bit)) {
		r->pause_mask &= ~bit;
		curl_easy_pause(r->easy, r->pause_mask);
	}
}

/* Move what can move; close the relay when both ways are over. */
static void relay_step(struct worker *w, struct preq *r, short client_ev)
{
	int up = upstream_fd(r);

	if (client_ev & CURL_WAIT_POLLIN) {
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
	if (flush(r, &r->down, r->client_fd))
		return relay_close(w, r, "client_error");
	if (ring_room(&r->down) >= r->down.cap / 2)
		unpause(r, CURLPAUSE_RECV);
	if (up >= 0 && r->easy_in_multi && flush(r, &r->up, up))
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

static void relay_start(struct worker *w, struct preq *r)
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
	struct curl_waitfd *fds;
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

/* The pollfds of every relay's client (and upstream, when it must drain). */
static size_t relay_fds(struct worker *w)
{
	size_t n = 0;

	for (struct preq *r = w->active; r; r = r->next) {
		int up = upstream_fd(r);
		short ev = 0;

		if (!r->relaying || !grow_fds(w, n + 2))
			continue;
		if (!r->client_eof && ring_room(&r->up))
			ev |= CURL_WAIT_POLLIN;
		if (r->down.len)
			ev |= CURL_WAIT_POLLOUT;
		w->owners[n] = r;
		w->fds[n++] = (struct curl_waitfd){ r->client_fd, ev, 0 };
		if (r->up.len && up >= 0 && r->easy_in_multi) {
			w->owners[n] = r;
			w->fds[n++] = (struct curl_waitfd){ up, CURL_WAIT_POLLOUT, 0 };
		}
	}
	return n;
}

static void relay_service(struct worker *w, size_t n)
{
	for (size_t i = 0; i < n;) {
		struct preq *r = w->owners[i];
		short client_ev = 0, any = 0;

		/* A relay's entries are adjacent; step it once, then never
		 * touch it again (relay_step may release it). */
		for (; i < n && w->owners[i] == r; i++) {
			any |= w->fds[i].revents;
			if (w->fds[i].fd == r->client_fd)
				client_ev |= w->fds[i].revents;
		}
		if (any)
			relay_step(w, r, client_ev);
	}
}

/* ---- curl callbacks (worker thread) ------------------------------------ */

size_t upstream_on_header(char *p, size_t size, size_t n, void *ud)
{
	struct preq *r = ud;
	size_t len = size * n;
	long code = 0;

	/* The blank line ends a head; 1xx heads are interim (but 101 is the
	 * answer to an upgrade). Trailers come after head_done: ignored. */
	if (r->head_done || len > 2 || (p[0] != '\r' && p[0] != '\n'))
		return len;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 || code == 101) {
		r->head_done = true;
		proxy_head_done(r);
	}
	return len;
}

size_t upstream_on_write(char *p, size_t size, size_t n, void *ud)
{
	struct preq *r = ud;
	size_t len = size * n;

	pthread_mutex_lock(&r->lock);
	if (!r->conn && !r->urh) {
		pthread_mutex_unlock(&r->lock);
		return 0; /* the client is gone: fail the transfer */
	}
	if (ring_room(&r->down) < len) {
		r->recv_paused = true;
		pthread_mutex_unlock(&r->lock);
		r->pause_mask |= CURLPAUSE_RECV;
		return CURL_WRITEFUNC_PAUSE;
	}
	ring_put(&r->down, p, len);
	proxy_wake_client(r);
	pthread_mutex_unlock(&r->lock);
	if (r->relaying && flush(r, &r->down, r->client_fd))
		r->client_eof = true; /* relay_step closes it */
	return len;
}

size_t upstream_on_read(char *p, size_t size, size_t n, void *ud)
{
	struct preq *r = ud;
	size_t k;

	pthread_mutex_lock(&r->lock);
	if (r->up.len) {
		k = ring_take(&r->up, p, size * n);
		if (ring_room(&r->up) >= r->up.cap / 2)
			proxy_wake_client(r);
	} else if (r->up_eof) {
		k = 0;
	} else if (!r->conn) {
		k = CURL_READFUNC_ABORT;
	} else {
		r->send_paused = true;
		r->pause_mask |= CURLPAUSE_SEND;
		k = CURL_READFUNC_PAUSE;
	}
	pthread_mutex_unlock(&r->lock);
	return k;
}

curl_socket_t upstream_open_socket(void *ud, curlsocktype purpose,
				   struct curl_sockaddr *addr)
{
	struct preq *r = ud;
	int fd;

	(void)purpose;
	fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	for (int i = 0; fd >= 0 && i < 4; i++)
		if (r->upstream_fds[i] < 0) {
			r->upstream_fds[i] = fd;
			return fd;
		}
	if (fd >= 0)
		close(fd);
	return CURL_SOCKET_BAD;
}

int upstream_close_socket(void *ud, curl_socket_t fd)
{
	struct preq *r = ud;

	for (int i = 0; i < 4; i++)
		if (r->upstream_fds[i] == fd)
			r->upstream_fds[i] = -1;
	return close(fd);
}

/* ---- transfers --------------------------------------------------------- */

/* The transfer is over (code), or given up (fail_status 504/503). */
static void finish(struct worker *w, struct preq *r, CURLcode code,
		   unsigned fail_status)
{
	bool client;

	curl_multi_remove_handle(w->multi, r->easy);
	r->easy_in_multi = false;
	pthread_mutex_lock(&r->lock);
	r->done = true;
	r->result = code;
	if (!r->head_done)
		r->fail_status = fail_status ? fail_status
				 : code == CURLE_OPERATION_TIMEDOUT ? 504 : 502;
	proxy_wake_client(r);
	client = r->conn != NULL;
	pthread_mutex_unlock(&r->lock);
	if (code != CURLE_OK && client) {
		char q[300];

		log_warn("upstream_failed", "uri=%s status=%u error=%s",
			 log_quote(q, sizeof(q), r->uri),
			 r->head_done ? 0 : r->fail_status,
			 curl_easy_strerror(code));
	}
	if (r->relaying) {
		r->upstream_eof = true;
		relay_step(w, r, 0);
		return;
	}
	maybe_release(w, r);
}

static void start_transfer(struct worker *w, struct preq *r)
{
	bool gone;

	pthread_mutex_lock(&r->lock);
	gone = !r->conn;
	pthread_mutex_unlock(&r->lock);
	if (gone || curl_multi_add_handle(w->multi, r->easy) != CURLM_OK) {
		finish(w, r, CURLE_ABORTED_BY_CALLBACK, 502);
		return;
	}
	r->easy_in_multi = true;
	r->deadline_ms = now_ms() + w->server->conf->upstream_timeout_ms;
	list_add(w, r);
}

static void run_ops(struct worker *w, struct preq *r, unsigned ops)
{
	if (ops & OP_START)
		start_transfer(w, r);
	if ((ops & OP_ABORT) && r->easy_in_multi && !r->relaying)
		finish(w, r, CURLE_ABORTED_BY_CALLBACK, 502);
	if (ops & OP_SEND)
		unpause(r, CURLPAUSE_SEND);
	if (ops & OP_RECV)
		unpause(r, CURLPAUSE_RECV);
	if ((ops & OP_UPGRADED) && !r->relaying)
		relay_start(w, r);
}

/* Run what client threads asked; false once the worker must stop. */
static bool take_queue(struct worker *w)
{
	struct preq *r;
	bool stopping;

	pthread_mutex_lock(&w->qlock);
	r = w->q_head;
	w->q_head = w->q_tail = NULL;
	stopping = w->stopping;
	pthread_mutex_unlock(&w->qlock);
	while (r) {
		struct preq *next;
		unsigned ops;

		pthread_mutex_lock(&w->qlock);
		next = r->q_next;
		ops = r->ops;
		r->ops = 0;
		r->in_queue = false;
		pthread_mutex_unlock(&w->qlock);
		run_ops(w, r, ops);
		preq_unref(r); /* the queue's */
		r = next;
	}
	return !stopping;
}

static void reap(struct worker *w)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(w->multi, &left))) {
		struct preq *r = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r)
			finish(w, r, m->data.result, 0);
	}
}

/* 504 for each transfer whose response head is overdue. */
static bool check_deadlines(struct worker *w)
{
	long long now = now_ms();
	bool waiting = false;

	for (struct preq *r = w->active, *next; r; r = next) {
		next = r->next;
		if (!r->easy_in_multi || r->head_done)
			continue;
		if (now < r->deadline_ms) {
			waiting = true;
			continue;
		}
		snprintf(r->error, sizeof(r->error), "no response head in time");
		finish(w, r, CURLE_OPERATION_TIMEDOUT, 504);
	}
	return waiting;
}

static void stop_all(struct worker *w)
{
	while (w->active) {
		struct preq *r = w->active;

		if (r->relaying)
			relay_close(w, r, "stopping");
		else
			finish(w, r, CURLE_ABORTED_BY_CALLBACK, 503);
	}
}

static void *run(void *arg)
{
	struct worker *w = arg;
	int running;

	while (take_queue(w)) {
		bool waiting;
		size_t n;

		curl_multi_perform(w->multi, &running);
		reap(w);
		waiting = check_deadlines(w);
		n = relay_fds(w);
		curl_multi_poll(w->multi, w->fds, (unsigned)n,
				waiting ? POLL_HEAD_MS : POLL_IDLE_MS, NULL);
		relay_service(w, n);
	}
	stop_all(w);
	return NULL;
}

struct worker *worker_start(struct gate_server *s, int index, char *err,
			    size_t errlen)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (!w || !(w->multi = curl_multi_init())) {
		snprintf(err, errlen, "out of memory");
		free(w);
		return NULL;
	}
	w->server = s;
	w->index = index;
	pthread_mutex_init(&w->qlock, NULL);
	curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS,
			  (long)s->conf->upstream_idle);
	if (pthread_create(&w->thread, NULL, run, w)) {
		snprintf(err, errlen, "cannot start an upstream thread");
		curl_multi_cleanup(w->multi);
		pthread_mutex_destroy(&w->qlock);
		free(w);
		return NULL;
	}
	return w;
}

void worker_stop(struct worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->qlock);
	w->stopping = true;
	pthread_mutex_unlock(&w->qlock);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thread, NULL);
	take_queue(w); /* what was posted meanwhile: drop the queue's refs */
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	curl_multi_cleanup(w->multi);
	pthread_mutex_destroy(&w->qlock);
	free(w->fds);
	free(w->owners);
	free(w);
}
