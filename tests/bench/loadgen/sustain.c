/*
 * sustain.c: sustained delivery (-Z SECONDS), after the rounds. Two
 * phases over the same links, each with a short warm-up and then a window
 * of -Z seconds:
 *
 *   closed  -K publishers (16), each with one publish in flight: the
 *           next goes once the server has answered and the event has
 *           reached every live link. Yields deliveries per second, each
 *           delivery's latency (its arrival against the moment before its
 *           publish was written) and the server's CPU per delivery.
 *   open    -O publishers (64), each sending its next publish as soon as
 *           the server has answered the last: as fast as the server takes
 *           them. Yields deliveries per second and CPU per delivery.
 *
 * The parent and the workers share one mapping (struct shared): the
 * phase, its window, and each publish's t0 by seq. A worker counts the
 * deliveries that arrive in the window, times them in the closed loop
 * (a delivery whose t0 is not known yet, an HTTP answer still on its way,
 * waits in a list), and writes a seq to the done pipe when every one of
 * its live links has it; the parent counts the workers per seq.
 * Deliveries are counted at the subscribers, never at the server.
 */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define WARM_NS    (500LL * 1000000LL)   /* before each window */
#define GIVE_UP_NS (2000LL * 1000000LL)  /* a publish not delivered */
#define PEND_AGE   (10LL * 1000000000LL) /* a delivery without its t0 */

int sustain_map(struct opts *o)
{
	int fds[2];

	if (o->sustain_s <= 0)
		return 0;
	o->shm = mmap(NULL, sizeof(*o->shm), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (o->shm == MAP_FAILED || pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	memset(o->shm, 0, sizeof(*o->shm));
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	o->done_rd = fds[0];
	o->done_wr = fds[1];
	return 0;
}

/* ---- latency histogram: 32 buckets per power of two, in ns -------------- */

static unsigned hist_index(uint64_t ns)
{
	unsigned msb, e;

	if (ns < 2 * HIST_SUB)
		return (unsigned)ns;
	msb = 63u - (unsigned)__builtin_clzll(ns);
	e = msb - 5;
	return e * HIST_SUB + (unsigned)(ns >> e) < HIST_N ?
		       e * HIST_SUB + (unsigned)(ns >> e) :
		       HIST_N - 1;
}

static double hist_ms(unsigned i)
{
	unsigned e = i / HIST_SUB;

	if (i < 2 * HIST_SUB)
		return i / 1e6;
	return (double)((uint64_t)(i - (e - 1) * HIST_SUB) << (e - 1)) / 1e6;
}

static double hist_pct(const uint32_t *h, double p)
{
	uint64_t total = 0, want, run = 0;

	for (unsigned i = 0; i < HIST_N; i++)
		total += h[i];
	if (!total)
		return -1;
	want = (uint64_t)(p * (double)total + 0.999999);
	for (unsigned i = 0; i < HIST_N; i++) {
		run += h[i];
		if (run >= want)
			return hist_ms(i);
	}
	return hist_ms(HIST_N - 1);
}

/* ---- the workers' side -------------------------------------------------- */

static bool t0_of(const struct shared *shm, uint64_t seq, int64_t *t0)
{
	unsigned slot = (unsigned)(seq % SEQ_RING);

	if (atomic_load_explicit(&shm->t0[slot].seq, memory_order_acquire) !=
	    seq)
		return false;
	*t0 = atomic_load_explicit(&shm->t0[slot].t0, memory_order_relaxed);
	return true;
}

static void seen_by_all(struct worker *w, uint64_t seq)
{
	unsigned slot = (unsigned)(seq % SEQ_RING);

	if (w->seen[slot].seq != seq) {
		w->seen[slot].seq = seq;
		w->seen[slot].count = 0;
	}
	if (++w->seen[slot].count == w->live &&
	    write_full(w->o->done_wr, &seq, sizeof(seq)) != 0)
		w->quit = true;
}

/* One published message reached link l (l->seq is its seq). */
void sustain_delivery(struct worker *w, struct link *l)
{
	struct shared *shm = w->o->shm;
	int mode = atomic_load_explicit(&shm->mode, memory_order_relaxed);
	int64_t now = mono_ns(), t0;
	bool in = now >= atomic_load(&shm->win_start) &&
		  now < atomic_load(&shm->win_end);

	if (!w->stats)
		return;
	if (in)
		w->stats->delivered[mode]++;
	if (mode != MODE_CLOSED)
		return;
	seen_by_all(w, l->seq);
	if (!in)
		return;
	if (t0_of(shm, l->seq, &t0))
		w->stats->hist[hist_index((uint64_t)(now - t0))]++;
	else if (w->npending < PEND_MAX)
		w->pending[w->npending++] = (struct hit){ now, l->seq };
	else
		w->stats->unmatched++;
}

/* Time the deliveries whose t0 has come since. */
void sustain_resolve(struct worker *w)
{
	int64_t now = mono_ns(), t0;
	uint32_t keep = 0;

	for (uint32_t i = 0; i < w->npending; i++) {
		struct hit *h = &w->pending[i];

		if (t0_of(w->o->shm, h->seq, &t0))
			w->stats->hist[hist_index((uint64_t)(h->t - t0))]++;
		else if (now - h->t > PEND_AGE)
			w->stats->unmatched++;
		else
			w->pending[keep++] = *h;
	}
	w->npending = keep;
}

/* 'S': send the counts and the histogram to the parent. */
int sustain_report(struct worker *w)
{
	static struct sustain_stats none;

	return write_full(w->res, w->stats ? w->stats : &none, sizeof(none));
}

/* ---- the parent's publishers -------------------------------------------- */

struct pubc {
	int fd, k;
	bool busy, answered;
	uint64_t seq;
	int64_t t_issue;
	size_t len;
	char buf[PUB_BUF + 1];
};

struct phase {
	const struct opts *o;
	int mode, ep, npc;
	struct pubc *pc;
	struct {
		uint64_t seq;
		int workers;
	} done[SEQ_RING];
	int64_t win_start, win_end;
	long cpu0, cpu1, publishes, timeouts, errors;
	bool stopping;
};

static bool delivered(const struct phase *ph, uint64_t seq)
{
	unsigned slot = (unsigned)(seq % SEQ_RING);

	return ph->done[slot].seq == seq &&
	       ph->done[slot].workers >= ph->o->procs;
}

static void pub_close(struct phase *ph, struct pubc *p)
{
	if (p->fd >= 0) {
		epoll_ctl(ph->ep, EPOLL_CTL_DEL, p->fd, NULL);
		close(p->fd);
	}
	p->fd = -1;
	p->len = 0;
}

static int send_nb(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };

		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			poll(&pfd, 1, 1000);
		} else {
			return -1;
		}
	}
	return 0;
}

