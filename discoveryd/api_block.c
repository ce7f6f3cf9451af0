/*
 * api_block: blocking queries on the endpoints route (docs/api.md,
 * "Blocking queries"), as Consul users know them: ?index=N&wait=D answers
 * as soon as the service's index passes N, or at D with the same index.
 *
 * A blocked query holds no thread. Its connection is suspended
 * (MHD_suspend_connection) with one small record here, which waits in
 * three places at once:
 *
 *   - on the service's slot of the endpoint board (epboard_wait), which a
 *     publish of that service alone wakes, on the hub thread;
 *   - in a heap of deadlines (wait plus jitter), and
 *   - in an epoll set for the peer's hang-up (EPOLLRDHUP): libmicrohttpd
 *     does not watch a suspended connection, and a client gone would
 *     otherwise hold its descriptor until its deadline;
 *
 * both of which this module's one thread watches. The first of the three
 * to fire resumes the connection; libmicrohttpd then calls the handler
 * again, the route finds r->block and answers as a plain query would. The
 * record is freed then, or when the request completes without an answer
 * (the peer gone, the daemon stopping), never while a wake-up may still
 * reach it: epboard_cancel returns only once the board's callback cannot
 * run any more.
 *
 * Locks: the board's (held while its callback runs), then this module's
 * mutex, then libmicrohttpd's own (suspend and resume happen under ours,
 * so that api_blocks_stop never misses a connection that is about to be
 * resumed, or suspended).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "api_int.h"
#include "backoff.h"
#include "clock.h"
#include "conf.h"
#include "epboard.h"
#include "log.h"
#include "proto.h"

#define KICK       UINT64_MAX /* epoll data of the eventfd */
#define EVENTS_MAX 64

/* Why a blocked query woke, for /metrics. */
enum reason { WOKE_INDEX, WOKE_WAIT, WOKE_HANGUP, WOKE_STOP, N_REASONS };

static const char *const reason_names[N_REASONS] = {
	"index",
	"wait",
	"hangup",
	"stop",
};

struct api_block {
	struct api_blocks *t;
	struct MHD_Connection *c;
	struct epwaiter *waiter; /* NULL: fired at once, or none */
	int fd;                  /* in t->by_fd and the epoll set, or -1 */
	uint32_t gen;            /* tells a stale epoll event from fd's */
	int64_t deadline_ms;
	size_t heap_at; /* in t->heap, or SIZE_MAX */
	bool suspended; /* ours to resume */
	bool fired;     /* woken (once) */
	bool done;      /* api_block_done has it: wake nothing */
};

struct api_blocks {
	pthread_mutex_t mu;
	struct epboard *board;
	pthread_t thread;
	int epfd, kick;
	bool quit, stopped;
	struct api_block **heap; /* by deadline_ms */
	size_t n, cap;
	struct api_block **by_fd; /* hang-up watch, by descriptor */
	size_t n_fd;
	uint32_t gen;
	struct backoff rng; /* the jitter's source */
	uint64_t woke[N_REASONS];
};

/* ---- the heap of deadlines (under mu) ------------------------------- */

static void heap_set(struct api_blocks *t, size_t i, struct api_block *b)
{
	t->heap[i] = b;
	b->heap_at = i;
}

static void sift_up(struct api_blocks *t, size_t i)
{
	struct api_block *b = t->heap[i];

	while (i > 0 && t->heap[(i - 1) / 2]->deadline_ms > b->deadline_ms) {
		heap_set(t, i, t->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(t, i, b);
}

static void sift_down(struct api_blocks *t, size_t i)
{
	struct api_block *b = t->heap[i];

	for (;;) {
		size_t l = 2 * i + 1, m = i;
		int64_t least = b->deadline_ms;

		if (l < t->n && t->heap[l]->deadline_ms < least)
			least = t->heap[m = l]->deadline_ms;
		if (l + 1 < t->n && t->heap[l + 1]->deadline_ms < least)
			m = l + 1;
		if (m == i)
			break;
		heap_set(t, i, t->heap[m]);
		i = m;
	}
	heap_set(t, i, b);
}

static int heap_add(struct api_blocks *t, struct api_block *b)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct api_block **grown =
			realloc(t->heap, cap * sizeof(*grown));

		if (!grown)
			return -1;
		t->heap = grown;
		t->cap = cap;
	}
	heap_set(t, t->n++, b);
	sift_up(t, t->n - 1);
	return 0;
}

static void heap_remove(struct api_blocks *t, struct api_block *b)
{
	struct api_block *moved;
	size_t i = b->heap_at;

	if (i == SIZE_MAX)
		return;
	b->heap_at = SIZE_MAX;
	if (i == --t->n)
		return;
	moved = t->heap[t->n];
	heap_set(t, i, moved);
	sift_down(t, i);
	sift_up(t, moved->heap_at);
}

