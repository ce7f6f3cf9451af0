/*
 * ws.c: the least RFC 6455 client a benchmark link needs. A fixed
 * Sec-WebSocket-Key whose 101 answer is checked (status, Upgrade,
 * Connection, Accept, and the dialect's subprotocol); masked client frames;
 * server frames with 7-, 16- and 64-bit lengths, fragments, pings answered
 * with pongs carrying the same payload; a close frame or EOF ends the link.
 * Each link keeps LINK_BUF bytes of input: a longer frame is classified by
 * its first bytes and the rest discarded as it arrives. What a message
 * means is dialect.c's business.
 */
#include "loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* RFC 6455 §1.3's sample key and its accept value. */
#define WS_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

int ws_upgrade_request(const struct opts *o, int target, char *buf, size_t cap)
{
	const char *proto = dialect_subprotocol(o);
	int n = snprintf(buf, cap,
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY
			 "\r\n"
			 "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
			 dialect_path(o), o->target_names[target],
			 proto ? "Sec-WebSocket-Protocol: " : "",
			 proto ? proto : "", proto ? "\r\n" : "");

	return n > 0 && (size_t)n < cap ? n : -1;
}

static uint32_t xorshift(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* One masked client frame, written whole or not at all (the link is then
 * failed by the caller: a short write on a near-empty socket is a fault). */
int ws_send(struct worker *w, struct link *l, int op, const void *payload,
	    size_t len)
{
	unsigned char f[8 + MAX_OUT];
	const unsigned char *p = payload;
	uint32_t key = xorshift(&w->rng);
	size_t h = 2;

	if (len > MAX_OUT)
		return -1;
	f[0] = (unsigned char)(0x80 | op);
	if (len < 126) {
		f[1] = (unsigned char)(0x80 | len);
	} else {
		f[1] = 0x80 | 126;
		f[2] = (unsigned char)(len >> 8);
		f[3] = (unsigned char)len;
		h = 4;
	}
	memcpy(f + h, &key, 4);
	for (size_t i = 0; i < len; i++)
		f[h + 4 + i] = p[i] ^ f[h + (i & 3)];
	return send(l->fd, f, h + 4 + len, MSG_NOSIGNAL) ==
			       (ssize_t)(h + 4 + len) ?
		       0 :
		       -1;
}

/* ---- the upgrade answer ------------------------------------------------- */

/* Does header `name` of the NUL-terminated head equal want (case per flag)? */
static bool header_is(const char *head, const char *name, const char *want,
		      bool nocase)
{
	size_t nl = strlen(name);

	for (const char *p = strstr(head, "\r\n"); p; p = strstr(p, "\r\n")) {
		const char *v, *e;
		size_t vl;

		p += 2;
		if (strncasecmp(p, name, nl) != 0 || p[nl] != ':')
			continue;
		for (v = p + nl + 1; *v == ' ' || *v == '\t'; v++)
			;
		e = strstr(v, "\r\n");
		vl = e ? (size_t)(e - v) : strlen(v);
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		return vl == strlen(want) &&
		       (nocase ? strncasecmp(v, want, vl) :
				 strncmp(v, want, vl)) == 0;
	}
	return false;
}

static const char *upgrade_check(const struct opts *o, const char *head)
{
	const char *proto = dialect_subprotocol(o);

	if (strncmp(head, "HTTP/1.1 101 ", 13) != 0)
		return "upgrade refused (status is not 101)";
	if (!header_is(head, "Upgrade", "websocket", true))
		return "101 without Upgrade: websocket";
	if (!header_is(head, "Connection", "Upgrade", true))
		return "101 without Connection: Upgrade";
	if (!header_is(head, "Sec-WebSocket-Accept", WS_ACCEPT, false))
		return "wrong Sec-WebSocket-Accept";
	if (proto && !header_is(head, "Sec-WebSocket-Protocol", proto, false))
		return "subprotocol not selected";
	return NULL;
}

/* 1: upgraded and handed to the dialect; 0: head incomplete; -1: failed. */
static int upgrade_done(struct worker *w, struct link *l)
{
	char *end = memmem(l->buf, l->len, "\r\n\r\n", 4);
	const char *bad;
	size_t used;

	if (!end) {
		if (l->len == LINK_BUF) {
			link_fail(w, l, "upgrade response head too large");
			return -1;
		}
		return 0;
	}
	used = (size_t)(end - l->buf) + 4;
	end[2] = '\0'; /* keep the last header's CRLF */
	bad = upgrade_check(w->o, l->buf);
	if (bad) {
		link_fail(w, l, bad);
		return -1;
	}
	memmove(l->buf, l->buf + used, l->len - used);
	l->len -= (uint32_t)used;
	return dialect_upgraded(w, l) == 0 ? 1 : -1;
}

/* ---- frames ------------------------------------------------------------- */

static void server_close(struct worker *w, struct link *l, const char *p,
			 size_t n)
{
	char why[200];
	int code = n >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) :
			    1005;

	snprintf(why, sizeof(why), "closed by server: %d %.*s", code,
		 n > 2 ? (int)(n - 2) : 0, n > 2 ? p + 2 : "");
	link_fail(w, l, why);
}

