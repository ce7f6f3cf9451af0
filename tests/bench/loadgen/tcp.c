/*
 * tcp.c: subscriber links over raw TCP, for the peers that are not
 * WebSocket servers (-m redis, nats, mqtt). Once connected a link sends
 * its dialect's greeting and subscription, is welcomed by the server's
 * confirmation, and hands each published message's payload to
 * dialect_event, as a WebSocket link does with an event frame:
 *
 *   redis  SUBSCRIBE bench; welcomed by the subscribe reply; a message
 *          is the array [message, bench, payload].
 *   nats   CONNECT (not verbose), SUB bench 1, PING; welcomed by the
 *          PONG; a message is MSG bench 1 LEN; a PING is answered PONG.
 *   mqtt   CONNECT (clean session, no keep-alive), SUBSCRIBE bench at
 *          QoS 0 once the CONNACK says yes; welcomed by the SUBACK; a
 *          message is a QoS 0 PUBLISH.
 *
 * A message is used once it is whole in the link's buffer (LINK_BUF),
 * so the time stamped is the arrival of its last byte.
 */
#include "loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define REDIS_SUBSCRIBE "*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\n" CHANNEL "\r\n"
#define NATS_HELLO                                                             \
	"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n"    \
	"SUB " CHANNEL " 1\r\nPING\r\n"