/* ---- the hang-up watch (under mu) ------------------------------------ */

/* Watch b's descriptor for the peer's end; without memory, b is only
 * noticed gone at its deadline. */
static void watch_fd(struct api_blocks *t, struct api_block *b, int fd)
{
	struct epoll_event ev = { .events = EPOLLRDHUP };

	if (fd < 0)
		return;
	if ((size_t)fd >= t->n_fd) {
		size_t n = t->n_fd ? t->n_fd : 256;
		struct api_block **grown;

		while (n <= (size_t)fd)
			n *= 2;
		if (!(grown = realloc(t->by_fd, n * sizeof(*grown))))
			return;
		memset(grown + t->n_fd, 0, (n - t->n_fd) * sizeof(*grown));
		t->by_fd = grown;
		t->n_fd = n;
	}
	b->gen = ++t->gen;
	ev.data.u64 = (uint64_t)b->gen << 32 | (uint32_t)fd;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		return;
	t->by_fd[fd] = b;
	b->fd = fd;
}

static void unwatch_fd(struct api_blocks *t, struct api_block *b)
{
	if (b->fd < 0)
		return;
	/* Still open: the connection is suspended, or not yet closed. */
	epoll_ctl(t->epfd, EPOLL_CTL_DEL, b->fd, NULL);
	t->by_fd[b->fd] = NULL;
	b->fd = -1;
}

/* ---- waking ------------------------------------------------------------ */

/* Under mu: b wakes, once, for why; its connection resumes if it waits. */
static void fire(struct api_blocks *t, struct api_block *b, enum reason why)
{
	if (b->fired || b->done)
		return;
	b->fired = true;
	t->woke[why]++;
	heap_remove(t, b);
	unwatch_fd(t, b);
	if (b->suspended) {
		b->suspended = false;
		MHD_resume_connection(b->c);
	}
}

/* The board's callback: on the hub thread under the board's lock, or at
 * once in epboard_wait. */
static void index_passed(void *arg)
{
	struct api_block *b = arg;
	struct api_blocks *t = b->t;

	pthread_mutex_lock(&t->mu);
	fire(t, b, WOKE_INDEX);
	pthread_mutex_unlock(&t->mu);
}

