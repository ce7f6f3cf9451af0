/*
 * worker.c: one forked worker holding links base..base+n-1 on one epoll.
 * It connects them with pacing (at most max_inflight between connect() and
 * welcome at once, so no server's accept queue overflows), spreading them
 * over the targets and source addresses by link number, and reports the
 * storm (first connect, last welcome) to the parent when every link is
 * welcomed or failed. Then, each time the parent arms it ('A' on the
 * control pipe), it clears the links' timestamps, acknowledges, and reports
 * every link's event timestamp when all live links have one or the round
 * times out. 'Q' or EOF on the control pipe ends it.
 */
#include "loadgen.h"

#include <errno.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* linux/in.h; not in every libc */
#endif

/* ---- link bookkeeping --------------------------------------------------- */

void link_fail(struct worker *w, struct link *l, const char *why)
{
	uint32_t i = (uint32_t)(l - w->links);

	if (why && w->errors++ < MAX_ERR_LOG)
		fprintf(stderr, "loadgen[%d]: link %u (state %d): %s\n",
			(int)getpid(), w->base + i, l->state, why);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	switch (l->state) {
	case L_CONNECTING:
	case L_UPGRADING:
	case L_HELLO:
		w->inflight--;
		w->failed++;
		break;
	case L_LIVE:
		w->live--;
		w->closed++;
		if (w->armed && !l->t_event)
			w->expected--;
		break;
	default: w->failed++; break;
	}
	l->state = L_DEAD;
}

void link_fail_errno(struct worker *w, struct link *l, const char *what)
{
	char why[160];

	snprintf(why, sizeof(why), "%s: %s", what, strerror(errno));
	link_fail(w, l, why);
}

void link_welcomed(struct worker *w, struct link *l)
{
	l->state = L_LIVE;
	w->inflight--;
	w->welcomed++;
	w->live++;
	w->t_last = w->last_progress = mono_ns();
}

static int link_target(const struct worker *w, uint32_t i)
{
	return (int)((w->base + i) % (uint32_t)w->o->ntargets);
}

