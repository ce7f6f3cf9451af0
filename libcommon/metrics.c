/*
 * metrics: histograms and the Prometheus text exposition (see metrics.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static const double bounds[METRICS_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01,   0.025,   0.05,   0.1,   0.5,    2.5,
};

void histogram_observe(struct histogram *h, double seconds)
{
	size_t i = 0;

	while (i < METRICS_BUCKETS && seconds > bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += seconds;
}

void metrics_text_init(struct metrics_text *t)
{
	memset(t, 0, sizeof(*t));
}

static void append(struct metrics_text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void append(struct metrics_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = vsnprintf(t->buf ? t->buf + t->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
		char *grown = realloc(t->buf, cap);

		if (!grown) {
			t->failed = 1;
			return;
		}
		t->buf = grown;
		t->cap = cap;
	}
}

void metrics_family(struct metrics_text *t, const char *name, const char *type,
		    const char *help)
{
	append(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(struct metrics_text *t, const char *name,
		    const char *labels, double value)
{
	if (labels && *labels)
		append(t, "%s{%s} %.17g\n", name, labels, value);
	else
		append(t, "%s %.17g\n", name, value);
}

void metrics_histogram(struct metrics_text *t, const char *name,
		       const char *help, const struct histogram *h)
{
	uint64_t cumulative = 0;

	metrics_family(t, name, "histogram", help);
	for (size_t i = 0; i < METRICS_BUCKETS; i++) {
		cumulative += h->counts[i];
		append(t, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
		       (unsigned long long)cumulative);
	}
	cumulative += h->counts[METRICS_BUCKETS];
	append(t, "%s_bucket{le=\"+Inf\"} %llu\n", name,
	       (unsigned long long)cumulative);
	append(t, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name,
	       (unsigned long long)h->count);
}

const char *metrics_label(char *buf, size_t size, const char *value)
{
	size_t o = 0;

	for (const char *p = value; *p && o + 3 < size; p++) {
		if (*p == '\\' || *p == '"') {
			buf[o++] = '\\';
			buf[o++] = *p;
		} else if (*p == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *p;
		}
	}
	buf[o] = '\0';
	return buf;
}

char *metrics_text_finish(struct metrics_text *t)
{
	if (t->failed || !t->buf) {
		free(t->buf);
		return t->failed ? NULL : strdup("");
	}
	return t->buf;
}
