/*
 * chunk: the strict check of chunked framing (see chunk.h).
 */
#include <string.h>

#include "chunk.h"

enum {
	CK_SIZE,    /* the chunk size's hex digits */
	CK_EXT,     /* after them: extensions, up to the CR */
	CK_SIZE_LF, /* the LF of the size line */
	CK_DATA,    /* `left` bytes of data */
	CK_DATA_CR, /* the CRLF after them */
	CK_DATA_LF,
	CK_LINE,    /* a trailer line begins, or the blank line */
	CK_NAME,    /* a trailer field's name */
	CK_VALUE,   /* its value, up to the CR */
	CK_LINE_LF, /* the LF ending a trailer line */
	CK_END_LF,  /* the LF of the blank line */
	CK_DONE,
};

static int hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') ||
	       ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Visible bytes, space and tab: what an extension or a value may hold. */
static bool is_text(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

void chunk_check_init(struct chunk_check *k)
{
	memset(k, 0, sizeof(*k));
}

/* One byte; false if it is out of place. */
static bool step(struct chunk_check *k, unsigned char c)
{
	int h;

	switch (k->state) {
	case CK_SIZE:
		if ((h = hex(c)) >= 0) {
			if (k->left >> 60)
				return false; /* past 2^64: http-parser says so
						 too */
			k->left = k->left * 16 + (unsigned)h;
			k->digits = true;
			return true;
		}
		if (!k->digits)
			return false;
		k->state = CK_EXT;
		/* fall through */
	case CK_EXT:
		if (c == '\r')
			k->state = CK_SIZE_LF;
		return c == '\r' || is_text(c);
	case CK_SIZE_LF:
		if (c != '\n')
			return false;
		k->state = k->left ? CK_DATA : CK_LINE;
		return true;
	case CK_DATA_CR: k->state = CK_DATA_LF; return c == '\r';
	case CK_DATA_LF: chunk_check_init(k); return c == '\n';
	case CK_LINE:
		if (c == '\r') {
			k->state = CK_END_LF;
			return true;
		}
		k->state = CK_NAME;
		return is_tchar(c);
	case CK_NAME:
		if (c == ':')
			k->state = CK_VALUE;
		return c == ':' || is_tchar(c);
	case CK_VALUE:
		if (c == '\r')
			k->state = CK_LINE_LF;
		return c == '\r' || is_text(c);
	case CK_LINE_LF: k->state = CK_LINE; return c == '\n';
	case CK_END_LF: k->state = CK_DONE; return c == '\n';
	}
	return false; /* CK_DONE: the body is over, nothing is its */
}

bool chunk_check(struct chunk_check *k, const char *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (k->state == CK_DATA) { /* data is not looked at */
			size_t m = k->left < n - i ? (size_t)k->left : n - i;

			k->left -= m;
			i += m;
			if (!k->left)
				k->state = CK_DATA_CR;
			continue;
		}
		if (!step(k, (unsigned char)p[i++]))
			return false;
	}
	return true;
}
