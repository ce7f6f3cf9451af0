/*
 * worker: a thread's loop (see worker.h). Each pass waits for events,
 * lets their owners act (accepting here; client.c, upstream.c and relay.c
 * for their sockets), and when a deadline may be due, asks the client side
 * and the upstream side for theirs.
 *
 * Admission happens at accept: over its address's share the connection is
 * refused; when every connection is taken, the one that waited longest
 * without a request is closed to make room, else the new one is refused.
 * A refusal is a short 503 and a close, counted, and logged as a count at
 * most every ADMIT_LOG_MS. When the process is out of descriptors the
 * listener rests for a moment instead of waking the loop in vain.
 *
 * Connections are shared out evenly. The kernel spreads them over the
 * SO_REUSEPORT listeners by a hash of their addresses, which for a few
 * dozen keep-alive connections leaves one worker with a third more than
 * the other (27 against 38 of 65, measured), and its clients wait longer:
 * the tail latency is the busier worker's. So a worker that accepts a
 * connection while another holds at least two fewer hands it over (an
 * inbox and the eventfd), as HAProxy's listener queues and Envoy's exact
 * balance do. The handing over happens once per connection, never per
 * request; a request still never changes threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define IDLE_MS        1000 /* nothing due: look at the clock this often */
#define ACCEPTS_A_PASS 64   /* then the other sockets get their turn */
#define REST_MS        100  /* out of descriptors: the listener rests */

/* A connection accepted by another worker for this one. */
struct handoff {
	int fd;
	socklen_t len;
	struct sockaddr_storage peer;
	struct handoff *next;
};

struct worker {
	struct gate_env *env;
	struct loop loop;
	struct upstream_pool pool;
	struct clients clients;
	struct watch listen;
	struct watch wake;    /* eventfd: drain or stop */
	long long rest_until; /* the listener rests until then */
	pthread_t thread;
	unsigned index; /* in env->workers */
	bool started, drained;
	atomic_bool stopping, draining;
	pthread_mutex_t inbox_lock;
	struct handoff *inbox; /* under inbox_lock */
};

static void kick(struct worker *w);

static const char refusal[] =
	"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
	"Retry-After: 1\r\nConnection: close\r\nContent-Length: 74\r\n\r\n"
	"{\"error\":\"busy\",\"message\":\"too many connections; try again "
	"later\"}\n";

static void refuse(struct worker *w, int fd, enum admit_result why)
{
	unsigned long long full, per_ip;

	/* Best effort: a refused client gets a reason if its socket takes
	 * it at once; the descriptor is what this protects. */
	if (send(fd, refusal, sizeof(refusal) - 1,
		 MSG_NOSIGNAL | MSG_DONTWAIT)) {
	}
	close(fd);
	if (admit_refused(w->env->admit, why, loop_now_ms(), &full, &per_ip))
		log_warn("refused",
			 "full=%llu per_ip=%llu limit=%lld "
			 "per_ip_limit=%lld note=\"connections refused since "
			 "the "
			 "last such line\"",
			 full, per_ip, (long long)w->env->conf->max_connections,
			 (long long)w->env->conf->max_per_ip);
}

/* The running worker with the fewest connections, if it has at least two
 * fewer than w; NULL: w keeps the new one. */
static struct worker *lighter(struct worker *w)
{
	size_t n =
		atomic_load_explicit(&w->env->n_workers, memory_order_acquire);
	long mine =
		atomic_load_explicit(&w->clients.load, memory_order_relaxed);
	long least = mine - 1;
	struct worker *best = NULL;

	for (size_t i = 0; i < n; i++) {
		struct worker *o = w->env->workers[i];
		long load;

		if (o == w || atomic_load(&o->draining) ||
		    atomic_load(&o->stopping))
			continue;
		load = atomic_load_explicit(&o->clients.load,
					    memory_order_relaxed);
		if (load < least) {
			least = load;
			best = o;
		}
	}
	return best;
}

/* Give an admitted connection to a lighter worker; false: keep it. */
static bool hand_over(struct worker *w, int fd, struct sockaddr *sa,
		      socklen_t len)
{
	struct worker *to = lighter(w);
	struct handoff *h;

	if (!to || len > sizeof(h->peer) || !(h = malloc(sizeof(*h)))) {
		log_debug("accepted", "worker=%u owner=%u", w->index, w->index);
		return false;
	}
	log_debug("accepted", "worker=%u owner=%u", w->index, to->index);
	h->fd = fd;
	h->len = len;
	memcpy(&h->peer, sa, len);
	/* Counted at once, so that a burst of accepts sees it. */
	atomic_fetch_add_explicit(&to->clients.load, 1, memory_order_relaxed);
	pthread_mutex_lock(&to->inbox_lock);
	h->next = to->inbox;
	to->inbox = h;
	pthread_mutex_unlock(&to->inbox_lock);
	kick(to);
	return true;
}

static void admit_one(struct worker *w, int fd, struct sockaddr *sa,
		      socklen_t len)
{
	enum admit_result rc = admit_take(w->env->admit, sa);

	if (rc == ADMIT_FULL && clients_evict(&w->clients))
		rc = admit_take(w->env->admit, sa);
	if (rc != ADMIT_OK)
		return refuse(w, fd, rc);
	if (!hand_over(w, fd, sa, len))
		clients_add(&w->clients, fd, sa, len);
}

