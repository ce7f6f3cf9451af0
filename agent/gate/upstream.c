/*
 * upstream: the workers (see upstream.h). Each worker thread owns one
 * libmicrohttpd daemon (external epoll mode; the daemons share the port
 * through SO_REUSEPORT) and one curl multi handle driven by
 * curl_multi_socket_action, all on one epoll set of its own. The client
 * side and the upstream side of a request therefore run on the same
 * thread: no hand-off between threads, and a client connection is
 * suspended only while its data is not there yet. Each loop takes the ops
 * posted (by MHD's callbacks on this thread, or another thread to stop),
 * lets curl act on the sockets that are ready and on its timer, runs MHD,
 * fails transfers whose response head is overdue (504), and moves the
 * bytes of its WebSocket relays.
 *
 * A relay is an upgraded request: curl sent the request head and parsed
 * the upstream's 101 head (so nothing here parses HTTP), and it keeps
 * reading the upstream's bytes as a body of unknown length, which the
 * write callback passes to the client socket. The other way, the worker
 * reads the client socket and writes the upstream socket that curl opened
 * for this transfer alone (curl never writes to it again once the request
 * is sent). Relays are rare: their sockets are poll()ed next to the epoll
 * set rather than kept in it.
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
#define POLL_HEAD_MS  50    /* a response head is awaited: finer */
#define MAX_EVENTS    64

static void forget_fd(struct worker *w, int fd);

/* The worker whose thread this is (NULL elsewhere). */
static _Thread_local struct worker *current;

static long long now_ms(void)
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

/* An easy handle and two rings of cap bytes, reused when possible: a new
 * easy handle (calloc'd, its buffers allocated on first use) and fresh
 * rings per request were a good part of a small request's time. */
int worker_take_parts(struct worker *w, struct preq *r, size_t cap)
{
	bool mine = current == w;

	r->easy = mine && w->n_easy ? w->easy[--w->n_easy] : curl_easy_init();
	if (mine && w->n_rings) {
		w->n_rings--;
		r->up.buf = w->rings[w->n_rings].up;
		r->down.buf = w->rings[w->n_rings].down;
	} else {
		r->up.buf = malloc(cap);
		r->down.buf = malloc(cap);
	}
	r->up.cap = r->down.cap = cap;
	return r->easy && r->up.buf && r->down.buf ? 0 : -1;
}

/* Keep r's parts for the next request, on r's worker's thread only. Few
 * rings are kept: a big body touches all of theirs, and memory must stay
 * flat; an upgraded request's handle (its own socket callbacks): not kept. */