static int pub_open(struct phase *ph, struct pubc *p)
{
	char hello[128];
	int hl = pub_hello(ph->o, p->k, hello, sizeof(hello));
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.u64 = (uint64_t)p->k };

	p->fd = pub_connect(ph->o, p->k);
	if (p->fd < 0)
		return -1;
	fcntl(p->fd, F_SETFL, O_NONBLOCK);
	if (hl < 0 || (hl && send_nb(p->fd, hello, (size_t)hl) != 0) ||
	    epoll_ctl(ph->ep, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
		pub_close(ph, p);
		return -1;
	}
	return 0;
}

static void put_t0(const struct opts *o, uint64_t seq, int64_t t0)
{
	unsigned slot = (unsigned)(seq % SEQ_RING);

	atomic_store_explicit(&o->shm->t0[slot].t0, t0, memory_order_relaxed);
	atomic_store_explicit(&o->shm->t0[slot].seq, seq, memory_order_release);
}

static void pub_issue(struct phase *ph, struct pubc *p)
{
	char req[PUB_BUF];
	bool tcp = DIALECT_TCP(ph->o->dialect);
	int n;

	p->busy = false;
	if (ph->stopping || (p->fd < 0 && pub_open(ph, p) != 0)) {
		ph->errors += !ph->stopping;
		return;
	}
	p->seq = tcp ? pub_next_seq() : 0;
	n = pub_request(ph->o, p->seq, req, sizeof(req));
	p->t_issue = mono_ns();
	if (tcp)
		put_t0(ph->o, p->seq, p->t_issue);
	if (n < 0 || send_nb(p->fd, req, (size_t)n) != 0) {
		ph->errors++;
		pub_close(ph, p);
		return;
	}
	p->busy = true;
	p->answered = false;
	ph->publishes++;
}

/* The publish of p is done with (delivered, failed or given up). */
static void pub_complete(struct phase *ph, struct pubc *p)
{
	p->busy = false;
	pub_issue(ph, p);
}

