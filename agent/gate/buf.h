/*
 * buf: a byte buffer that grows up to a cap: a head being read or written,
 * the fields of a parsed head ("name\0value\0"...), framing waiting to go
 * out in front of a ring's bytes.
 */
#ifndef GATE_BUF_H
#define GATE_BUF_H

#include <stddef.h>

/* A byte buffer that grows up to `max` (0: BUF_MAX). off: what was sent
 * or consumed of it. */
struct buf {
	char *p;
	size_t len, off, cap, max;
};

#define BUF_MAX (64 * 1024 + 1024) /* a head, and room for chunk framing */

/* Append n bytes; -1 past the cap or on ENOMEM (nothing appended). */
int buf_add(struct buf *b, const char *p, size_t n);
int buf_str(struct buf *b, const char *s);
/* Drop the first n bytes (the consumed part), moving the rest down. */
void buf_shift(struct buf *b, size_t n);
void buf_release(struct buf *b);

#endif