/* Take the connections handed over; a draining or stopping worker closes
 * them, as it would its listener's backlog. */
static void take_inbox(struct worker *w, bool close_them)
{
	struct handoff *h, *next;

	pthread_mutex_lock(&w->inbox_lock);
	h = w->inbox;
	w->inbox = NULL;
	pthread_mutex_unlock(&w->inbox_lock);
	for (; h; h = next) {
		struct sockaddr *sa = (struct sockaddr *)&h->peer;

		next = h->next;
		if (close_them) {
			close(h->fd);
			admit_put(w->env->admit, sa);
		} else {
			clients_add(&w->clients, h->fd, sa, h->len);
		}
		atomic_fetch_sub_explicit(&w->clients.load, 1,
					  memory_order_relaxed);
		free(h);
	}
}

static void on_listen(struct watch *wt, uint32_t events)
{
	struct worker *w =
		(struct worker *)((char *)wt - offsetof(struct worker, listen));

	(void)events;
	for (int i = 0; i < ACCEPTS_A_PASS; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(wt->fd, (struct sockaddr *)&ss, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			admit_one(w, fd, (struct sockaddr *)&ss, len);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			log_warn("accept_failed",
				 "error=%s note=\"resting "
				 "%d ms\"",
				 strerror(errno), REST_MS);
			w->rest_until = loop_now_ms() + REST_MS;
			loop_set(&w->loop, wt, 0);
			loop_due(&w->loop, w->rest_until);
		}
		return; /* EAGAIN, or a client that went before we took it */
	}
}

static void on_wake(struct watch *wt, uint32_t events)
{
	struct worker *w =
		(struct worker *)((char *)wt - offsetof(struct worker, wake));
	uint64_t v;

	(void)events;
	if (read(wt->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("wake_failed", "error=%s", strerror(errno));
	take_inbox(w, w->drained || atomic_load(&w->draining) ||
			      atomic_load(&w->stopping));
}

static void upkeep(struct worker *w)
{
	long long now = loop_now_ms(), a, b;

	if (atomic_load(&w->draining) && !w->drained) {
		w->drained = true;
		loop_retire(&w->loop, &w->listen);
		clients_drain(&w->clients);
	}
	if (now < w->loop.due_ms)
		return;
	w->loop.due_ms = now + IDLE_MS;
	if (w->rest_until && now >= w->rest_until && !w->drained) {
		w->rest_until = 0;
		loop_set(&w->loop, &w->listen, EPOLLIN);
	}
	a = upstream_deadlines(&w->pool, now);
	b = clients_deadlines(&w->clients, now);
	if (a >= 0)
		loop_due(&w->loop, a);
	if (b >= 0)
		loop_due(&w->loop, b);
}

static void *run(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load(&w->stopping)) {
		loop_run_once(&w->loop, IDLE_MS);
		upkeep(w);
		loop_run_soon(&w->loop); /* answers of the deadlines (408) */
	}
	take_inbox(w, true);
	clients_close_all(&w->clients);
	upstream_pool_close(&w->pool);
	loop_run_once(&w->loop, 0); /* release what was retired */
	return NULL;
}

static void kick(struct worker *w)
{
	uint64_t one = 1;

	if (write(w->wake.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("wake_failed", "error=%s", strerror(errno));
}

struct worker *worker_start(struct gate_env *env, int listen_fd, char *err,
			    size_t errlen)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (!w) {
		close(listen_fd);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&w->inbox_lock, NULL);
	/* The server starts them in order and counts those that run. */
	w->index = (unsigned)atomic_load(&env->n_workers);
	w->env = env;
	w->listen = (struct watch){ .fd = listen_fd, .fn = on_listen };
	w->wake = (struct watch){ .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
				  .fn = on_wake };
	if (loop_init(&w->loop) || w->wake.fd < 0) {
		snprintf(err, errlen, "cannot set up a worker: %s",
			 strerror(errno));
		worker_free(w);
		return NULL;
	}
	upstream_pool_init(&w->pool, &w->loop, env->conf);
	clients_init(&w->clients, env, &w->loop, &w->pool);
	loop_set(&w->loop, &w->listen, EPOLLIN);
	loop_set(&w->loop, &w->wake, EPOLLIN);
	if (pthread_create(&w->thread, NULL, run, w)) {
		snprintf(err, errlen, "cannot start a worker thread");
		worker_free(w);
		return NULL;
	}
	w->started = true;
	return w;
}

void worker_drain(struct worker *w)
{
	atomic_store(&w->draining, true);
	kick(w);
}

void worker_stop(struct worker *w)
{
	if (!w || !w->started)
		return;
	atomic_store(&w->stopping, true);
	kick(w);
	pthread_join(w->thread, NULL);
	w->started = false;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	if (w->listen.fn && w->listen.fd >= 0)
		close(w->listen.fd);
	take_inbox(w, true); /* handed over after it stopped */
	if (w->wake.fd >= 0)
		close(w->wake.fd);
	loop_release(&w->loop);
	pthread_mutex_destroy(&w->inbox_lock);
	free(w);
}
