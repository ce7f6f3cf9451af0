/*
 * metrics: what /metrics exposes, in the Prometheus text format (0.0.4),
 * for discoveryd and the sidecar alike.
 *
 * The numbers live with their owners: in discoveryd the hub's counters and
 * histograms in struct hub (written by the hub thread only), the HTTP
 * counters in the API (atomics, written by the pool's threads); in the
 * sidecar libagent's state, the hooks' counters and its own (stats.c).
 * This module gives them a shape (a histogram with fixed buckets) and
 * writes the exposition text; it keeps no state of its own.
 */
#ifndef DISCOVERYD_METRICS_H
#define DISCOVERYD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_BUCKETS 12

/* Latency histogram, in seconds; buckets from 100 µs to 2.5 s. */
struct histogram {
	uint64_t counts[METRICS_BUCKETS + 1]; /* the last is +Inf */
	uint64_t count;
	double sum;
};

void histogram_observe(struct histogram *h, double seconds);

/* A growing text buffer; on allocation failure it stops growing and
 * metrics_text_finish returns NULL. */
struct metrics_text {
	char *buf;
	size_t len, cap;
	int failed;
};

void metrics_text_init(struct metrics_text *t);
/* HELP and TYPE lines for a family. */
void metrics_family(struct metrics_text *t, const char *name, const char *type,
		    const char *help);
/* One sample; labels like "service=\"cache\"" (NULL or "" for none). */
void metrics_sample(struct metrics_text *t, const char *name,
		    const char *labels, double value);
/* A whole histogram family (HELP, TYPE, buckets, sum, count). */
void metrics_histogram(struct metrics_text *t, const char *name,
		       const char *help, const struct histogram *h);
/* Escape a label value (\, " and newline) into buf; returns buf. */
const char *metrics_label(char *buf, size_t size, const char *value);
/* The text, malloc'd (caller frees), or NULL if memory ran out. */
char *metrics_text_finish(struct metrics_text *t);

#endif