static void kick(struct api_blocks *t)
{
	uint64_t one = 1;

	if (write(t->kick, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("http", "note=\"blocking queries: cannot wake the "
				 "timer thread\"");
}

/* Under mu: fire what is due; the epoll timeout until the next. */
static int expire(struct api_blocks *t)
{
	int64_t now = clock_mono_ms();

	while (t->n && t->heap[0]->deadline_ms <= now)
		fire(t, t->heap[0], WOKE_WAIT);
	if (!t->n)
		return -1;
	if (t->heap[0]->deadline_ms - now > INT32_MAX)
		return INT32_MAX;
	return (int)(t->heap[0]->deadline_ms - now);
}

static void hung_up(struct api_blocks *t, uint64_t data)
{
	size_t fd = (uint32_t)data;
	struct api_block *b = fd < t->n_fd ? t->by_fd[fd] : NULL;

	if (b && b->gen == (uint32_t)(data >> 32))
		fire(t, b, WOKE_HANGUP);
}

static void *timer_main(void *arg)
{
	struct api_blocks *t = arg;
	struct epoll_event ev[EVENTS_MAX];

	pthread_mutex_lock(&t->mu);
	while (!t->quit) {
		int timeout = expire(t), n;

		pthread_mutex_unlock(&t->mu);
		n = epoll_wait(t->epfd, ev, EVENTS_MAX, timeout);
		pthread_mutex_lock(&t->mu);
		for (int i = 0; i < n; i++) {
			uint64_t drained;

			if (ev[i].data.u64 != KICK)
				hung_up(t, ev[i].data.u64);
			else if (read(t->kick, &drained, sizeof(drained)) < 0)
				(void)0; /* EAGAIN: another read took it */
		}
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* ---- the requests ------------------------------------------------------- */

int api_block_parse(struct MHD_Connection *c, uint64_t *index, int64_t *wait_ms,
		    enum MHD_Result *ret)
{
	const char *i =
		MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "index");
	const char *w =
		MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "wait");

	*wait_ms = API_BLOCK_WAIT_DEFAULT_MS;
	if (w && (conf_parse_duration(w, wait_ms) != 0 || *wait_ms <= 0)) {
		*ret = api_send_error(c, 400, "bad_request",
				      "'wait' must be a positive duration "
				      "with its unit, like 500ms, 30s or 5m");
		return -1;
	}
	if (i && !proto_parse_u64(i, strlen(i), index)) {
		*ret = api_send_error(c, 400, "bad_request",
				      "'index' must be an index (plain "
				      "decimal digits, as X-Discovery-Index "
				      "gave it)");
		return -1;
	}
	if (w && !i) {
		*ret = api_send_error(c, 400, "bad_request",
				      "'wait' needs 'index': a blocking "
				      "query waits for the index to pass it");
		return -1;
	}
	if (*wait_ms > API_BLOCK_WAIT_MAX_MS)
		*wait_ms = API_BLOCK_WAIT_MAX_MS;
	return i && *index > 0;
}

bool api_block_begin(struct api_blocks *t, struct MHD_Connection *c,
		     struct request *r, const char *service, uint64_t index,
		     int64_t wait_ms)
{
	const union MHD_ConnectionInfo *fd =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct api_block *b = calloc(1, sizeof(*b));
	bool blocked = false;
	int err;

	if (!b)
		return false;
	b->t = t;
	b->c = c;
	b->fd = -1;
	b->heap_at = SIZE_MAX;
	r->block = b;
	/* The board may fire at once (on this thread), or from the hub's
	 * before we hold mu: either way b->fired says so below. */
	b->waiter =
		epboard_wait(t->board, service, index, index_passed, b, &err);
	pthread_mutex_lock(&t->mu);
	if (!b->fired && !t->stopped && b->waiter) {
		uint32_t jitter =
			backoff_jitter(&t->rng, (uint32_t)(wait_ms / 16));

		b->deadline_ms = clock_mono_ms() + wait_ms + jitter;
		if (heap_add(t, b) == 0) {
			if (b->heap_at == 0)
				kick(t);
			watch_fd(t, b, fd ? fd->connect_fd : -1);
			b->suspended = blocked = true;
			MHD_suspend_connection(c);
		}
	}
	pthread_mutex_unlock(&t->mu);
	if (!blocked)
		api_block_done(t, r);
	return blocked;
}

void api_block_done(struct api_blocks *t, struct request *r)
{
	struct api_block *b = r->block;

	if (!b)
		return;
	pthread_mutex_lock(&t->mu);
	b->done = true;
	heap_remove(t, b);
	unwatch_fd(t, b);
	pthread_mutex_unlock(&t->mu);
	/* Once it returns the board's callback is not running, and never
	 * will: b can go. */
	epboard_cancel(t->board, b->waiter);
	free(b);
	r->block = NULL;
}

/* ---- the table ---------------------------------------------------------- */

struct api_blocks *api_blocks_new(struct epboard *board)
{
	struct api_blocks *t = calloc(1, sizeof(*t));
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = KICK };

	if (!t)
		return NULL;
	t->board = board;
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	backoff_init(&t->rng, 1, 1, 1.0, 0);
	pthread_mutex_init(&t->mu, NULL);
	if (t->epfd < 0 || t->kick < 0 ||
	    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->kick, &ev) != 0 ||
	    pthread_create(&t->thread, NULL, timer_main, t) != 0) {
		if (t->epfd >= 0)
			close(t->epfd);
		if (t->kick >= 0)
			close(t->kick);
		pthread_mutex_destroy(&t->mu);
		free(t);
		return NULL;
	}
	return t;
}

void api_blocks_stop(struct api_blocks *t)
{
	pthread_mutex_lock(&t->mu);
	t->stopped = true;
	while (t->n)
		fire(t, t->heap[0], WOKE_STOP);
	pthread_mutex_unlock(&t->mu);
}

void api_blocks_start(struct api_blocks *t)
{
	pthread_mutex_lock(&t->mu);
	t->stopped = false;
	pthread_mutex_unlock(&t->mu);
}

void api_blocks_free(struct api_blocks *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	t->quit = true;
	kick(t);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
	close(t->epfd);
	close(t->kick);
	free(t->heap);
	free(t->by_fd);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

void api_blocks_metrics(struct api_blocks *t, struct metrics_text *m)
{
	uint64_t woke[N_REASONS];
	char label[32];
	size_t n;

	pthread_mutex_lock(&t->mu);
	memcpy(woke, t->woke, sizeof(woke));
	n = t->n;
	pthread_mutex_unlock(&t->mu);
	metrics_family(m, "discovery_http_blocked", "gauge",
		       "Blocking queries waiting now.");
	metrics_sample(m, "discovery_http_blocked", NULL, (double)n);
	metrics_family(m, "discovery_http_blocked_wakeups_total", "counter",
		       "Blocking queries woken, by why: their service's index "
		       "passed theirs, their wait ended, the client hung up, "
		       "or the API stopped.");
	for (int i = 0; i < N_REASONS; i++) {
		snprintf(label, sizeof(label), "reason=\"%s\"",
			 reason_names[i]);
		metrics_sample(m, "discovery_http_blocked_wakeups_total", label,
			       (double)woke[i]);
	}
}