static void pub_answered(struct phase *ph, struct pubc *p,
			 const struct answer *a)
{
	if (!p->busy)
		return;
	p->answered = true;
	if (!DIALECT_TCP(ph->o->dialect)) {
		p->seq = a->seq;
		if (a->seq)
			put_t0(ph->o, a->seq, p->t_issue);
	}
	if (a->status < 200 || a->status > 299 ||
	    (!DIALECT_TCP(ph->o->dialect) && !a->seq)) {
		ph->errors++;
		pub_complete(ph, p);
	} else if (ph->mode == MODE_OPEN || delivered(ph, p->seq)) {
		pub_complete(ph, p);
	}
}

static void pub_input(struct phase *ph, struct pubc *p)
{
	ssize_t r = recv(p->fd, p->buf + p->len, PUB_BUF - p->len, 0);
	struct answer a;
	size_t off = 0;

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0 || (p->len += (size_t)r) > PUB_BUF) {
		bool lost = p->busy && !p->answered;

		pub_close(ph, p);
		if (lost) {
			ph->errors++;
			pub_complete(ph, p);
		}
		return;
	}
	p->buf[p->len] = '\0';
	for (;;) {
		ssize_t used =
			pub_answer(ph->o, p->buf + off, p->len - off, &a);

		if (used <= 0)
			break;
		off += (size_t)used;
		if (a.ping) {
			send_nb(p->fd, "PONG\r\n", 6);
			continue;
		}
		if (a.ignore)
			continue;
		if (a.close) /* the floor: one call a connection */
			pub_close(ph, p);
		pub_answered(ph, p, &a);
		if (a.close || p->fd < 0)
			return;
	}
	memmove(p->buf, p->buf + off, p->len - off);
	p->len -= off;
}

/* Seqs every worker has delivered to all its links. */
static void done_input(struct phase *ph)
{
	uint64_t seqs[512];
	ssize_t r;

	while ((r = read(ph->o->done_rd, seqs, sizeof(seqs))) > 0) {
		for (size_t i = 0; i < (size_t)r / sizeof(seqs[0]); i++) {
			unsigned slot = (unsigned)(seqs[i] % SEQ_RING);

			if (ph->done[slot].seq != seqs[i]) {
				ph->done[slot].seq = seqs[i];
				ph->done[slot].workers = 0;
			}
			ph->done[slot].workers++;
			if (!delivered(ph, seqs[i]))
				continue;
			for (int k = 0; k < ph->npc; k++)
				if (ph->pc[k].busy && ph->pc[k].answered &&
				    ph->pc[k].seq == seqs[i])
					pub_complete(ph, &ph->pc[k]);
		}
	}
}

static bool any_busy(const struct phase *ph)
{
	for (int k = 0; k < ph->npc; k++)
		if (ph->pc[k].busy)
			return true;
	return false;
}

/* Window edges, and closed-loop publishes that never reached everyone. */
static void phase_clock(struct phase *ph, int64_t now)
{
	if (!ph->cpu0 && now >= ph->win_start)
		ph->cpu0 = report_cpu_ticks(ph->o);
	if (!ph->stopping && now >= ph->win_end) {
		ph->cpu1 = report_cpu_ticks(ph->o);
		ph->stopping = true;
	}
	if (ph->mode != MODE_CLOSED)
		return;
	for (int k = 0; k < ph->npc; k++)
		if (ph->pc[k].busy && now - ph->pc[k].t_issue > GIVE_UP_NS) {
			ph->timeouts++;
			pub_complete(ph, &ph->pc[k]);
		}
}

static void phase_loop(struct phase *ph)
{
	struct epoll_event evs[128];
	int64_t now, end = ph->win_end + GIVE_UP_NS;

	while ((now = mono_ns()) < end && (!ph->stopping || any_busy(ph))) {
		int n = epoll_wait(ph->ep, evs, 128, 10);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == CTL_TAG)
				done_input(ph);
			else if (ph->pc[evs[i].data.u64].fd >= 0)
				pub_input(ph, &ph->pc[evs[i].data.u64]);
		}
		phase_clock(ph, mono_ns());
	}
}

/* One phase: npc publishers for the warm-up and the window. */
static int phase_run(struct phase *ph, int mode, int npc)
{
	struct shared *shm = ph->o->shm;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = CTL_TAG };

	ph->mode = mode;
	ph->npc = npc;
	ph->pc = calloc((size_t)npc, sizeof(*ph->pc));
	ph->ep = epoll_create1(EPOLL_CLOEXEC);
	if (!ph->pc || ph->ep < 0 ||
	    epoll_ctl(ph->ep, EPOLL_CTL_ADD, ph->o->done_rd, &ev) != 0) {
		free(ph->pc);
		return -1;
	}
	ph->win_start = mono_ns() + WARM_NS;
	ph->win_end = ph->win_start + (int64_t)(ph->o->sustain_s * 1e9);
	atomic_store(&shm->win_start, ph->win_start);
	atomic_store(&shm->win_end, ph->win_end);
	atomic_store(&shm->mode, mode);
	for (int k = 0; k < npc; k++) {
		ph->pc[k].fd = -1;
		ph->pc[k].k = k;
		pub_issue(ph, &ph->pc[k]);
	}
	phase_loop(ph);
	if (!ph->cpu1)
		ph->cpu1 = report_cpu_ticks(ph->o);
	for (int k = 0; k < npc; k++)
		pub_close(ph, &ph->pc[k]);
	close(ph->ep);
	free(ph->pc);
	return 0;
}

