/*
 * upstream: the workers (see upstream.h). Each worker thread owns one
 * libmicrohttpd daemon (external epoll mode; the daemons share the port
 * through SO_REUSEPORT) and the upstream side of its requests (fetch.c:
 * a pool of keep-alive connections to the app), all on one epoll set of
 * its own. The client side and the upstream side of a request therefore
 * run on the same thread: no hand-off between threads, and a client
 * connection is suspended only while its data is not there yet. Each loop
 * takes the ops posted (by MHD's callbacks on this thread, or another
 * thread to stop), reads and writes the upstream sockets that are ready,
 * runs MHD, fails transfers whose deadline passed (502, 504, or a cut
 * mid-body), and moves the bytes of its WebSocket relays.
 *
 * A relay is an upgraded request: fetch.c sent the request head on a
 * connection of its own and http-parser read the 101 head; then the relay
 * (relay.c) moves bytes between that socket and the client's. Relays are
 * rare: their sockets are poll()ed next to the epoll set rather than kept
 * in it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "upstream.h"
#include "worker.h"

#define POLL_IDLE_MS  1000  /* nothing due: look at the clock this often */
#define MAX_EVENTS    64

/* The worker whose thread this is (NULL elsewhere). */
static _Thread_local struct worker *current;

long long worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct worker *worker_current(void)
{
	return current;
}

