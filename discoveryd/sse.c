/*
 * sse: one live event stream's buffer between the hub thread and
 * libmicrohttpd's (see sse.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "sse.h"

struct sse {
	struct MHD_Connection *c;
	pthread_mutex_t mu;
	char *buf; /* unread text: buf[off .. len) */
	size_t off, len, cap;
	bool suspended; /* the reader found nothing and waits */
	bool overflow;  /* fell too far behind: end the stream */
	int64_t last_push_ms;
	struct sse *next; /* hub's list; hub thread only */
};

struct sse *sse_new(struct MHD_Connection *c)
{
	struct sse *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->c = c;
	s->last_push_ms = clock_mono_ms();
	pthread_mutex_init(&s->mu, NULL);
	return s;
}

void sse_free(struct sse *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->mu);
	free(s->buf);
	free(s);
}

struct sse **sse_next(struct sse *s)
{
	return &s->next;
}

int64_t sse_last_push_ms(const struct sse *s)
{
	return s->last_push_ms;
}

void sse_push(struct sse *s, const char *text, size_t len)
{
	bool wake;

	s->last_push_ms = clock_mono_ms();
	pthread_mutex_lock(&s->mu);
	if (s->overflow) {
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if (s->off) { /* keep the unread part at the front */
		memmove(s->buf, s->buf + s->off, s->len - s->off);
		s->len -= s->off;
		s->off = 0;
	}
	if (s->len + len > SSE_BUFFER_MAX) {
		s->overflow = true;
	} else if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		char *grown;

		while (cap < s->len + len)
			cap *= 2;
		grown = realloc(s->buf, cap);
		if (grown) {
			s->buf = grown;
			s->cap = cap;
		} else {
			s->overflow = true;
		}
	}
	if (!s->overflow) {
		memcpy(s->buf + s->len, text, len);
		s->len += len;
	}
	wake = s->suspended;
	s->suspended = false;
	pthread_mutex_unlock(&s->mu);
	if (wake)
		MHD_resume_connection(s->c);
}

void sse_end(struct sse *s)
{
	bool wake;

	pthread_mutex_lock(&s->mu);
	s->overflow = true;
	wake = s->suspended;
	s->suspended = false;
	pthread_mutex_unlock(&s->mu);
	if (wake)
		MHD_resume_connection(s->c);
}

ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct sse *s = cls;
	size_t n;

	(void)pos;
	pthread_mutex_lock(&s->mu);
	if (s->overflow && s->off == s->len) {
		pthread_mutex_unlock(&s->mu);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = s->len - s->off;
	if (n == 0) {
		/* Nothing yet: park the connection until the hub pushes.
		 * Suspending under the mutex means a push cannot slip in
		 * between and find nobody to wake. */
		s->suspended = true;
		MHD_suspend_connection(s->c);
		pthread_mutex_unlock(&s->mu);
		return 0;
	}
	if (n > max)
		n = max;
	memcpy(out, s->buf + s->off, n);
	s->off += n;
	pthread_mutex_unlock(&s->mu);
	return (ssize_t)n;
}
