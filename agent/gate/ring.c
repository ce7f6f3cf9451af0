/*
 * ring: rings and the framing of what leaves them (see ring.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "ring.h"

static size_t iov_total(const struct iovec *iov, size_t n)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++)
		total += iov[i].iov_len;
	return total;
}

size_t ring_put(struct ring *r, const char *p, size_t n)
{
	size_t done = 0;

	if (n > ring_room(r))
		n = ring_room(r);
	while (done < n) {
		size_t tail = (r->head + r->len) % r->cap;
		size_t chunk = r->cap - tail;

		if (chunk > n - done)
			chunk = n - done;
		memcpy(r->buf + tail, p + done, chunk);
		r->len += chunk;
		done += chunk;
	}
	return n;
}

const char *ring_peek(const struct ring *r, size_t *n)
{
	size_t chunk = r->cap - r->head;

	*n = r->len < chunk ? r->len : chunk;
	return r->buf + r->head;
}

void ring_drop(struct ring *r, size_t n)
{
	r->head = (r->head + n) % r->cap;
	r->len -= n;
	if (!r->len)
		r->head = 0; /* keep the next writes contiguous */
}

size_t ring_take(struct ring *r, char *p, size_t n)
{
	size_t done = 0;

	while (done < n && r->len) {
		size_t chunk;
		const char *src = ring_peek(r, &chunk);

		if (chunk > n - done)
			chunk = n - done;
		memcpy(p + done, src, chunk);
		ring_drop(r, chunk);
		done += chunk;
	}
	return done;
}

/* Chunk framing for what the ring holds (into out); the ring bytes that
 * may follow out in this write. */
static size_t frame_ready(struct buf *out, const struct ring *r,
			  struct framing *f, bool eof)
{
	char size[24];

	switch (f->mode) {
	case FRAME_RAW: f->started |= r->len > 0; return r->len;
	case FRAME_LENGTH:
		f->started |= f->left && r->len;
		return f->left < r->len ? (size_t)f->left : r->len;
	case FRAME_CHUNKED: break;
	}
	if (!f->chunk_left && r->len) {
		snprintf(size, sizeof(size), "%zx\r\n", r->len);
		if (buf_str(out, size))
			return 0;
		f->chunk_left = r->len;
		f->started = true;
	} else if (!f->chunk_left && eof && !f->ended) {
		if (!buf_str(out, "0\r\n\r\n"))
			f->ended = f->started = true;
	}
	return f->chunk_left;
}

int ring_send(int fd, struct buf *out, struct ring *r, struct framing *f,
	      bool eof, bool *blocked, size_t *moved)
{
	*blocked = false;
	*moved = 0;
	for (;;) {
		struct iovec iov[3];
		struct msghdr msg = { .msg_iov = iov };
		size_t body = frame_ready(out, r, f, eof), n0 = 0, k;
		const char *p0;
		ssize_t sent;

		if (out->off < out->len)
			iov[msg.msg_iovlen++] =
				(struct iovec){ out->p + out->off,
						out->len - out->off };
		if (body) {
			p0 = ring_peek(r, &n0);
			n0 = n0 < body ? n0 : body;
			iov[msg.msg_iovlen++] =
				(struct iovec){ (void *)p0, n0 };
			if (n0 < body) /* the wrapped part */
				iov[msg.msg_iovlen++] =
					(struct iovec){ r->buf, body - n0 };
		}
		if (!msg.msg_iovlen)
			return 0;
		sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (sent < 0 && errno == EINTR)
			continue;
		if (sent < 0 && errno == EAGAIN) {
			*blocked = true;
			return 0;
		}
		if (sent < 0)
			return -1;
		k = (size_t)sent;
		if (out->off < out->len) {
			size_t n = out->len - out->off < k ?
					   out->len - out->off :
					   k;

			out->off += n;
			k -= n;
			if (out->off == out->len &&
			    (f->started || !f->keep_out))
				out->off = out->len = 0;
		}
		if (k) {
			ring_drop(r, k);
			*moved += k;
			if (f->mode == FRAME_LENGTH) {
				f->left -= k;
			} else if (f->mode == FRAME_CHUNKED) {
				f->chunk_left -= k;
				if (!f->chunk_left && buf_str(out, "\r\n"))
					return errno = ENOMEM, -1;
			}
		}
		if ((size_t)sent < iov_total(iov, msg.msg_iovlen)) {
			*blocked = true;
			return 0;
		}
	}
}

bool framing_done(const struct framing *f, const struct buf *out,
		  const struct ring *r, bool eof)
{
	if (out->off < out->len)
		return false;
	switch (f->mode) {
	case FRAME_RAW: return eof && !r->len;
	case FRAME_LENGTH: return !f->left;
	case FRAME_CHUNKED: return f->ended;
	}
	return false;
}