static int link_socket(struct worker *w, uint32_t i)
{
	const struct opts *o = w->o;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->nsrc) {
		const struct sockaddr_in *src =
			&o->src[(w->base + i) % (uint32_t)o->nsrc];

		/* The port is picked per destination at connect time, which
		 * lifts the ~28k ports of one source address. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
			   sizeof(one));
		if (bind(fd, (const struct sockaddr *)src, sizeof(*src)) != 0) {
			int e = errno;

			close(fd);
			errno = e;
			return -1;
		}
	}
	return fd;
}

static void link_connect(struct worker *w, uint32_t i)
{
	struct link *l = &w->links[i];
	struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = i };
	const struct sockaddr_in *to = &w->o->targets[link_target(w, i)];

	if (!w->t_first)
		w->t_first = w->last_progress = mono_ns();
	l->state = L_CONNECTING;
	w->inflight++;
	l->fd = link_socket(w, i);
	if (l->fd < 0) {
		link_fail_errno(w, l, "socket/bind");
		return;
	}
	if (connect(l->fd, (const struct sockaddr *)to, sizeof(*to)) != 0 &&
	    errno != EINPROGRESS) {
		link_fail_errno(w, l, "connect");
		return;
	}
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->fd, &ev) != 0)
		link_fail_errno(w, l, "epoll_ctl");
}

static void link_connected(struct worker *w, struct link *l)
{
	uint32_t i = (uint32_t)(l - w->links);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = i };
	int target = link_target(w, i), err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
		errno = err ? err : errno;
		link_fail_errno(w, l, "connect");
		return;
	}
	if (DIALECT_TCP(w->o->dialect)) {
		if (tcp_greet(w, l) == 0 &&
		    epoll_ctl(w->ep, EPOLL_CTL_MOD, l->fd, &ev) != 0)
			link_fail_errno(w, l, "epoll_ctl");
		return;
	}
	if (send(l->fd, w->upgrade[target], w->upgrade_len[target],
		 MSG_NOSIGNAL) != (ssize_t)w->upgrade_len[target]) {
		link_fail_errno(w, l, "send upgrade");
		return;
	}
	if (epoll_ctl(w->ep, EPOLL_CTL_MOD, l->fd, &ev) != 0) {
		link_fail_errno(w, l, "epoll_ctl");
		return;
	}
	l->state = L_UPGRADING;
}

/* ---- the storm and the rounds ------------------------------------------- */

static void worker_arm(struct worker *w)
{
	char ack = 'a';

	w->armed = true;
	w->got = 0;
	w->expected = w->live;
	w->deadline = mono_ns() + (int64_t)(w->o->timeout_s * 1e9);
	for (uint32_t i = 0; i < w->n; i++)
		w->links[i].t_event = 0;
	if (write_full(w->res, &ack, 1) != 0)
		w->quit = true;
}

static void worker_control(struct worker *w)
{
	char cmd[16];
	ssize_t r = read(w->ctl, cmd, sizeof(cmd));

	if (r < 0 && errno == EINTR)
		return;
	if (r <= 0) {
		w->quit = true; /* the parent is gone */
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (cmd[i] == 'A')
			worker_arm(w);
		else if (cmd[i] == 'S' && sustain_report(w) != 0)
			w->quit = true;
		else if (cmd[i] == 'Q')
			w->quit = true;
	}
}

/* Give up on links stuck in the handshake (why), and on those not started
 * yet when the storm's whole budget is spent: the storm must end. */
static void storm_give_up(struct worker *w, const char *why, bool unstarted)
{
	for (uint32_t i = 0; i < w->next; i++) {
		struct link *l = &w->links[i];

		if (l->state == L_CONNECTING || l->state == L_UPGRADING ||
		    l->state == L_HELLO)
			link_fail(w, l, why);
	}
	if (unstarted) {
		w->failed += w->n - w->next;
		w->next = w->n;
	}
	w->last_progress = mono_ns();
}

static void storm_check(struct worker *w)
{
	int64_t now = mono_ns();

	if (w->storm_sent)
		return;
	if (w->o->storm_s > 0 && w->t_first &&
	    now - w->t_first > (int64_t)(w->o->storm_s * 1e9))
		storm_give_up(w, "storm budget (-S) spent", true);
	else if (now - w->last_progress > STALL_NS)
		storm_give_up(w, "no welcome in time (storm stalled)", false);
}

static void report_hits(struct worker *w)
{
	struct round_msg m = { w->n, w->closed };

	w->armed = false;
	for (uint32_t i = 0; i < w->n; i++) {
		w->hits[i].t = w->links[i].t_event;
		w->hits[i].seq = w->links[i].ev_seq;
	}
	if (write_full(w->res, &m, sizeof(m)) != 0 ||
	    write_full(w->res, w->hits, w->n * sizeof(*w->hits)) != 0)
		w->quit = true;
}

/* Storm and round bookkeeping after a batch of events. */
static void worker_progress(struct worker *w)
{
	while (w->next < w->n && w->inflight < w->max_inflight)
		link_connect(w, w->next++);
	if (!w->storm_sent && w->welcomed + w->failed == w->n) {
		struct storm_msg m = { w->t_first, w->t_last, w->welcomed,
				       w->failed };

		w->storm_sent = true;
		if (write_full(w->res, &m, sizeof(m)) != 0)
			w->quit = true;
	}
	if (w->armed && (w->got >= w->expected || mono_ns() >= w->deadline))
		report_hits(w);
}

static int worker_wait_ms(const struct worker *w)
{
	int64_t now = mono_ns(), until = INT64_MAX, ms;

	if (w->armed)
		until = w->deadline;
	if (w->npending) /* deliveries waiting for their seq's t0 */
		until = now + 1000000;
	if (!w->storm_sent) {
		int64_t stall = w->last_progress + STALL_NS;

		if (stall < until)
			until = stall;
		if (w->o->storm_s > 0 && w->t_first &&
		    w->t_first + (int64_t)(w->o->storm_s * 1e9) < until)
			until = w->t_first + (int64_t)(w->o->storm_s * 1e9);
	}
	if (until == INT64_MAX)
		return -1;
	ms = (until - now) / 1000000 + 1;
	return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

static void worker_event(struct worker *w, const struct epoll_event *e)
{
	struct link *l;

	if (e->data.u64 == CTL_TAG) {
		worker_control(w);
		return;
	}
	l = &w->links[e->data.u64];
	if (l->state == L_DEAD)
		return;
	if (l->state == L_CONNECTING)
		link_connected(w, l);
	else if (DIALECT_TCP(w->o->dialect))
		tcp_input(w, l);
	else
		ws_input(w, l);
}

static void worker_loop(struct worker *w)
{
	struct epoll_event evs[512];

	while (!w->quit) {
		int n = epoll_wait(w->ep, evs, 512, worker_wait_ms(w));

		if (n < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++)
			worker_event(w, &evs[i]);
		if (w->npending)
			sustain_resolve(w);
		storm_check(w);
		worker_progress(w);
	}
}

static int worker_setup(struct worker *w)
{
	const struct opts *o = w->o;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = CTL_TAG };

	w->max_inflight = (uint32_t)(o->inflight / o->procs);
	if (w->max_inflight < 1)
		w->max_inflight = 1;
	w->links = calloc(w->n ? w->n : 1, sizeof(*w->links));
	w->hits = calloc(w->n ? w->n : 1, sizeof(*w->hits));
	w->upgrade = calloc((size_t)o->ntargets, sizeof(*w->upgrade));
	w->upgrade_len = calloc((size_t)o->ntargets, sizeof(*w->upgrade_len));
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	if (!w->links || !w->hits || !w->upgrade || !w->upgrade_len ||
	    w->ep < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->ctl, &ev) != 0)
		return -1;
	for (int t = 0; t < o->ntargets; t++) {
		int len = ws_upgrade_request(o, t, w->upgrade[t], UPGRADE_MAX);

		if (len < 0)
			return -1;
		w->upgrade_len[t] = (size_t)len;
	}
	for (uint32_t i = 0; i < w->n; i++)
		w->links[i].fd = -1;
	if (o->shm) {
		w->seen = calloc(SEQ_RING, sizeof(*w->seen));
		w->pending = calloc(PEND_MAX, sizeof(*w->pending));
		w->stats = calloc(1, sizeof(*w->stats));
		if (!w->seen || !w->pending || !w->stats)
			return -1;
	}
	return 0;
}

int worker_run(const struct opts *o, uint32_t base, uint32_t n, int ctl,
	       int res)
{
	struct worker w = { .o = o,
			    .ctl = ctl,
			    .res = res,
			    .base = base,
			    .n = n,
			    .rng = 0x9e3779b9u ^ (uint32_t)getpid() };

	if (worker_setup(&w) != 0) {
		perror("loadgen: worker setup");
		return 1;
	}
	worker_progress(&w);
	worker_loop(&w);
	return 0;
}