/* A whole frame. Returns -1 when the link was failed. */
static int frame_done(struct worker *w, struct link *l, unsigned char b0,
		      const char *p, size_t n)
{
	int op = b0 & 0x0f;

	switch (op) {
	case 0x9:
		if (ws_send(w, l, 0xA, p, n) != 0) {
			link_fail_errno(w, l, "send pong");
			return -1;
		}
		return 0;
	case 0xA: return 0;
	case 0x8: server_close(w, l, p, n); return -1;
	case 0x0:
	case 0x1:
	case 0x2:
		if (op != 0)
			dialect_message_start(w, l, op, p, n);
		return b0 & 0x80 ? dialect_message_end(w, l) : 0;
	default: link_fail(w, l, "unknown opcode"); return -1;
	}
}

/*
 * The frame at p (n bytes available). Returns bytes used, 0 if it is not
 * all here yet, -1 if the link was failed. A frame that can never fit the
 * link's buffer is classified by its first bytes and the rest discarded.
 */
static ssize_t frame_one(struct worker *w, struct link *l,
			 const unsigned char *p, size_t n)
{
	uint64_t plen;
	size_t hl = 2;

	if (n < 2)
		return 0;
	if (p[1] & 0x80) {
		link_fail(w, l, "masked frame from server");
		return -1;
	}
	plen = p[1] & 0x7f;
	if (plen == 126) {
		if (n < 4)
			return 0;
		plen = (uint64_t)p[2] << 8 | p[3];
		hl = 4;
	} else if (plen == 127) {
		if (n < 10)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | p[2 + i];
		hl = 10;
	}
	if (plen <= n - hl)
		return frame_done(w, l, p[0], (const char *)p + hl,
				  (size_t)plen) ?
			       -1 :
			       (ssize_t)(hl + plen);
	if (hl + plen <= LINK_BUF)
		return 0;
	if ((p[0] & 0x0f) >= 0x8) {
		link_fail(w, l, "oversized control frame");
		return -1;
	}
	if ((p[0] & 0x0f) != 0)
		dialect_message_start(w, l, p[0] & 0x0f, (const char *)p + hl,
				      n - hl);
	l->skip = plen - (n - hl);
	l->skip_fin = (p[0] & 0x80) != 0;
	return (ssize_t)n;
}

/* Use the complete frames at the front of the buffer. -1: link failed. */
static int link_frames(struct worker *w, struct link *l)
{
	size_t off = 0;

	while (off < l->len) {
		ssize_t used = frame_one(w, l, (unsigned char *)l->buf + off,
					 l->len - off);

		if (used < 0)
			return -1;
		if (used == 0)
			break;
		off += (size_t)used;
	}
	memmove(l->buf, l->buf + off, l->len - off);
	l->len -= (uint32_t)off;
	return 0;
}

/* Discard what is left of an oversized frame. -1: link failed. */
static int skip_bytes(struct worker *w, struct link *l)
{
	size_t d = l->skip < l->len ? (size_t)l->skip : l->len;

	memmove(l->buf, l->buf + d, l->len - d);
	l->len -= (uint32_t)d;
	l->skip -= d;
	if (!l->skip && l->skip_fin)
		return dialect_message_end(w, l);
	return 0;
}

/* Readable: read what is there and use it. -1: the link was failed. */
int ws_input(struct worker *w, struct link *l)
{
	ssize_t r = recv(l->fd, l->buf + l->len, LINK_BUF - l->len, 0);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (r < 0) {
		link_fail_errno(w, l, "recv");
		return -1;
	}
	if (r == 0) {
		link_fail(w, l,
			  "connection closed by server without close frame");
		return -1;
	}
	l->len += (uint32_t)r;
	if (l->skip && skip_bytes(w, l) != 0)
		return -1;
	if (l->state == L_UPGRADING) {
		int up = upgrade_done(w, l);

		if (up <= 0)
			return up;
	}
	return link_frames(w, l);
}
