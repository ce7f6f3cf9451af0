/*
 * ring: the fixed circular buffers a body moves through on its way across
 * the gate (one per direction), so memory stays flat whatever the size of
 * what passes, and the framing a body gets as it leaves one (ring_send).
 * The growing buffer for heads is buf.h.
 */
#ifndef GATE_RING_H
#define GATE_RING_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct ring {
	char *buf;
	size_t cap, head, len;
};

size_t ring_put(struct ring *r, const char *p, size_t n); /* what fit */
size_t ring_take(struct ring *r, char *p, size_t n);      /* what was there */
/* The readable bytes at the head, contiguous (call twice for a wrap). */
const char *ring_peek(const struct ring *r, size_t *n);
void ring_drop(struct ring *r, size_t n);
static inline size_t ring_room(const struct ring *r)
{
	return r->cap - r->len;
}

/*
 * A body on its way out of a ring: as it is (until the connection closes),
 * with a Content-Length, or chunked, the framing added to a buf in front
 * of it. ring_send writes the buf, then what the framing lets go of the
 * ring, in one sendmsg a round, until the socket blocks or nothing is
 * left.
 */
enum framing_mode { FRAME_RAW, FRAME_LENGTH, FRAME_CHUNKED };

struct framing {
	enum framing_mode mode;
	unsigned long long left; /* FRAME_LENGTH: body bytes still due */
	size_t chunk_left;       /* FRAME_CHUNKED: of the chunk going out */
	bool ended;              /* the last chunk is framed */
	bool started;            /* a body byte was framed or sent */
	bool keep_out;           /* keep a sent buf (it may be sent again)
				  * until the body starts */
};

/* eof: the whole body is in the ring. 0, or -1 with errno (the socket
 * failed). *blocked: the socket took less than offered; *moved: ring bytes
 * sent. */
int ring_send(int fd, struct buf *out, struct ring *r, struct framing *f,
	      bool eof, bool *blocked, size_t *moved);
/* The framing is done: the whole body and its end have gone into out or
 * the socket. */
bool framing_done(const struct framing *f, const struct buf *out,
		  const struct ring *r, bool eof);

#endif