/* Every worker's counts and histogram, summed into total. */
static int collect(const struct opts *o, struct child *ch,
		   struct sustain_stats *total)
{
	struct sustain_stats *one = malloc(sizeof(*one));

	memset(total, 0, sizeof(*total));
	if (!one)
		return -1;
	for (int k = 0; k < o->procs; k++) {
		if (write_full(ch[k].ctl, "S", 1) != 0 ||
		    read_full(ch[k].res, one, sizeof(*one)) != 0) {
			free(one);
			return -1;
		}
		for (int m = 0; m < 3; m++)
			total->delivered[m] += one->delivered[m];
		total->unmatched += one->unmatched;
		for (unsigned i = 0; i < HIST_N; i++)
			total->hist[i] += one->hist[i];
	}
	free(one);
	return 0;
}

int sustain_run(const struct opts *o, struct child *ch, struct sustain_run *s)
{
	static struct phase ph[3];
	static struct sustain_stats total;
	long hz = sysconf(_SC_CLK_TCK);

	memset(s, 0, sizeof(*s));
	for (int m = MODE_CLOSED; m <= MODE_OPEN; m++) {
		memset(&ph[m], 0, sizeof(ph[m]));
		ph[m].o = o;
		if (phase_run(&ph[m], m,
			      (int)(m == MODE_CLOSED ? o->closed_inflight :
						       o->open_publishers)) !=
		    0)
			return -1;
	}
	atomic_store(&o->shm->mode, MODE_ROUNDS);
	if (collect(o, ch, &total) != 0)
		return -1;
	for (int m = MODE_CLOSED; m <= MODE_OPEN; m++) {
		double d = (double)total.delivered[m];

		s->deliveries_per_s[m] = d / o->sustain_s;
		s->cpu_us[m] = d > 0 && ph[m].cpu0 >= 0 && ph[m].cpu1 >= 0 ?
				       (double)(ph[m].cpu1 - ph[m].cpu0) /
					       (double)hz * 1e6 / d :
				       -1;
		s->publishes[m] = ph[m].publishes;
		s->timeouts[m] = ph[m].timeouts;
		s->errors[m] = ph[m].errors;
	}
	s->p50_ms = hist_pct(total.hist, 0.50);
	s->p99_ms = hist_pct(total.hist, 0.99);
	s->unmatched = total.unmatched;
	return 0;
}

static void num(const char *key, double v, const char *sep)
{
	if (v < 0)
		printf("\"%s\":null%s", key, sep);
	else
		printf("\"%s\":%.3f%s", key, v, sep);
}

void sustain_print(const struct opts *o, const struct sustain_run *s)
{
	printf(",\"sustained\":{\"window_s\":%.3f,\"closed_inflight\":%ld,"
	       "\"open_publishers\":%ld,",
	       o->sustain_s, o->closed_inflight, o->open_publishers);
	num("closed_deliveries_per_s", s->deliveries_per_s[MODE_CLOSED], ",");
	num("closed_p50_ms", s->p50_ms, ",");
	num("closed_p99_ms", s->p99_ms, ",");
	num("closed_cpu_us_per_delivery", s->cpu_us[MODE_CLOSED], ",");
	num("open_deliveries_per_s", s->deliveries_per_s[MODE_OPEN], ",");
	num("open_cpu_us_per_delivery", s->cpu_us[MODE_OPEN], ",");
	printf("\"closed_publishes\":%ld,\"closed_timeouts\":%ld,"
	       "\"closed_errors\":%ld,\"open_publishes\":%ld,"
	       "\"open_errors\":%ld,\"unmatched\":%llu}",
	       s->publishes[MODE_CLOSED], s->timeouts[MODE_CLOSED],
	       s->errors[MODE_CLOSED], s->publishes[MODE_OPEN],
	       s->errors[MODE_OPEN], (unsigned long long)s->unmatched);
}
