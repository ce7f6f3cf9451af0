/*
 * parent.c: the parent's side of the workers. It forks P workers with a
 * share of the links each, talks to them over two pipes per worker (a
 * control pipe it writes one-letter commands to, a result pipe they write
 * fixed-size reports and timestamp arrays to), and runs the rounds: arm
 * every worker, make the trigger call, collect every link's timestamp and
 * turn them into one round's figures. CLOCK_MONOTONIC is shared by every
 * process, so a worker's timestamp and the parent's t0 compare directly.
 */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Room for each worker's links: raise the soft file limit to the hard one. */
int parent_raise_nofile(const struct opts *o)
{
	struct rlimit rl;
	long per = (o->n + o->procs - 1) / o->procs;
	rlim_t need = (rlim_t)per + 32;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need) {
		fprintf(stderr,
			"loadgen: %ld links per process need %lu files, "
			"the limit is %lu: use more -P\n",
			per, (unsigned long)need, (unsigned long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

static int spawn(const struct opts *o, struct child *ch, int k)
{
	int ctl[2], res[2];

	if (pipe2(ctl, O_CLOEXEC) != 0 || pipe2(res, O_CLOEXEC) != 0)
		return -1;
	ch[k].pid = fork();
	if (ch[k].pid < 0)
		return -1;
	if (ch[k].pid == 0) {
		close(ctl[1]);
		close(res[0]);
		for (int j = 0; j < k; j++) {
			close(ch[j].ctl);
			close(ch[j].res);
		}
		_exit(worker_run(o, ch[k].base, ch[k].n, ctl[0], res[1]));
	}
	close(ctl[0]);
	close(res[1]);
	ch[k].ctl = ctl[1];
	ch[k].res = res[0];
	return 0;
}

int parent_spawn_all(const struct opts *o, struct child *ch)
{
	uint32_t base = 0;

	fflush(NULL);
	for (int k = 0; k < o->procs; k++) {
		ch[k].base = base;
		ch[k].n = (uint32_t)(o->n / o->procs + (k < o->n % o->procs));
		base += ch[k].n;
		if (spawn(o, ch, k) != 0) {
			perror("loadgen: fork");
			return -1;
		}
	}
	return 0;
}

void parent_stop_all(const struct opts *o, struct child *ch)
{
	for (int k = 0; k < o->procs; k++) {
		if (ch[k].pid <= 0)
			continue;
		if (write_full(ch[k].ctl, "Q", 1) != 0)
			kill(ch[k].pid, SIGTERM);
		close(ch[k].ctl);
	}
	for (int k = 0; k < o->procs; k++)
		if (ch[k].pid > 0)
			waitpid(ch[k].pid, NULL, 0);
}

/* Wait for every worker's storm report. */
int parent_collect_storm(const struct opts *o, struct child *ch,
			 struct run *run)
{
	for (int k = 0; k < o->procs; k++) {
		struct storm_msg m;

		if (read_full(ch[k].res, &m, sizeof(m)) != 0)
			return -1;
		if (m.t_first && (!run->t_first || m.t_first < run->t_first))
			run->t_first = m.t_first;
		if (m.t_last > run->t_last)
			run->t_last = m.t_last;
		run->welcomed += m.welcomed;
		run->failed += m.failed;
	}
	return 0;
}

/* Each worker's hits into latencies (ms) of links that got this round's
 * event; links that got none are missed, other seqs are foreign. */
static int collect_round(const struct opts *o, struct child *ch,
			 const struct trigger *t, double *lat, size_t *nlat,
			 struct round *rd, struct run *run)
{
	struct round_msg m;
	struct hit *h;

	*nlat = 0;
	run->closed = 0;
	for (int k = 0; k < o->procs; k++) {
		if (read_full(ch[k].res, &m, sizeof(m)) != 0)
			return -1;
		h = malloc((m.n ? m.n : 1) * sizeof(*h));
		if (!h || read_full(ch[k].res, h, m.n * sizeof(*h)) != 0) {
			free(h);
			return -1;
		}
		run->closed += m.closed;
		for (uint32_t i = 0; i < m.n; i++) {
			if (!h[i].t)
				rd->missed++;
			else if (t->seq && h[i].seq != t->seq)
				rd->foreign++;
			else
				lat[(*nlat)++] = (double)(h[i].t - t->t0) / 1e6;
		}
		free(h);
	}
	return 0;
}

static int one_round(const struct opts *o, struct child *ch, double *lat,
		     struct round *rd, struct run *run)
{
	struct trigger t;
	size_t n;
	char ack;

	for (int k = 0; k < o->procs; k++)
		if (write_full(ch[k].ctl, "A", 1) != 0)
			return -1;
	for (int k = 0; k < o->procs; k++)
		if (read_full(ch[k].res, &ack, 1) != 0 || ack != 'a')
			return -1;
	if (trigger_call(o, &t) != 0) {
		fprintf(stderr, "loadgen: trigger call failed: %s\n",
			strerror(errno));
		t.t0 = mono_ns(); /* still collect: the round times out */
	}
	if (t.status && (t.status < 200 || t.status > 299))
		fprintf(stderr, "loadgen: trigger answered %d\n", t.status);
	memset(rd, 0, sizeof(*rd));
	rd->status = t.status;
	rd->http_ms = t.http_ms;
	if (collect_round(o, ch, &t, lat, &n, rd, run) != 0)
		return -1;
	/* Links that never linked are failed, not missed; links the server
	 * dropped after their welcome are missed. */
	rd->missed -= run->failed;
	report_round(rd, lat, n);
	return 0;
}

/* Warm-up rounds first (run, not kept), then the measured ones. */
int parent_run_rounds(const struct opts *o, struct child *ch, struct run *run)
{
	double *lat = malloc((size_t)o->n * sizeof(*lat));
	struct round scratch;

	run->rounds = calloc((size_t)(o->rounds ? o->rounds : 1),
			     sizeof(*run->rounds));
	if (!lat || !run->rounds) {
		free(lat);
		return -1;
	}
	for (long r = 0; r < o->warmup + o->rounds && run->welcomed; r++) {
		struct round *rd = r < o->warmup ? &scratch :
						   &run->rounds[r - o->warmup];

		if (o->gap_s > 0) {
			struct timespec ts = {
				(time_t)o->gap_s,
				(long)((o->gap_s - (double)(time_t)o->gap_s) *
				       1e9)
			};

			nanosleep(&ts, NULL);
		}
		if (one_round(o, ch, lat, rd, run) != 0) {
			free(lat);
			return -1;
		}
		if (r >= o->warmup)
			run->nrounds++;
	}
	free(lat);
	return 0;
}
