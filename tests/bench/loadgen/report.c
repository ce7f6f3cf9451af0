/*
 * report.c: the figures. Server RSS (VmRSS of every -p process, summed),
 * one round's percentiles (nearest rank over the links that got the
 * event), the medians over the rounds, and the one JSON object loadgen
 * prints on stdout.
 */
#include "loadgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* The servers' VmRSS together, kB; -1 if one cannot be read. */
long report_rss_kb(const struct opts *o)
{
	long sum = 0;

	for (int i = 0; i < o->npids; i++) {
		long kb = rss_kb(o->pids[i]);

		if (kb < 0)
			return -1;
		sum += kb;
	}
	return sum;
}

/* The servers' utime + stime together, in clock ticks; -1 if unreadable. */
long report_cpu_ticks(const struct opts *o)
{
	long sum = 0;

	for (int i = 0; i < o->npids; i++) {
		char path[64], line[1024], *close;
		unsigned long ut, st;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%ld/stat", o->pids[i]);
		f = fopen(path, "r");
		if (!f)
			return -1;
		close = fgets(line, sizeof(line), f) ? strrchr(line, ')') :
						       NULL;
		fclose(f);
		/* after the name: state, then fields 4 to 13, utime, stime */
		if (!close || sscanf(close + 2,
				     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
				     "%*u %lu %lu",
				     &ut, &st) != 2)
			return -1;
		sum += (long)(ut + st);
	}
	return o->npids ? sum : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[n]. */
static double pct(const double *v, size_t n, double p)
{
	size_t k;

	if (!n)
		return -1;
	k = (size_t)(p * (double)n + 0.999999999);
	return v[k ? k - 1 : 0];
}

/* One round's figures from its n latencies (sorted here). */
void report_round(struct round *rd, double *lat, size_t n)
{
	qsort(lat, n, sizeof(*lat), cmp_double);
	rd->p50 = pct(lat, n, 0.50);
	rd->p99 = pct(lat, n, 0.99);
	rd->last = n ? lat[n - 1] : -1;
}

/* Median of n values; -1 when there are none. Sorts v. */
static double median(double *v, size_t n)
{
	if (!n)
		return -1;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum field { F_P50, F_P99, F_LAST, F_HTTP };

/* The worst round's last link; -1 when no round had one. */
static double worst_last(const struct run *run)
{
	double worst = -1;

	for (long r = 0; r < run->nrounds; r++)
		if (run->rounds[r].last > worst)
			worst = run->rounds[r].last;
	return worst;
}

/* Median over the rounds of one of their figures (rounds without any). */
static double round_median(const struct run *run, enum field f)
{
	double *v =
		malloc((size_t)(run->nrounds ? run->nrounds : 1) * sizeof(*v));
	double m;
	size_t k = 0;

	if (!v)
		return -1;
	for (long r = 0; r < run->nrounds; r++) {
		const struct round *rd = &run->rounds[r];
		double x = f == F_P50  ? rd->p50 :
			   f == F_P99  ? rd->p99 :
			   f == F_LAST ? rd->last :
					 rd->http_ms;

		if (x >= 0)
			v[k++] = x;
	}
	m = median(v, k);
	free(v);
	return m;
}

static void print_num(const char *key, double v, const char *sep)
{
	if (v < 0)
		printf("\"%s\":null%s", key, sep);
	else
		printf("\"%s\":%.3f%s", key, v, sep);
}

static void print_rounds(const struct run *run)
{
	printf("\"rounds_detail\":[");
	for (long r = 0; r < run->nrounds; r++) {
		const struct round *rd = &run->rounds[r];

		printf("%s{", r ? "," : "");
		print_num("p50_ms", rd->p50, ",");
		print_num("p99_ms", rd->p99, ",");
		print_num("last_ms", rd->last, ",");
		print_num("http_ms", rd->http_ms, ",");
		printf("\"status\":%d,\"missed\":%ld", rd->status, rd->missed);
		if (rd->foreign)
			printf(",\"foreign\":%ld", rd->foreign);
		printf("}");
	}
	printf("],");
}

/* Links that went without their event, over the measured rounds. */
long report_missed(const struct run *run)
{
	long missed = 0;

	for (long r = 0; r < run->nrounds; r++)
		missed += run->rounds[r].missed + run->rounds[r].foreign;
	return missed;
}

static void print_rss(const struct run *run)
{
	long after = run->rss_idle >= 0 ? run->rss_idle : run->rss_storm;

	printf(",\"rss_before_kb\":%ld,\"rss_storm_kb\":%ld,"
	       "\"rss_idle_kb\":%ld,\"bytes_per_link\":",
	       run->rss_before, run->rss_storm, run->rss_idle);
	if (run->welcomed && run->rss_before >= 0 && after >= 0)
		printf("%ld", (after - run->rss_before) * 1024 / run->welcomed);
	else
		printf("null");
}

void report_print(const struct opts *o, const struct run *run,
		  const struct sustain_run *s)
{
	double storm = run->t_last > run->t_first ?
			       (double)(run->t_last - run->t_first) / 1e9 :
			       -1;

	printf("{\"links\":%ld,\"procs\":%ld,\"targets\":%d,\"welcomed\":%ld,"
	       "\"failed\":%ld,\"warmup\":%ld,\"rounds\":%ld,",
	       o->n, o->procs, o->ntargets, run->welcomed, run->failed,
	       run->welcomed ? o->warmup : 0, run->nrounds);
	print_num("connect_storm_s", storm, ",");
	print_num("p50_ms", round_median(run, F_P50), ",");
	print_num("p99_ms", round_median(run, F_P99), ",");
	print_num("last_ms", round_median(run, F_LAST), ",");
	print_num("worst_last_ms", worst_last(run), ",");
	print_num("http_ms", round_median(run, F_HTTP), ",");
	print_rounds(run);
	printf("\"missed\":%ld,\"closed\":%ld", report_missed(run),
	       run->closed);
	if (o->npids)
		print_rss(run);
	if (s)
		sustain_print(o, s);
	printf("}\n");
	fflush(stdout);
}