void worker_recycle(struct worker *w, struct preq *r)
{
	if (current != w)
		return;
	if (r->easy && !r->upgrade && w->n_easy < EASY_CACHE) {
		curl_easy_reset(r->easy);
		w->easy[w->n_easy++] = r->easy;
		r->easy = NULL;
	}
	if (r->up.buf && r->down.buf && w->n_rings < RING_CACHE) {
		w->rings[w->n_rings].up = r->up.buf;
		w->rings[w->n_rings++].down = r->down.buf;
		r->up.buf = r->down.buf = NULL;
	}
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
void worker_release(struct worker *w, struct preq *r)
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

void worker_unpause(struct preq *r, int bit)
{
	if (r->easy_in_multi && (r->pause_mask & bit)) {
		r->pause_mask &= ~bit;
		curl_easy_pause(r->easy, r->pause_mask);
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
	if (r->relaying && relay_flush(r, &r->down, r->client_fd))
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
	if (fd < 0)
		return CURL_SOCKET_BAD;
	forget_fd(r->worker, fd);
	if (!r->upgrade)
		return fd;
	for (int i = 0; i < 4; i++)
		if (r->upstream_fds[i] < 0) {
			r->upstream_fds[i] = fd;
			return fd;
		}
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
	worker_release(w, r);
}

static void start_transfer(struct worker *w, struct preq *r)
{
	long long now;
	bool gone;

	pthread_mutex_lock(&r->lock);
	gone = !r->conn;
	pthread_mutex_unlock(&r->lock);
	if (gone || curl_multi_add_handle(w->multi, r->easy) != CURLM_OK) {
		finish(w, r, CURLE_ABORTED_BY_CALLBACK, 502);
		return;
	}
	r->easy_in_multi = true;
	now = now_ms();
	r->deadline_ms = now + w->server->conf->upstream_timeout_ms;
	if (w->next_check > now + POLL_HEAD_MS) /* look at it in time */
		w->next_check = now + POLL_HEAD_MS;
	list_add(w, r);
}

static void run_ops(struct worker *w, struct preq *r, unsigned ops)
{
	if (ops & OP_START)
		start_transfer(w, r);
	if ((ops & OP_ABORT) && r->easy_in_multi && !r->relaying)
		finish(w, r, CURLE_ABORTED_BY_CALLBACK, 502);
	if (ops & OP_SEND)
		worker_unpause(r, CURLPAUSE_SEND);
	if (ops & OP_RECV)
		worker_unpause(r, CURLPAUSE_RECV);
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
static void check_deadlines(struct worker *w, long long now)
{
	w->waiting = false;
	for (struct preq *r = w->active, *next; r; r = next) {
		next = r->next;
		if (!r->easy_in_multi || r->head_done)
			continue;
		if (now < r->deadline_ms) {
			w->waiting = true;
			continue;
		}
		snprintf(r->error, sizeof(r->error), "no response head in time");
		finish(w, r, CURLE_OPERATION_TIMEDOUT, 504);
	}
	w->next_check = now + (w->waiting ? POLL_HEAD_MS : POLL_IDLE_MS);
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

/* ---- the loop ---------------------------------------------------------- */

static struct fdstate *fd_state(struct worker *w, int fd)
{
	size_t cap = w->fdst_cap ? w->fdst_cap : 256;
	struct fdstate *st;

	if (fd < 0)
		return NULL;
	if ((size_t)fd < w->fdst_cap)
		return &w->fdst[fd];
	while (cap <= (size_t)fd)
		cap *= 2;
	if (!(st = realloc(w->fdst, cap * sizeof(*st))))
		return NULL;
	memset(st + w->fdst_cap, 0, (cap - w->fdst_cap) * sizeof(*st));
	w->fdst = st;
	w->fdst_cap = cap;
	return &st[fd];
}

/* fd is a new socket: whatever its number was registered as died with the
 * old socket (the kernel drops a closed one from the epoll set). */
static void forget_fd(struct worker *w, int fd)
{
	if (w && (size_t)fd < w->fdst_cap)
		w->fdst[fd] = (struct fdstate){ 0, false };
}

/* Keep curl's interest in a socket in our epoll set. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *ud,
		     void *sockp)
{
	struct worker *w = ud;
	struct fdstate *st = fd_state(w, fd);
	struct epoll_event ev = { .data.fd = fd };
	bool known = st ? st->events != 0 : sockp != NULL;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (st && st->events)
			st->parked = true;
		else
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
		    (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
	if (!st || st->events != ev.events) {
		/* Should the table be wrong, the other call is right. */
		if (epoll_ctl(w->epfd, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
			      fd, &ev) &&
		    epoll_ctl(w->epfd, known ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
			      fd, &ev))
			log_warn("epoll_failed", "fd=%d error=%s", fd,
				 strerror(errno));
	}
	if (st)
		*st = (struct fdstate){ ev.events, false };
	if (!sockp)
		curl_multi_assign(w->multi, fd, w);
	return 0;
}

/* An event on a parked socket: curl does not want it; drop it. */
static bool parked(struct worker *w, int fd)
{
	struct fdstate *st = (size_t)fd < w->fdst_cap ? &w->fdst[fd] : NULL;

	if (!st || !st->parked)
		return false;
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
	*st = (struct fdstate){ 0, false };
	return true;
}

static int on_timer(CURLM *m, long ms, void *ud)
{
	struct worker *w = ud;

	(void)m;
	w->curl_due = ms < 0 ? -1 : now_ms() + ms;
	return 0;
}

static int wait_ms(struct worker *w, long long now)
{
	long long t = w->next_check - now;
	MHD_UNSIGNED_LONG_LONG mt;

	if (atomic_load_explicit(&w->kick, memory_order_relaxed))
		return 0;
	if (w->curl_due >= 0 && w->curl_due - now < t)
		t = w->curl_due - now;
	if (MHD_get_timeout(w->mhd, &mt) == MHD_YES && (long long)mt < t)
		t = (long long)mt;
	return t < 0 ? 0 : (int)t;
}

/* Wait for anything, then let curl and MHD act on it. */
static void step(struct worker *w)
{
	struct epoll_event evs[MAX_EVENTS];
	size_t n = relay_fds(w);
	int timeout = wait_ms(w, now_ms()), k;
	bool mhd = false;
	long long now;

	if (n > 1 && poll(w->fds, n, timeout) > 0)
		timeout = 0;
	k = epoll_wait(w->epfd, evs, MAX_EVENTS, n > 1 ? 0 : timeout);
	for (int i = 0; i < k; i++) {
		int fd = evs[i].data.fd, running;
		uint64_t v;

		if (fd == w->mhd_fd) {
			mhd = true;
		} else if (fd == w->wake_fd) {
			if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_warn("wake_failed", "error=%s", strerror(errno));
		} else if (!parked(w, fd)) {
			curl_multi_socket_action(w->multi, fd,
				((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
				((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
				((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0),
				&running);
		}
	}
	now = now_ms();
	if (w->curl_due >= 0 && now >= w->curl_due) {
		int running;

		w->curl_due = -1;
		curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	reap(w);
	/* Also on a timeout: MHD's own (idle connections) may be due. */
	if (atomic_exchange_explicit(&w->kick, false, memory_order_relaxed) ||
	    mhd || k <= 0)
		MHD_run(w->mhd);
	if (now >= w->next_check)
		check_deadlines(w, now);
	if (n > 1)
		relay_service(w, n);
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
	/* What the queue starts is due at once: step() then does not wait,
	 * and takes the sockets that are ready before curl's timer. */
	while (take_queue(w)) {
		maybe_quiesce(w);
		step(w);
	}
	stop_all(w);
	current = NULL;
	return NULL;
}

static int watch(struct worker *w, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int worker_init(struct worker *w, struct MHD_Daemon *mhd)
{
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD);

	w->mhd = mhd;
	w->curl_due = -1;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!info || w->epfd < 0 || w->wake_fd < 0 || !(w->multi = curl_multi_init()))
		return -1;
	w->mhd_fd = info->epoll_fd;
	if (watch(w, w->mhd_fd) || watch(w, w->wake_fd))
		return -1;
	curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS,
			  (long)w->server->conf->upstream_idle);
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
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
	for (size_t i = 0; i < w->n_easy; i++)
		curl_easy_cleanup(w->easy[i]);
	for (size_t i = 0; i < w->n_rings; i++) {
		free(w->rings[i].up);
		free(w->rings[i].down);
	}
	if (w->multi)
		curl_multi_cleanup(w->multi);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	pthread_mutex_destroy(&w->qlock);
	free(w->fds);
	free(w->owners);
	free(w->fdst);
	free(w);
}