static int send_all(struct link *l, const void *p, size_t n)
{
	return send(l->fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* MQTT's remaining length (1 to 4 bytes) at p; 0 when not all here. */
static size_t mqtt_varint(const unsigned char *p, size_t n, uint32_t *v)
{
	*v = 0;
	for (size_t i = 0; i < 4 && i < n; i++) {
		*v |= (uint32_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80))
			return i + 1;
	}
	return 0;
}

static int mqtt_connect(struct worker *w, struct link *l)
{
	unsigned char pk[64];
	char id[24];
	int idl = snprintf(id, sizeof(id), "lg-%u",
			   w->base + (uint32_t)(l - w->links));
	/* protocol name, level 4, clean session, keep-alive 0, client id */
	static const unsigned char vh[] = {
		0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0
	};
	size_t n = 0;

	pk[n++] = 0x10;
	pk[n++] = (unsigned char)(sizeof(vh) + 2 + (size_t)idl);
	memcpy(pk + n, vh, sizeof(vh));
	n += sizeof(vh);
	pk[n++] = 0;
	pk[n++] = (unsigned char)idl;
	memcpy(pk + n, id, (size_t)idl);
	return send_all(l, pk, n + (size_t)idl);
}

static int mqtt_subscribe(struct link *l)
{
	static const unsigned char pk[] = {
		0x82, 2 + 2 + 5 + 1, 0, 1, 0, 5, 'b', 'e', 'n', 'c', 'h', 0
	};

	return send_all(l, pk, sizeof(pk));
}

/* Connected: greet and subscribe. 0, or -1 when the link was failed. */
int tcp_greet(struct worker *w, struct link *l)
{
	int rc = 0;

	switch (w->o->dialect) {
	case DIALECT_REDIS:
		rc = send_all(l, REDIS_SUBSCRIBE, sizeof(REDIS_SUBSCRIBE) - 1);
		break;
	case DIALECT_NATS:
		rc = send_all(l, NATS_HELLO, sizeof(NATS_HELLO) - 1);
		break;
	case DIALECT_MQTT: rc = mqtt_connect(w, l); break;
	default: break;
	}
	if (rc != 0) {
		link_fail_errno(w, l, "send greeting");
		return -1;
	}
	l->state = L_HELLO;
	return 0;
}

/* ---- Redis: RESP arrays ------------------------------------------------- */

/* One RESP element at p: its end, and a bulk string's bytes in *s, *sl.
 * NULL when not all here; (const char *)1 on a protocol error. */
static const char *resp_element(const char *p, const char *end, const char **s,
				size_t *sl)
{
	const char *crlf = memmem(p, (size_t)(end - p), "\r\n", 2);
	long len;

	if (!crlf)
		return NULL;
	*s = p + 1;
	*sl = (size_t)(crlf - p - 1);
	if (*p == ':' || *p == '+')
		return crlf + 2;
	if (*p != '$')
		return (const char *)1;
	len = strtol(p + 1, NULL, 10);
	if (len < 0 || end - (crlf + 2) < len + 2)
		return len < 0 ? (const char *)1 : NULL;
	*s = crlf + 2;
	*sl = (size_t)len;
	return crlf + 2 + len + 2;
}

static ssize_t redis_one(struct worker *w, struct link *l, const char *p,
			 size_t n)
{
	const char *end = p + n, *crlf = memmem(p, n, "\r\n", 2), *q;
	const char *el[3] = { "", "", "" };
	size_t ell[3] = { 0, 0, 0 };
	long count;

	if (!crlf)
		return 0;
	if (*p != '*') {
		link_fail(w, l, *p == '-' ? "redis error" : "unexpected reply");
		return -1;
	}
	count = strtol(p + 1, NULL, 10);
	q = crlf + 2;
	for (long i = 0; i < count; i++) {
		const char *s;
		size_t sl;

		q = resp_element(q, end, &s, &sl);
		if (!q)
			return 0;
		if (q == (const char *)1) {
			link_fail(w, l, "bad RESP element");
			return -1;
		}
		if (i < 3) {
			el[i] = s;
			ell[i] = sl;
		}
	}
	if (ell[0] == 7 && memcmp(el[0], "message", 7) == 0)
		dialect_event(w, l, el[2], ell[2]);
	else if (ell[0] == 9 && memcmp(el[0], "subscribe", 9) == 0 &&
		 l->state == L_HELLO)
		link_welcomed(w, l);
	return q - p;
}

/* ---- NATS: text lines and MSG payloads ---------------------------------- */

static ssize_t nats_one(struct worker *w, struct link *l, const char *p,
			size_t n)
{
	const char *crlf = memmem(p, n, "\r\n", 2);
	size_t line = crlf ? (size_t)(crlf - p) + 2 : 0;

	if (!crlf)
		return 0;
	if (strncmp(p, "MSG ", 4) == 0) {
		const char *sp = crlf;
		unsigned long len;

		while (sp > p && sp[-1] != ' ')
			sp--;
		len = strtoul(sp, NULL, 10);
		if (n < line + len + 2)
			return 0;
		dialect_event(w, l, p + line, len);
		return (ssize_t)(line + len + 2);
	}
	if (strncmp(p, "PING", 4) == 0) {
		if (send_all(l, "PONG\r\n", 6) != 0) {
			link_fail_errno(w, l, "send PONG");
			return -1;
		}
	} else if (strncmp(p, "PONG", 4) == 0) {
		if (l->state == L_HELLO)
			link_welcomed(w, l);
	} else if (strncmp(p, "-ERR", 4) == 0) {
		char why[160];

		snprintf(why, sizeof(why), "nats: %.*s", (int)(line - 2), p);
		link_fail(w, l, why);
		return -1;
	}
	return (ssize_t)line; /* INFO, +OK */
}

/* ---- MQTT 3.1.1 packets ------------------------------------------------- */

static ssize_t mqtt_one(struct worker *w, struct link *l,
			const unsigned char *p, size_t n)
{
	uint32_t rl;
	size_t vl = n > 1 ? mqtt_varint(p + 1, n - 1, &rl) : 0;
	const unsigned char *b = p + 1 + vl;

	if (!vl || n < 1 + vl + rl)
		return 0;
	switch (p[0] >> 4) {
	case 2: /* CONNACK */
		if (rl < 2 || b[1] != 0) {
			link_fail(w, l, "mqtt: connection refused");
			return -1;
		}
		if (mqtt_subscribe(l) != 0) {
			link_fail_errno(w, l, "send SUBSCRIBE");
			return -1;
		}
		break;
	case 9: /* SUBACK */
		if (rl < 3 || b[2] == 0x80) {
			link_fail(w, l, "mqtt: subscription refused");
			return -1;
		}
		if (l->state == L_HELLO)
			link_welcomed(w, l);
		break;
	case 3: { /* PUBLISH, QoS 0: topic, then the payload */
		size_t tl = rl >= 2 ? (size_t)(b[0] << 8 | b[1]) : 0;

		if (rl < 2 + tl || (p[0] & 0x06)) {
			link_fail(w, l, "mqtt: unexpected PUBLISH");
			return -1;
		}
		dialect_event(w, l, (const char *)b + 2 + tl, rl - 2 - tl);
		break;
	}
	default: break; /* PINGRESP and the like */
	}
	return (ssize_t)(1 + vl + rl);
}

static ssize_t tcp_one(struct worker *w, struct link *l, const char *p,
		       size_t n)
{
	switch (w->o->dialect) {
	case DIALECT_REDIS: return redis_one(w, l, p, n);
	case DIALECT_NATS: return nats_one(w, l, p, n);
	case DIALECT_MQTT: return mqtt_one(w, l, (const unsigned char *)p, n);
	default: return -1;
	}
}

/* Readable: read what is there and use the whole messages in it.
 * -1: the link was failed. */
int tcp_input(struct worker *w, struct link *l)
{
	ssize_t r = recv(l->fd, l->buf + l->len, LINK_BUF - l->len, 0);
	size_t off = 0;

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (r < 0) {
		link_fail_errno(w, l, "recv");
		return -1;
	}
	if (r == 0) {
		link_fail(w, l, "connection closed by server");
		return -1;
	}
	l->len += (uint32_t)r;
	l->buf[l->len] = '\0';
	while (off < l->len && l->state != L_DEAD) {
		ssize_t used = tcp_one(w, l, l->buf + off, l->len - off);

		if (used < 0)
			return -1;
		if (used == 0)
			break;
		off += (size_t)used;
	}
	if (off == 0 && l->len == LINK_BUF) {
		link_fail(w, l, "message larger than the link's buffer");
		return -1;
	}
	memmove(l->buf, l->buf + off, l->len - off);
	l->len -= (uint32_t)off;
	return 0;
}