static void wake(struct worker *w)
{
	uint64_t one = 1;

	if (write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("wake_failed", "error=%s", strerror(errno));
}

/* In external mode MHD_resume_connection does not wake the daemon: the
 * loop must run it again, before it waits. */
void worker_kick(struct worker *w)
{
	atomic_store_explicit(&w->kick, true, memory_order_relaxed);
	if (current != w)
		wake(w);
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
	/* On its own thread the loop runs the queue before it waits again. */
	if (current != w)
		wake(w);
	return 0;
}

/* ---- reusable parts ---------------------------------------------------- */

/* Two rings of cap bytes and the head buffers, reused when possible:
 * fresh ones per request were a good part of a small request's time. */
int worker_take_parts(struct worker *w, struct preq *r, size_t cap)
{
	if (current == w && w->n_parts) {
		struct parts *p = &w->parts[--w->n_parts];

		r->up.buf = p->up;
		r->down.buf = p->down;
		r->out = p->out;
		r->head = p->head;
	} else {
		r->up.buf = malloc(cap);
		r->down.buf = malloc(cap);
	}
	r->up.cap = r->down.cap = cap;
	return r->up.buf && r->down.buf ? 0 : -1;
}

/* Keep r's buffers for the next request, on r's worker's thread only. */
void worker_recycle(struct worker *w, struct preq *r)
{
	struct parts *p;

	if (current != w || w->n_parts >= PARTS_CACHE || !r->up.buf ||
	    !r->down.buf)
		return;
	p = &w->parts[w->n_parts++];
	p->up = r->up.buf;
	p->down = r->down.buf;
	p->out = (struct buf){ r->out.p, 0, 0, r->out.cap };
	p->head = (struct buf){ r->head.p, 0, 0, r->head.cap };
	r->up.buf = r->down.buf = r->out.p = r->head.p = NULL;
}

/* ---- the list of transfers and relays ---------------------------------- */

/* Drop r from the worker once neither its transfer nor its relay lives. */
void worker_release(struct worker *w, struct preq *r)
{
	if (r->in_transfer || r->relaying)
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

void worker_check_by(struct worker *w, long long when)
{
	if (w->next_check > when)
		w->next_check = when;
}

static void run_ops(struct worker *w, struct preq *r, unsigned ops)
{
	if (ops & OP_START)
		fetch_start(w, r);
	if ((ops & OP_ABORT) && !r->relaying)
		fetch_fail(w, r, 502, "the client went away");
	if (ops & OP_SEND)
		fetch_send(w, r);
	if (ops & OP_RECV)
		fetch_recv(w, r);
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

static void stop_all(struct worker *w)
{
	while (w->active) {
		struct preq *r = w->active;

		if (r->relaying)
			relay_close(w, r, "stopping");
		else
			fetch_fail(w, r, 503, "the gate is stopping");
	}
	fetch_close_pool(w);
}

/* ---- the loop ---------------------------------------------------------- */

static int wait_ms(struct worker *w, long long now)
{
	long long t = w->next_check - now;
	MHD_UNSIGNED_LONG_LONG mt;

	if (atomic_load_explicit(&w->kick, memory_order_relaxed))
		return 0;
	if (MHD_get_timeout(w->mhd, &mt) == MHD_YES && (long long)mt < t)
		t = (long long)mt;
	return t < 0 ? 0 : (int)t;
}

/* Wait for anything, then let the upstream side and MHD act on it. */
static void step(struct worker *w)
{
	struct epoll_event evs[MAX_EVENTS];
	size_t n = relay_fds(w);
	int timeout = wait_ms(w, worker_now_ms()), k;
	bool mhd = false;
	long long now;

	if (n > 1 && poll(w->fds, n, timeout) > 0)
		timeout = 0;
	k = epoll_wait(w->epfd, evs, MAX_EVENTS, n > 1 ? 0 : timeout);
	for (int i = 0; i < k; i++) {
		int tag = *(const int *)evs[i].data.ptr;
		uint64_t v;

		if (tag == TAG_MHD) {
			mhd = true;
		} else if (tag == TAG_WAKE) {
			if (read(w->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_warn("wake_failed", "error=%s", strerror(errno));
		} else {
			fetch_event(w, evs[i].data.ptr, evs[i].events);
		}
	}
	/* Also on a timeout: MHD's own (idle connections) may be due. */
	if (atomic_exchange_explicit(&w->kick, false, memory_order_relaxed) ||
	    mhd || k <= 0)
		MHD_run(w->mhd);
	now = worker_now_ms();
	if (now >= w->next_check) {
		long long next = fetch_deadlines(w, now);

		w->next_check = now + POLL_IDLE_MS;
		if (next >= 0)
			worker_check_by(w, next);
	}
	if (n > 1)
		relay_service(w, n);
	fetch_reap(w);
}

/* Drain: stop accepting. On the daemon's own thread, as MHD wants. */
static void maybe_quiesce(struct worker *w)
{
	MHD_socket fd;

	if (!atomic_exchange(&w->quiesce, false))
		return;
	fd = MHD_quiesce_daemon(w->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

static void *run(void *arg)
{
	struct worker *w = arg;

	current = w;
	/* What the queue starts is sent at once; step() then waits. */
	while (take_queue(w)) {
		maybe_quiesce(w);
		step(w);
	}
	stop_all(w);
	current = NULL;
	return NULL;
}

static int watch(struct worker *w, int fd, int *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int worker_init(struct worker *w, struct MHD_Daemon *mhd)
{
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD);

	w->mhd = mhd;
	w->mhd_tag = TAG_MHD;
	w->wake_tag = TAG_WAKE;
	w->next_check = worker_now_ms() + POLL_IDLE_MS;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!info || w->epfd < 0 || w->wake_fd < 0)
		return -1;
	w->mhd_fd = info->epoll_fd;
	if (watch(w, w->mhd_fd, &w->mhd_tag) || watch(w, w->wake_fd, &w->wake_tag))
		return -1;
	return 0;
}

struct worker *worker_start(struct gate_server *s, int index,
			    struct MHD_Daemon *mhd, char *err, size_t errlen)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->server = s;
	w->index = index;
	w->epfd = w->wake_fd = -1;
	pthread_mutex_init(&w->qlock, NULL);
	atomic_init(&w->quiesce, false);
	if (worker_init(w, mhd)) {
		snprintf(err, errlen, "cannot set up an upstream worker: %s",
			 strerror(errno));
		worker_free(w);
		return NULL;
	}
	if (pthread_create(&w->thread, NULL, run, w)) {
		snprintf(err, errlen, "cannot start an upstream thread");
		worker_free(w);
		return NULL;
	}
	w->started = true;
	return w;
}

void worker_drain(struct worker *w)
{
	atomic_store(&w->quiesce, true);
	wake(w);
}

void worker_stop(struct worker *w)
{
	if (!w || !w->started)
		return;
	pthread_mutex_lock(&w->qlock);
	w->stopping = true;
	pthread_mutex_unlock(&w->qlock);
	wake(w);
	pthread_join(w->thread, NULL);
	w->started = false;
	take_queue(w); /* what was posted meanwhile: drop the queue's refs */
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_parts; i++) {
		free(w->parts[i].up);
		free(w->parts[i].down);
		free(w->parts[i].out.p);
		free(w->parts[i].head.p);
	}
	fetch_close_pool(w);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	pthread_mutex_destroy(&w->qlock);
	free(w->fds);
	free(w->owners);
	free(w);
}
