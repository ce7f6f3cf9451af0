/*
 * buf: growing byte buffers (see buf.h).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int buf_add(struct buf *b, const char *p, size_t n)
{
	size_t max = b->max ? b->max : BUF_MAX;

	if (b->len + n > max)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *q;

		while (cap < b->len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		if (!(q = realloc(b->p, cap)))
			return -1;
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

int buf_str(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

void buf_shift(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = b->off = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	b->off = b->off > n ? b->off - n : 0;
}

void buf_release(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->off = b->cap = 0;
}
